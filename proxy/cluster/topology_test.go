package cluster

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

func TestFollow(t *testing.T) {
	m := func(id string) Node { return Node{ID: id, Addr: id + ":1", Master: true} }
	r := func(id string) Node { return Node{ID: id, Addr: id + ":1"} }
	failed := func(n Node) Node { n.Failed = true; return n }
	low := []SlotRange{{0, 5460}}
	high := []SlotRange{{5461, 16383}}
	prev := Shard{Slots: low, Nodes: []Node{m("a"), r("b")}}
	cases := []struct {
		name   string
		prev   Shard
		shards []Shard
		want   string // master's ID; "" no master; "-" nothing
	}{
		{"first pick by slot", Shard{}, []Shard{{Slots: high, Nodes: []Node{m("c")}}, {Slots: low, Nodes: []Node{m("a"), r("b")}}}, "a"},
		{"unchanged", prev, []Shard{{Slots: high, Nodes: []Node{m("c")}}, {Slots: low, Nodes: []Node{m("a"), r("b")}}}, "a"},
		{"manual failover: the old master is a replica", prev, []Shard{{Slots: low, Nodes: []Node{m("b"), r("a")}}, {Slots: high, Nodes: []Node{m("c")}}}, "b"},
		{"master failed, not yet replaced", prev, []Shard{{Slots: low, Nodes: []Node{failed(m("a")), r("b")}}, {Slots: high, Nodes: []Node{m("c")}}}, ""},
		// Redis 7.0 lists a failed master that lost its slots as a shard of its own.
		{"master killed and replaced", prev, []Shard{{Nodes: []Node{failed(m("a"))}}, {Slots: low, Nodes: []Node{m("b")}}, {Slots: high, Nodes: []Node{m("c")}}}, "b"},
		{"the slot moved away: stay with the shard", prev, []Shard{{Slots: []SlotRange{{1, 5460}}, Nodes: []Node{m("a"), r("b")}}, {Slots: []SlotRange{{0, 0}, {5461, 16383}}, Nodes: []Node{m("c")}}}, "a"},
		{"shard gone: back to the slot", prev, []Shard{{Slots: []SlotRange{{0, 16383}}, Nodes: []Node{m("c")}}}, "c"},
		{"nothing serves the slot", Shard{}, []Shard{{Slots: high, Nodes: []Node{m("c")}}}, "-"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			topo := &Topology{Shards: tc.shards}
			s, ok := topo.Follow(tc.prev, 0)
			got := "-"
			if ok {
				mm, _ := s.Master()
				got = mm.ID
			}
			if got != tc.want {
				t.Fatalf("follows master %q, want %q (shard %+v)", got, tc.want, s)
			}
		})
	}
}

func TestSlotsString(t *testing.T) {
	s := Shard{Slots: []SlotRange{{0, 5460}, {10923, 10923}}}
	if got := s.SlotsString(); got != "0-5460,10923" {
		t.Fatalf("SlotsString = %q", got)
	}
}

