package proxy

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/proxy/upstream"
)

// TestTierAfterFailover: relay R1 follows a failover from M to P with a
// partial resync, so its stored snapshot still names M's replication ID
// (in state.json and in the RDB's repl-id aux field). Under P's write
// load, a relay R2 that joins below R1, a sibling R3 that takes its
// snapshot from R1 and follows P, and a stock replica of R1 each
// bootstrap with one snapshot from R1 and then continue partially onto
// P's ID; P serves no full sync for any of them.
func TestTierAfterFailover(t *testing.T) {
	t.Parallel()
	m := redistest.Start(t, "--repl-backlog-size", "64mb")
	populate(t, m, 0, 5000)
	p := replicaOf(t, m.HostPort, "--repl-backlog-size", "64mb")
	inSync(t, 30*time.Second, m, p)
	writeKeys(t, m, 1, 200) // R1's snapshot comes after P's: P's backlog covers it
	r1 := startRelay(t, m.Addr(), func(c *Config) { c.RefreshRatio = -1 })
	waitRelaySnapshot(t, r1)
	load := startLoad(t, m)
	redistest.Eventually(t, 20*time.Second, func() error {
		if st := r1.Status(); st.Log.Next-1-st.Snapshot.Offset < 256<<10 {
			return fmt.Errorf("relay R1 holds %d bytes after its snapshot", st.Log.Next-1-st.Snapshot.Offset)
		}
		return nil
	})
	load.Stop(t)
	waitOffsets(t, m, r1, p)

	// The failover: M gone, P promoted, R1 re-pointed (a partial resync).
	// M dies first, so that nothing (a PING) reaches R1 after P's
	// promotion.
	m.Kill()
	p.Do(t, "REPLICAOF", "NO", "ONE")
	ph, pp := p.HostPort()
	if err := r1.Client().Do(t.Context(), "REPLICAOF", ph, pp).Err(); err != nil {
		t.Fatal(err)
	}
	waitOffsets(t, p, r1)
	if st := r1.Status(); st.Snapshot.ReplID == st.Identity.ReplID || st.Snapshot.ReplID != st.Identity.ReplID2 {
		t.Fatalf("relay R1's snapshot is of %s, its history %+v: want the snapshot under replid2", st.Snapshot.ReplID, st.Identity)
	}
	if n := p.InfoInt(t, "sync_full"); n != 0 {
		t.Fatalf("P served %d full syncs for the failover", n)
	}

	// Large values and small writes on P while the tier bootstraps, and
	// for 24 MB of stream after that.
	big := startBigLoad(p, bigLoadOptions{Writers: 1, Rate: 8 << 20, Pause: 20 * time.Millisecond, Small: true, Seed: 20})
	defer big.Stop(t, false)
	r2 := startRelay(t, r1.Addr())
	leaf2 := replicaOf(t, r2.HostPort)
	r3 := startRelay(t, p.Addr(), func(c *Config) { c.SnapshotSource = r1.Addr() })
	leaf3 := replicaOf(t, r3.HostPort)
	leaf1 := replicaOf(t, r1.HostPort)
	pid := p.Info(t, "replication")["master_replid"]
	redistest.Eventually(t, 30*time.Second, func() error {
		for _, r := range []*testRelay{r2, r3} {
			if st := r.Status(); st.Identity.ReplID != pid || st.LinkState != LinkConnected {
				return fmt.Errorf("relay %s: replid %s, link %s (%s); P is %s; R1 served %d full syncs",
					r.Addr(), st.Identity.ReplID, st.LinkState, st.LastError, pid, r1.InfoInt(t, "sync_full"))
			}
		}
		return nil
	})
	until := p.InfoInt(t, "master_repl_offset") + 24<<20
	redistest.Eventually(t, 20*time.Second, func() error {
		if off := p.InfoInt(t, "master_repl_offset"); off < until {
			return fmt.Errorf("P at offset %d, waiting for %d", off, until)
		}
		return nil
	})
	big.Stop(t, false)
	inSync(t, 30*time.Second, p, leaf1, leaf2, leaf3)
	waitOffsets(t, p, r1, leaf1)
	waitOffsets(t, p, r2, leaf2)
	waitOffsets(t, p, r3, leaf3)

	if n := p.InfoInt(t, "sync_full"); n != 0 {
		t.Errorf("P served %d full syncs, want 0: the tier bootstraps from R1", n)
	}
	if n := r1.InfoInt(t, "sync_full"); n != 3 {
		t.Errorf("relay R1 served %d full syncs, want 3 (R2, R3's snapshot, its stock replica)", n)
	}
	if n := r1.InfoInt(t, "sync_partial_ok"); n < 2 {
		t.Errorf("relay R1 sync_partial_ok = %d, want 2 or more (R2 and the stock replica continue onto P's ID)", n)
	}
	for _, r := range []*testRelay{r2, r3} {
		if n := r.InfoInt(t, "sync_full"); n != 1 {
			t.Errorf("relay %s served %d full syncs to its replica, want 1", r.Addr(), n)
		}
	}
	if n := r3.InfoInt(t, "master_forks_avoided"); n != 1 {
		t.Errorf("relay R3 master_forks_avoided = %d, want 1", n)
	}
	if from := r3.InfoField(t, "snapshot_from"); from != r1.Addr() {
		t.Errorf("relay R3 snapshot_from %q, want R1 %s", from, r1.Addr())
	}
}

