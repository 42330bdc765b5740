package proxy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// clusterShardRig is one shard of a test cluster with its relay and the
// relay's two plain replicas.
type clusterShardRig struct {
	slot     int
	relay    *testRelay
	replicas []*redistest.Server
}

// startClusterRigs starts a 3-master, 3-replica cluster and, for one slot
// of each shard, a relay following that shard with two plain replicas.
// The relays ask the cluster every poll; a poll longer than a test lets
// only a lost link make them ask.
func startClusterRigs(t *testing.T, poll time.Duration) (*redistest.Cluster, []*clusterShardRig) {
	t.Helper()
	c := redistest.StartCluster(t, 3, 1)
	var rigs []*clusterShardRig
	for _, slot := range []int{0, 8000, 16383} { // redis-cli's split: 0-5460, 5461-10922, 10923-16383
		relay := startRelay(t, "", func(cfg *Config) {
			cfg.ClusterSeeds, cfg.ClusterShardSlot, cfg.ClusterPollInterval = c.Addrs(), slot, poll
		})
		rig := &clusterShardRig{slot: slot, relay: relay}
		master, _ := c.Shard(t, slot)
		waitFollows(t, relay, master)
		for range 2 {
			rig.replicas = append(rig.replicas, replicaOf(t, relay.HostPort))
		}
		rigs = append(rigs, rig)
	}
	return c, rigs
}

// waitFollows waits until the relay streams from master.
func waitFollows(t *testing.T, relay *testRelay, master *redistest.Server) {
	t.Helper()
	redistest.Eventually(t, 60*time.Second, func() error {
		st := relay.Status()
		if st.MasterAddr != master.Addr() || st.LinkState != LinkConnected {
			return fmt.Errorf("relay follows %s (link %s), want %s", st.MasterAddr, st.LinkState, master.Addr())
		}
		return nil
	})
}

// shardsInSync waits until every relay's replicas have their shard
// master's digest.
func shardsInSync(t *testing.T, c *redistest.Cluster, rigs []*clusterShardRig) {
	t.Helper()
	for _, rig := range rigs {
		master, _ := c.Shard(t, rig.slot)
		inSync(t, 60*time.Second, master, rig.replicas...)
	}
}

// clusterLoad writes to every slot through a cluster client until
// stopped: strings, counters, hashes, lists with a trim, expiring keys and
// deletes, with values up to 4 KB. Writes refused while a shard has no
// master (a failover under way) are counted, not fatal.
type clusterLoad struct {
	cancel       context.CancelFunc
	wg           sync.WaitGroup
	ops, refused atomic.Int64
}

func startClusterLoad(t *testing.T, c *redistest.Cluster) *clusterLoad {
	ctx, cancel := context.WithCancel(context.Background())
	g := &clusterLoad{cancel: cancel}
	cc := c.Client()
	for w := range 3 {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 25))
			for i := 0; ctx.Err() == nil; i++ {
				pipe := cc.Pipeline()
				for j := range 30 {
					k := "ck:" + strconv.Itoa(rng.IntN(5000))
					switch j % 6 {
					case 0:
						pipe.Set(ctx, k, make([]byte, rng.IntN(4096)), 0)
					case 1:
						pipe.Incr(ctx, k+":n")
					case 2:
						pipe.HSet(ctx, k+":h", strconv.Itoa(i%7), i)
					case 3:
						pipe.LPush(ctx, k+":l", i)
						pipe.LTrim(ctx, k+":l", 0, 10)
					case 4:
						pipe.Set(ctx, k+":exp", i, time.Duration(50+rng.IntN(200))*time.Millisecond)
					case 5:
						pipe.Del(ctx, k)
					}
				}
				cmds, _ := pipe.Exec(ctx)
				if ctx.Err() != nil {
					return
				}
				failed := false
				for _, cmd := range cmds {
					if err := cmd.Err(); err != nil && err != redis.Nil {
						g.refused.Add(1)
						failed = true
					} else {
						g.ops.Add(1)
					}
				}
				if failed {
					time.Sleep(10 * time.Millisecond) // a shard without a master: let the cluster fail over
				}
			}
		}()
	}
	return g
}

// waitWrites waits until the load has written n more times.
func waitWrites(t *testing.T, g *clusterLoad, n int64) {
	t.Helper()
	want := g.ops.Load() + n
	redistest.Eventually(t, 30*time.Second, func() error {
		if got := g.ops.Load(); got < want {
			return fmt.Errorf("%d writes so far, waiting for %d", got, want)
		}
		return nil
	})
}

func (g *clusterLoad) Stop() (ops, refused int64) {
	g.cancel()
	g.wg.Wait()
	return g.ops.Load(), g.refused.Load()
}

