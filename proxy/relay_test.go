package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/proxy/downstream"
)

func TestFullSyncFanOut(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name string
		args []string
	}{
		{"disk", []string{"--repl-diskless-sync", "no"}},
		{"diskless", []string{"--repl-diskless-sync", "yes"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			master := redistest.Start(t, mode.args...)
			populate(t, master, 0, 100000)
			populate(t, master, 3, 5000)
			relay := startRelay(t, master.Addr())
			replicas := []*redistest.Server{replicaOf(t, relay.HostPort), replicaOf(t, relay.HostPort), replicaOf(t, relay.HostPort)}
			inSync(t, 60*time.Second, master, replicas...)
			if n := master.InfoInt(t, "sync_full"); n != 1 {
				t.Errorf("master sync_full = %d, want 1", n)
			}
			if n := relay.InfoInt(t, "sync_full"); n != 3 {
				t.Errorf("relay served %d full syncs, want 3", n)
			}
			for _, r := range replicas {
				if got, want := r.Do(t, "DBSIZE"), master.Do(t, "DBSIZE"); got != want {
					t.Errorf("replica %s DBSIZE = %v, master %v", r.Addr(), got, want)
				}
			}
		})
	}
}

func TestStreamUnderLoad(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	relay := startRelay(t, master.Addr())
	a, b := replicaOf(t, relay.HostPort), replicaOf(t, relay.HostPort)
	inSync(t, 20*time.Second, master, a, b)
	load := startLoad(t, master)
	time.Sleep(3 * time.Second) // let the load run; correctness is checked after it stops
	ops := load.Stop(t)
	inSync(t, 30*time.Second, master, a, b)
	t.Logf("%d writes relayed", ops)
	waitOffsets(t, master, relay, a, b)
	if n := master.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("master sync_full = %d, want 1", n)
	}
}

// waitOffsets waits until every replica's applied offset and the relay's
// offset equal the master's master_repl_offset, with the same replid.
func waitOffsets(t *testing.T, master *redistest.Server, relay *testRelay, replicas ...*redistest.Server) {
	t.Helper()
	redistest.Eventually(t, 20*time.Second, func() error {
		info := master.Info(t, "replication")
		want, id := info["master_repl_offset"], info["master_replid"]
		if got := relay.InfoField(t, "master_repl_offset"); got != want {
			return fmt.Errorf("relay offset %s, master %s", got, want)
		}
		if got := relay.InfoField(t, "master_replid"); got != id {
			return fmt.Errorf("relay replid %s, master %s", got, id)
		}
		for _, r := range replicas {
			ri := r.Info(t, "replication")
			if ri["slave_repl_offset"] != want || ri["master_replid"] != id {
				return fmt.Errorf("replica %s at %s/%s, master %s/%s", r.Addr(), ri["master_replid"], ri["slave_repl_offset"], id, want)
			}
		}
		return nil
	})
}

func TestReplicaReconnectGetsContinue(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 2000)
	relay := startRelay(t, master.Addr())
	link := redistest.NewFaultProxy(t, relay.Addr())
	replica := replicaOf(t, link.HostPort, "--repl-timeout", "5")
	inSync(t, 20*time.Second, master, replica)
	fullBefore := relay.InfoInt(t, "sync_full")

	link.SetRefuse(true)
	link.CutAll()
	redistest.Eventually(t, 10*time.Second, func() error {
		if s := replica.Info(t, "replication")["master_link_status"]; s != "down" {
			return fmt.Errorf("replica link %s", s)
		}
		return nil
	})
	writeKeys(t, master, 1, 2000)
	link.SetRefuse(false)
	inSync(t, 20*time.Second, master, replica)

	if n := relay.InfoInt(t, "sync_partial_ok"); n < 1 {
		t.Errorf("relay sync_partial_ok = %d, want >= 1", n)
	}
	if n := relay.InfoInt(t, "sync_full"); n != fullBefore {
		t.Errorf("relay sync_full went from %d to %d", fullBefore, n)
	}
	if n := master.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("master sync_full = %d, want 1", n)
	}
	if n := master.InfoInt(t, "sync_partial_ok"); n != 0 {
		t.Errorf("master sync_partial_ok = %d, want 0: the master must not see the replica's reconnect", n)
	}
}

