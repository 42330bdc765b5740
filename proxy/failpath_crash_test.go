package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/proxy/history"
)

// The crash matrix: a relay process is killed (SIGKILL) at each step of a
// change of its history, under a write load of large values, then started
// again on the same data dir. Each case checks that the master, the relay
// and the replicas behind it end with the same data and offsets, and counts
// what the crash cost in full syncs: the master's (the relay's upstream
// full syncs), the relay's (served to its replicas) and the replicas' own.

// cmBacklog lets the master keep what it writes while the relay is down.
var cmBacklog = []string{"--repl-backlog-size", "256mb"}

// cmRelayInfo reads the relay process's INFO once.
func cmRelayInfo(p *relayProc) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	text, err := p.client.Info(ctx, "everything").Result()
	if err != nil {
		return nil, fmt.Errorf("relay INFO: %w", err)
	}
	return redistest.ParseInfo(text), nil
}

// cmReplicas starts n replicas of the relay.
func cmReplicas(t *testing.T, relay *relayProc, n int) []*redistest.Server {
	t.Helper()
	var reps []*redistest.Server
	for range n {
		reps = append(reps, replicaOf(t, relay.HostPort))
	}
	return reps
}

// cmWaitOffsets waits until the relay and every replica have the master's
// replid and offset, with their links up.
func cmWaitOffsets(t *testing.T, master *redistest.Server, relay *relayProc, reps ...*redistest.Server) {
	t.Helper()
	redistest.Eventually(t, 120*time.Second, func() error {
		mi := master.Info(t, "replication")
		want, id := mi["master_repl_offset"], mi["master_replid"]
		ri, err := cmRelayInfo(relay)
		if err != nil {
			return err
		}
		if ri["master_replid"] != id || ri["master_repl_offset"] != want || ri["master_link_status"] != "up" {
			return fmt.Errorf("relay at %s/%s (link %s), master %s/%s", ri["master_replid"], ri["master_repl_offset"], ri["master_link_status"], id, want)
		}
		for _, r := range reps {
			li := r.Info(t, "replication")
			if li["master_replid"] != id || li["slave_repl_offset"] != want || li["master_link_status"] != "up" {
				return fmt.Errorf("replica %s at %s/%s (link %s), master %s/%s", r.Addr(), li["master_replid"], li["slave_repl_offset"], li["master_link_status"], id, want)
			}
		}
		return nil
	})
}

// cmReplicaSyncs counts, from a replica's log, the full syncs it was
// offered (+FULLRESYNC), the snapshots it loaded, and its partial resyncs.
func cmReplicaSyncs(t *testing.T, s *redistest.Server) (offered, loaded, partial int) {
	t.Helper()
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		t.Fatalf("read replica log: %v", err)
	}
	log := string(b)
	return strings.Count(log, "Full resync from master"),
		strings.Count(log, "MASTER <-> REPLICA sync: Finished with success"),
		strings.Count(log, "Successful partial resynchronization with master")
}

// cmCost is what a crash cost, read once everything is back in sync.
type cmCost struct {
	masterFull, masterPartial     int64 // served by the master (or the promoted replica)
	relayFullBefore               int64 // full syncs the relay served before the crash
	relayFull, relayPartial       int64 // served by the restarted relay
	relayUpFull, relayUpPartial   int64 // the restarted relay's own syncs with its upstream
	upstreamFullLogged, refreshes int   // in the relay's log, all runs
	replicaOffered, replicaLoaded []int
	replicaPartial                []int
}

func (c cmCost) String() string {
	return fmt.Sprintf("master sync_full=%d sync_partial_ok=%d | relay before crash sync_full=%d | restarted relay sync_full=%d sync_partial_ok=%d upstream_full=%d upstream_partial=%d | relay log: upstream full syncs started=%d refreshes started=%d | replicas: full offered=%v loaded=%v partial=%v",
		c.masterFull, c.masterPartial, c.relayFullBefore, c.relayFull, c.relayPartial, c.relayUpFull, c.relayUpPartial,
		c.upstreamFullLogged, c.refreshes, c.replicaOffered, c.replicaLoaded, c.replicaPartial)
}

