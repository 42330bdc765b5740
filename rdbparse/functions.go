package rdbparse

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Function libraries. Redis 7 keeps each library as its source code, one
// RDB_OPCODE_FUNCTION2 record (0xF5, then the code as an RDB string) per
// library. An RDB holds them after its aux fields and any module aux data
// and before the first database (rdbSaveFunctions); FUNCTION DUMP gives the
// same records followed by a two byte RDB version and a CRC-64 of what
// precedes it, both little-endian (createDumpPayload).

// ErrLibraries: function libraries in a form this package does not read
// (the 7.0 release candidate format, a damaged or newer dump payload).
var ErrLibraries = errors.New("rdbparse: unreadable function libraries")

// Libraries returns the code of every function library in an RDB, in file
// order, and its header. It reads only the head of the file: the records
// up to the first database, or up to the EOF opcode in a file without one.
func Libraries(r io.Reader) ([]string, *Header, error) {
	w := newWalker(bufio.NewReaderSize(r, 64<<10), -1)
	h, err := w.readMagic()
	if err != nil {
		return nil, nil, err
	}
	var libs []string
	for {
		w.reset()
		op, err := w.byte1()
		if err != nil {
			return nil, h, err
		}
		switch op {
		case opAux:
			err = w.readAux(h)
		case opModuleAux:
			if _, err = w.count(); err == nil {
				err = w.moduleData()
			}
		case opFunction2:
			var code string
			if code, err = w.library(); err == nil {
				libs = append(libs, code)
			}
		case opFunctionPreGA:
			return nil, h, fmt.Errorf("%w: library in the Redis 7.0 release candidate format (opcode 246)", ErrLibraries)
		default:
			return libs, h, nil
		}
		if err != nil {
			return nil, h, err
		}
	}
}

// DumpLibraries returns the code of every library in a FUNCTION DUMP
// payload (the argument of FUNCTION RESTORE), after checking its trailer:
// an RDB version no newer than maxVersion and the CRC-64.
func DumpLibraries(payload []byte, maxVersion int) ([]string, error) {
	if len(payload) < 10 {
		return nil, fmt.Errorf("%w: dump payload of %d bytes", ErrLibraries, len(payload))
	}
	body, trailer := payload[:len(payload)-10], payload[len(payload)-10:]
	if v := int(binary.LittleEndian.Uint16(trailer)); v > maxVersion {
		return nil, fmt.Errorf("%w: dump payload of RDB version %d, newer than %d", ErrLibraries, v, maxVersion)
	}
	if CRC64(payload[:len(payload)-8]) != binary.LittleEndian.Uint64(trailer[2:]) {
		return nil, fmt.Errorf("%w: dump payload checksum mismatch", ErrLibraries)
	}
	w := newWalker(bufio.NewReader(bytes.NewReader(body)), int64(len(body)))
	var libs []string
	for w.off < int64(len(body)) {
		w.reset()
		op, err := w.byte1()
		if err != nil {
			return nil, err
		}
		if op != opFunction2 {
			return nil, fmt.Errorf("%w: opcode %d in a dump payload", ErrLibraries, op)
		}
		code, err := w.library()
		if err != nil {
			return nil, err
		}
		libs = append(libs, code)
	}
	return libs, nil
}

// library reads the body of a function record: the library's code.
func (w *walker) library() (string, error) {
	s, err := w.readString(0)
	if err != nil {
		return "", err
	}
	v, err := w.value(s)
	return string(v), err
}

// AppendFunctionsRDB appends an RDB of the given version that holds the aux
// fields (name, value pairs, in order) and the libraries and no keys: what
// Redis sends a replica that asked for rdb-filter-only, then the EOF opcode
// and the CRC-64 of the whole.
func AppendFunctionsRDB(dst []byte, version int, aux []string, libs []string) []byte {
	start := len(dst)
	dst = fmt.Appendf(dst, "REDIS%04d", version)
	for i := 0; i+1 < len(aux); i += 2 {
		dst = append(dst, opAux)
		dst = appendRDBString(dst, aux[i])
		dst = appendRDBString(dst, aux[i+1])
	}
	for _, code := range libs {
		dst = append(dst, opFunction2)
		dst = appendRDBString(dst, code)
	}
	dst = append(dst, opEOF)
	return binary.LittleEndian.AppendUint64(dst, CRC64(dst[start:]))
}

// appendRDBString appends s as an uncompressed RDB string: its length in
// the RDB length encoding, then its bytes.
func appendRDBString(dst []byte, s string) []byte {
	n := uint64(len(s))
	switch {
	case n < 1<<6:
		dst = append(dst, byte(n))
	case n < 1<<14:
		dst = append(dst, byte(n>>8)|0x40, byte(n))
	case n <= 0xFFFFFFFF:
		dst = append(dst, 0x80)
		dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	default:
		dst = append(dst, 0x81)
		dst = binary.BigEndian.AppendUint64(dst, n)
	}
	return append(dst, s...)
}
