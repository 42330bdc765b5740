package proxy

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// TestDataDirOwnerOnly: the data dir holds the master's whole dataset (the
// snapshots) and every write since (the log), so the relay creates it and
// everything in it for its own user only: directories 0700, files 0600,
// whatever the umask lets through.
func TestDataDirOwnerOnly(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 2000)
	dir := filepath.Join(t.TempDir(), "data") // the relay creates it
	relay := startRelay(t, master.Addr(), func(c *Config) {
		c.DataDir = dir
		c.SegmentSize = 64 << 10
	})
	leaf := replicaOf(t, relay.HostPort)
	writeKeys(t, master, 0, 500)
	inSync(t, 30*time.Second, master, leaf)
	kinds := []string{"lock", "state.json", ".rdb", ".rdb.json", ".seg", ".times"}
	redistest.Eventually(t, 30*time.Second, func() error {
		writeKeys(t, master, 0, 20) // time marks follow writes
		seen := map[string]bool{}
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			for _, k := range kinds {
				if err == nil && strings.HasSuffix(path, k) {
					seen[k] = true
				}
			}
			return nil
		})
		for _, k := range kinds {
			if !seen[k] {
				return fmt.Errorf("no %s file in the data dir yet", k)
			}
		}
		return nil
	})
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s: mode %04o, want %04o", strings.TrimPrefix(path, dir), got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
