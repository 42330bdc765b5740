// Package history holds what a relay's data dir says about its history:
// state.json, which names the snapshot (and the older ones kept for
// recovery), the log directory that follows it, the identity (replid and
// offsets) they belong to and the command tripwire's hold. The relay
// writes it; point-in-time recovery reads it while the relay runs, or
// with no relay at all.
//
// A Snapshot's Offset is the master_repl_offset it was taken at: the log
// that follows it starts at Offset+1.
package history