// TestClusterRelaysFollowFailovers: a relay per shard of a 3-master,
// 3-replica cluster, two plain replicas behind each, a write load over all
// slots. A CLUSTER FAILOVER on one shard and a SIGKILLed master on another
// (the cluster fails it over itself): both relays re-point within seconds
// and continue partially (the promoted masters serve no full sync), their
// replicas never full-sync, and every shard's digests stay equal.
func TestClusterRelaysFollowFailovers(t *testing.T) {
	t.Parallel()
	c, rigs := startClusterRigs(t, time.Minute) // only a lost link makes them ask
	load := startClusterLoad(t, c)
	waitWrites(t, load, 20000)
	for _, rig := range rigs { // the load reaches every relay's replicas
		for _, r := range rig.replicas {
			redistest.Eventually(t, 30*time.Second, func() error {
				if n, _ := r.Client().DBSize(context.Background()).Result(); n < 100 {
					return fmt.Errorf("replica %s of relay %d holds %d keys", r.Addr(), rig.slot, n)
				}
				return nil
			})
		}
	}
	for _, rig := range rigs {
		if n := rig.relay.Status().FullSyncsServed; n != 2 {
			t.Fatalf("relay of slot %d: %d full syncs served, want 2 (its replicas')", rig.slot, n)
		}
	}

	// A planned failover on slot 0's shard.
	a := rigs[0]
	oldA, replicasA := c.Shard(t, a.slot)
	newA := replicasA[0]
	start := time.Now()
	newA.Do(t, "CLUSTER", "FAILOVER")
	promoted, repointed := waitPromotedAndFollowed(t, newA, a.relay)
	t.Logf("CLUSTER FAILOVER: promoted after %v, relay re-pointed %v after the promotion", promoted.Sub(start).Round(time.Millisecond), repointed.Sub(promoted).Round(time.Millisecond))

	// The master of slot 8000's shard dies under load; the cluster
	// promotes its replica.
	waitWrites(t, load, 5000)
	b := rigs[1]
	oldB, replicasB := c.Shard(t, b.slot)
	newB := replicasB[0]
	start = time.Now()
	oldB.Kill()
	promoted, repointed = waitPromotedAndFollowed(t, newB, b.relay)
	t.Logf("SIGKILL: promoted after %v, relay re-pointed %v after the promotion", promoted.Sub(start).Round(time.Millisecond), repointed.Sub(promoted).Round(time.Millisecond))

	c.WaitHealthy(t, 60*time.Second)
	ops, refused := load.Stop()
	t.Logf("load: %d writes, %d refused during the failovers", ops, refused)
	shardsInSync(t, c, rigs)

	for _, m := range []*redistest.Server{newA, newB} {
		if n := m.InfoInt(t, "sync_full"); n != 0 {
			t.Errorf("promoted master %s served %d full syncs, want 0 (the relay continues)", m.Addr(), n)
		}
	}
	if n := oldA.InfoInt(t, "sync_full"); n != 2 {
		t.Errorf("the demoted master %s served %d full syncs, want 2 (its replica's and the relay's at the start)", oldA.Addr(), n)
	}
	for _, rig := range rigs {
		st := rig.relay.Status()
		if st.FullSyncsServed != 2 || st.UpstreamFullSyncs != 1 {
			t.Errorf("relay of slot %d: %d full syncs served (want 2), %d taken from upstream (want 1)", rig.slot, st.FullSyncsServed, st.UpstreamFullSyncs)
		}
		for _, r := range rig.replicas {
			if n := r.InfoInt(t, "sync_full"); n != 0 {
				t.Errorf("a replica of relay %d served %d full syncs", rig.slot, n)
			}
		}
	}
	for i, rig := range rigs { // INFO names the shard each relay follows
		master, _ := c.Shard(t, rig.slot)
		want := []string{"0-5460", "5461-10922", "10923-16383"}[i]
		if got := rig.relay.InfoField(t, "cluster_shard_slots"); got != want {
			t.Errorf("relay of slot %d: INFO cluster_shard_slots %s, want %s", rig.slot, got, want)
		}
		if got, id := rig.relay.InfoField(t, "cluster_shard_master_id"), c.ID(t, master); got != id {
			t.Errorf("relay of slot %d: INFO cluster_shard_master_id %s, want %s (%s)", rig.slot, got, id, master.Addr())
		}
	}
	for _, rig := range rigs[:2] {
		if n := rig.relay.Status().UpstreamPartials; n < 1 {
			t.Errorf("relay of slot %d: %d partial resyncs with its upstream, want at least 1", rig.slot, n)
		}
	}
}

