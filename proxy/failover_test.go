package proxy

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/proxy/settings"
)

// TestSentinelFailover: three Sentinels watch a master with a promotable
// replica and the relay. When the master dies, Sentinel promotes the
// replica (never the relay, which reports priority 0) and re-points the
// relay; the replicas behind the relay follow without a full sync.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	populate(t, master, 0, 5000)
	spare := replicaOf(t, master.HostPort, "--replica-priority", "100")
	relay := startRelay(t, master.Addr())
	down := []*redistest.Server{replicaOf(t, relay.HostPort), replicaOf(t, relay.HostPort), replicaOf(t, relay.HostPort)}
	inSync(t, 20*time.Second, master, append(down, spare)...)

	startSentinels(t, master, time.Second, relay, 2)
	fullBefore := relay.InfoInt(t, "sync_full")

	master.Kill()
	waitFollowsPromoted(t, spare, relay)
	writeKeys(t, spare, 0, 500)
	inSync(t, 30*time.Second, spare, down...)
	if n := relay.InfoInt(t, "sync_full"); n != fullBefore {
		t.Errorf("relay served %d full syncs after the failover", n-fullBefore)
	}
	for _, r := range down {
		if n := r.InfoInt(t, "sync_full"); n != 0 {
			t.Errorf("downstream %s served full syncs", r.Addr())
		}
	}
	if n := spare.InfoInt(t, "sync_full"); n != 0 {
		t.Errorf("promoted replica served %d full syncs: the relay should have continued", n)
	}
	if id := relay.InfoField(t, "master_replid"); id != spare.Info(t, "replication")["master_replid"] {
		t.Errorf("relay replid %s, new master %s", id, spare.Info(t, "replication")["master_replid"])
	}
	waitOffsets(t, spare, relay, down...)
}