// cmSettle stops the load, waits until the master, the relay and the
// replicas hold the same data at the same offset, and returns the cost.
func cmSettle(t *testing.T, load *bigLoad, master *redistest.Server, relay *relayProc, reps []*redistest.Server, fullBefore int64) cmCost {
	t.Helper()
	time.Sleep(2 * time.Second) // the load goes on a while after the restart
	load.Stop(t, false)
	cmInSync(t, 120*time.Second, master, relay, reps...)
	cmWaitOffsets(t, master, relay, reps...)
	cmInSync(t, 30*time.Second, master, relay, reps...)
	c := cmCost{
		masterFull:      master.InfoInt(t, "sync_full"),
		masterPartial:   master.InfoInt(t, "sync_partial_ok"),
		relayFullBefore: fullBefore,
		relayFull:       relay.InfoInt(t, "sync_full"),
		relayPartial:    relay.InfoInt(t, "sync_partial_ok"),
		relayUpFull:     relay.InfoInt(t, "upstream_full_syncs"),
		relayUpPartial:  relay.InfoInt(t, "upstream_partial_syncs"),
	}
	if b, err := os.ReadFile(relay.log.Name()); err == nil {
		c.upstreamFullLogged = strings.Count(string(b), `msg="full resync from upstream"`)
		c.refreshes = strings.Count(string(b), `msg="snapshot refresh started"`)
	}
	for _, r := range reps {
		o, l, p := cmReplicaSyncs(t, r)
		c.replicaOffered = append(c.replicaOffered, o)
		c.replicaLoaded = append(c.replicaLoaded, l)
		c.replicaPartial = append(c.replicaPartial, p)
	}
	t.Logf("cost: %v", c)
	if lines := cmRelayLines(relay, 5, `msg="upstream link down"`); lines != "" {
		t.Logf("the relay's upstream link went down (last 5 times):\n%s", lines)
	}
	return c
}

// cmInSync waits until every replica's digest equals the master's. While
// they differ it keeps, for the failure message, where each server stands.
func cmInSync(t *testing.T, timeout time.Duration, master *redistest.Server, relay *relayProc, reps ...*redistest.Server) {
	t.Helper()
	all := append([]*redistest.Server{master}, reps...)
	redistest.Eventually(t, timeout, func() error {
		err := redistest.SameDigest(all...)
		if err == nil {
			return nil
		}
		var where []string
		for _, s := range all {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			text, ierr := s.Client().Info(ctx, "replication", "persistence").Result()
			cancel()
			if ierr != nil {
				where = append(where, fmt.Sprintf("%s: INFO: %v", s.Addr(), ierr))
				continue
			}
			f := redistest.ParseInfo(text)
			where = append(where, fmt.Sprintf("%s: role=%s link=%s sync_in_progress=%s loading=%s offset=%s", s.Addr(),
				f["role"], f["master_link_status"], f["master_sync_in_progress"], f["loading"], f["master_repl_offset"]))
		}
		if ri, rerr := cmRelayInfo(relay); rerr != nil {
			where = append(where, "relay: "+rerr.Error())
		} else {
			where = append(where, fmt.Sprintf("relay: link=%s offset=%s last_error=%s", ri["upstream_link_state"], ri["master_repl_offset"], ri["upstream_last_error"]))
		}
		return fmt.Errorf("%w [%s]", err, strings.Join(where, "; "))
	})
}

// cmEachReplicaLoadedOnce checks that every replica loaded exactly one
// snapshot: its first.
func cmEachReplicaLoadedOnce(t *testing.T, c cmCost) {
	t.Helper()
	for i, n := range c.replicaLoaded {
		if n != 1 {
			t.Errorf("replica %d loaded %d snapshots, want 1 (its first sync only)", i, n)
		}
	}
}

// cmOneSnapshot checks that the data dir holds the snapshots state.json
// names and no other: the restarted relay removed what the crash left
// behind (an older snapshot stays while the log still follows it, for
// recovery to a point).
func cmOneSnapshot(t *testing.T, dir string) {
	t.Helper()
	rdbs, _ := filepath.Glob(filepath.Join(dir, "snapshot-*.rdb"))
	raw, err := os.ReadFile(filepath.Join(dir, history.StateFile))
	var st history.State
	if err == nil {
		err = json.Unmarshal(raw, &st)
	}
	if err != nil {
		t.Fatalf("read state: %v", err)
	}
	if want := 1 + len(st.Older); len(rdbs) != want {
		t.Errorf("data dir holds %d snapshots, state.json names %d: %v", len(rdbs), want, rdbs)
	}
}

