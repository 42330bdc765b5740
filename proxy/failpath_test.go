package proxy

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/proxy/downstream"
	"github.com/redis-relay/redis-relay/replstream"
)

// Failure paths where the relay must do at least as well as a stock
// redis-server in its place: no needless full sync, never a divergence.

// waitSyncing waits until replica is receiving a full sync.
func waitSyncing(t *testing.T, replica *redistest.Server) {
	t.Helper()
	redistest.Eventually(t, 30*time.Second, func() error {
		if replica.Info(t, "replication")["master_sync_in_progress"] != "1" {
			return fmt.Errorf("replica %s is not receiving a snapshot", replica.Addr())
		}
		return nil
	})
}

// waitRelaySnapshot waits until the relay holds an accepted snapshot.
func waitRelaySnapshot(t *testing.T, relay *testRelay) {
	t.Helper()
	redistest.Eventually(t, 30*time.Second, func() error {
		if st := relay.Status(); !st.HasHistory || st.SyncPending || st.LinkState != LinkConnected {
			return fmt.Errorf("relay has no snapshot yet (link %s)", st.LinkState)
		}
		return nil
	})
}

// TestCommitKeepsMasterLink: committing a snapshot (the fsync of gigabytes
// of page cache, a guard check) can outlast the master's repl-timeout. The
// relay keeps telling the master it is alive meanwhile, as a loading
// replica does, so the master does not drop it.
func TestCommitKeepsMasterLink(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t, "--repl-timeout", "2")
	populate(t, master, 0, 20000)
	var slowed atomic.Bool
	relay := startRelay(t, master.Addr(), func(c *Config) {
		c.CrashPoint = func(point string) {
			if point == "commit" && slowed.CompareAndSwap(false, true) {
				time.Sleep(7 * time.Second) // 3.5 times the master's repl-timeout
			}
		}
	})
	replica := replicaOf(t, relay.HostPort)
	inSync(t, 40*time.Second, master, replica)
	writeKeys(t, master, 1, 300)
	inSync(t, 20*time.Second, master, replica)
	if !slowed.Load() {
		t.Fatal("the commit was never slowed")
	}
	if n := relay.Status().UpstreamPartials; n != 0 {
		t.Errorf("the relay reconnected to the master %d times: the master dropped it during the commit", n)
	}
	if n := master.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("master sync_full = %d, want 1", n)
	}
}

// TestRefreshDuringFullSyncKeepsLog: a replica still receiving snapshot S1
// needs the log from S1's offset on. A refresh that installs S2 meanwhile
// must not trim it away, or the replica full-syncs twice.
func TestRefreshDuringFullSyncKeepsLog(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 60000)
	relay := startRelay(t, master.Addr(), func(c *Config) {
		c.SegmentSize = 64 << 10
		c.RefreshRatio = -1
	})
	waitRelaySnapshot(t, relay)
	first := relay.Status().Snapshot.Offset
	link := redistest.NewFaultProxy(t, relay.Addr())
	link.SetRate(256 << 10)
	replica := replicaOf(t, link.HostPort)
	waitSyncing(t, replica)
	writeKeys(t, master, 1, 3000) // many segments past S1
	ctx := t.Context()
	if err := relay.Client().Do(ctx, "CONFIG", "SET", "refresh-ratio", "0.0001", "refresh-min-size", "1").Err(); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 30*time.Second, func() error {
		if st := relay.Status(); st.Refreshes < 1 || st.Snapshot.Offset == first {
			return fmt.Errorf("no refresh yet (%d failures)", st.RefreshFailures)
		}
		return nil
	})
	if err := relay.Client().Do(ctx, "CONFIG", "SET", "refresh-ratio", "-1").Err(); err != nil {
		t.Fatal(err)
	}
	if f := relay.Status().Log.First; f > first+1 {
		t.Errorf("log trimmed to %d while a replica still needs %d", f, first+1)
	}
	if replica.Info(t, "replication")["master_sync_in_progress"] != "1" {
		t.Fatal("the replica finished its transfer before the refresh: the test proves nothing")
	}
	link.SetRate(0)
	writeKeys(t, master, 2, 200)
	inSync(t, 40*time.Second, master, replica)
	if n := relay.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("relay served %d full syncs, want 1", n)
	}
	if n := relay.Status().Disconnects[downstream.ReasonFellBehind]; n != 0 {
		t.Errorf("%d replicas fell behind the log", n)
	}
}

