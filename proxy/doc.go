// Package proxy is the redis-relay daemon: to its master it is one
// replica, to its own replicas it is a master.
//
// A Relay is built from four parts, each a package that owns its state
// and its lock and is reached only through its exported methods and the
// interfaces it defines; the compiler keeps the walls. Imports run one
// way: proxy wires admin, which sits above downstream and upstream, which
// both sit on history; everything sits on settings. Upstream and
// downstream do not import each other (what both ends of a relay link
// share is in proxy/internal/wire). Package status holds the one Status
// struct the relay gathers and the admin commands and metrics read.
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
//     connection (when due, or when the server asks for a current one for
//     a tool's rdb-only), and follows Sentinel or a Redis Cluster shard (package
//     cluster). It is the only appender of the history's log and the
//     writer of its snapshots and identity (REPLICAOF and CONFIG SET from
//     the admin commands change what it follows and how; RELAY GUARD
//     RELEASE, through history.Store.ReleaseGuard, is the history's one
//     other writer).
//   - The downstream server (package downstream: a Server): the relay as
//     a master. It accepts connections, answers the replication
//     handshake, and turns PSYNC or SYNC into a session: a full sync from
//     the history's snapshot and then a cursor on its log, or a cursor at
//     once. A tool's rdb-only SYNC gets a current snapshot; an
//     rdb-filter-only client an RDB written for it as of the current
//     offset. Sessions are the history's readers. The server keeps its own
//     sessions too, for CLIENT KILL, the replica list and the upstream
//     link's AckSource, and the pub/sub registry (downstream.PubSub). It
//     keeps the replication handshake (REPLCONF, PSYNC, SYNC), MULTI/EXEC
//     queuing and the checks made before any other command runs (NOAUTH
//     until AUTH succeeds; then the ACL check of the connection's user on
//     every command, the handshake's and queued ones included, with
//     package acl: -NOPERM, ACL LOG, the denied count; only (UN)SUBSCRIBE,
//     PING and QUIT while subscribed), and dispatches every other command
//     to the handlers the relay wires in (SetCommands). It counts the
//     commands clients send (cmdstats.go), which INFO adds to the
//     commands the upstream link relays, and the bytes in and out.
//   - The admin commands (package admin): INFO, ROLE, CONFIG, CLIENT,
//     REPLICAOF, SHUTDOWN, LATENCY, SLOWLOG, RELAY, the pub/sub that
//     Sentinel uses, ACL, AUTH, HELLO, PING, ECHO, TIME, COMMAND, SELECT
//     and QUIT, and the error that data commands get. Each is a handler in
//     one table that returns its reply, in the connection's protocol (RESP3
//     after HELLO 3), and an effect for the calling connection, which the
//     server applies; no handler writes to a connection. They read the other
//     parts through interfaces the admin package defines (the Relay's
//     status, replica list, settings and SHUTDOWN; the upstream link's
//     REPLICAOF; the history's RELAY GUARD RELEASE; the server's
//     connections).
//
// The Relay (relay.go, status.go, acl.go, which loads the users) only
// builds and wires them, and gathers
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
// upstream Link's mu and cmdMu, its link status's and its connection's
// write lock; the downstream Server's clientsMu, its PubSub's, its
// pacers' and its full-sync slots'; the ACL's mu and its log's; the
// Relay's stopMu. The admin
// commands hold no lock of their own. No lock is held across network I/O
// but a connection's own write lock (a downstream connection's, which
// keeps a published message from landing inside a reply; the upstream
// connection's, which serialises what the ACK loop and the link's own
// goroutine write);
// stateMu is held across the state.json write and its fsync.
//
// Point-in-time recovery (package recovery, outside the daemon) reads
// state.json through package history too.
package proxy