// waitPromotedAndFollowed waits until node is a master and the relay
// streams from it, and returns when each was first seen.
func waitPromotedAndFollowed(t *testing.T, node *redistest.Server, relay *testRelay) (promoted, followed time.Time) {
	t.Helper()
	redistest.Eventually(t, 30*time.Second, func() error {
		now := time.Now()
		if promoted.IsZero() {
			role, err := node.Client().Do(context.Background(), "ROLE").Slice()
			if err != nil || len(role) == 0 || role[0] != "master" {
				return fmt.Errorf("%s not promoted yet (%v)", node.Addr(), err)
			}
			promoted = now
		}
		st := relay.Status()
		if st.MasterAddr != node.Addr() || st.LinkState != LinkConnected {
			return fmt.Errorf("relay follows %s (link %s), want %s", st.MasterAddr, st.LinkState, node.Addr())
		}
		followed = now
		return nil
	})
	return promoted, followed
}

// TestClusterReshardUnderLoad moves 1000 slots (slot 0, which picked the
// first relay's shard, among them) from one shard to another with
// redis-cli --cluster reshard under a write load over all slots: each
// relay stays with its shard, names its new slot ranges, and its replicas
// end with their shard master's digest, without a full sync.
func TestClusterReshardUnderLoad(t *testing.T) {
	t.Parallel()
	c, rigs := startClusterRigs(t, 200*time.Millisecond)
	load := startClusterLoad(t, c)
	waitWrites(t, load, 20000)
	from, _ := c.Shard(t, 0)
	to, _ := c.Shard(t, 8000)
	start := time.Now()
	c.Reshard(t, from, to, 1000)
	t.Logf("1000 slots moved in %v", time.Since(start).Round(time.Millisecond))
	ops, refused := load.Stop()
	t.Logf("load: %d writes, %d refused", ops, refused)
	c.WaitHealthy(t, 60*time.Second)
	shardsInSync(t, c, rigs[1:]) // slots 8000 and 16383: their shards' masters
	inSync(t, 60*time.Second, from, rigs[0].replicas...)
	for i, want := range []string{"1000-5460", "0-999,5461-10922", "10923-16383"} {
		rig := rigs[i]
		redistest.Eventually(t, 30*time.Second, func() error {
			if got := rig.relay.InfoField(t, "cluster_shard_slots"); got != want {
				return fmt.Errorf("relay %d: INFO cluster_shard_slots %s, want %s", i, got, want)
			}
			return nil
		})
		st := rig.relay.Status()
		if st.FullSyncsServed != 2 || st.UpstreamFullSyncs != 1 {
			t.Errorf("relay %d: %d full syncs served (want 2), %d taken from upstream (want 1)", i, st.FullSyncsServed, st.UpstreamFullSyncs)
		}
	}
	if n, _ := from.Client().DBSize(context.Background()).Result(); n == 0 {
		t.Fatal("the source shard holds no keys")
	}

	// Restarted, the first relay finds its shard by its history, though
	// its slot is elsewhere now: no full sync from the master, none below.
	fullBefore := from.InfoInt(t, "sync_full")
	a := rigs[0]
	a.relay.Restart()
	waitFollows(t, a.relay, from)
	inSync(t, 60*time.Second, from, a.replicas...)
	redistest.Eventually(t, 30*time.Second, func() error {
		if n := len(a.relay.Replicas()); n != 2 {
			return fmt.Errorf("%d replicas back on the restarted relay", n)
		}
		return nil
	})
	if n := from.InfoInt(t, "sync_full"); n != fullBefore {
		t.Errorf("the restarted relay's master served %d full syncs, %d before", n, fullBefore)
	}
	if st := a.relay.Status(); st.FullSyncsServed != 0 || st.UpstreamFullSyncs != 0 {
		t.Errorf("restarted relay: %d full syncs served, %d taken from upstream; want none", st.FullSyncsServed, st.UpstreamFullSyncs)
	}
}

// TestClusterSeedsExcludeReplicaOf: a relay is refused both a master and
// cluster seeds, and CONFIG REWRITE of a relay following a cluster writes
// no replicaof (which would stop its next start).
func TestClusterSeedsExcludeReplicaOf(t *testing.T) {
	if _, err := New(Config{MasterAddr: "127.0.0.1:7000", ClusterSeeds: []string{"127.0.0.1:7001"}, DataDir: t.TempDir()}); err == nil {
		t.Fatal("New accepted replicaof and cluster-seeds together")
	}
	relay := startRelay(t, "", func(c *Config) { c.ClusterSeeds = []string{"127.0.0.1:1"} })
	relay.up.SetMaster("127.0.0.1:7002") // as the cluster follower does
	s := relay.Settings()
	if v, ok := s["replicaof"]; ok {
		t.Errorf("CONFIG REWRITE would write replicaof %q beside cluster-seeds", v)
	}
	if s["cluster-seeds"] != "127.0.0.1:1" {
		t.Errorf("CONFIG REWRITE would write cluster-seeds %q", s["cluster-seeds"])
	}
}
