// Package recovery rebuilds the dataset a relay's data dir held at a past
// point: point-in-time recovery. The data dir holds a snapshot and the exact
// stream after it, with the time each part arrived (the log's time index);
// state.json (package history) says which files they are. Recover rebuilds
// the dataset as of a point with the engine that matters: a scratch
// redis-server is fed the snapshot and the stream up to the point exactly
// as a replica is fed (+FULLRESYNC, the RDB, the commands), and its dataset
// is digested and saved while it is still that replica. The point always
// falls on a resume point: whole commands, never half a MULTI/EXEC block.
//
// The data dir is only read, so it may belong to a running relay or be a
// copy taken off a broken host. Nothing here is part of the daemon.
package recovery
