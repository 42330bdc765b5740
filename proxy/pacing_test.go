package proxy

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// TestPacedFullSyncs: four replicas ask for a full sync at once from a
// relay that serves one at a time at a capped rate. They queue (kept
// alive), all end in sync, the cap is applied, and a replica that is
// already online keeps getting writes at once meanwhile.
func TestPacedFullSyncs(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 30000) // about 1 MB of snapshot
	relay := startRelay(t, master.Addr(), func(c *Config) {
		c.FullSyncMaxConcurrent = 1
		c.FullSyncBandwidth = 2 << 20
	})
	online := replicaOf(t, relay.HostPort)
	inSync(t, 30*time.Second, master, online)
	size := relay.Status().Snapshot.Size

	var leaves []*redistest.Server
	for range 4 {
		leaves = append(leaves, replicaOf(t, relay.HostPort))
	}
	var queued atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if n := int64(relay.Status().FullSyncsQueued); n > queued.Load() {
				queued.Store(n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	// The online replica is not paced: a write reaches it at once.
	for i := range 5 {
		master.Do(t, "SET", "online:"+strconv.Itoa(i), i)
		start := time.Now()
		redistest.Eventually(t, 10*time.Second, func() error {
			if online.Do(t, "GET", "online:"+strconv.Itoa(i)) == nil {
				return fmt.Errorf("not there yet")
			}
			return nil
		})
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("a write took %v to reach the online replica while full syncs were paced", d)
		}
		time.Sleep(200 * time.Millisecond)
	}
	inSync(t, 60*time.Second, master, append(leaves, online)...)
	cancel()
	st := relay.Status()
	if queued.Load() < 1 {
		t.Error("no full sync ever waited for a slot")
	}
	if st.FullSyncPacedBytes < 4*size {
		t.Errorf("%d bytes paced, want the 4 snapshots (%d bytes each)", st.FullSyncPacedBytes, size)
	}
	if st.FullSyncPaceWait <= 0 {
		t.Error("the bandwidth limit never made a full sync wait")
	}
	t.Logf("4 x %d bytes: waited %v for the 2 MB/s limit, up to %d queued", size, st.FullSyncPaceWait, queued.Load())
}
