package rdbparse

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// Errors reported for input that is not a complete, well formed snapshot.
// They are wrapped with the byte offset and details; test with errors.Is.
var (
	// ErrBadMagic means the data does not start with "REDIS" or "VALKEY"
	// followed by a numeric version.
	ErrBadMagic = errors.New("rdbparse: bad magic, not an rdb file")
	// ErrTruncated means the data ended inside a record, before the EOF
	// opcode and its checksum, or declared more bytes than it has.
	ErrTruncated = errors.New("rdbparse: truncated")
	// ErrCorrupt means a record could not be framed: an impossible length
	// encoding, an inner structure that contradicts its own size, an aux
	// field over the size cap and the like.
	ErrCorrupt = errors.New("rdbparse: corrupt")
	// ErrTrailingData means bytes follow the checksum after the EOF opcode.
	ErrTrailingData = errors.New("rdbparse: data after the end of the snapshot")
)

// Limits applied to aux fields, which are small in every real snapshot.
const (
	// MaxAuxLen caps the length of one aux key or value.
	MaxAuxLen = 1 << 20
	// MaxAuxFields caps the number of aux records accepted.
	MaxAuxFields = 1024
)

// Header is the start of an RDB file: the magic, the format version and the
// aux fields that the server writes before the first database.
type Header struct {
	Magic   string            // "REDIS" or "VALKEY"
	Version int               // RDB format version, e.g. 10 for Redis 7.0
	Aux     map[string]string // aux fields, integers rendered in decimal
	Len     int64             // bytes taken by the magic and the aux records
}

// ReplID returns the "repl-id" aux field: the replication ID the snapshot
// belongs to, or "" when the server saved it outside a replication chain.
func (h *Header) ReplID() string { return h.Aux["repl-id"] }

// ReplOffset returns the "repl-offset" aux field: the replication offset the
// snapshot reflects. ok is false when the field is absent or not a number.
func (h *Header) ReplOffset() (offset int64, ok bool) {
	return auxInt(h.Aux, "repl-offset")
}

// ReplStreamDB returns the "repl-stream-db" aux field: the database that the
// replication stream had selected when the snapshot was taken.
func (h *Header) ReplStreamDB() (db int, ok bool) {
	v, ok := auxInt(h.Aux, "repl-stream-db")
	if !ok || v < 0 || v > 1<<31-1 {
		return 0, false
	}
	return int(v), true
}

// RedisVer returns the version of the server that wrote the snapshot, from
// the "redis-ver" aux field, or "valkey-ver" when that is what is present.
func (h *Header) RedisVer() string {
	if v, ok := h.Aux["redis-ver"]; ok {
		return v
	}
	return h.Aux["valkey-ver"]
}

func auxInt(aux map[string]string, key string) (int64, bool) {
	s, ok := aux[key]
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// ReadHeader reads the magic and the aux fields from the start of an RDB
// stream and stops in front of the first record that is not an aux field.
// It reads through a bufio.Reader: when r is not already a *bufio.Reader it
// may consume bytes past the header, so pass a *bufio.Reader to go on
// reading the rest of the snapshot afterwards.
//
// Aux keys and values longer than MaxAuxLen, or more than MaxAuxFields of
// them, are reported as ErrCorrupt, so the work and memory spent here stay
// small whatever the input. When the data ends inside the aux section the
// fields read so far are returned together with an ErrTruncated error.
// ReadHeaderFile reads the header of the RDB file at path (see ReadHeader).
func ReadHeaderFile(path string) (*Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadHeader(f)
}

func ReadHeader(r io.Reader) (*Header, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 4096)
	}
	w := newWalker(br, -1)
	h, err := w.readMagic()
	if err != nil {
		return nil, err
	}
	for {
		next, err := br.Peek(1)
		if err != nil {
			h.Len = w.off
			return h, w.readErr(err)
		}
		if next[0] != opAux {
			h.Len = w.off
			return h, nil
		}
		w.reset()
		if _, err := w.byte1(); err != nil {
			return h, err
		}
		if err := w.readAux(h); err != nil {
			h.Len = w.off
			return h, err
		}
	}
}

// parseMagic checks the nine byte file signature.
func parseMagic(b []byte) (magic string, version int, err error) {
	if len(b) != 9 {
		return "", 0, ErrBadMagic
	}
	var digits []byte
	switch {
	case string(b[:5]) == "REDIS":
		magic, digits = "REDIS", b[5:]
	case string(b[:6]) == "VALKEY":
		magic, digits = "VALKEY", b[6:]
	default:
		return "", 0, fmt.Errorf("%w: starts with %q", ErrBadMagic, b)
	}
	for _, d := range digits {
		if d < '0' || d > '9' {
			return "", 0, fmt.Errorf("%w: version %q is not a number", ErrBadMagic, digits)
		}
		version = version*10 + int(d-'0')
	}
	return magic, version, nil
}