// TestLoadingReplicaKeepsLink: after an EOF-marked snapshot the relay waits
// for the replica's first ACK. A replica loading a large snapshot sends
// newlines meanwhile; they keep it alive past repl-timeout, as on Redis.
func TestLoadingReplicaKeepsLink(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t, "--repl-ping-replica-period", "1")
	populate(t, master, 0, 200000)
	relay := startRelay(t, master.Addr(), func(c *Config) { c.ReplTimeout = 5 * time.Second })
	// Slow loading (a delay per key) that reports progress, and so sends a
	// newline to its master, every 256 KB of snapshot.
	replica := replicaOf(t, relay.HostPort, "--key-load-delay", "10", "--loading-process-events-interval-bytes", "262144")
	start := time.Now()
	redistest.Eventually(t, 30*time.Second, func() error {
		if replica.Info(t, "persistence")["loading"] != "1" {
			return fmt.Errorf("replica not loading yet")
		}
		return nil
	})
	inSync(t, 90*time.Second, master, replica)
	if d := time.Since(start); d < 2*relay.cfg.ReplTimeout {
		t.Fatalf("the replica loaded in %v, not longer than repl-timeout: the test proves nothing", d)
	}
	writeKeys(t, master, 1, 100)
	inSync(t, 20*time.Second, master, replica)
	if n := relay.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("relay served %d full syncs, want 1", n)
	}
	if n := relay.Status().Disconnects[downstream.ReasonTimeout]; n != 0 {
		t.Errorf("%d replicas timed out", n)
	}
}

// TestReplIDShiftLetsTransfersFinish: a failover shifts the relay's replid
// while a replica is receiving a snapshot. The snapshot is still valid
// under replid2, so the transfer finishes and the replica then continues
// partially under the new ID.
func TestReplIDShiftLetsTransfersFinish(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	populate(t, master, 0, 200000) // a snapshot larger than the socket buffers
	spare := replicaOf(t, master.HostPort)
	relay := startRelay(t, master.Addr())
	waitRelaySnapshot(t, relay)
	inSync(t, 30*time.Second, master, spare)
	link := redistest.NewFaultProxy(t, relay.Addr())
	link.SetRate(1 << 20) // a transfer of several seconds
	replica := replicaOf(t, link.HostPort)
	waitSyncing(t, replica)

	spare.Do(t, "REPLICAOF", "NO", "ONE")
	newID := spare.Info(t, "replication")["master_replid"]
	sh, sp := spare.HostPort()
	if err := relay.Client().Do(t.Context(), "REPLICAOF", sh, sp).Err(); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 30*time.Second, func() error {
		if id := relay.Status().Identity.ReplID; id != newID {
			return fmt.Errorf("relay replid %s, want %s", id, newID)
		}
		return nil
	})
	if replica.Info(t, "replication")["master_sync_in_progress"] != "1" {
		t.Fatal("the replica finished its transfer before the shift: the test proves nothing")
	}
	link.SetRate(0)
	writeKeys(t, spare, 1, 300)
	inSync(t, 40*time.Second, spare, replica)
	if n := relay.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("relay served %d full syncs, want 1", n)
	}
	if n := relay.InfoInt(t, "sync_partial_ok"); n < 1 {
		t.Errorf("relay sync_partial_ok = %d: the replica did not continue under the new ID", n)
	}
	if n := spare.InfoInt(t, "sync_full"); n != 0 {
		t.Errorf("the promoted replica served %d full syncs, want 0", n)
	}
	if id := replica.Info(t, "replication")["master_replid"]; id != newID {
		t.Errorf("replica follows replid %s, want %s", id, newID)
	}
}

// TestReplicaAheadWaitsForUpstream: a relay that lost the tail of its log
// (a crash before fsync) comes back behind its replicas. While its upstream
// can resend those bytes, a replica ahead waits, kept alive by newlines,
// and then continues partially; it is not pushed into a full sync.
func TestReplicaAheadWaitsForUpstream(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	populate(t, master, 0, 2000)
	up := redistest.NewFaultProxy(t, master.Addr())
	relay := startRelay(t, up.Addr())
	replica := replicaOf(t, relay.HostPort, "--repl-timeout", "5")
	inSync(t, 30*time.Second, master, replica)
	waitOffsets(t, master, relay, replica)
	kept := relay.Status().Log.Next
	writeKeys(t, master, 1, 200)
	waitOffsets(t, master, relay, replica)

	relay.Stop()
	dir := filepath.Join(relay.cfg.DataDir, relayLogDir(t, relay.cfg.DataDir))
	l, _, err := replstream.OpenLog(dir, replstream.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Truncate(kept); err != nil {
		t.Fatal(err)
	}
	l.Close()
	up.SetRefuse(true)
	relay.start(relay.port)
	// Longer than the replica's repl-timeout and the former 5 s limit.
	time.Sleep(8 * time.Second)
	if n := relay.InfoInt(t, "sync_full"); n != 0 {
		t.Fatalf("relay served %d full syncs while its upstream was away", n)
	}
	up.SetRefuse(false)
	inSync(t, 30*time.Second, master, replica)
	waitOffsets(t, master, relay, replica)
	if n := relay.InfoInt(t, "sync_full"); n != 0 {
		t.Errorf("relay served %d full syncs, want 0", n)
	}
	if n := relay.InfoInt(t, "sync_partial_ok"); n < 1 {
		t.Errorf("relay sync_partial_ok = %d, want >= 1", n)
	}
	if n := master.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("master sync_full = %d, want 1", n)
	}
}

// relayLogDir is the log directory state.json names.
func relayLogDir(t *testing.T, dataDir string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dataDir, "log-*"))
	if len(m) != 1 {
		t.Fatalf("data dir holds %d log dirs", len(m))
	}
	if _, err := os.Stat(m[0]); err != nil {
		t.Fatal(err)
	}
	return filepath.Base(m[0])
}
