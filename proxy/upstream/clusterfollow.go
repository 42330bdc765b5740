package upstream

import (
	"context"
	"time"

	"github.com/redis-relay/redis-relay/proxy/cluster"
)

// Following one shard of a Redis Cluster, as Sentinel following follows
// one named master: package cluster reads the topology and picks the
// shard; this re-points the link to that shard's master. A cluster master
// serves PSYNC to any client, and a replica it promotes continues the old
// master's history through its replid2, so the relay continues partially
// after a failover exactly as after a Sentinel one (branch.go).
//
// The relay sends its master nothing that a -MOVED could answer: it reads
// the replication stream only. What it sees of a failover is its link
// dropping (a dead master; a demoted one that hangs up on its replicas
// once it follows the new master), so a lost link makes it ask the cluster
// at once, and every quarter second until the link is back.

// clusterAskTimeout bounds each dial and reply to a cluster node.
const clusterAskTimeout = 2 * time.Second

// ClusterShard is the shard a relay follows, for INFO and metrics.
type ClusterShard struct {
	Slots    string // slot ranges: "0-5460,10923"
	MasterID string // the cluster node ID of its master; "" while it has none
	Nodes    int    // nodes the cluster lists in the shard, the master included
}

// FollowCluster follows the shard that cluster-seeds and
// cluster-shard-slot name until ctx ends; without cluster-seeds it
// returns at once.
func (u *Link) FollowCluster(ctx context.Context) {
	cfg := u.cfg.Get()
	if len(cfg.ClusterSeeds) == 0 {
		return
	}
	w := &cluster.Watcher{
		Seeds: cfg.ClusterSeeds, Slot: cfg.ClusterShardSlot, Interval: cfg.ClusterPollInterval,
		Options: cluster.Options{Username: cfg.MasterUser, Password: cfg.MasterAuth, TLS: cfg.UpstreamTLS, Timeout: clusterAskTimeout},
		Logger:  u.logger,
		ReplID: func() string {
			id, _, ok := u.hist.Position()
			if !ok {
				return ""
			}
			return id.ReplID
		},
		Hurry: func() bool { // retrying the link; not streaming, syncing or held by the guard
			switch u.status.current() {
			case LinkConnect, LinkConnecting, LinkHandshake:
				return true
			}
			return false
		},
	}
	w.Run(ctx, u.linkLost, func(s cluster.Shard) {
		shard := ClusterShard{Slots: s.SlotsString(), Nodes: len(s.Nodes)}
		m, ok := s.Master()
		if ok {
			shard.MasterID = m.ID
		}
		u.mu.Lock()
		u.shard = shard
		u.mu.Unlock()
		if ok {
			u.followMaster(m.Addr, "cluster shard "+shard.Slots)
		}
	})
}
