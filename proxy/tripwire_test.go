package proxy

import (
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/recovery"
)

// TestTripwireHoldsFlushall: with hold-on-commands FLUSHALL, a master's
// FLUSHALL stops at the relay: replicas keep their data (across a relay
// restart), INFO says so, and RELAY GUARD RELEASE lets it through.
func TestTripwireHoldsFlushall(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 2000)
	relay := startRelay(t, master.Addr(), func(c *Config) { c.HoldOnCommands = []string{"FLUSHALL"} })
	replica := replicaOf(t, relay.HostPort)
	inSync(t, 30*time.Second, master, replica)
	writeKeys(t, master, 1, 100)
	master.Do(t, "SET", "before-flush", "1")
	inSync(t, 30*time.Second, master, replica)
	before := master.Digest(t)

	master.Do(t, "FLUSHALL")
	writeKeys(t, master, 2, 50)
	redistest.Eventually(t, 10*time.Second, func() error {
		if relay.InfoField(t, "hold_active") != "1" {
			return fmt.Errorf("not holding")
		}
		if got, want := relay.Status().Log.Next, master.InfoInt(t, "master_repl_offset")+1; got != want {
			return fmt.Errorf("relay log at %d, master at %d", got, want)
		}
		return nil
	})
	if cmd := relay.InfoField(t, "hold_command"); cmd != "FLUSHALL" {
		t.Errorf("hold_command %q", cmd)
	}
	time.Sleep(time.Second) // what would have reached the replica has
	if got := replica.Digest(t); got != before {
		t.Fatalf("replica digest %s, want %s: the dataset just before the FLUSHALL", got, before)
	}

	relay.Restart() // the hold is in state.json
	time.Sleep(time.Second)
	if relay.InfoField(t, "hold_active") != "1" {
		t.Fatal("a restart forgot the hold")
	}
	if got := replica.Digest(t); got != before {
		t.Fatalf("after the relay's restart the replica's digest is %s, want %s", got, before)
	}

	if err := relay.Client().Do(t.Context(), "RELAY", "GUARD", "RELEASE").Err(); err != nil {
		t.Fatal(err)
	}
	inSync(t, 30*time.Second, master, replica)
	if relay.InfoField(t, "hold_active") != "0" {
		t.Error("still holding after the release")
	}
	if n := relay.InfoInt(t, "sync_full"); n != 0 {
		t.Errorf("the restarted relay served %d full syncs", n)
	}
}

// TestTripwireHoldSetDuringRead: a hold set while a session is between a
// read of the log and its hold lookup still stops the replica before the
// held command. The test stops the session at that point ("hold-lookup"),
// lets a FLUSHALL reach the relay's log, then lets the session go on.
func TestTripwireHoldSetDuringRead(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 5000)
	var armed atomic.Bool
	stopped, resume := make(chan struct{}), make(chan struct{})
	relay := startRelay(t, master.Addr(), func(c *Config) {
		c.HoldOnCommands = []string{"FLUSHALL"}
		c.CrashPoint = func(point string) {
			if point == "hold-lookup" && armed.CompareAndSwap(true, false) {
				close(stopped)
				<-resume
			}
		}
	})
	release := sync.OnceFunc(func() { close(resume) })
	t.Cleanup(release) // before the relay stops
	replica := replicaOf(t, relay.HostPort)
	inSync(t, 30*time.Second, master, replica)

	armed.Store(true)
	master.Do(t, "SET", "before-flush", "1") // wakes the session, which stops
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the session never reached its hold lookup")
	}
	before := master.Digest(t)
	master.Do(t, "FLUSHALL")
	redistest.Eventually(t, 10*time.Second, func() error {
		if relay.InfoField(t, "hold_active") != "1" {
			return fmt.Errorf("not holding")
		}
		if got, want := relay.Status().Log.Next, master.InfoInt(t, "master_repl_offset")+1; got != want {
			return fmt.Errorf("relay log at %d, master at %d", got, want)
		}
		return nil
	})
	holdAt := relay.InfoInt(t, "hold_offset")
	release()

	redistest.Eventually(t, 10*time.Second, func() error {
		if off := replica.InfoInt(t, "master_repl_offset"); off < holdAt-1 {
			return fmt.Errorf("replica at offset %d, hold at %d", off, holdAt)
		}
		return nil
	})
	if off := replica.InfoInt(t, "master_repl_offset"); off != holdAt-1 {
		t.Errorf("replica at offset %d, want %d: just before the held FLUSHALL", off, holdAt-1)
	}
	if got := replica.Digest(t); got != before {
		t.Fatalf("replica digest %s, want %s: the dataset just before the FLUSHALL", got, before)
	}
}