// TestSnapshotSourceCredentials: the master (requirepass Y), a stock
// replica of it and relay R1 as snapshot sources (requirepass X). Relays
// log in to each source with snapshot-source-password and to the master
// with masterauth; neither password is ever offered to the other server,
// which ACL LOG would show as a failed AUTH.
func TestSnapshotSourceCredentials(t *testing.T) {
	const masterPass, sourcePass = "master-secret", "source-secret"
	master := redistest.Start(t, "--requirepass", masterPass, "--repl-backlog-size", "64mb")
	master.Do(t, "DEBUG", "POPULATE", 3000, "key", 100)
	spare := replicaOf(t, master.HostPort, "--masterauth", masterPass, "--requirepass", sourcePass)
	inSync(t, 30*time.Second, master, spare)
	write := func(n int) {
		for i := range n {
			master.Do(t, "SET", fmt.Sprint("w:", i), i)
		}
	}
	write(100)
	fromSource := func(src string) func(*Config) {
		return func(c *Config) {
			c.MasterAuth, c.RequirePass = masterPass, sourcePass
			c.SnapshotSource, c.SnapshotSourcePassword = src, sourcePass
		}
	}
	r1 := startRelay(t, master.Addr(), fromSource(spare.Addr()))
	r2 := startRelay(t, master.Addr(), fromSource(r1.Addr()))
	leaf := replicaOf(t, r2.HostPort, "--masterauth", sourcePass)
	redistest.Eventually(t, 30*time.Second, func() error {
		for _, r := range []*testRelay{r1, r2} {
			if st := r.Status(); !st.HasHistory || st.LinkState != LinkConnected {
				return fmt.Errorf("relay %s: link %s, %s", r.Addr(), st.LinkState, st.LastError)
			}
		}
		return nil
	})
	write(500)
	inSync(t, 30*time.Second, master, leaf)
	if n := master.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("master sync_full = %d, want 1 (the stock replica's)", n)
	}
	for _, r := range []*testRelay{r1, r2} {
		if n := r.Status().ForksAvoided; n != 1 {
			t.Errorf("relay %s master_forks_avoided = %d, want 1", r.Addr(), n)
		}
	}
	for _, s := range []*redistest.Server{master, spare} {
		if log := s.Do(t, "ACL", "LOG"); len(log.([]any)) != 0 {
			t.Errorf("%s saw failed logins: %v", s.Addr(), log)
		}
	}
}

// TestSourceWaitsForMaster: while the master refuses the relay's
// credentials, the relay asks its snapshot source for nothing (each
// snapshot is a fork and a whole transfer there); once masterauth is
// right it bootstraps from the source with one snapshot.
func TestSourceWaitsForMaster(t *testing.T) {
	t.Parallel()
	const masterPass = "master-secret"
	master := redistest.Start(t, "--requirepass", masterPass, "--repl-backlog-size", "64mb")
	master.Do(t, "DEBUG", "POPULATE", 20000, "key", 200)
	spare := replicaOf(t, master.HostPort, "--masterauth", masterPass)
	inSync(t, 30*time.Second, master, spare)
	relay := startRelay(t, master.Addr(), func(c *Config) {
		c.MasterAuth = "wrong"
		c.SnapshotSource = spare.Addr()
	})
	// Four refusals take about 2 s of backoff (0.25 + 0.5 + 1 s).
	redistest.Eventually(t, 20*time.Second, func() error {
		if n := relay.Status().LinkDowns[upstream.LinkDownAuth]; n < 4 {
			return fmt.Errorf("%d authentication failures so far", n)
		}
		return nil
	})
	if n := spare.InfoInt(t, "sync_full"); n != 0 {
		t.Errorf("the source served %d snapshots while the master refused the relay, want 0", n)
	}
	if err := relay.Client().Do(t.Context(), "CONFIG", "SET", "masterauth", masterPass).Err(); err != nil {
		t.Fatal(err)
	}
	leaf := replicaOf(t, relay.HostPort)
	for i := range 200 {
		master.Do(t, "SET", fmt.Sprint("w:", i), i)
	}
	inSync(t, 30*time.Second, master, leaf)
	if n := spare.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("the source served %d snapshots, want 1", n)
	}
	if n := master.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("master sync_full = %d, want 1 (the stock replica's)", n)
	}
	if n := relay.Status().ForksAvoided; n != 1 {
		t.Errorf("master_forks_avoided = %d, want 1", n)
	}
}

