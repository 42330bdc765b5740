// Package rdbparse reads Redis RDB snapshots as the relay stores them: it
// checks the CRC-64 trailer, pulls the replication identity out of the aux
// header, and summarises the keyspace, all in one pass over the bytes.
//
// The model has three layers. A Checker is an io.Writer that folds every
// byte it is fed into the Redis CRC-64 (Jones polynomial) while holding back
// the last eight, so when the stream ends it can compare the stored checksum
// with the computed one without a second read. ReadHeader reads only the
// magic and the aux fields, cheaply and with hard size caps, which is what
// the relay needs to check that a snapshot's repl-id and repl-offset match
// the +FULLRESYNC reply it came with. Parse does the full walk: an internal
// framer reads the file record by record, counting keys, expiries, types and
// function libraries, and checks every length against the data that is
// actually there before the record is passed, byte for byte, to the
// github.com/hdt3213/rdb decoder, which builds the values and reports their
// element counts and estimated memory.
//
// The framer exists because the decoder sizes its buffers from lengths
// declared in the file: a corrupt 4 GiB string length or element count in a
// 1 KiB file would otherwise be honoured before the data is found missing.
// Handing the decoder only whole, already framed records, after checking the
// counts hidden inside intsets and stream listpacks and bounding LZF
// expansion, keeps every allocation proportional to bytes really read.
// Module values and module aux data are framed but not forwarded. When the
// decoder fails on a record, or a record type is unknown, Parse still
// returns a Summary with Unparsed explaining what was skipped, and reads the
// rest of the input through the Checker so the checksum verdict stands.
//
// Function libraries have their own small readers and one writer
// (functions.go): Libraries reads the code of every library from the head
// of a file, DumpLibraries from a FUNCTION DUMP payload, and
// AppendFunctionsRDB writes an RDB that holds aux fields and libraries and
// no keys, as Redis writes for a replica that asked for rdb-filter-only.
package rdbparse
