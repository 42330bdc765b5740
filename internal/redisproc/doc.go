// Package redisproc starts redis-server processes and reads their INFO
// replies. It is the one way the tests, the benchmark, the demo and
// point-in-time recovery run a redis-server: on a port it picks (and picks
// again when another process takes it first) or one it is given, counted
// as started only once the server answering on the port reports the pid of
// the process started, so a stranger's server is never taken for ours.
package redisproc
