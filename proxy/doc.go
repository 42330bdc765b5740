// Package proxy is the redis-relay daemon: to its master it is one
// replica, to its own replicas it is a master.
//
// A Relay is built from four parts. Three are packages of their own, each
// owning its state and its lock and reached only through its exported
// methods and the interfaces it defines; the compiler keeps the walls.
// Imports run one way: proxy wires upstream and downstream, which both
// sit on history; everything sits on settings; upstream and downstream do
// not import each other (what both ends of a relay link share is in
// proxy/internal/wire).
//
//   - The history (package history: a Store): the replication ID and
//     offsets, the newest snapshot and the older ones kept for recovery,
//     the log of the stream after them, the empty-master guard, the
//     command tripwire, and state.json, which records all of it. Every
//     change goes through one lock, stateMu: compute the new state.json,
//     write it, then apply it in memory. It owns the data dir. The
//     replicas it serves are readers, an interface it defines
//     (history.Reader: online, the next offset sent, ended for a
//     replication ID change or for falling out of the retained log); for
//     each it keeps the log offset its full sync will stream from, which
//     a trim must keep.
//   - The upstream link (package upstream: a Link): the relay as a
//     replica. It connects, reads a promoted upstream's branch point and
//     drops a data-free tail past it, sends PSYNC, receives a snapshot
//     into the history or appends the stream to its log, ACKs (with a
//     downstream ACK policy, from what its AckSource, the server, reports
//     of its replicas' ACKs), refreshes the snapshot over a second
//     connection, and follows Sentinel or a Redis Cluster shard
//     (package cluster). It is the only appender of the
//     history's log and the writer of its snapshots and identity (REPLICAOF
//     and CONFIG SET from the admin commands change what it follows and
//     how; RELAY GUARD RELEASE, through history.Store.ReleaseGuard, is the
//     history's one other writer).
//   - The downstream server (package downstream: a Server): the relay as
//     a master. It accepts connections, answers the replication
//     handshake, and turns PSYNC or SYNC into a session: a full sync from
//     the history's snapshot and then a cursor on its log, or a cursor at
//     once. Sessions are the history's readers. The server keeps its own
//     sessions too, for CLIENT KILL, the replica list and the upstream
//     link's AckSource, and the pub/sub registry (downstream.PubSub).
//   - The admin commands (admin.go, configcmd.go, info.go, pubsub.go,
//     conncmd.go, nodata.go, procinfo*.go; still in this package): INFO,
//     ROLE, CONFIG, CLIENT, REPLICAOF, SHUTDOWN, LATENCY, RELAY, the
//     pub/sub that Sentinel uses, and AUTH, PING, ECHO, TIME, COMMAND,
//     SELECT and QUIT. Each is a handler in one table, adminCommands,
//     which the server dispatches through (downstream.Server.SetCommands);
//     any other command (GET, SET, ...) gets noData's error, which says
//     the relay holds no data and names the master. A handler is
//     given the arguments, a clientInfo (downstream.ClientInfo: what it
//     may know of the calling connection) and a buffer; it appends its
//     reply and returns it, with an effect (downstream.Effect) for what
//     the connection itself must change (AUTH's success, CLIENT SETNAME,
//     the subscription count that SUBSCRIBE mode and the idle timeout go
//     by, closing after QUIT or SHUTDOWN), which the server applies. No
//     handler writes to a connection or its buffer: CLIENT LIST and KILL
//     go through the server's connections, SUBSCRIBE and PUBLISH through
//     its pub/sub registry. The handlers read the other parts through the
//     Relay, which is in this package: the compiler does not keep them
//     out of its fields.
//
// The Relay (relay.go, status.go) only builds and wires them, and gathers
// each part's Status into one Status for INFO and metrics. Every part
// reads the configuration from one settings.Live, which CONFIG SET
// replaces whole.
//
// Every setting is defined once, in package settings: its names, type,
// default (the only copy of it), checks, whether CONFIG SET may change
// it, how CONFIG REWRITE writes it and whether it is a password. The
// config file, flags, environment variables and CONFIG GET/SET/REWRITE
// all read that table; Config here is settings.Config. Package resp
// (internal/resp) reads clients' requests and writes every reply and
// every command the relay sends upstream.
//
// Locks nest in one order: the history's stateMu, then its mu, then a
// snapshot's or the log's own (see package history); the reader methods
// the history calls under its mu take no lock. Every other lock is a leaf
// (no other lock is taken while it is held): settings.Live's; the
// upstream Link's mu, cmdMu and its link status's; the downstream
// Server's clientsMu and its PubSub's; the Relay's stopMu. No lock is held
// across network I/O but a downstream connection's own write lock, which
// keeps a published message from landing inside a reply; stateMu is held
// across the state.json write and its fsync.
//
// Point-in-time recovery (package recovery, outside the daemon) reads
// state.json through package history too.
package proxy
