// Package history is the replication history a relay serves, and the data
// dir that keeps it: the identity (replid, replid2 and their offsets), the
// newest accepted snapshot and the older ones kept for recovery, the log
// of the stream after them, the empty-master guard, the command tripwire,
// and state.json, which names all of it.
//
// A Store is the history as a store in the manner of a log store and a
// snapshot store. The upstream link writes it: snapshots (BeginFullSync,
// CommitFullSync, CommitRefresh), the identity (ShiftReplID), the
// tripwire's hold (Tripwire) and the stream, which it appends to the log
// itself (CurrentLog) as the log's only appender. The one other writer is
// RELAY GUARD RELEASE (ReleaseGuard), which installs a held snapshot or
// lifts the tripwire's hold. Downstream replicas read it (PsyncDecision,
// SyncSource, AnnouncedID, GoOnline, WaitHold) and register as its
// readers, an interface this package defines (Reader), so that a
// replication ID change or a trim can end them. A SnapshotFile is an RDB
// being received, readable while it arrives, whose last byte no reader
// gets before the store has accepted it.
//
// Every change of the identity, the snapshot or the log goes through one
// lock, stateMu: compute the new state.json under mu, write it (fsynced),
// then apply it under mu. Locks nest in that order: stateMu, then mu, then
// a SnapshotFile's or the log's own. The Reader methods the store calls
// under mu (Online, SetOnline, NextOffset) must take no lock of the
// store's; EndReader and String are called with no lock held. No lock is
// held across network I/O; stateMu is held across the state.json write and
// its fsync.
//
// state.json (State) is read by point-in-time recovery too, while the
// relay runs or with no relay at all. A Snapshot's Offset is the
// master_repl_offset it was taken at: the log that follows it starts at
// Offset+1. Tests watch or fail the store's syncs through Hooks and stop it
// at named crash points (settings.Config.CrashPoint).
package history
