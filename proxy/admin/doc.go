// Package admin answers the commands an operator, a monitoring tool or
// Redis Sentinel sends to a relay's port: INFO, ROLE, CONFIG, CLIENT,
// REPLICAOF, SHUTDOWN, LATENCY, SLOWLOG, RELAY, SUBSCRIBE/UNSUBSCRIBE/
// PUBLISH (for Sentinel's hello channel), ACL, AUTH, HELLO, PING, ECHO,
// TIME, COMMAND, SELECT and QUIT, and the error every data command gets
// (the relay holds no data).
//
// Each command is a handler in one table, adminCommands; the downstream
// server dispatches through it (Handler, NotServed). A handler is given the
// arguments, what it may know of the calling connection
// (downstream.ClientInfo) and a buffer; it appends its reply, in RESP3
// when the connection chose it with HELLO 3 (maps, null, verbatim text,
// pushes), and returns it, with a downstream.Effect for what the
// connection itself must change (AUTH's or HELLO's success, the protocol
// HELLO chose, CLIENT SETNAME and SETINFO, the subscription count,
// closing after QUIT or SHUTDOWN), which the server applies. No handler
// writes to a connection or its buffer.
//
// An Admin holds no state and no lock of its own. It reads and changes the
// other parts only through interfaces it defines: Relay (the relay's
// status.Status and replica list, its settings and current config, and
// SHUTDOWN), Upstream (REPLICAOF), History (RELAY GUARD RELEASE, the
// held commands' warning) and Connections (CLIENT LIST and KILL), and
// through the server's pub/sub registry; the configuration it reads and
// CONFIG SET replaces is the one settings.Live.
package admin