// TestAskRealCluster reads a real cluster's topology with CLUSTER SHARDS
// and with CLUSTER SLOTS (as a server without CLUSTER SHARDS answers),
// and checks both against the cluster's own view.
func TestAskRealCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topo, err := Ask(ctx, c.Nodes[0].Addr(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	slots, err := c.Nodes[0].Client().ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	old, err := fromSlots(c.Nodes[0].Addr(), slots)
	if err != nil {
		t.Fatal(err)
	}
	for name, tp := range map[string]*Topology{"CLUSTER SHARDS": topo, "CLUSTER SLOTS": old} {
		if len(tp.Shards) != 3 {
			t.Fatalf("%s: %d shards, want 3", name, len(tp.Shards))
		}
		for _, slot := range []int{0, 8000, 16383} {
			s, ok := tp.Follow(Shard{}, slot)
			if !ok {
				t.Fatalf("%s: no shard for slot %d", name, slot)
			}
			master, replicas := c.Shard(t, slot)
			got, ok := s.Master()
			if !ok || got.Addr != master.Addr() || got.ID != c.ID(t, master) {
				t.Fatalf("%s: slot %d: master %+v, want %s", name, slot, got, master.Addr())
			}
			if len(s.Nodes) != 2 || s.Nodes[1].Addr != replicas[0].Addr() {
				t.Fatalf("%s: slot %d: nodes %+v, want the replica %s too", name, slot, s.Nodes, replicas[0].Addr())
			}
		}
	}
}

// TestWatcherFollowsFailover runs a Watcher on slot 0's shard through a
// CLUSTER FAILOVER and a SIGKILL of the new master.
func TestWatcherFollowsFailover(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	masters := make(chan string, 16)
	w := &Watcher{
		Seeds: c.Addrs(), Slot: 0, Interval: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx, nil, func(s Shard) {
			if m, ok := s.Master(); ok {
				select {
				case masters <- m.Addr:
				default: // called every round: the test reads what it waits for
				}
			}
		})
	}()
	defer func() { cancel(); <-done }()
	expect := func(want string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case got := <-masters:
				if got == want {
					return
				}
			case <-deadline:
				t.Fatalf("the watcher never named %s", want)
			}
		}
	}
	master, replicas := c.Shard(t, 0)
	expect(master.Addr())

	replicas[0].Do(t, "CLUSTER", "FAILOVER")
	expect(replicas[0].Addr())

	replicas[0].Kill() // the old master, now its replica, is promoted again
	expect(master.Addr())
}

// TestMalformedTopology: slot ranges outside 0-16383 or backwards, and a
// CLUSTER SLOTS entry without a master, are errors that name the node;
// a node without a usable address is left out.
func TestMalformedTopology(t *testing.T) {
	node := redis.Node{ID: "a", IP: "10.0.0.1", Port: 6379, Role: "master", Health: "online"}
	for _, tc := range []struct {
		name   string
		shards []redis.ClusterShard
		slots  []redis.ClusterSlot
	}{
		{name: "shards: past the last slot", shards: []redis.ClusterShard{{Slots: []redis.SlotRange{{Start: 0, End: 16384}}, Nodes: []redis.Node{node}}}},
		{name: "shards: backwards", shards: []redis.ClusterShard{{Slots: []redis.SlotRange{{Start: 9, End: 3}}, Nodes: []redis.Node{node}}}},
		{name: "shards: negative", shards: []redis.ClusterShard{{Slots: []redis.SlotRange{{Start: -1, End: 3}}, Nodes: []redis.Node{node}}}},
		{name: "slots: no master", slots: []redis.ClusterSlot{{Start: 0, End: 100}}},
		{name: "slots: past the last slot", slots: []redis.ClusterSlot{{Start: 0, End: 20000, Nodes: []redis.ClusterNode{{ID: "a", Addr: "10.0.0.1:6379"}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.shards != nil {
				_, err = fromShards("10.0.0.9:6379", tc.shards, false)
			} else {
				_, err = fromSlots("10.0.0.9:6379", tc.slots)
			}
			if err == nil || !strings.Contains(err.Error(), "10.0.0.9:6379") {
				t.Fatalf("error %v, want one naming the node asked", err)
			}
		})
	}
	topo, err := fromShards("n", []redis.ClusterShard{{
		Slots: []redis.SlotRange{{Start: 0, End: 10}},
		Nodes: []redis.Node{{ID: "x", Port: 6379, Role: "replica"}, node, {ID: "t", IP: "10.0.0.2", TLSPort: 6380, Role: "replica"}},
	}}, false)
	if err != nil {
		t.Fatal(err)
	}
	got := topo.Shards[0].Nodes
	if len(got) != 2 || got[0].Addr != "10.0.0.1:6379" || !got[0].Master || got[1].Addr != "10.0.0.2:6380" {
		t.Fatalf("nodes %+v: want the master first, the node without an address left out, a TLS-only node on its TLS port", got)
	}
}