// holdPoint waits until the relay holds before a FLUSHALL and every replica
// has everything before it, and returns the hold's offset and the replicas'
// digest there.
func holdPoint(t *testing.T, relay *testRelay, replicas ...*redistest.Server) (int64, string) {
	t.Helper()
	var holdAt int64
	redistest.Eventually(t, 20*time.Second, func() error {
		if relay.InfoField(t, "hold_active") != "1" {
			return fmt.Errorf("not holding")
		}
		holdAt = relay.InfoInt(t, "hold_offset")
		return nil
	})
	var digest string
	for _, r := range replicas {
		redistest.Eventually(t, 20*time.Second, func() error {
			if off := r.InfoInt(t, "master_repl_offset"); off != holdAt-1 {
				return fmt.Errorf("replica %s at offset %d, want %d: just before the hold", r.Addr(), off, holdAt-1)
			}
			return nil
		})
		d := r.Digest(t)
		switch {
		case d == "0000000000000000000000000000000000000000":
			t.Fatalf("replica %s is empty at the hold point", r.Addr())
		case digest == "":
			digest = d
		case d != digest:
			t.Fatalf("replica %s digest %s, another's %s, at the same offset", r.Addr(), d, digest)
		}
	}
	return holdAt, digest
}

// stillHeld checks that the relay still holds at holdAt and that every
// replica is still just before it, with the dataset it had there.
func stillHeld(t *testing.T, relay *testRelay, holdAt int64, digest string, replicas ...*redistest.Server) {
	t.Helper()
	if relay.InfoField(t, "hold_active") != "1" || relay.InfoInt(t, "hold_offset") != holdAt {
		t.Fatalf("the relay no longer holds at %d: hold_active %s", holdAt, relay.InfoField(t, "hold_active"))
	}
	if off := relay.InfoInt(t, "snapshot_offset"); off >= holdAt {
		t.Errorf("relay snapshot at offset %d, at or past the hold at %d", off, holdAt)
	}
	for _, r := range replicas {
		redistest.Eventually(t, 20*time.Second, func() error {
			if off := r.InfoInt(t, "master_repl_offset"); off != holdAt-1 {
				return fmt.Errorf("replica %s at offset %d, want %d: just before the hold", r.Addr(), off, holdAt-1)
			}
			return nil
		})
		if d := r.Digest(t); d != digest {
			t.Errorf("replica %s digest %s, want %s: the dataset just before the FLUSHALL", r.Addr(), d, digest)
		}
		// No full sync the replica was offered may start past the hold.
		log, err := os.ReadFile(r.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range fullResyncLine.FindAllStringSubmatch(string(log), -1) {
			if off, _ := strconv.ParseInt(m[1], 10, 64); off >= holdAt {
				t.Errorf("replica %s was offered a full sync at offset %d, past the hold at %d", r.Addr(), off, holdAt)
			}
		}
	}
}

// fullResyncLine is how a redis-server logs the +FULLRESYNC it got.
var fullResyncLine = regexp.MustCompile(`Full resync from master: [0-9a-f]{40}:(\d+)`)

// TestTripwireHoldSurvivesFullSync: a relay restarted while holding, after
// the master's backlog has moved past it, full-syncs from the master; the
// new snapshot already holds the FLUSHALL. It is held back with the hold:
// the replica keeps its data, a replica that joins meanwhile gets the data
// from before the FLUSHALL, and RELAY GUARD RELEASE lets both through.
func TestTripwireHoldSurvivesFullSync(t *testing.T) {
	master := redistest.Start(t, "--repl-backlog-size", "1mb")
	populate(t, master, 0, 2000)
	relay := startRelay(t, master.Addr(), func(c *Config) { c.HoldOnCommands = []string{"FLUSHALL"} })
	replica := replicaOf(t, relay.HostPort)
	inSync(t, 30*time.Second, master, replica)
	load := startBigLoad(master, bigLoadOptions{Writers: 1, Rate: 2 << 20, Small: true, Seed: 3})
	defer load.Stop(t, false)
	redistest.Eventually(t, 20*time.Second, func() error {
		if load.bytes.Load() < 2<<20 {
			return fmt.Errorf("load wrote %d bytes", load.bytes.Load())
		}
		return nil
	})

	master.Do(t, "FLUSHALL")
	holdAt, digest := holdPoint(t, relay, replica)

	relay.Stop()
	redistest.Eventually(t, 20*time.Second, func() error {
		if moved := master.InfoInt(t, "master_repl_offset") - holdAt; moved < 4<<20 {
			return fmt.Errorf("master moved %d bytes past the hold", moved)
		}
		return nil
	})
	relay.start(relay.port)
	redistest.Eventually(t, 30*time.Second, func() error {
		info := foRelayInfo(t, relay)
		if info["hold_snapshot_offset"] == "" {
			return fmt.Errorf("the restarted relay's full sync is not held back (hold_active %s, snapshot_offset %s)",
				info["hold_active"], info["snapshot_offset"])
		}
		return nil
	})
	if relay.InfoField(t, "guard_tripped") != "0" {
		t.Error("the empty-master guard reports a trip: the snapshot is held for the tripwire")
	}
	if n := relay.Status().UpstreamFullSyncs; n != 0 {
		t.Errorf("the restarted relay took %d full syncs as its history while holding", n)
	}
	late := replicaOf(t, relay.HostPort)
	stillHeld(t, relay, holdAt, digest, replica, late)

	if err := relay.Client().Do(t.Context(), "RELAY", "GUARD", "RELEASE").Err(); err != nil {
		t.Fatal(err)
	}
	load.Stop(t, false)
	inSync(t, 60*time.Second, master, replica, late)
	if info := foRelayInfo(t, relay); info["hold_active"] != "0" || info["hold_snapshot_offset"] != "" {
		t.Errorf("after the release: hold_active %s, hold_snapshot_offset %q", info["hold_active"], info["hold_snapshot_offset"])
	}
}

// TestTripwireHoldDropsRefresh: a snapshot refresh in flight when the held
// command arrives is taken past it (the master forks after a delay). It is
// not committed, nor served to a replica that joins while holding, not even
// while it is still on its way in (the test stops it there).
func TestTripwireHoldDropsRefresh(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	populate(t, master, 0, 2000)
	stopped, resume := make(chan struct{}), make(chan struct{})
	relay := startRelay(t, master.Addr(), func(c *Config) {
		c.HoldOnCommands = []string{"FLUSHALL"}
		c.RefreshRatio = -1
		c.RefreshMinBytes = 1
		c.CrashPoint = func(point string) {
			if point == "refresh-received" {
				close(stopped)
				<-resume
			}
		}
	})
	release := sync.OnceFunc(func() { close(resume) })
	t.Cleanup(release) // before the relay stops
	replica := replicaOf(t, relay.HostPort)
	inSync(t, 30*time.Second, master, replica)
	load := startBigLoad(master, bigLoadOptions{Writers: 1, Rate: 2 << 20, Small: true, Seed: 4})
	defer load.Stop(t, false)

	// The refresh asks for a snapshot; the master forks 3 s later.
	master.Do(t, "CONFIG", "SET", "repl-diskless-sync-delay", "3")
	if err := relay.Client().Do(t.Context(), "CONFIG", "SET", "refresh-ratio", "0.000001").Err(); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 10*time.Second, func() error {
		for k, v := range master.Info(t, "replication") {
			if strings.HasPrefix(k, "slave") && strings.Contains(v, "state=wait_bgsave") {
				return nil
			}
		}
		return fmt.Errorf("no refresh waiting on the master")
	})
	master.Do(t, "FLUSHALL")
	holdAt, digest := holdPoint(t, relay, replica)
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("the refresh never arrived")
	}
	late := replicaOf(t, relay.HostPort)
	redistest.Eventually(t, 20*time.Second, func() error {
		if off := late.InfoInt(t, "master_repl_offset"); off != holdAt-1 {
			return fmt.Errorf("replica joining during the refresh at offset %d, want %d: just before the hold", off, holdAt-1)
		}
		return nil
	})
	release()
	redistest.Eventually(t, 30*time.Second, func() error {
		st := relay.Status()
		if st.Refreshes+st.RefreshFailures == 0 || st.SyncPending {
			return fmt.Errorf("refresh still running")
		}
		return nil
	})
	stillHeld(t, relay, holdAt, digest, replica, late)
	if n := master.InfoInt(t, "sync_full"); n != 2 {
		t.Errorf("master sync_full %d, want 2: the first sync and the refresh", n)
	}

	if err := relay.Client().Do(t.Context(), "RELAY", "GUARD", "RELEASE").Err(); err != nil {
		t.Fatal(err)
	}
	load.Stop(t, false)
	inSync(t, 60*time.Second, master, replica, late)
}

