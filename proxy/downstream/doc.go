// Package downstream is the relay as a master: the port that replicas,
// operators, monitoring tools and Sentinel connect to.
//
// A Server accepts connections (server.go), refuses them in protected mode
// or past maxclients, reads their commands and answers the replication
// handshake itself (REPLCONF, PSYNC, SYNC), as well as MULTI/EXEC queuing
// and the checks made before any other command runs (NOAUTH until AUTH
// succeeds; only (UN)SUBSCRIBE, PING and QUIT while subscribed). Every
// other command goes to a Handler the relay wires in (SetCommands): the
// admin commands, which return their reply and an Effect for the
// connection, and never write to it. The pub/sub registry that Sentinel's
// hello channel uses is the server's (PubSub); its connections are the
// Subscribers PUBLISH delivers to.
//
// PSYNC or SYNC turns a connection into a session (session.go): a full
// sync from the history's snapshot, paced and queued (pacing.go), then a
// cursor on its log, or a cursor at once; compressed for a relay below
// that asks (compress.go). A tool that asks for rdb-only over SYNC
// (redis-cli --rdb) gets a snapshot holding everything the relay had when
// it asked, after a refresh the server asks the upstream link for, or an
// error (rdbonly.go). A client that asks for rdb-filter-only (redis-cli
// --replica, --functions-rdb) gets an RDB without keys written for it as
// of the current offset, with the function libraries followed through the
// log, and then the stream from there (filtered.go). Sessions are the
// history's readers
// (history.Reader), so that a replication ID change or a trim can end
// them, and the server reports their ACKs to the upstream link
// (DownstreamAcks, the upstream.AckSource) and nudges it when they move
// (Upstream). Each session ends with one CloseReason, the same value in
// the log line, the metric label and INFO.
//
// clientsMu (connections and sessions) and the registry's mu are leaf
// locks. No lock is held across network I/O but a connection's write lock
// (client.wmu), which keeps a published message from landing inside a
// reply.
package downstream
