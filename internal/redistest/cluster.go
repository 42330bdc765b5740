package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/redis-relay/redis-relay/internal/redisproc"
)

// clusterBusOffset is how far above its client port a cluster node
// listens for the cluster bus (redis-server's CLUSTER_PORT_INCR, the
// default of cluster-port).
const clusterBusOffset = 10000

// Cluster is a Redis Cluster of real redis-server processes, built by
// redis-cli --cluster create: masters, each with its replicas. Nodes keep
// the order they were started in; which of them is a master changes with
// every failover, so ask Shard.
type Cluster struct {
	Nodes []*Server

	t      testing.TB
	client *redis.ClusterClient
}

// ClusterNodeTimeout is the cluster-node-timeout StartCluster gives its
// nodes: a master that stops answering is failed over within a few
// seconds of it.
const ClusterNodeTimeout = 2 * time.Second

// StartCluster starts masters*(1+replicas) redis-servers with
// cluster-enabled yes, joins them with redis-cli --cluster create
// (--cluster-replicas replicas), and waits until every node reports
// cluster_state:ok, knows every other node, and every replica's link to
// its master is up. Each node gets a free port whose cluster bus port
// (port+10000) is free too; args are appended to every node's arguments.
// The redis-cli next to redis-server is used, or $REDIS_CLI.
func StartCluster(t testing.TB, masters, replicas int, args ...string) *Cluster {
	t.Helper()
	cli := clusterCLI(t)
	c := &Cluster{t: t}
	nodeArgs := append([]string{
		"--repl-diskless-sync-delay", "0",
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout / time.Millisecond)),
		// CLUSTER SLOTS lists a replica only once its offset is above
		// zero, which an idle master's PING makes it.
		"--repl-ping-replica-period", "1",
	}, args...)
	for range masters * (1 + replicas) {
		c.Nodes = append(c.Nodes, startClusterNode(t, nodeArgs))
	}
	t.Cleanup(func() {
		if c.client != nil {
			c.client.Close()
		}
	})
	create := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		create = append(create, n.Addr())
	}
	create = append(create, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, create...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(t, 60*time.Second)
	return c
}

// startClusterNode starts one cluster node on a port whose cluster bus
// port is free as well.
func startClusterNode(t testing.TB, args []string) *Server {
	t.Helper()
	var last error
	for range 20 {
		port := FreePort(t)
		bus := port + clusterBusOffset
		if bus > 65535 {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(bus)))
		if err != nil {
			last = err
			continue
		}
		ln.Close()
		s, err := tryStart(t, redisproc.Options{Port: port, Args: args})
		if err == nil {
			return s
		}
		if !errors.Is(err, redisproc.ErrPortInUse) && !strings.Contains(err.Error(), "Address already in use") {
			t.Fatalf("redistest: start cluster node: %v", err)
		}
		last = err
	}
	t.Fatalf("redistest: no port with a free cluster bus port: %v", last)
	return nil
}

// clusterCLI finds redis-cli: $REDIS_CLI, next to redis-server, or on PATH.
func clusterCLI(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("REDIS_CLI"); p != "" {
		return p
	}
	if bin, err := redisproc.Binary(); err == nil {
		next := bin[:strings.LastIndex(bin, "/")+1] + "redis-cli"
		if _, err := os.Stat(next); err == nil {
			return next
		}
	}
	p, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redistest: redis-cli not found (%v); install it (apt-get install -y redis-tools) or name it in $REDIS_CLI", err)
	}
	return p
}

// Addrs returns every node's address, as cluster seeds.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// Client returns a go-redis cluster client over every node, closed when
// the test ends.
func (c *Cluster) Client() *redis.ClusterClient {
	if c.client == nil {
		c.client = redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:           c.Addrs(),
			Protocol:        2,
			DisableIdentity: true,
			DialTimeout:     2 * time.Second,
			ReadTimeout:     5 * time.Second,
			WriteTimeout:    5 * time.Second,
			MaxRedirects:    16,
			MaintNotificationsConfig: &maintnotifications.Config{
				Mode: maintnotifications.ModeDisabled,
			},
		})
	}
	return c.client
}

// alive returns the nodes whose process is running.
func (c *Cluster) alive() []*Server {
	var out []*Server
	for _, n := range c.Nodes {
		n.mu.Lock()
		up := n.proc != nil && !n.proc.Exited()
		n.mu.Unlock()
		if up {
			out = append(out, n)
		}
	}
	return out
}

