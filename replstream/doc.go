// Package replstream holds the bytes and rules of Redis replication, with no
// sockets in sight: RESP framing of the command stream, the framing of an RDB
// transfer, replication identities with the PSYNC decision rule, and the
// replication Log that every downstream session reads through a Cursor.
//
// Offsets follow Redis. The replication stream is a sequence of bytes numbered
// from 1; master_repl_offset is the number of the last byte written. A replica
// that has applied everything through offset N asks for more with
// "PSYNC <replid> N+1". A +FULLRESYNC <replid> F reply pairs an RDB that
// reflects the stream through byte F with the stream from byte F+1 onwards.
//
// The Log stores bytes [First, Next): Next is master_repl_offset+1, the offset
// the next appended byte will get. A PSYNC at offset p can be answered from the
// Log iff First <= p <= Next.
package replstream
