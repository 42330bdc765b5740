package proxy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/proxy/history"
)

// Fault tests for the relay's state file: state.json must always name a
// snapshot that exists and is durable, and its identity must be the one the
// relay serves, whatever fails or runs at the same time.

// stReadState reads the relay's state.json as an operator would.
func stReadState(t testing.TB, relay *testRelay) history.State {
	t.Helper()
	raw, err := os.ReadFile(relay.hist.Path(history.StateFile))
	if err != nil {
		t.Fatalf("read state.json: %v", err)
	}
	var st history.State
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("state.json does not parse: %v\n%s", err, raw)
	}
	return st
}

// stSnapshotOnDisk checks that the snapshot state.json names is in the data
// dir with the size state.json gives.
func stSnapshotOnDisk(relay *testRelay, st history.State) error {
	fi, err := os.Stat(relay.hist.Path(st.Snapshot.File))
	if err != nil {
		return fmt.Errorf("snapshot %s named by state.json: %w", st.Snapshot.File, err)
	}
	if fi.Size() != st.Snapshot.Size {
		return fmt.Errorf("snapshot %s holds %d bytes, state.json says %d", st.Snapshot.File, fi.Size(), st.Snapshot.Size)
	}
	return nil
}

// stSegmentFiles lists the segment files in a log dir, oldest first.
func stSegmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names) // zero-padded first offsets: name order is offset order
	return names
}

// TestTrimErrorKeepsRefreshedSnapshot: after a snapshot refresh the relay
// drops the log segments older than the new snapshot. When removing one
// fails (here: it was already deleted behind the relay's back), the refresh
// still stands: state.json names the new snapshot, which is on disk, new
// replicas are served from it, and a restarted relay keeps its history
// without another full sync from the master.
func TestTrimErrorKeepsRefreshedSnapshot(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 20000)
	relay := startRelay(t, master.Addr(), func(c *Config) {
		c.SegmentSize = 64 << 10
		c.RefreshRatio = -1 // no refresh until the log is prepared
	})
	first := replicaOf(t, relay.HostPort)
	inSync(t, 60*time.Second, master, first)
	before := stReadState(t, relay)

	// Enough writes for a log of several segments. A segment ends only at a
	// command boundary, so how many bytes that takes varies.
	redistest.Eventually(t, 120*time.Second, func() error {
		writeKeys(t, master, 1, 500)
		if n := len(relay.hist.CurrentLog().Segments()); n < 4 {
			return fmt.Errorf("log has %d segments", n)
		}
		return nil
	})
	inSync(t, 60*time.Second, master, first)
	logDir := relay.hist.Path(before.LogDir)
	segs := stSegmentFiles(t, logDir)
	if len(segs) < 4 {
		t.Fatalf("log %s has %d segment files, want several", logDir, len(segs))
	}
	if err := os.Remove(segs[0]); err != nil {
		t.Fatal(err)
	}
	t.Logf("removed %s of %d segments", filepath.Base(segs[0]), len(segs))

	ctx := t.Context()
	rc := relay.Client()
	for _, kv := range [][2]string{{"refresh-min-size", "1"}, {"refresh-ratio", "0.001"}} {
		if err := rc.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatalf("CONFIG SET %s %s: %v", kv[0], kv[1], err)
		}
	}
	redistest.Eventually(t, 90*time.Second, func() error {
		if st := relay.Status(); st.Refreshes+st.RefreshFailures < 1 {
			return fmt.Errorf("no refresh yet (log since snapshot %d bytes)", st.Log.Next-1-st.Snapshot.Offset)
		}
		return nil
	})
	// One refresh is what this test is about; no more of them.
	if err := rc.ConfigSet(ctx, "refresh-ratio", "-1").Err(); err != nil {
		t.Fatalf("CONFIG SET refresh-ratio -1: %v", err)
	}
	masterSyncsAreRelayRefreshes(t, master, relay)
	status := relay.Status()
	if status.Refreshes != 1 || status.RefreshFailures != 0 {
		t.Errorf("refreshes %d, failed refreshes %d; want one that succeeded (a failed trim only keeps old segments)", status.Refreshes, status.RefreshFailures)
	}

	// state.json names the refreshed snapshot, and it is on disk.
	after := stReadState(t, relay)
	if after.Snapshot.File == before.Snapshot.File || after.Snapshot.Offset <= before.Snapshot.Offset {
		t.Errorf("state.json still names the first snapshot %s at offset %d", after.Snapshot.File, after.Snapshot.Offset)
	}
	if err := stSnapshotOnDisk(relay, after); err != nil {
		t.Errorf("after the refresh: %v", err)
	}
	if status.Snapshot.File != after.Snapshot.File {
		t.Errorf("relay serves snapshot %s, state.json names %s", status.Snapshot.File, after.Snapshot.File)
	}
	if after.LogDir != before.LogDir || after.Identity.ReplID != before.Identity.ReplID {
		t.Errorf("refresh changed the history: log %s replid %s, was %s %s", after.LogDir, after.Identity.ReplID, before.LogDir, before.Identity.ReplID)
	}
	if _, err := os.Stat(relay.hist.Path(before.Snapshot.File)); err == nil {
		t.Errorf("replaced snapshot %s still on disk", before.Snapshot.File)
	}
	if left := stSegmentFiles(t, logDir); len(left) > 1 {
		// Not an error for this test: old segments only cost disk.
		t.Logf("%d segment files left in the log dir after the failed trim; the log holds %d", len(left), len(relay.hist.CurrentLog().Segments()))
	}

	// A new replica full-syncs from the relay's refreshed snapshot.
	syncFull := master.InfoInt(t, "sync_full")
	served := relay.Status().FullSyncsServed
	second := replicaOf(t, relay.HostPort)
	writeKeys(t, master, 2, 200)
	inSync(t, 60*time.Second, master, first, second)
	if n := relay.Status().FullSyncsServed; n <= served {
		t.Errorf("relay served %d full syncs, %d before the new replica", n, served)
	}
	if n := master.InfoInt(t, "sync_full"); n != syncFull {
		t.Errorf("master sync_full %d, was %d: the new replica's sync reached the master", n, syncFull)
	}

	// A restarted relay still has its history: the master sees a partial
	// resync, replicas old and new are served by the relay.
	relay.Restart()
	if st := relay.Status(); !st.HasHistory || st.Snapshot.File != after.Snapshot.File {
		t.Errorf("after restart: history %v, snapshot %q; want %s", st.HasHistory, st.Snapshot.File, after.Snapshot.File)
	}
	third := replicaOf(t, relay.HostPort)
	writeKeys(t, master, 3, 200)
	inSync(t, 60*time.Second, master, first, second, third)
	if n := master.InfoInt(t, "sync_full"); n != syncFull {
		t.Errorf("master sync_full %d after the relay's restart, was %d", n, syncFull)
	}
	if st := relay.Status(); st.UpstreamFullSyncs != 0 || st.UpstreamPartials < 1 {
		t.Errorf("after restart the relay did %d full and %d partial syncs upstream; want only partial", st.UpstreamFullSyncs, st.UpstreamPartials)
	}
	if err := stSnapshotOnDisk(relay, stReadState(t, relay)); err != nil {
		t.Errorf("after restart: %v", err)
	}
}

