package proxy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/proxy/downstream"
)

// relayOnline reports whether the relay holds a history and streams from
// its master.
func relayOnline(relay *testRelay) error {
	if st := relay.Status(); !st.HasHistory || st.SyncPending || st.LinkState != LinkConnected {
		return fmt.Errorf("relay: history %v, sync pending %v, link %s", st.HasHistory, st.SyncPending, st.LinkState)
	}
	return nil
}

// caughtUp waits until the relay holds everything the master had written
// when it was called.
func caughtUp(t *testing.T, master *redistest.Server, relay *testRelay) {
	t.Helper()
	want := master.InfoInt(t, "master_repl_offset")
	redistest.Eventually(t, 30*time.Second, func() error {
		if st := relay.Status(); st.Log.Next-1 < want {
			return fmt.Errorf("relay at %d, master was at %d", st.Log.Next-1, want)
		}
		return nil
	})
}

// cliRDB runs redis-cli --rdb against the relay and returns the file's
// path, or the error and what redis-cli printed.
func cliRDB(t *testing.T, relay *testRelay) (string, string, error) {
	t.Helper()
	dir := t.TempDir()
	h, p := relay.HostPort()
	out, err := exec.Command(redisCli(t), "-h", h, "-p", p, "--rdb", filepath.Join(dir, "dump.rdb")).CombinedOutput()
	return dir, string(out), err
}

// TestRedisCliRDBCurrent: redis-cli --rdb against the relay writes the
// current data, writes made after the relay's snapshot included, while the
// master takes writes; the relay refreshes its snapshot for it.
func TestRedisCliRDBCurrent(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 20000)
	relay := startRelay(t, master.Addr())
	redistest.Eventually(t, 60*time.Second, func() error { return relayOnline(relay) })
	writeKeys(t, master, 1, 500) // after the snapshot
	caughtUp(t, master, relay)

	dir, out, err := cliRDB(t, relay)
	if err != nil {
		t.Fatalf("redis-cli --rdb: %v\n%s", err, out)
	}
	scratch := redistest.Start(t, "--dir", dir, "--dbfilename", "dump.rdb")
	if err := redistest.SameDigest(master, scratch); err != nil {
		t.Fatalf("the file is not the master's data: %v", err)
	}
	if n := master.InfoInt(t, "sync_full"); n != 2 {
		t.Errorf("master sync_full = %d, want 2 (the relay's first sync and one refresh)", n)
	}

	t.Run("nothing written since", func(t *testing.T) {
		// The snapshot just taken, followed by heartbeats only, is
		// current: served without another fork of the master.
		full := master.InfoInt(t, "sync_full")
		dir, out, err := cliRDB(t, relay)
		if err != nil {
			t.Fatalf("redis-cli --rdb: %v\n%s", err, out)
		}
		scratch := redistest.Start(t, "--dir", dir, "--dbfilename", "dump.rdb")
		if err := redistest.SameDigest(master, scratch); err != nil {
			t.Fatal(err)
		}
		if n := master.InfoInt(t, "sync_full"); n != full {
			t.Errorf("master sync_full went from %d to %d", full, n)
		}
	})
	t.Run("under load", func(t *testing.T) {
		load := startLoad(t, master)
		defer load.Stop(t)
		master.Do(t, "SET", "marker", "written before redis-cli asked")
		caughtUp(t, master, relay)
		dir, out, err := cliRDB(t, relay)
		if err != nil {
			t.Fatalf("redis-cli --rdb: %v\n%s", err, out)
		}
		scratch := redistest.Start(t, "--dir", dir, "--dbfilename", "dump.rdb")
		if got := scratch.Do(t, "GET", "marker"); got != "written before redis-cli asked" {
			t.Fatalf("the file lacks a key written before redis-cli asked: GET marker = %v", got)
		}
	})
}

// TestRedisCliRDBRefused: with writes after the snapshot and no master to
// refresh from, redis-cli --rdb fails with the relay's error, which gives
// the snapshot's age and lag; with rdb-only-max-age allowing the age, it
// gets the stored snapshot.
func TestRedisCliRDBRefused(t *testing.T) {
	master := redistest.Start(t)
	relay := startRelay(t, master.Addr())
	redistest.Eventually(t, 30*time.Second, func() error { return relayOnline(relay) })
	writeKeys(t, master, 0, 200)
	caughtUp(t, master, relay)
	master.Kill()
	redistest.Eventually(t, 30*time.Second, func() error {
		if s := relay.Status().LinkState; s == LinkConnected {
			return fmt.Errorf("relay link %s", s)
		}
		return nil
	})

	_, out, err := cliRDB(t, relay)
	if err == nil {
		t.Fatalf("redis-cli --rdb succeeded with a stale snapshot:\n%s", out)
	}
	for _, want := range []string{"SYNC with master failed: -ERR the relay's snapshot is", "bytes of stream behind", "run this against the master or a replica"} {
		if !strings.Contains(out, want) {
			t.Errorf("redis-cli printed %q, want it to contain %q", out, want)
		}
	}
	if n := relay.Status().Disconnects[downstream.ReasonRefused]; n != 1 {
		t.Errorf("refused sessions = %d, want 1", n)
	}

	relay.Client().ConfigSet(t.Context(), "rdb-only-max-age", "1h")
	dir, out, err := cliRDB(t, relay)
	if err != nil {
		t.Fatalf("redis-cli --rdb with rdb-only-max-age 1h: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "dump.rdb"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(relay.hist.Path(relay.Status().Snapshot.File))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("redis-cli got %d bytes, the relay's snapshot has %d", len(got), len(want))
	}
}

// TestRedisCliRDBTier: redis-cli --rdb against a relay that follows
// another relay gets the current data too: the lower relay's refresh asks
// the upper one for a current snapshot, which refreshes from the master.
func TestRedisCliRDBTier(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 5000)
	upper := startRelay(t, master.Addr())
	redistest.Eventually(t, 30*time.Second, func() error { return relayOnline(upper) })
	lower := startRelay(t, upper.Addr())
	redistest.Eventually(t, 30*time.Second, func() error { return relayOnline(lower) })
	writeKeys(t, master, 2, 300) // after both relays' snapshots
	caughtUp(t, master, lower)

	dir, out, err := cliRDB(t, lower)
	if err != nil {
		t.Fatalf("redis-cli --rdb against the lower relay: %v\n%s", err, out)
	}
	scratch := redistest.Start(t, "--dir", dir, "--dbfilename", "dump.rdb")
	if err := redistest.SameDigest(master, scratch); err != nil {
		t.Fatalf("the file is not the master's data: %v", err)
	}
}