func TestUpstreamLinkCutResumesPartially(t *testing.T) {
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	populate(t, master, 0, 5000)
	link := redistest.NewFaultProxy(t, master.Addr())
	relay := startRelay(t, link.Addr())
	a, b := replicaOf(t, relay.HostPort), replicaOf(t, relay.HostPort)
	inSync(t, 20*time.Second, master, a, b)
	load := startLoad(t, master)
	for range 3 {
		time.Sleep(500 * time.Millisecond)
		link.CutAll()
	}
	load.Stop(t)
	inSync(t, 30*time.Second, master, a, b)
	if n := master.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("master sync_full = %d, want 1", n)
	}
	if n := master.InfoInt(t, "sync_partial_ok"); n < 1 {
		t.Errorf("master sync_partial_ok = %d, want >= 1", n)
	}
	if n := relay.InfoInt(t, "sync_full"); n != 2 {
		t.Errorf("relay served %d full syncs, want 2 (one per replica, none after the cuts)", n)
	}
	for _, r := range []*redistest.Server{a, b} {
		if n := r.InfoInt(t, "master_sync_in_progress"); n != 0 {
			t.Errorf("replica %s still syncing", r.Addr())
		}
	}
}

func TestLateReplicaServedFromSnapshot(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 20000)
	relay := startRelay(t, master.Addr())
	first := replicaOf(t, relay.HostPort)
	inSync(t, 20*time.Second, master, first)
	load := startLoad(t, master)
	time.Sleep(2 * time.Second)
	load.Stop(t)
	writeKeys(t, master, 2, 3000)

	late := replicaOf(t, relay.HostPort)
	inSync(t, 30*time.Second, master, first, late)
	if n := master.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("master sync_full = %d, want 1", n)
	}
	if n := relay.InfoInt(t, "sync_full"); n != 2 {
		t.Errorf("relay sync_full = %d, want 2", n)
	}
}

func TestChainedRelays(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 10000)
	r1 := startRelay(t, master.Addr())
	r2 := startRelay(t, r1.Addr())
	replica := replicaOf(t, r2.HostPort)
	inSync(t, 30*time.Second, master, replica)
	load := startLoad(t, master)
	time.Sleep(2 * time.Second)
	load.Stop(t)
	inSync(t, 30*time.Second, master, replica)
	waitOffsets(t, master, r1, replica)
	waitOffsets(t, master, r2, replica)
	if n := master.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("master sync_full = %d, want 1", n)
	}
}

func TestRelayRestartResumesBothLinks(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 10000)
	relay := startRelay(t, master.Addr())
	replica := replicaOf(t, relay.HostPort)
	inSync(t, 20*time.Second, master, replica)

	relay.Restart()
	writeKeys(t, master, 1, 1000)
	inSync(t, 30*time.Second, master, replica)
	if n := master.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("master sync_full = %d, want 1", n)
	}
	if n := master.InfoInt(t, "sync_partial_ok"); n != 1 {
		t.Errorf("master sync_partial_ok = %d, want 1", n)
	}
	redistest.Eventually(t, 20*time.Second, func() error {
		if n := relay.InfoInt(t, "sync_partial_ok"); n != 1 {
			return fmt.Errorf("restarted relay served %d partial syncs, want 1", n)
		}
		return nil
	})
	if n := relay.InfoInt(t, "sync_full"); n != 0 {
		t.Errorf("restarted relay served %d full syncs, want 0", n)
	}
}

// TestUpstreamNoMasterLink: an upstream that is itself a replica without a
// master answers -NOMASTERLINK; the relay retries until it can sync.
func TestUpstreamNoMasterLink(t *testing.T) {
	dead := redistest.FreePort(t)
	mid := redistest.Start(t, "--replicaof", "127.0.0.1", fmt.Sprint(dead))
	relay := startRelay(t, mid.Addr())
	redistest.Eventually(t, 10*time.Second, func() error {
		if e := relay.Status().LastError; !strings.Contains(e, "NOMASTERLINK") {
			return fmt.Errorf("last upstream error %q", e)
		}
		return nil
	})
	master := redistest.Start(t)
	populate(t, master, 0, 1000)
	mh, mp := master.HostPort()
	mid.Do(t, "REPLICAOF", mh, mp)
	replica := replicaOf(t, relay.HostPort)
	inSync(t, 30*time.Second, master, mid, replica)
}

// TestLongFullSyncOutlivesCommandTimeout: a replica is silent while it
// receives a snapshot; a transfer longer than the command timeout (and than
// the replica's own ACK interval) must not be cut.
func TestLongFullSyncOutlivesCommandTimeout(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	populate(t, master, 0, 50000)
	relay := startRelay(t, master.Addr(), func(c *Config) { c.CommandTimeout = time.Second })
	link := redistest.NewFaultProxy(t, relay.Addr())
	link.SetRate(512 << 10)
	replica := replicaOf(t, link.HostPort)
	inSync(t, 60*time.Second, master, replica)
	if n := relay.Status().Disconnects[downstream.ReasonTimeout]; n != 0 {
		t.Errorf("%d sessions timed out during the transfer", n)
	}
	if n := relay.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("relay served %d full syncs, want 1", n)
	}
}