// WaitHealthy waits until every running node reports cluster_state:ok,
// the nodes agree on which master serves which slots, every running node
// is listed in CLUSTER SLOTS (as a master or a replica), and every running
// replica's link to its master is up.
func (c *Cluster) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		nodes := c.alive()
		var view string
		for _, n := range nodes {
			info, err := n.Client().ClusterInfo(ctx).Result()
			if err != nil {
				return fmt.Errorf("%s: CLUSTER INFO: %w", n.Addr(), err)
			}
			if st := InfoField(info, "cluster_state"); st != "ok" {
				return fmt.Errorf("%s: cluster_state %s", n.Addr(), st)
			}
			if k := InfoField(info, "cluster_known_nodes"); k != strconv.Itoa(len(c.Nodes)) {
				return fmt.Errorf("%s: knows %s nodes, want %d", n.Addr(), k, len(c.Nodes))
			}
			v, listed, err := c.slotView(ctx, n)
			if err != nil {
				return err
			}
			if view != "" && v != view {
				return fmt.Errorf("%s sees slots served by %s, another node by %s", n.Addr(), v, view)
			}
			view = v
			for _, m := range nodes {
				if !listed[m.Addr()] {
					return fmt.Errorf("%s does not list %s in CLUSTER SLOTS", n.Addr(), m.Addr())
				}
			}
			repl := ParseInfo(n.Client().Info(ctx, "replication").Val())
			if repl["role"] == "slave" && repl["master_link_status"] != "up" {
				return fmt.Errorf("%s: replica's link to its master is %s", n.Addr(), repl["master_link_status"])
			}
		}
		return nil
	})
}

// slotView is n's map from slot ranges to master and replicas, as one
// string, and the addresses it lists.
func (c *Cluster) slotView(ctx context.Context, n *Server) (string, map[string]bool, error) {
	slots, err := n.Client().ClusterSlots(ctx).Result()
	if err != nil {
		return "", nil, fmt.Errorf("%s: CLUSTER SLOTS: %w", n.Addr(), err)
	}
	parts := make([]string, 0, len(slots))
	listed := make(map[string]bool)
	for _, s := range slots {
		if len(s.Nodes) == 0 {
			return "", nil, fmt.Errorf("%s: slots %d-%d have no master", n.Addr(), s.Start, s.End)
		}
		addrs := make([]string, len(s.Nodes))
		for i, node := range s.Nodes {
			addrs[i] = node.Addr
			listed[node.Addr] = true
		}
		parts = append(parts, fmt.Sprintf("%d-%d=%s", s.Start, s.End, strings.Join(addrs, "+")))
	}
	slices.Sort(parts)
	return strings.Join(parts, ","), listed, nil
}

// Shard returns the master that serves slot, as a running node sees it,
// and that master's running replicas.
func (c *Cluster) Shard(t testing.TB, slot int) (master *Server, replicas []*Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	for _, n := range c.alive() {
		slots, err := n.Client().ClusterSlots(ctx).Result()
		if err != nil {
			continue
		}
		for _, s := range slots {
			if slot < int(s.Start) || slot > int(s.End) || len(s.Nodes) == 0 {
				continue
			}
			master = c.byAddr(s.Nodes[0].Addr)
			for _, r := range s.Nodes[1:] {
				if rs := c.byAddr(r.Addr); rs != nil {
					replicas = append(replicas, rs)
				}
			}
			if master == nil {
				t.Fatalf("redistest: slot %d is served by %s, not a node of this cluster", slot, s.Nodes[0].Addr)
			}
			return master, replicas
		}
	}
	t.Fatalf("redistest: no running node names the master of slot %d", slot)
	return nil, nil
}

// byAddr finds the node listening at addr.
func (c *Cluster) byAddr(addr string) *Server {
	for _, n := range c.Nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// ID returns a node's cluster node ID (CLUSTER MYID).
func (c *Cluster) ID(t testing.TB, n *Server) string {
	t.Helper()
	id, ok := n.Do(t, "CLUSTER", "MYID").(string)
	if !ok || id == "" {
		t.Fatalf("redistest: %s: CLUSTER MYID gave no id", n.Addr())
	}
	return id
}

// Reshard moves slots slots from one master to another with redis-cli
// --cluster reshard (keys move with MIGRATE).
func (c *Cluster) Reshard(t testing.TB, from, to *Server, slots int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, clusterCLI(t), "--cluster", "reshard", to.Addr(),
		"--cluster-from", c.ID(t, from), "--cluster-to", c.ID(t, to),
		"--cluster-slots", strconv.Itoa(slots), "--cluster-yes")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster reshard: %v\n%s", err, out)
	}
}