// TestSourceWithNothingToServe: a relay as snapshot source that has no
// snapshot (it has no master) keeps the request waiting with newlines.
// After repl-timeout the fetch fails, and with snapshot-source-fallback
// yes the relay takes the master's snapshot.
func TestSourceWithNothingToServe(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 2000)
	empty := startRelay(t, "")
	start := time.Now()
	relay := startRelay(t, master.Addr(), func(c *Config) {
		c.ReplTimeout = 2 * time.Second
		c.SnapshotSource = empty.Addr()
		c.SnapshotSourceFallback = true
	})
	leaf := replicaOf(t, relay.HostPort)
	load := startLoad(t, master)
	defer load.Stop(t)
	redistest.Eventually(t, 15*time.Second, func() error {
		if st := relay.Status(); !st.HasHistory || st.LinkState != LinkConnected {
			return fmt.Errorf("relay link %s (%s)", st.LinkState, st.LastError)
		}
		return nil
	})
	t.Logf("fell back to the master after %s", time.Since(start).Round(time.Millisecond))
	load.Stop(t)
	inSync(t, 30*time.Second, master, leaf)
	if n := relay.InfoInt(t, "snapshot_source_fallbacks"); n != 1 {
		t.Errorf("snapshot_source_fallbacks = %d, want 1", n)
	}
	if from := relay.InfoField(t, "snapshot_from"); from != "master" {
		t.Errorf("snapshot_from %q, want master", from)
	}
}

// TestTierAfterTwoFailovers: after two failovers R1's snapshot names an ID
// that its history no longer accepts (neither replid nor replid2), so no
// announcement can agree with the RDB. R1 replaces it with a fresh one
// from its master whatever refresh-ratio says, and a relay that joins
// below it bootstraps from that.
func TestTierAfterTwoFailovers(t *testing.T) {
	m := redistest.Start(t, "--repl-backlog-size", "64mb")
	populate(t, m, 0, 3000)
	p := replicaOf(t, m.HostPort, "--repl-backlog-size", "64mb")
	inSync(t, 30*time.Second, m, p)
	writeKeys(t, m, 1, 100)
	r1 := startRelay(t, m.Addr())
	waitRelaySnapshot(t, r1)
	repoint := func(to *redistest.Server) {
		t.Helper()
		h, port := to.HostPort()
		if err := r1.Client().Do(t.Context(), "REPLICAOF", h, port).Err(); err != nil {
			t.Fatal(err)
		}
		waitOffsets(t, to, r1)
	}
	waitOffsets(t, m, r1, p)
	m.Kill()
	p.Do(t, "REPLICAOF", "NO", "ONE")
	repoint(p)
	q := replicaOf(t, p.HostPort, "--repl-backlog-size", "64mb")
	writeKeys(t, p, 2, 100)
	inSync(t, 30*time.Second, p, q)
	waitOffsets(t, p, r1, q)
	p.Kill()
	q.Do(t, "REPLICAOF", "NO", "ONE")
	repoint(q)
	if st := r1.Status(); st.Identity.Accepts(st.Snapshot.ReplID, st.Snapshot.Offset+1) {
		t.Logf("relay R1 already refreshed: snapshot %s, history %+v", st.Snapshot.ReplID, st.Identity)
	}

	load := startLoad(t, q)
	defer load.Stop(t)
	r2 := startRelay(t, r1.Addr())
	leaf := replicaOf(t, r2.HostPort)
	qid := q.Info(t, "replication")["master_replid"]
	redistest.Eventually(t, 30*time.Second, func() error {
		if st := r2.Status(); st.Identity.ReplID != qid || st.LinkState != LinkConnected {
			return fmt.Errorf("relay R2: replid %s, link %s (%s); Q is %s; R1 served %d full syncs",
				st.Identity.ReplID, st.LinkState, st.LastError, qid, r1.InfoInt(t, "sync_full"))
		}
		return nil
	})
	load.Stop(t)
	inSync(t, 30*time.Second, q, leaf)
	if n := r1.InfoInt(t, "snapshot_refreshes"); n != 1 {
		t.Errorf("relay R1 refreshed %d times, want 1", n)
	}
	// R2 may be refused the stale snapshot (it retries after 0.25, 0.5,
	// 1 s) until the refresh, due within a second, is in.
	if n := r1.InfoInt(t, "sync_full"); n > 5 {
		t.Errorf("relay R1 served %d full syncs, want a few at most (the stale snapshot until the refresh, then the fresh one)", n)
	}
	t.Logf("relay R1 served %d full syncs", r1.InfoInt(t, "sync_full"))
}
