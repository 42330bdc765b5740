package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// TestSnapshotSourceStockReplica: a relay that takes its snapshots from a
// stock replica of the master costs the master no fork, for its first sync
// and for a refresh.
func TestSnapshotSourceStockReplica(t *testing.T) {
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	populate(t, master, 0, 5000)
	spare := replicaOf(t, master.HostPort)
	inSync(t, 30*time.Second, master, spare)
	forks := master.InfoInt(t, "total_forks")
	relay := startRelay(t, master.Addr(), func(c *Config) {
		c.SnapshotSource = spare.Addr()
		c.RefreshRatio = -1
	})
	leaf := replicaOf(t, relay.HostPort)
	writeKeys(t, master, 1, 300)
	inSync(t, 30*time.Second, master, leaf)
	if n := master.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("master sync_full = %d, want 1 (its stock replica's only)", n)
	}
	if n := master.InfoInt(t, "total_forks"); n != forks {
		t.Errorf("master forked %d times for the relay", n-forks)
	}
	if n := relay.InfoInt(t, "master_forks_avoided"); n != 1 {
		t.Errorf("master_forks_avoided = %d, want 1", n)
	}
	if from := relay.InfoField(t, "snapshot_from"); from != spare.Addr() {
		t.Errorf("snapshot_from %q, want the stock replica %s", from, spare.Addr())
	}

	// A refresh comes from the source too, under write load.
	load := startLoad(t, master)
	defer load.Stop(t)
	if err := relay.Client().Do(t.Context(), "CONFIG", "SET", "refresh-ratio", "0.0001", "refresh-min-size", "1").Err(); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 30*time.Second, func() error {
		if n := relay.InfoInt(t, "snapshot_refreshes"); n < 1 {
			return fmt.Errorf("no refresh yet (%d failed)", relay.InfoInt(t, "snapshot_refresh_failures"))
		}
		return nil
	})
	relay.Client().Do(t.Context(), "CONFIG", "SET", "refresh-ratio", "-1")
	load.Stop(t)
	inSync(t, 30*time.Second, master, leaf)
	if n := master.InfoInt(t, "total_forks"); n != forks {
		t.Errorf("master forked %d times for the relay, with a refresh", n-forks)
	}
	if n := master.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("after a refresh master sync_full = %d, want 1", n)
	}
	if n := relay.InfoInt(t, "master_forks_avoided"); n < 2 {
		t.Errorf("master_forks_avoided = %d, want 2 or more", n)
	}
}

// TestSiblingRelays: relay B takes its snapshot from relay A, so the tier
// costs the master one fork; a replica moves from A to B and continues
// partially.
func TestSiblingRelays(t *testing.T) {
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	populate(t, master, 0, 5000)
	a := startRelay(t, master.Addr())
	leaf := replicaOf(t, a.HostPort)
	inSync(t, 30*time.Second, master, leaf)
	b := startRelay(t, master.Addr(), func(c *Config) { c.SnapshotSource = a.Addr() })
	writeKeys(t, master, 1, 300)
	waitOffsets(t, master, b)
	if n := master.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("master sync_full = %d, want 1 for the whole tier", n)
	}
	if n := b.InfoInt(t, "master_forks_avoided"); n != 1 {
		t.Errorf("relay B master_forks_avoided = %d, want 1", n)
	}
	// A refresh on each side first (B's from A): the move still continues.
	for _, r := range []*testRelay{a, b} {
		first := r.Status().Snapshot.Offset
		writeKeys(t, master, 3, 100)
		if err := r.Client().Do(t.Context(), "CONFIG", "SET", "refresh-ratio", "0.0001", "refresh-min-size", "1").Err(); err != nil {
			t.Fatal(err)
		}
		redistest.Eventually(t, 30*time.Second, func() error {
			if r.Status().Snapshot.Offset == first {
				return fmt.Errorf("relay %s has not refreshed (%d failures)", r.Addr(), r.Status().RefreshFailures)
			}
			return nil
		})
		r.Client().Do(t.Context(), "CONFIG", "SET", "refresh-ratio", "-1")
	}
	if n := master.InfoInt(t, "sync_full"); n != 2 {
		t.Errorf("master sync_full = %d, want 2 (A's first sync and A's refresh; B refreshed from A)", n)
	}
	// The leaf moves from A to B (a DNS change, a relay going away).
	bh, bp := b.HostPort()
	leaf.Do(t, "REPLICAOF", bh, bp)
	writeKeys(t, master, 2, 300)
	inSync(t, 30*time.Second, master, leaf)
	if n := b.InfoInt(t, "sync_full"); n != 0 {
		t.Errorf("relay B served %d full syncs to a replica from its sibling, want 0", n)
	}
	if n := b.InfoInt(t, "sync_partial_ok"); n < 1 {
		t.Errorf("relay B sync_partial_ok = %d, want 1", n)
	}
}

