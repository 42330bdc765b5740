package proxy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// TestMeasureRDBOnlyRefresh times what a tool's rdb-only request costs at
// 50 MB and 200 MB: redis-cli --rdb from the master, a snapshot refresh of
// the relay, and redis-cli --rdb of the relay's stored snapshot. It only
// runs with RELAY_MEASURE=1: it is a measurement, not a check.
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
			master.Do(t, "SET", "after", "1")
			out := filepath.Join(t.TempDir(), "x.rdb")
			h, p := master.HostPort()
			start := time.Now()
			if msg, err := exec.Command(cli, "-h", h, "-p", p, "--rdb", out).CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, msg)
			}
			fromMaster := time.Since(start)
			rh, rp := relay.HostPort()
			start = time.Now()
			if msg, err := exec.Command(cli, "-h", rh, "-p", rp, "--rdb", out).CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, msg)
			}
			stored := time.Since(start)
			start = time.Now()
			if err := relay.up.refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			refresh := time.Since(start)
			fi, _ := os.Stat(out)
			t.Logf("%d MB (rdb %d bytes): redis-cli --rdb from master %v; relay refresh %v; redis-cli --rdb of the stored snapshot %v",
				mb, fi.Size(), fromMaster.Round(time.Millisecond), refresh.Round(time.Millisecond), stored.Round(time.Millisecond))
		})
	}
}
