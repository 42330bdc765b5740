// Package proxy is the redis-relay daemon: to its master it is one
// replica, to its own replicas it is a master.
//
// A Relay is built from four parts. Each owns its state and its lock. The
// history is a package of its own (proxy/history), reached only through
// its exported methods. The other three share this package: they mean to
// reach each other through methods and interfaces (ackSource,
// connections, subscriber), but the compiler does not keep them out of
// each other's fields.
//
//   - The history (package history: a Store): the replication ID and
//     offsets, the newest snapshot and the older ones kept for recovery,
//     the log of the stream after them, the empty-master guard, the
//     command tripwire, and state.json, which records all of it. Every
//     change goes through one lock, stateMu: compute the new state.json,
//     write it, then apply it in memory. It owns the data dir.
//   - The upstream link (upstream.go, upstreamconn.go, stream.go, ack.go,
//     linkdown.go, branch.go, source.go, refresh.go, sentinel.go,
//     commandcounts.go): the relay as a replica. It connects, reads a
//     promoted upstream's branch point and drops a data-free tail past
//     it, sends PSYNC, receives a snapshot into the history or appends
//     the stream to its log, ACKs (with a downstream ACK policy, from
//     what its ackSource, the server, reports of its replicas' ACKs),
//     refreshes the snapshot over a second connection, and follows
//     Sentinel. It is the history's only writer of the stream (REPLICAOF
//     and CONFIG SET from the admin commands change what it follows and
//     how; RELAY GUARD RELEASE is the history's one other writer).
//   - The downstream server (server.go, session.go, pacing.go,
//     compress.go): the relay as a master. It accepts connections,
//     answers the replication handshake, and turns PSYNC or SYNC into a
//     session: a full sync from the history's snapshot and then a cursor
//     on its log, or a cursor at once. Sessions register with the
//     history as its readers, an interface the history defines
//     (history.Reader: online, the next offset sent, ended for a
//     replication ID change or for falling out of the retained log), so
//     that a replication ID change or a trim can reach them; the history
//     keeps for each the log offset its full sync will stream from, which
//     a trim must keep. The server keeps its own sessions too, for CLIENT
//     KILL, the replica list and the upstream link's AckSource.
//   - The admin commands (admin.go, configcmd.go, info.go, pubsub.go,
//     conncmd.go, procinfo.go, nodata.go, aclcmd.go): INFO, ROLE, CONFIG,
//     CLIENT, REPLICAOF, SHUTDOWN, LATENCY, SLOWLOG, RELAY, the pub/sub
//     that Sentinel uses, ACL, and AUTH, HELLO, PING, ECHO, TIME, COMMAND,
//     SELECT and QUIT. Each is a handler in one table, adminCommands,
//     which the server dispatches through; any other command (GET, SET,
//     ...) gets noData's error, which says the relay holds no data and
//     names the master. A handler is given the arguments, a clientInfo
//     (what it may know of the calling connection: id, address, name,
//     whether it chose RESP3, the fields CLIENT LIST shows) and a buffer;
//     it appends its reply, in the connection's protocol, and returns it,
//     with an effect for what the connection itself must change (AUTH's or
//     HELLO's success, the protocol HELLO chose, CLIENT SETNAME and
//     SETINFO, the
//     subscription count that SUBSCRIBE mode and the idle timeout go by,
//     closing after QUIT or SHUTDOWN), which the server applies. No
//     handler writes to a connection or its buffer: CLIENT LIST and KILL
//     go through the server's connections interface, and PUBLISH hands
//     each message to a subscriber, which the server's connection
//     implements. The server keeps the replication handshake (REPLCONF,
//     PSYNC, SYNC), MULTI/EXEC queuing, and the checks made before any
//     handler runs: NOAUTH until AUTH succeeds, then the ACL check of
//     the connection's user on every command, the handshake's and queued
//     ones included (package proxy/acl, loaded by acl.go: -NOPERM, ACL LOG,
//     the denied count), and only (UN)SUBSCRIBE, PING and QUIT while
//     subscribed. It counts the commands clients send (cmdstats.go),
//     which INFO adds to the commands the upstream link relays. The
//     handlers read the other parts through the Relay.
//
// The Relay (relay.go, status.go) only builds and wires them, and gathers
// each part's view into a Status for INFO and metrics. Every part reads
// the configuration from one settings.Live, which CONFIG SET replaces
// whole.
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
// the history calls under its mu take no lock. Every other lock
// (settings.Live's, the upstream Link's mu, cmdMu and linkStatus.mu,
// server.clientsMu, admin.psMu, the ACL's mu and its log's) is a leaf:
// no other lock is taken while it is held. No lock is held across network I/O but a connection's own
// write lock (client.wmu), which keeps a published message from landing
// inside a reply; stateMu is held across the state.json write and its
// fsync.
//
// Point-in-time recovery (package recovery, outside the daemon) reads
// state.json through package history too.
package proxy
