package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/proxy/downstream"
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

// bigSnapshot fills master with about mb megabytes of 16 KB values that
// stay that size in its RDB (no compression), for transfers long enough to
// time.
func bigSnapshot(t *testing.T, master *redistest.Server, mb int) {
	t.Helper()
	master.Do(t, "CONFIG", "SET", "rdbcompression", "no")
	master.Do(t, "DEBUG", "POPULATE", mb*64, "big", 16<<10)
}

// TestQueuedFullSyncOutlivesReplTimeout: a replica whose repl-timeout is
// shorter than its wait for a full-sync slot stays connected through the
// wait, under writes: one session, one full sync, no timeout in its log,
// the master's data.
func TestQueuedFullSyncOutlivesReplTimeout(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	bigSnapshot(t, master, 6)
	relay := startRelay(t, master.Addr(), func(c *Config) {
		c.FullSyncMaxConcurrent = 1
		c.FullSyncReplicaBandwidth = 1 << 20 // the first sync takes about 6 s
	})
	first := replicaOf(t, relay.HostPort)
	redistest.Eventually(t, 10*time.Second, func() error {
		if relay.Status().FullSyncsRunning != 1 {
			return fmt.Errorf("first full sync not running")
		}
		return nil
	})
	load := startLoad(t, master)
	queued := replicaOf(t, relay.HostPort, "--repl-timeout", "2")
	redistest.Eventually(t, 10*time.Second, func() error {
		if relay.Status().FullSyncsQueued != 1 {
			return fmt.Errorf("second full sync not queued")
		}
		return nil
	})
	redistest.Eventually(t, 20*time.Second, func() error {
		if relay.Status().FullSyncsQueued != 0 {
			return fmt.Errorf("second full sync still queued")
		}
		return nil
	})
	relay.Client().Do(t.Context(), "CONFIG", "SET", "full-sync-replica-bandwidth-limit", "0")
	load.Stop(t)
	inSync(t, 30*time.Second, master, first, queued)

	if n := relay.InfoInt(t, "sync_full"); n != 2 {
		t.Errorf("relay sync_full = %d, want 2", n)
	}
	for reason, n := range relay.Status().Disconnects {
		if n > 0 {
			t.Errorf("relay saw %d replica disconnects (%s)", n, reason)
		}
	}
	log, err := os.ReadFile(queued.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(log, []byte("Timeout")) {
		t.Errorf("the queued replica timed out:\n%s", log)
	}
}

// sendOrder watches the relay's replica sessions until want replicas have
// started receiving a snapshot, and returns their listening ports in the
// order they started.
func sendOrder(t *testing.T, relay *testRelay, want int, timeout time.Duration) []int {
	t.Helper()
	var order []int
	seen := map[int]bool{}
	redistest.Eventually(t, timeout, func() error {
		for _, r := range relay.Replicas() {
			if r.State != downstream.StateWaitBgsave && !seen[r.Port] {
				seen[r.Port] = true
				order = append(order, r.Port)
			}
		}
		if len(order) < want {
			return fmt.Errorf("%d of %d full syncs started", len(order), want)
		}
		return nil
	})
	return order
}

// TestFullSyncQueueOrder: with one full sync at a time, replicas that
// queue for it are served in the order they asked.
func TestFullSyncQueueOrder(t *testing.T) {
	master := redistest.Start(t)
	bigSnapshot(t, master, 3)
	relay := startRelay(t, master.Addr(), func(c *Config) {
		c.FullSyncMaxConcurrent = 1
		c.FullSyncReplicaBandwidth = 1 << 20
	})
	var replicas []*redistest.Server
	var ports []int
	for i := range 7 {
		r := replicaOf(t, relay.HostPort)
		replicas, ports = append(replicas, r), append(ports, r.Port)
		redistest.Eventually(t, 10*time.Second, func() error {
			if st := relay.Status(); st.FullSyncsRunning != 1 || st.FullSyncsQueued != i {
				return fmt.Errorf("%d running, %d queued; want 1 and %d", st.FullSyncsRunning, st.FullSyncsQueued, i)
			}
			return nil
		})
	}
	// All queued: the rest may go fast.
	relay.Client().Do(t.Context(), "CONFIG", "SET", "full-sync-replica-bandwidth-limit", "16mb")
	order := sendOrder(t, relay, len(replicas), 30*time.Second)
	inSync(t, 30*time.Second, master, replicas...)
	if fmt.Sprint(order) != fmt.Sprint(ports) {
		t.Errorf("full syncs served in the order %v, want the order the replicas asked in %v", order, ports)
	}
}

// bulkRate watches the relay's full sync to the replica listening on port
// and returns the rate its snapshot went out at, in bytes per second, from
// the first bytes seen sent to the last.
func bulkRate(t *testing.T, relay *testRelay, port int) float64 {
	t.Helper()
	var t0, t1 time.Time
	var b0, b1 int64
	redistest.Eventually(t, 30*time.Second, func() error {
		for _, r := range relay.Replicas() {
			if r.Port != port {
				continue
			}
			now := time.Now()
			if r.BulkSent > 0 && t0.IsZero() {
				t0, b0 = now, r.BulkSent
			}
			if r.BulkTotal > 0 && r.BulkSent >= r.BulkTotal {
				t1, b1 = now, r.BulkSent
				return nil
			}
		}
		return fmt.Errorf("snapshot not all sent to replica on port %d", port)
	})
	if t0.IsZero() || b1 <= b0 {
		t.Fatalf("too fast to time: %d bytes at once", b1)
	}
	return float64(b1-b0) / t1.Sub(t0).Seconds()
}

// TestPacedFullSyncRate: a full sync paced by
// full-sync-replica-bandwidth-limit goes out at about that rate, on a
// plain link (sendfile), a TLS one and a compressed one to a relay below
// (both through a buffer).
func TestPacedFullSyncRate(t *testing.T) {
	pki := newTestPKI(t)
	master := redistest.Start(t)
	bigSnapshot(t, master, 16)
	relay := startRelay(t, master.Addr())
	redistest.Eventually(t, 20*time.Second, func() error {
		if st := relay.Status(); !st.HasHistory || st.SyncPending {
			return fmt.Errorf("relay has no snapshot yet")
		}
		return nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go relay.srv.Serve(t.Context(), tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{pki.cert}, MinVersion: tls.VersionTLS12}))
	tlsPort := strconv.Itoa(listenerPort(ln))

	for _, link := range []string{"plain", "tls", "zstd"} {
		for _, mb := range []int64{8, 16} {
			relay.Client().Do(t.Context(), "CONFIG", "SET", "full-sync-replica-bandwidth-limit", fmt.Sprint(mb, "mb"))
			var r *redistest.Server
			var below *testRelay
			port := 0
			switch link {
			case "plain":
				r = replicaOf(t, relay.HostPort)
				port = r.Port
			case "tls":
				r = redistest.Start(t, append(pki.redisArgs(), "--tls-replication", "yes", "--replicaof", "127.0.0.1", tlsPort)...)
				port = r.Port
			case "zstd":
				below = startRelay(t, relay.Addr(), func(c *Config) { c.UpstreamCompression = "yes" })
				port = below.port
			}
			rate := bulkRate(t, relay, port)
			limit := float64(mb << 20)
			t.Logf("%s link, limit %d MB/s: %.1f MB/s (%.2fx)", link, mb, rate/(1<<20), rate/limit)
			if rate < 0.7*limit || rate > 1.2*limit {
				t.Errorf("%s link, limit %d MB/s: the full sync went at %.1f MB/s", link, mb, rate/(1<<20))
			}
			if below != nil {
				if got := below.InfoField(t, "master_link_compression"); got != "zstd" {
					t.Errorf("relay below: master_link_compression %q, want zstd", got)
				}
				below.Stop()
				continue
			}
			inSync(t, 30*time.Second, master, r)
			r.Kill()
		}
	}
}
