package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
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
		shard := clusterShardOf(t, slot)
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

// ---- deploy/kubernetes/cluster: one StatefulSet, a pod per shard ----

// clusterPod is the command line one pod of the cluster StatefulSet runs,
// with its config files written into a temporary directory.
type clusterPod struct {
	name string
	args []string
}

// kubernetesClusterPods runs the init container's script of
// deploy/kubernetes/cluster for each pod of the StatefulSet, with /data and
// /etc/redis-relay moved into a temporary directory, and returns each
// pod's command line reading the config it wrote.
func kubernetesClusterPods(t *testing.T) []clusterPod {
	t.Helper()
	const file = "deploy/kubernetes/cluster/relays.yaml"
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, file)))
	var sts, cm k8sObject
	var replicas int
	var shards string
	for {
		var raw yaml.Node
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var o k8sObject
		if err := raw.Decode(&o); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		switch o.Kind {
		case "StatefulSet":
			sts = o
			var extra struct {
				Spec struct {
					Replicas int `yaml:"replicas"`
					Template struct {
						Spec struct {
							InitContainers []struct {
								Env []struct{ Name, Value string } `yaml:"env"`
							} `yaml:"initContainers"`
						} `yaml:"spec"`
					} `yaml:"template"`
				} `yaml:"spec"`
			}
			if err := raw.Decode(&extra); err != nil {
				t.Fatal(err)
			}
			replicas = extra.Spec.Replicas
			for _, ic := range extra.Spec.Template.Spec.InitContainers {
				for _, e := range ic.Env {
					if e.Name == "SHARDS" {
						shards = e.Value
					}
				}
			}
		case "ConfigMap":
			cm = o
		}
	}
	if len(sts.Spec.Template.Spec.InitContainers) != 1 || len(sts.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%s: want one init container and one container", file)
	}
	if shards != strconv.Itoa(replicas) {
		t.Errorf("%s: SHARDS %q but %d pods: one pod per shard", file, shards, replicas)
	}
	script := sts.Spec.Template.Spec.InitContainers[0].Command
	var pods []clusterPod
	for ord := range replicas {
		dir := t.TempDir()
		for _, d := range []string{"data", "etc/redis-relay"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		conf := strings.ReplaceAll(cm.Data["redis-relay.conf"], "dir /data", "dir "+filepath.Join(dir, "data"))
		if err := os.WriteFile(filepath.Join(dir, "etc/redis-relay/redis-relay.conf"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		argv := slices.Clone(script)
		for i := range argv {
			argv[i] = strings.ReplaceAll(strings.ReplaceAll(argv[i], "/data/", dir+"/data/"), "/etc/redis-relay/", dir+"/etc/redis-relay/")
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOSTNAME=redis-relay-cluster-" + strconv.Itoa(ord), "SHARDS=" + shards}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("init container of pod %d: %v\n%s", ord, err, out)
		}
		args := slices.Clone(sts.Spec.Template.Spec.Containers[0].Args)
		args[slices.Index(args, "/data/redis-relay.conf")] = filepath.Join(dir, "data/redis-relay.conf")
		pods = append(pods, clusterPod{name: "redis-relay-cluster-" + strconv.Itoa(ord), args: args})
	}
	return pods
}

// clusterShardOf is the shard of redis-cli's even split of three masters
// that serves slot.
func clusterShardOf(t *testing.T, slot string) int {
	shard := 0 // 0-5460, 5461-10922, 10923-16383
	for _, first := range []int{5461, 10923} {
		if atoi(t, slot) >= first {
			shard++
		}
	}
	return shard
}