// cmRelayLines returns the last n lines of the relay's log (all runs) that
// contain any of the given texts, for the test log.
func cmRelayLines(relay *relayProc, n int, texts ...string) string {
	b, _ := os.ReadFile(relay.log.Name())
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		for _, s := range texts {
			if strings.Contains(line, s) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out[max(len(out)-n, 0):], "\n")
}

// cmMountTmpfs mounts a tmpfs of the given size (as mount -o size= takes
// it) on a new directory, unmounted when the test ends.
func cmMountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs for the relay's data dir (needs root or CAP_SYS_ADMIN): %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// cmFreeBytes is the space left on the file system holding dir.
func cmFreeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// cmFill writes a file of n bytes (real pages, not a sparse file).
func cmFill(t *testing.T, path string, n int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := f.Write(buf[:k]); err != nil {
			t.Fatalf("fill %s: %v", path, err)
		}
		n -= k
	}
}

func TestFaultCrashMatrix(t *testing.T) {
	t.Parallel()
	// a. Killed while the first snapshot arrives from the master: nothing
	// names it yet, so the restarted relay full-syncs again. Its replicas,
	// which were receiving the snapshot as it arrived, load one snapshot
	// each: the second one.
	t.Run("first snapshot receive", func(t *testing.T) {
		master := redistest.Start(t, cmBacklog...)
		populate(t, master, 0, 200000)
		load := startBigLoad(master, bigLoadOptions{Writers: 2, Rate: 4 << 20, Small: true, Seed: 1})
		time.Sleep(time.Second) // large values in the dataset too
		link := redistest.NewFaultProxy(t, master.Addr())
		link.SetRate(4 << 20) // the snapshot takes seconds to arrive
		relay := startRelayProcess(t, link.Addr())
		reps := cmReplicas(t, relay, 2)
		redistest.Eventually(t, 60*time.Second, func() error {
			if relay.InfoInt(t, "master_sync_in_progress") != 1 || relay.InfoInt(t, "master_sync_read_bytes") < 2<<20 {
				return fmt.Errorf("relay not in the middle of its first snapshot")
			}
			return nil
		})
		fullBefore := relay.InfoInt(t, "sync_full") // transfers to replicas begun from the arriving snapshot
		relay.Kill()
		if _, err := os.Stat(filepath.Join(relay.dir, history.StateFile)); err == nil {
			t.Errorf("state.json written before the first snapshot was complete")
		}
		link.SetRate(0)
		relay.start()
		c := cmSettle(t, load, master, relay, reps, fullBefore)
		if c.masterFull != 2 {
			t.Errorf("master sync_full = %d, want 2 (the cut first sync, then the one after the restart)", c.masterFull)
		}
		if c.relayFull != int64(len(reps)) {
			t.Errorf("restarted relay served %d full syncs, want %d (one per replica)", c.relayFull, len(reps))
		}
		cmEachReplicaLoadedOnce(t, c)
		cmOneSnapshot(t, relay.dir)
	})

	// b. Killed once the first snapshot is fully received, before its
	// checks and fsync: same cost as a.
	t.Run("first snapshot commit", func(t *testing.T) {
		master := redistest.Start(t, cmBacklog...)
		populate(t, master, 0, 50000)
		load := startBigLoad(master, bigLoadOptions{Writers: 2, Rate: 4 << 20, Small: true, Seed: 2})
		time.Sleep(time.Second)
		relay := startRelayProcess(t, master.Addr(), crashAt("commit", 0)...)
		reps := cmReplicas(t, relay, 2)
		relay.WaitCrashPoint(t, "commit", 120*time.Second)
		fullBefore := relay.InfoInt(t, "sync_full")
		relay.Kill()
		if _, err := os.Stat(filepath.Join(relay.dir, history.StateFile)); err == nil {
			t.Errorf("state.json written before the first snapshot was committed")
		}
		relay.start()
		c := cmSettle(t, load, master, relay, reps, fullBefore)
		if c.masterFull != 2 {
			t.Errorf("master sync_full = %d, want 2 (the uncommitted first sync, then the one after the restart)", c.masterFull)
		}
		if c.relayFull != int64(len(reps)) {
			t.Errorf("restarted relay served %d full syncs, want %d (one per replica)", c.relayFull, len(reps))
		}
		cmEachReplicaLoadedOnce(t, c)
		cmOneSnapshot(t, relay.dir)
	})

	// c. Killed during a snapshot refresh under load, before the swap
	// (refresh-commit) and once state.json names the refreshed snapshot
	// (state-written; its first hit is the first sync's). Either way the
	// relay keeps its history: it resumes partially from the master and
	// its replicas from it. The restarted relay does not refresh again.
	for _, tc := range []struct {
		point string
		skip  int
	}{{"refresh-commit", 0}, {"state-written", 1}} {
		t.Run("refresh "+tc.point, func(t *testing.T) {
			master := redistest.Start(t, cmBacklog...)
			populate(t, master, 0, 50000)
			env := append([]string{"REDIS_RELAY_CHILD_REFRESH_RATIO=-1"}, crashAt(tc.point, tc.skip)...)
			relay := startRelayProcess(t, master.Addr(), env...)
			reps := cmReplicas(t, relay, 2)
			inSync(t, 60*time.Second, master, reps...)
			cmWaitOffsets(t, master, relay, reps...)
			fullBefore := relay.InfoInt(t, "sync_full")
			load := startBigLoad(master, bigLoadOptions{Writers: 2, Rate: 4 << 20, Small: true, Seed: 3})
			time.Sleep(time.Second)
			for _, kv := range [][2]string{{"refresh-ratio", "0.001"}, {"refresh-min-size", "1"}} {
				if err := relay.client.Do(context.Background(), "CONFIG", "SET", kv[0], kv[1]).Err(); err != nil {
					t.Fatalf("relay CONFIG SET %s %s: %v", kv[0], kv[1], err)
				}
			}
			relay.WaitCrashPoint(t, tc.point, 120*time.Second)
			relay.Kill()
			relay.start()
			c := cmSettle(t, load, master, relay, reps, fullBefore)
			t.Logf("relay log:\n%s", cmRelayLines(relay, 20, "refresh", "recovered", "resync with upstream", "CRASHPOINT", "level=WARN", "level=ERROR"))
			if want := 1 + int64(c.refreshes); c.masterFull != want {
				t.Errorf("master sync_full = %d, want %d (the first sync and %d refreshes started)", c.masterFull, want, c.refreshes)
			}
			if c.relayUpFull != 0 {
				t.Errorf("restarted relay full-synced %d times from the master, want 0", c.relayUpFull)
			}
			if c.relayFull != 0 {
				t.Errorf("restarted relay served %d full syncs, want 0", c.relayFull)
			}
			cmEachReplicaLoadedOnce(t, c)
			cmOneSnapshot(t, relay.dir)
			t.Logf("restarted relay: snapshot at %d, log from %d", relay.InfoInt(t, "snapshot_offset"), relay.InfoInt(t, "log_first_offset"))
		})
	}

	// d. Killed once state.json holds the new replid of a promoted replica
	// P (+CONTINUE <newid>), before it is applied; restarted pointing at P.
	// The relay resumes partially from P, its replicas partially from it.
	t.Run("replid shift", func(t *testing.T) {
		master := redistest.Start(t, cmBacklog...)
		populate(t, master, 0, 50000)
		spare := replicaOf(t, master.HostPort, cmBacklog...)
		link := redistest.NewFaultProxy(t, master.Addr())
		relay := startRelayProcess(t, link.Addr(), crashAt("shift-written", 0)...)
		reps := cmReplicas(t, relay, 2)
		inSync(t, 60*time.Second, master, append([]*redistest.Server{spare}, reps...)...)
		cmWaitOffsets(t, master, relay, reps...)
		fullBefore := relay.InfoInt(t, "sync_full")

		load := startBigLoad(master, bigLoadOptions{Writers: 2, Rate: 4 << 20, Small: true, Seed: 4})
		time.Sleep(2 * time.Second)
		// The relay lags the replica when the master dies: a relay ahead of
		// the promoted replica could not continue from it, no more than a
		// stock replica could.
		link.SetBlackHole(true)
		time.Sleep(time.Second)
		master.Kill()
		load.Stop(t, true)
		link.SetRefuse(true)
		link.CutAll()
		link.SetBlackHole(false)
		redistest.Eventually(t, 30*time.Second, func() error {
			if s := spare.Info(t, "replication")["master_link_status"]; s != "down" {
				return fmt.Errorf("replica link still %s", s)
			}
			return nil
		})

		spare.Do(t, "REPLICAOF", "NO", "ONE")
		redistest.Eventually(t, 30*time.Second, func() error {
			if role := spare.Info(t, "replication")["role"]; role != "master" {
				return fmt.Errorf("replica is still %s", role)
			}
			return nil
		})
		load = startBigLoad(spare, bigLoadOptions{Writers: 2, Rate: 4 << 20, Small: true, Seed: 5})
		h, p := spare.HostPort()
		if err := relay.client.Do(context.Background(), "REPLICAOF", h, p).Err(); err != nil {
			t.Fatalf("relay REPLICAOF %s %s: %v", h, p, err)
		}
		relay.WaitCrashPoint(t, "shift-written", 60*time.Second)
		relay.master = spare.Addr()
		relay.Restart()
		c := cmSettle(t, load, spare, relay, reps, fullBefore)
		t.Logf("relay log:\n%s", cmRelayLines(relay, 20, "replication ID", "recovered", "resync with upstream", "CRASHPOINT", "re-point", "level=WARN", "level=ERROR"))
		if c.masterFull != 0 {
			t.Errorf("promoted replica served %d full syncs, want 0: the relay should resume partially", c.masterFull)
		}
		if c.relayUpFull != 0 {
			t.Errorf("restarted relay full-synced %d times from the promoted replica, want 0", c.relayUpFull)
		}
		if c.relayFull != 0 {
			t.Errorf("restarted relay served %d full syncs, want 0", c.relayFull)
		}
		cmEachReplicaLoadedOnce(t, c)
		if got, want := relay.InfoInt(t, "upstream_partial_syncs"), int64(1); got < want {
			t.Errorf("restarted relay upstream_partial_syncs = %d, want >= 1", got)
		}
	})

	// e. The data dir fills up under load: appends to the log fail. The
	// relay is killed while they do, space is freed, and it restarts.
	t.Run("full disk", func(t *testing.T) {
		dir := cmMountTmpfs(t, "96m")
		master := redistest.Start(t, cmBacklog...)
		populate(t, master, 0, 50000)
		relay := startRelayProcessIn(t, dir, master.Addr(), "REDIS_RELAY_CHILD_SEGMENT_SIZE="+strconv.Itoa(4<<20))
		reps := cmReplicas(t, relay, 2)
		inSync(t, 60*time.Second, master, reps...)
		cmWaitOffsets(t, master, relay, reps...)
		fullBefore := relay.InfoInt(t, "sync_full")

		load := startBigLoad(master, bigLoadOptions{Writers: 2, Rate: 4 << 20, Small: true, Seed: 6})
		time.Sleep(time.Second)
		// Leave about 12 MB: the load fills it in a couple of seconds.
		filler := filepath.Join(dir, "filler")
		cmFill(t, filler, max(cmFreeBytes(t, dir)-12<<20, 0))
		redistest.Eventually(t, 60*time.Second, func() error {
			if !strings.Contains(relay.RunLog(), "no space left on device") {
				return fmt.Errorf("the relay's writes have not failed yet (%d MB free)", cmFreeBytes(t, dir)>>20)
			}
			return nil
		})
		partialFull, cutsFull := master.InfoInt(t, "sync_partial_ok"), strings.Count(relay.RunLog(), "no space left on device")
		time.Sleep(2 * time.Second) // the relay goes on failing and retrying
		partialDuring := master.InfoInt(t, "sync_partial_ok") - partialFull
		failures := strings.Count(relay.RunLog(), "no space left on device") - cutsFull
		var drops []string
		if info, err := cmRelayInfo(relay); err == nil {
			for k, v := range info {
				if strings.HasPrefix(k, "replica_disconnects_") {
					drops = append(drops, k+"="+v)
				}
			}
		}
		t.Logf("in the 2 s the disk stayed full: %d failed appends logged, the master served %d partial resyncs to the relay; relay dropped its replicas: %v; last relay lines:\n%s",
			failures, partialDuring, drops, cmRelayLines(relay, 4, "level=WARN", "level=ERROR"))
		relay.Kill()
		if out, err := exec.Command("mount", "-o", "remount,size=1g", dir).CombinedOutput(); err != nil {
			t.Logf("remount %s bigger: %v: %s", dir, err, out)
		}
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		relay.start()
		c := cmSettle(t, load, master, relay, reps, fullBefore)
		t.Logf("relay log after the restart:\n%s", cmRelayLines(relay, 6, "recovered", "repaired", "resync with upstream", "level=WARN", "level=ERROR"))
		if c.masterFull != 1 {
			t.Errorf("master sync_full = %d, want 1: the relay's history survived the full disk", c.masterFull)
		}
		if c.relayFull != 0 {
			t.Errorf("restarted relay served %d full syncs, want 0", c.relayFull)
		}
		cmEachReplicaLoadedOnce(t, c)
	})
}
