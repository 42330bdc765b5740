package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Slots is the number of hash slots of a Redis Cluster: 0 to 16383.
const Slots = 16384

// SlotRange is the slots First to Last, both included.
type SlotRange struct{ First, Last int }

func (r SlotRange) String() string {
	if r.First == r.Last {
		return strconv.Itoa(r.First)
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// Node is one node of a shard.
type Node struct {
	ID     string // the node ID (40 hex digits)
	Addr   string // host:port clients (and the relay) reach it at
	Master bool   // the shard's master, as the node asked sees it
	Failed bool   // the node asked holds it failing (CLUSTER SHARDS' health fail)
}

// Shard is a master and its replicas, and the slots they serve.
type Shard struct {
	Slots []SlotRange // ascending; empty for a shard that serves no slot
	Nodes []Node      // the master first, when there is one
}

// Master returns the shard's master, unless it has none or the one it has
// is failing (its replacement not yet elected).
func (s Shard) Master() (Node, bool) {
	for _, n := range s.Nodes {
		if n.Master && !n.Failed {
			return n, true
		}
	}
	return Node{}, false
}

// Owns reports whether the shard serves slot.
func (s Shard) Owns(slot int) bool {
	for _, r := range s.Slots {
		if slot >= r.First && slot <= r.Last {
			return true
		}
	}
	return false
}

// SlotsString lists the shard's slot ranges as CLUSTER NODES does:
// "0-5460,10923".
func (s Shard) SlotsString() string {
	parts := make([]string, len(s.Slots))
	for i, r := range s.Slots {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// has reports whether the shard holds a node with this ID.
func (s Shard) has(id string) bool {
	return slices.ContainsFunc(s.Nodes, func(n Node) bool { return n.ID == id })
}

// Topology is the cluster's shards as one node described them.
type Topology struct {
	From   string // the node asked
	Shards []Shard
}

// Follow returns the shard of t to follow, given prev, the shard followed
// so far: of the shards that hold a node of prev, one with a master that
// is not failing, the one holding prev's master first; else one of them
// without (its master failed, the replacement not yet elected). When prev
// is empty or none of its nodes is in t, the shard that serves slot.
//
// A failover keeps a shard's nodes together: the promoted replica's shard
// holds the old master as a replica, or (Redis 7.0 lists a failed master
// that lost its slots as a shard of its own) the other nodes of prev.
func (t *Topology) Follow(prev Shard, slot int) (Shard, bool) {
	holdsPrev := func(s Shard) bool {
		return slices.ContainsFunc(prev.Nodes, func(n Node) bool { return s.has(n.ID) })
	}
	live := func(s Shard) bool { _, ok := s.Master(); return ok }
	if m, ok := prev.Master(); ok {
		for _, s := range t.Shards {
			if s.has(m.ID) && live(s) {
				return s, true
			}
		}
	}
	for _, s := range t.Shards {
		if holdsPrev(s) && live(s) {
			return s, true
		}
	}
	for _, s := range t.Shards {
		if holdsPrev(s) {
			return s, true
		}
	}
	for _, s := range t.Shards {
		if s.Owns(slot) {
			return s, true
		}
	}
	return Shard{}, false
}

// Addrs returns the address of every node in t.
func (t *Topology) Addrs() []string {
	var out []string
	for _, s := range t.Shards {
		for _, n := range s.Nodes {
			out = append(out, n.Addr)
		}
	}
	return out
}

// Options say how to reach the cluster's nodes.
type Options struct {
	Username, Password string
	TLS                *tls.Config   // nil: plain TCP; a ServerName left empty is set to each node's host
	Timeout            time.Duration // per dial and per reply; 0: 5 s
}

// dial returns a one-connection client for the node at addr, and a context
// that bounds the exchange with it; done releases both.
func (o Options) dial(ctx context.Context, addr string) (*redis.Client, context.Context, func()) {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	c := redis.NewClient(&redis.Options{
		Addr: addr, Username: o.Username, Password: o.Password, TLSConfig: nodeTLS(o.TLS, addr),
		Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1,
		DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	ctx, cancel := context.WithTimeout(ctx, 2*timeout)
	return c, ctx, func() { cancel(); c.Close() }
}

// Ask asks the node at addr for the topology: CLUSTER SHARDS, or CLUSTER
// SLOTS when the node does not know that command.
func Ask(ctx context.Context, addr string, o Options) (*Topology, error) {
	c, ctx, done := o.dial(ctx, addr)
	defer done()
	shards, err := c.ClusterShards(ctx).Result()
	var rerr redis.Error
	switch {
	case err == nil:
		return fromShards(addr, shards, o.TLS != nil)
	case errors.As(err, &rerr) && unknownCommand(rerr.Error()):
		slots, err := c.ClusterSlots(ctx).Result()
		if err != nil {
			return nil, fmt.Errorf("CLUSTER SLOTS at %s: %w", addr, err)
		}
		return fromSlots(addr, slots)
	default:
		return nil, fmt.Errorf("CLUSTER SHARDS at %s: %w", addr, err)
	}
}

// ReplIDs asks the node at addr for its replication IDs (INFO
// replication's master_replid and master_replid2).
func ReplIDs(ctx context.Context, addr string, o Options) (id, id2 string, err error) {
	c, ctx, done := o.dial(ctx, addr)
	defer done()
	text, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return "", "", fmt.Errorf("INFO replication at %s: %w", addr, err)
	}
	for line := range strings.SplitSeq(text, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		switch k {
		case "master_replid":
			id = v
		case "master_replid2":
			id2 = v
		}
	}
	return id, id2, nil
}

// unknownCommand reports whether an error reply says the server lacks the
// command (a server older than CLUSTER SHARDS).
func unknownCommand(msg string) bool {
	msg = strings.ToLower(msg)
	return strings.Contains(msg, "unknown subcommand") || strings.Contains(msg, "unknown command")
}

// fromShards reads CLUSTER SHARDS. A node's address is its endpoint (the
// form the cluster prefers clients to use: ip, hostname or unknown) or else
// its ip, with its TLS port on a TLS link.
func fromShards(from string, shards []redis.ClusterShard, useTLS bool) (*Topology, error) {
	t := &Topology{From: from}
	for _, s := range shards {
		var sh Shard
		for _, r := range s.Slots {
			if r.Start < 0 || r.End >= Slots || r.Start > r.End {
				return nil, fmt.Errorf("CLUSTER SHARDS at %s: bad slot range %d-%d", from, r.Start, r.End)
			}
			sh.Slots = append(sh.Slots, SlotRange{int(r.Start), int(r.End)})
		}
		for _, n := range s.Nodes {
			host := n.Endpoint
			if host == "" || host == "?" {
				host = n.IP
			}
			port := n.Port
			if useTLS && n.TLSPort > 0 || port == 0 {
				port = n.TLSPort
			}
			if host == "" || port <= 0 || port > 65535 {
				continue // not reachable (yet): nothing to follow there
			}
			node := Node{ID: n.ID, Addr: net.JoinHostPort(host, strconv.FormatInt(port, 10)), Master: n.Role == "master", Failed: n.Health == "fail"}
			if node.Master {
				sh.Nodes = append([]Node{node}, sh.Nodes...)
			} else {
				sh.Nodes = append(sh.Nodes, node)
			}
		}
		slices.SortFunc(sh.Slots, func(a, b SlotRange) int { return a.First - b.First })
		t.Shards = append(t.Shards, sh)
	}
	return t, nil
}

// fromSlots reads CLUSTER SLOTS: one entry per slot range, master first;
// the ranges of one master make one shard.
func fromSlots(from string, slots []redis.ClusterSlot) (*Topology, error) {
	t := &Topology{From: from}
	byMaster := make(map[string]int)
	for _, s := range slots {
		if s.Start < 0 || s.End >= Slots || s.Start > s.End || len(s.Nodes) == 0 {
			return nil, fmt.Errorf("CLUSTER SLOTS at %s: bad entry for slots %d-%d", from, s.Start, s.End)
		}
		key := s.Nodes[0].ID
		if key == "" {
			key = s.Nodes[0].Addr
		}
		i, ok := byMaster[key]
		if !ok {
			var sh Shard
			for j, n := range s.Nodes {
				sh.Nodes = append(sh.Nodes, Node{ID: n.ID, Addr: n.Addr, Master: j == 0})
			}
			i = len(t.Shards)
			byMaster[key] = i
			t.Shards = append(t.Shards, sh)
		}
		t.Shards[i].Slots = append(t.Shards[i].Slots, SlotRange{s.Start, s.End})
	}
	for i := range t.Shards {
		slices.SortFunc(t.Shards[i].Slots, func(a, b SlotRange) int { return a.First - b.First })
	}
	return t, nil
}

// nodeTLS returns the TLS settings for one node: base with the host of
// addr as the server name to verify, unless base names one.
func nodeTLS(base *tls.Config, addr string) *tls.Config {
	if base == nil {
		return nil
	}
	c := base.Clone()
	if c.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			c.ServerName = host
		}
	}
	return c
}
