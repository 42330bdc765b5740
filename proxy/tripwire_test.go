package proxy

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
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
		c.crashPoint = func(point string) {
			if point == "hold-lookup" && armed.CompareAndSwap(true, false) {
				close(stopped)
				<-resume
			}
		}
	})
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
	close(resume)

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