// TestTripwireDelMatchesExpiry keeps what the README says of DEL and
// UNLINK: a master sends DEL for a key it expires, so a DEL wire trips on
// it (and recover --before-command DEL stops there) though no client sent
// DEL; with lazyfree-lazy-expire and lazyfree-lazy-eviction yes, expired
// and evicted keys arrive as UNLINK and only an application's DEL trips it.
func TestTripwireDelMatchesExpiry(t *testing.T) {
	start := func(t *testing.T, args ...string) (*redistest.Server, *testRelay, *redistest.Server) {
		master := redistest.Start(t, args...)
		populate(t, master, 0, 500)
		relay := startRelay(t, master.Addr(), func(c *Config) {
			c.HoldOnCommands = []string{"DEL"}
			c.RefreshRatio = -1
		})
		replica := replicaOf(t, relay.HostPort)
		inSync(t, 30*time.Second, master, replica)
		master.Do(t, "SET", "short-lived", "1", "PX", "50")
		redistest.Eventually(t, 10*time.Second, func() error {
			if n := master.InfoInt(t, "expired_keys"); n < 1 {
				return fmt.Errorf("master expired_keys %d", n)
			}
			return nil
		})
		return master, relay, replica
	}

	t.Run("expiry sent as DEL", func(t *testing.T) {
		master, relay, replica := start(t)
		holdAt, _ := holdPoint(t, relay, replica)
		if cmd := relay.InfoField(t, "hold_command"); cmd != "DEL" {
			t.Errorf("hold_command %q, want DEL", cmd)
		}
		if n, ok := master.Info(t, "commandstats")["cmdstat_del"]; ok {
			t.Fatalf("a client sent DEL (%s): the test wants the master's own", n)
		}
		// The hold is set before the DEL's bytes reach the log: recover
		// finds the DEL once they are there and synced.
		var res recovery.Result
		redistest.Eventually(t, 10*time.Second, func() error {
			if _, err := relay.hist.CurrentLog().Sync(); err != nil {
				return err
			}
			var err error
			res, err = recovery.Recover(t.Context(), recovery.Options{
				DataDir: relay.cfg.DataDir, UntilOffset: -1, BeforeCommand: "del", Out: t.TempDir() + "/before-del.rdb",
				Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
			})
			if err != nil {
				return fmt.Errorf("recover --before-command DEL: %w", err)
			}
			if res.Command == "" {
				return fmt.Errorf("recover found no DEL yet")
			}
			return nil
		})
		if res.Command != "DEL" || res.CmdAt != holdAt {
			t.Errorf("recover --before-command DEL left out %s at %d, want the expiry's DEL at %d", res.Command, res.CmdAt, holdAt)
		}
	})

	t.Run("lazyfree: expiry and eviction sent as UNLINK", func(t *testing.T) {
		master, relay, replica := start(t, "--lazyfree-lazy-expire", "yes", "--lazyfree-lazy-eviction", "yes")
		for i := range 10 {
			master.Do(t, "SET", fmt.Sprintf("evictable:%d", i), i, "EX", "3600")
		}
		master.Do(t, "CONFIG", "SET", "maxmemory-policy", "volatile-random")
		master.Do(t, "CONFIG", "SET", "maxmemory", "1")
		redistest.Eventually(t, 10*time.Second, func() error { // every command runs the eviction first
			if n := master.InfoInt(t, "evicted_keys"); n < 10 {
				return fmt.Errorf("master evicted_keys %d", n)
			}
			return nil
		})
		master.Do(t, "CONFIG", "SET", "maxmemory", "0")
		inSync(t, 20*time.Second, master, replica)
		redistest.Eventually(t, 10*time.Second, func() error {
			if n := relay.Status().Commands["unlink"]; n < 11 {
				return fmt.Errorf("relay relayed %d UNLINKs", n)
			}
			return nil
		})
		if relay.InfoField(t, "hold_active") != "0" {
			t.Fatalf("the DEL wire tripped on %s without a DEL", relay.InfoField(t, "hold_command"))
		}
		master.Do(t, "DEL", "db0:1:s")
		holdPoint(t, relay, replica)
		if cmd := relay.InfoField(t, "hold_command"); cmd != "DEL" {
			t.Errorf("hold_command %q, want DEL", cmd)
		}
	})
}

