package proxy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// TestMeasureRDBOnlyRefresh times what a tool's rdb-only request costs at
// 50 MB and 200 MB: redis-cli --rdb from the master, and from the relay
// given its stored snapshot (rdb-only-max-age 1h) or refreshing it first
// (0, a write after the snapshot). It only runs with RELAY_MEASURE=1: it
// is a measurement, not a check.
func TestMeasureRDBOnlyRefresh(t *testing.T) {
	if os.Getenv("RELAY_MEASURE") == "" {
		t.Skip("set RELAY_MEASURE=1 to measure")
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatal(err)
	}
	for _, mb := range []int{50, 200} {
		t.Run(fmt.Sprintf("%dMB", mb), func(t *testing.T) {
			master := redistest.Start(t, "--rdbcompression", "no")
			master.Do(t, "DEBUG", "POPULATE", mb*1000, "m", 1000)
			relay := startRelay(t, master.Addr(), func(c *Config) { c.RefreshRatio = -1 })
			redistest.Eventually(t, 120*time.Second, func() error { return relayOnline(relay) })
			rdb := func(h, p string) time.Duration {
				out := filepath.Join(t.TempDir(), "x.rdb")
				start := time.Now()
				if msg, err := exec.Command(cli, "-h", h, "-p", p, "--rdb", out).CombinedOutput(); err != nil {
					t.Fatalf("%v %s", err, msg)
				}
				return time.Since(start).Round(time.Millisecond)
			}
			master.Do(t, "SET", "after", "1")
			fromMaster := rdb(master.HostPort())
			relay.Client().ConfigSet(t.Context(), "rdb-only-max-age", "1h")
			stored := rdb(relay.HostPort())
			relay.Client().ConfigSet(t.Context(), "rdb-only-max-age", "0")
			refreshed := rdb(relay.HostPort())
			t.Logf("%d MB: redis-cli --rdb from the master %v; from the relay, its stored snapshot %v, refreshed first %v",
				mb, fromMaster, stored, refreshed)
		})
	}
}