// stSyncRecord remembers which files the relay made durable, and whether
// state.json already named each one at that moment.
// It is the history's Hooks: every sync goes through it.
type stSyncRecord struct {
	dir    string // the data dir
	mu     sync.Mutex
	synced []stSynced
}

// Sync records f and whether state.json names it, then makes it durable.
func (r *stSyncRecord) Sync(f *os.File) error {
	name := filepath.Base(f.Name())
	named := false
	if raw, err := os.ReadFile(filepath.Join(r.dir, history.StateFile)); err == nil {
		var st history.State
		named = json.Unmarshal(raw, &st) == nil && st.Snapshot.File == name
	}
	r.add(stSynced{name: name, namedByState: named})
	return f.Sync()
}

type stSynced struct {
	name         string
	namedByState bool
}

func (r *stSyncRecord) add(s stSynced) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.synced = append(r.synced, s)
}

func (r *stSyncRecord) since(i int) []stSynced {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.synced[min(i, len(r.synced)):])
}

func (r *stSyncRecord) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.synced)
}

// TestGuardReleasedSnapshotIsFsynced: a snapshot the empty-master guard
// held back and an operator released becomes the relay's history. It must
// be made durable before state.json names it, as any accepted snapshot is;
// replicas then follow the new master.
func TestGuardReleasedSnapshotIsFsynced(t *testing.T) {
	master := redistest.Start(t) // no persistence: a restart brings it back empty
	populate(t, master, 0, 5000)

	// The relay starts without an upstream so that the fsync hook is in
	// place before anything could sync a file; REPLICAOF then points it at
	// the master.
	relay := startRelay(t, "")
	record := &stSyncRecord{dir: relay.hist.Path("")}
	relay.hist.SetHooks(record)
	host, port := master.HostPort()
	if err := relay.Client().Do(t.Context(), "REPLICAOF", host, port).Err(); err != nil {
		t.Fatalf("REPLICAOF: %v", err)
	}

	a, b := replicaOf(t, relay.HostPort), replicaOf(t, relay.HostPort)
	inSync(t, 60*time.Second, master, a, b)
	redistest.Eventually(t, 30*time.Second, func() error {
		if k := relay.Status().Snapshot.Keys; k <= 0 {
			return fmt.Errorf("snapshot keys %d not counted yet", k)
		}
		return nil
	})
	firstSnap := stReadState(t, relay).Snapshot.File

	master.Kill()
	master.Restart(t)
	redistest.Eventually(t, 60*time.Second, func() error {
		if relay.InfoField(t, "guard_tripped") != "1" {
			return fmt.Errorf("guard not tripped; upstream %s", relay.Status().LastError)
		}
		return nil
	})
	master.Do(t, "SET", "new-master", "1")

	mark := record.len()
	if err := relay.Client().Do(t.Context(), "RELAY", "GUARD", "RELEASE").Err(); err != nil {
		t.Fatalf("RELAY GUARD RELEASE: %v", err)
	}
	st := stReadState(t, relay)
	if st.Snapshot.File == firstSnap {
		t.Fatalf("state.json still names the first snapshot %s after the release", firstSnap)
	}
	if want := master.Info(t, "replication")["master_replid"]; st.Identity.ReplID != want {
		t.Errorf("state.json replid %s, the new master's is %s", st.Identity.ReplID, want)
	}
	if err := stSnapshotOnDisk(relay, st); err != nil {
		t.Error(err)
	}
	var synced, early bool
	var names []string
	for _, s := range record.since(mark) {
		names = append(names, s.name)
		if s.name == st.Snapshot.File {
			synced = true
			early = early || !s.namedByState
		}
	}
	switch {
	case !synced:
		t.Errorf("released snapshot %s was never fsynced; files synced during the release: %s", st.Snapshot.File, strings.Join(names, ", "))
	case !early:
		t.Errorf("released snapshot %s was fsynced only after state.json named it", st.Snapshot.File)
	}

	master.Do(t, "SET", "after-release", "1")
	inSync(t, 60*time.Second, master, a, b)
	if n := a.Do(t, "DBSIZE"); n != int64(2) {
		t.Errorf("replica DBSIZE after release = %v, want 2", n)
	}
}
