// Package upstream is the relay as a replica: the link to its master.
//
// A Link connects to the master (or the upstream relay) named by
// replicaof, REPLICAOF or Sentinel, and keeps that link until its context
// ends: handshake (AUTH, REPLCONF, capa eof and psync2, the compressed
// link's relay-zstd), a promoted upstream's branch point and the data-free
// tail past it dropped from the log (branch.go), PSYNC, then either a
// snapshot received into the history (a full sync, or one taken from the
// snapshot source first, source.go) or the stream appended to the
// history's log (stream.go), with every command counted and shown to the
// command tripwire. It ACKs what the log holds durably, or, with a
// downstream ACK policy, what the downstream replicas acknowledged
// (ack.go: an AckSource, which the downstream server implements). A
// second connection refreshes the snapshot (refresh.go) when it is due or
// when the downstream server asks for a current one (AskRefresh, for a
// tool's rdb-only), and Sentinel may
// be followed directly (sentinel.go), or one shard of a Redis Cluster
// (clusterfollow.go: package proxy/cluster reads the topology and picks
// the shard's master; a lost link makes it ask at once). Why the link went
// down is one classifier over typed reasons (linkdown.go).
//
// The Link is the only appender of the history's log and the writer of
// its snapshots and identity (package history). It reads the settings
// from one settings.Live. mu (the master's address and the snapshot
// source's record) and cmdMu (the published command counts) are leaf
// locks, as is linkStatus.mu; no lock is held across network I/O. The
// run goroutine owns the connection, the framer and the resume point.
package upstream
