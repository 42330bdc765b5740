// Package cluster reads a Redis Cluster's topology and picks the shard a
// relay follows.
//
// A relay in front of a cluster follows one shard: the master of the
// shard that owned a chosen slot when the relay first asked, through every
// failover after that. Topology asks one node for the shards (CLUSTER
// SHARDS, Redis 7.0 and later; CLUSTER SLOTS on older servers, which lists
// only the shards that own slots and only the nodes not failing).
// Topology.Follow finds the followed shard again in a newer topology by its
// nodes, not by the slot: a failover changes which node is the master but
// keeps the nodes of the shard (the old master becomes a replica, or is
// failing), while resharding moves slots, the chosen one included,
// without moving a shard's history elsewhere. A caller that already holds
// a history (a restarted relay) names its replication ID, and the Watcher
// first looks for the shard whose master continues it.
//
// A Watcher asks the seeds (and every node it has learnt of) for the
// topology on a timer, at once when poked, and quickly while its caller
// says it is in a hurry (its link to the master is down), and reports the
// followed shard after every round. The package knows nothing of the
// relay: its caller re-points its link.
package cluster