// TestSnapshotSourceFallback: a source that is down stops the relay from
// forking the master unless snapshot-source-fallback allows it; a source
// on another history is never used.
func TestSnapshotSourceFallback(t *testing.T) {
	t.Parallel()
	t.Run("source down", func(t *testing.T) {
		master := redistest.Start(t)
		populate(t, master, 0, 1000)
		relay := startRelay(t, master.Addr(), func(c *Config) {
			c.SnapshotSource = fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
		})
		time.Sleep(3 * time.Second)
		if n := master.InfoInt(t, "sync_full"); n != 0 {
			t.Fatalf("master forked %d times with the source down and no fallback", n)
		}
		if err := relay.Client().Do(t.Context(), "CONFIG", "SET", "snapshot-source-fallback", "yes").Err(); err != nil {
			t.Fatal(err)
		}
		leaf := replicaOf(t, relay.HostPort)
		inSync(t, 30*time.Second, master, leaf)
		if n := relay.InfoInt(t, "snapshot_source_fallbacks"); n < 1 {
			t.Errorf("snapshot_source_fallbacks = %d, want 1 or more", n)
		}
	})
	t.Run("source too far behind", func(t *testing.T) {
		// Relay A's snapshot is the master's offset 0; the master's 1 MB
		// backlog has long moved past it when relay B takes it.
		master := redistest.Start(t, "--repl-backlog-size", "1mb")
		populate(t, master, 0, 1000)
		a := startRelay(t, master.Addr(), func(c *Config) { c.RefreshRatio = -1 })
		waitRelaySnapshot(t, a)
		big := strings.Repeat("x", 10000)
		for i := range 500 { // 5 MB
			master.Do(t, "SET", fmt.Sprint("big:", i), big)
		}
		waitOffsets(t, master, a)
		if first := master.InfoInt(t, "repl_backlog_first_byte_offset"); first <= a.Status().Snapshot.Offset+1 {
			t.Fatalf("the master's backlog still starts at %d", first)
		}
		b := startRelay(t, master.Addr(), func(c *Config) { c.SnapshotSource = a.Addr() })
		leaf := replicaOf(t, b.HostPort)
		inSync(t, 30*time.Second, master, leaf)
		if n := b.InfoInt(t, "snapshot_source_fallbacks"); n != 1 {
			t.Errorf("snapshot_source_fallbacks = %d, want 1", n)
		}
		if n := b.InfoInt(t, "sync_full"); n != 1 {
			t.Errorf("relay sync_full = %d, want 1: the leaf saw the stale snapshot first", n)
		}
	})
	t.Run("source on another history", func(t *testing.T) {
		master := redistest.Start(t)
		populate(t, master, 0, 1000)
		other := redistest.Start(t)
		populate(t, other, 0, 3000)
		relay := startRelay(t, master.Addr(), func(c *Config) { c.SnapshotSource = other.Addr() })
		leaf := replicaOf(t, relay.HostPort)
		inSync(t, 30*time.Second, master, leaf)
		if n := relay.InfoInt(t, "snapshot_source_fallbacks"); n != 1 {
			t.Errorf("snapshot_source_fallbacks = %d, want 1", n)
		}
		if n := relay.InfoInt(t, "master_forks_avoided"); n != 0 {
			t.Errorf("master_forks_avoided = %d, want 0", n)
		}
		if from := relay.InfoField(t, "snapshot_from"); from != "master" {
			t.Errorf("snapshot_from %q, want master", from)
		}
		// The other history's snapshot was never offered to the leaf.
		if n := relay.InfoInt(t, "sync_full"); n != 1 {
			t.Errorf("relay sync_full = %d, want 1: the leaf saw another history's snapshot first", n)
		}
	})
}

// TestTierOfThree: three relay processes on one master, each taking its
// snapshot from the one before: the master forks once for the tier. A
// replica moves between relays with partial resyncs, and when its relay is
// SIGKILLed it continues on a sibling.
func TestTierOfThree(t *testing.T) {
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	populate(t, master, 0, 5000)
	a := startRelayProcess(t, master.Addr())
	redistest.Eventually(t, 30*time.Second, func() error {
		if a.InfoInt(t, "master_repl_offset") < 1 && a.InfoInt(t, "relay_snapshot_bytes") == 0 {
			return fmt.Errorf("relay A has no snapshot yet")
		}
		return nil
	})
	b := startRelayProcess(t, master.Addr(), "REDIS_RELAY_CHILD_SNAPSHOT_SOURCE="+a.Addr())
	c := startRelayProcess(t, master.Addr(), "REDIS_RELAY_CHILD_SNAPSHOT_SOURCE="+b.Addr())
	leaf := replicaOf(t, c.HostPort)
	writeKeys(t, master, 1, 300)
	inSync(t, 60*time.Second, master, leaf)
	if n := master.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("master sync_full = %d, want 1 for a tier of three", n)
	}

	// C -> B -> A: each move a partial resync. (A and B each served one
	// snapshot already: to B and C, as their source.)
	move := func(to *relayProc, why string) {
		t.Helper()
		full, partial := to.InfoInt(t, "sync_full"), to.InfoInt(t, "sync_partial_ok")
		h, p := to.HostPort()
		leaf.Do(t, "REPLICAOF", h, p)
		writeKeys(t, master, 2, 100)
		inSync(t, 30*time.Second, master, leaf)
		if n := to.InfoInt(t, "sync_full") - full; n != 0 {
			t.Errorf("%s: relay %s served %d full syncs", why, to.Addr(), n)
		}
		if n := to.InfoInt(t, "sync_partial_ok") - partial; n != 1 {
			t.Errorf("%s: relay %s served %d partial syncs, want 1", why, to.Addr(), n)
		}
	}
	move(b, "from C to B")
	move(a, "from B to A")
	a.Kill() // the replica's relay dies; it goes to a sibling
	move(c, "after A was killed, to C")
	if n := master.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("master sync_full = %d at the end, want 1", n)
	}
}
