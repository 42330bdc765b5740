package deploy_test

import (
	"net"
	"path"
	"slices"
	"strings"
	"testing"
)

// ---- deploy/cluster/docker-compose.yml: a relay per shard of a cluster ----

const clusterCompose = "deploy/cluster/docker-compose.yml"

func loadClusterCompose(t *testing.T) compose {
	t.Helper()
	var c compose
	parseYAML(t, clusterCompose, &c)
	if len(c.Services) == 0 {
		t.Fatalf("%s defines no services", clusterCompose)
	}
	return c
}

// clusterRelays names the services that build the relay's image; their
// build context is relative to the compose file's directory.
func clusterRelays(t *testing.T, c compose) []string {
	t.Helper()
	var names []string
	for name, s := range c.Services {
		if ctx, df, ok := s.build(); ok {
			if got := path.Join(path.Dir(clusterCompose), df); got != "deploy/Dockerfile" {
				t.Errorf("%s builds %s (context %s), not deploy/Dockerfile", name, got, ctx)
			}
			names = append(names, name)
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		t.Fatalf("%s has no relay", clusterCompose)
	}
	return names
}

// TestClusterCompose: six cluster nodes; a relay per shard, each asking
// cluster nodes of the file and picking a slot of a different shard of
// redis-cli's split of three masters; a plain replica behind each relay;
// pinned images and ports on loopback only.
func TestClusterCompose(t *testing.T) {
	c := loadClusterCompose(t)
	nodes := 0
	for name, s := range c.Services {
		args := s.args()
		if v, _ := flag(args, "--cluster-enabled"); v == "yes" {
			nodes++
			continue
		}
		if _, _, ok := s.build(); !ok {
			if _, tag, ok := strings.Cut(s.Image, ":"); !ok || tag == "latest" {
				t.Errorf("%s: image %q is not pinned to a tag", name, s.Image)
			}
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s: port %q is not published on 127.0.0.1 only", name, p)
			}
		}
	}
	if nodes != 6 {
		t.Errorf("%d cluster nodes, want 6 (three masters with a replica each)", nodes)
	}
	shards := map[int]string{}
	relays := clusterRelays(t, c)
	for _, name := range relays {
		args := c.Services[name].args()
		seeds, _ := flag(args, "--cluster-seeds")
		for _, seed := range strings.Split(seeds, ",") {
			host, port, err := net.SplitHostPort(seed)
			if err != nil {
				t.Errorf("%s: seed %q: %v", name, seed, err)
				continue
			}
			node, ok := c.Services[host]
			if v, _ := flag(node.args(), "--cluster-enabled"); !ok || v != "yes" || port != "6379" {
				t.Errorf("%s: seed %s is not a cluster node of the file on 6379", name, seed)
			}
		}
		slot, _ := flag(args, "--cluster-shard-slot")
		shard := 0 // redis-cli's split of three masters: 0-5460, 5461-10922, 10923-16383
		for _, first := range []int{5461, 10923} {
			if atoi(t, slot) >= first {
				shard++
			}
		}
		if other, ok := shards[shard]; ok {
			t.Errorf("%s and %s follow the same shard", name, other)
		}
		shards[shard] = name
		if _, ok := flag(args, "--replicaof"); ok {
			t.Errorf("%s: replicaof beside cluster-seeds", name)
		}
	}
	if len(shards) != 3 {
		t.Errorf("the relays follow %d shards, want 3", len(shards))
	}
	for name, s := range c.Services {
		args := s.args()
		for i, a := range args {
			if a == "--replicaof" && i+2 < len(args) && (!slices.Contains(relays, args[i+1]) || args[i+2] != "6380") {
				t.Errorf("%s: replicaof %s %s, not a relay of the file on 6380", name, args[i+1], args[i+2])
			}
		}
	}
}