// TestTripwireSetAtRunTime: hold-on-commands set and cleared with CONFIG
// SET arms and disarms the tripwire at once, with no restart.
func TestTripwireSetAtRunTime(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 500)
	relay := startRelay(t, master.Addr())
	replica := replicaOf(t, relay.HostPort)
	inSync(t, 30*time.Second, master, replica)
	cl := relay.Client()
	ctx := t.Context()

	if err := cl.ConfigSet(ctx, "hold-on-commands", "flushdb").Err(); err != nil {
		t.Fatal(err)
	}
	master.Do(t, "FLUSHDB")
	redistest.Eventually(t, 10*time.Second, func() error {
		if relay.InfoField(t, "hold_active") != "1" {
			return fmt.Errorf("not holding")
		}
		return nil
	})
	if cmd := relay.InfoField(t, "hold_command"); cmd != "FLUSHDB" {
		t.Errorf("hold_command %q", cmd)
	}

	if err := cl.ConfigSet(ctx, "hold-on-commands", "").Err(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Do(ctx, "RELAY", "GUARD", "RELEASE").Err(); err != nil {
		t.Fatal(err)
	}
	writeKeys(t, master, 1, 50)
	master.Do(t, "FLUSHDB")
	writeKeys(t, master, 2, 50)
	inSync(t, 30*time.Second, master, replica)
	if relay.InfoField(t, "hold_active") != "0" {
		t.Error("a FLUSHDB after hold-on-commands was cleared tripped the wire")
	}
}