// TestSentinelDiscovery: a relay that Sentinel does not monitor follows the
// master it names, and +switch-master.
func TestRelayFollowsSentinel(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	populate(t, master, 0, 2000)
	spare := replicaOf(t, master.HostPort)
	inSync(t, 10*time.Second, master, spare)
	mh, mp := master.HostPort()
	var addrs []string
	for range 3 {
		s := redistest.StartSentinel(t,
			fmt.Sprintf("sentinel monitor mymaster %s %s 2", mh, mp),
			"sentinel down-after-milliseconds mymaster 1000",
			"sentinel failover-timeout mymaster 10000",
		)
		addrs = append(addrs, s.Addr())
	}
	relay := startRelay(t, "", func(c *Config) {
		c.Sentinels = addrs
		c.MasterName = "mymaster"
	})
	replica := replicaOf(t, relay.HostPort)
	inSync(t, 20*time.Second, master, replica)
	redistest.Eventually(t, 30*time.Second, func() error {
		if n := master.InfoInt(t, "connected_slaves"); n != 2 {
			return fmt.Errorf("master has %d replicas", n)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // let the Sentinels see both replicas
	master.Kill()
	sh, sp := spare.HostPort()
	redistest.Eventually(t, 60*time.Second, func() error {
		if got := relay.Status().MasterAddr; got != sh+":"+sp {
			return fmt.Errorf("relay follows %s", got)
		}
		return nil
	})
	writeKeys(t, spare, 0, 100)
	inSync(t, 30*time.Second, spare, replica)
	if n := relay.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("relay served %d full syncs, want 1", n)
	}
}

func TestAckPolicies(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	relay := startRelay(t, master.Addr(), func(c *Config) { c.AckPolicy = settings.AckPolicy{Kind: "downstream-min"} })
	reps := []*redistest.Server{replicaOf(t, relay.HostPort), replicaOf(t, relay.HostPort), replicaOf(t, relay.HostPort)}
	inSync(t, 10*time.Second, master, reps...)
	ctx := t.Context()
	cl := master.Client()
	wait := func(policy string) int64 {
		t.Helper()
		if err := relay.Client().ConfigSet(ctx, "ack-policy", policy).Err(); err != nil {
			t.Fatal(err)
		}
		if err := cl.Set(ctx, "k-"+policy, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		n, err := cl.Wait(ctx, 1, 1500*time.Millisecond).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := wait("downstream-min"); n != 1 {
		t.Fatalf("downstream-min with every replica up: WAIT = %d, want 1", n)
	}
	// One replica stops reading; it cannot acknowledge new writes.
	if err := reps[2].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer reps[2].Signal(syscall.SIGCONT)
	if n := wait("downstream-min"); n != 0 {
		t.Errorf("downstream-min with a stopped replica: WAIT = %d, want 0", n)
	}
	if n := wait("downstream-quorum:2"); n != 1 {
		t.Errorf("downstream-quorum:2 with 2 of 3 replicas up: WAIT = %d, want 1", n)
	}
	if n := wait("downstream-quorum:3"); n != 0 {
		t.Errorf("downstream-quorum:3 with 2 of 3 replicas up: WAIT = %d, want 0", n)
	}
	if n := wait("received"); n != 1 {
		t.Errorf("received: WAIT = %d, want 1", n)
	}
	reps[2].Signal(syscall.SIGCONT)
	inSync(t, 10*time.Second, master, reps...)
}

func TestReplicaofUnrelatedMaster(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 2000)
	relay := startRelay(t, master.Addr())
	reps := []*redistest.Server{replicaOf(t, relay.HostPort), replicaOf(t, relay.HostPort)}
	inSync(t, 10*time.Second, master, reps...)

	other := redistest.Start(t) // a different history, with data of its own
	populate(t, other, 0, 3000)
	oh, op := other.HostPort()
	if err := relay.Client().Do(t.Context(), "REPLICAOF", oh, op).Err(); err != nil {
		t.Fatal(err)
	}
	inSync(t, 30*time.Second, other, reps...)
	if n := other.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("new master sync_full = %d, want 1 (the relay's, then fan-out)", n)
	}
	if n := relay.InfoInt(t, "sync_full"); n != 4 {
		t.Errorf("relay served %d full syncs, want 4 (two per replica)", n)
	}
}

// startSentinels runs three Sentinels that watch master as "mymaster"
// (quorum 2, the given down-after time, and any extra lines of
// sentinel.conf) and waits until each has read the relay's INFO (priority
// 0: never promoted) and knows of at least replicas replicas, the relay
// among them. SENTINEL REPLICAS lists the relay only with
// replica-announced yes; SENTINEL INFO-CACHE shows every replica.
func startSentinels(t *testing.T, master *redistest.Server, downAfter time.Duration, relay *testRelay, replicas int, extra ...string) []*redistest.Server {
	t.Helper()
	mh, mp := master.HostPort()
	var sentinels []*redistest.Server
	for range 3 {
		sentinels = append(sentinels, redistest.StartSentinel(t, append([]string{
			fmt.Sprintf("sentinel monitor mymaster %s %s 2", mh, mp),
			fmt.Sprintf("sentinel down-after-milliseconds mymaster %d", downAfter.Milliseconds()),
			fmt.Sprintf("sentinel failover-timeout mymaster %d", 10*downAfter.Milliseconds()),
			"sentinel parallel-syncs mymaster 5",
		}, extra...)...))
	}
	for _, s := range sentinels {
		waitSentinelKnowsRelay(t, s, relay, replicas)
	}
	return sentinels
}

// waitSentinelKnowsRelay waits until Sentinel s has read the relay's INFO
// (its run_id, priority 0, replica_announced as configured) and counts at
// least replicas replicas of mymaster, the relay included; SENTINEL
// REPLICAS must list the relay exactly when it is announced.
func waitSentinelKnowsRelay(t *testing.T, s *redistest.Server, relay *testRelay, replicas int) {
	t.Helper()
	rh, rp := relay.HostPort()
	announced := relay.cfg.ReplicaAnnounced
	redistest.Eventually(t, 30*time.Second, func() error {
		cache, err := s.Client().Do(t.Context(), "SENTINEL", "INFO-CACHE", "mymaster").Slice()
		if err != nil {
			return err
		}
		text := fmt.Sprint(cache)
		switch {
		case !strings.Contains(text, "run_id:"+relay.runID):
			return fmt.Errorf("sentinel %s has not read the relay's INFO yet", s.Addr())
		case !strings.Contains(text, "slave_priority:0"):
			return fmt.Errorf("sentinel %s does not see priority 0", s.Addr())
		}
		reps, err := s.Client().Do(t.Context(), "SENTINEL", "REPLICAS", "mymaster").Slice()
		if err != nil {
			return err
		}
		listed := fmt.Sprint(reps)
		want := replicas
		if !announced {
			want--
		}
		switch {
		case announced != strings.Contains(listed, rh+":"+rp):
			return fmt.Errorf("sentinel %s lists the relay %v with replica-announced %v: %s", s.Addr(), !announced, announced, listed)
		case len(reps) < want:
			return fmt.Errorf("sentinel %s lists %d replicas, want %d", s.Addr(), len(reps), want)
		}
		return nil
	})
}

// waitFollowsPromoted waits until Sentinel has promoted spare and the relay
// streams from it.
func waitFollowsPromoted(t *testing.T, spare *redistest.Server, relay *testRelay) {
	t.Helper()
	sh, sp := spare.HostPort()
	redistest.Eventually(t, 60*time.Second, func() error {
		if role := spare.Info(t, "replication")["role"]; role != "master" {
			return fmt.Errorf("spare is still %s", role)
		}
		if got := relay.Status().MasterAddr; got != sh+":"+sp {
			return fmt.Errorf("relay follows %s", got)
		}
		if s := relay.Status().LinkState; s != LinkConnected {
			return fmt.Errorf("relay link %s", s)
		}
		return nil
	})
}
