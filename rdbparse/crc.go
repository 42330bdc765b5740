package rdbparse

import (
	"encoding/binary"
	"hash/crc64"
)

// jonesPoly is the reflected form of the CRC-64 "Jones" polynomial
// 0xAD93D23594C935A9 that Redis uses for RDB and DUMP payload checksums.
const jonesPoly = 0x95AC9329AC4BC9B5

// jonesTables holds the byte-at-a-time table in slot 0 and fifteen derived
// tables that let update fold sixteen input bytes per step (table k gives a
// byte's contribution k bytes before the end of the step). The base table
// comes from hash/crc64; the standard library's own fast path only exists
// for its two built-in polynomials, so the derived tables are computed here
// once.
var jonesTables = buildJonesTables()

func buildJonesTables() *[16][256]uint64 {
	var t [16][256]uint64
	t[0] = *crc64.MakeTable(jonesPoly)
	for i := 0; i < 256; i++ {
		v := t[0][i]
		for k := 1; k < 16; k++ {
			v = t[0][byte(v)] ^ (v >> 8)
			t[k][i] = v
		}
	}
	return &t
}

// CRC64 returns the Redis CRC-64 (Jones polynomial, reflected, initial value
// 0, no final xor) of p.
func CRC64(p []byte) uint64 {
	return updateCRC(0, p)
}

// updateCRC continues a Redis CRC-64 computation over p. Starting from 0 and
// feeding a byte sequence in any split gives the same result as one call.
func updateCRC(crc uint64, p []byte) uint64 {
	t := jonesTables
	for len(p) >= 16 {
		crc ^= binary.LittleEndian.Uint64(p)
		hi := binary.LittleEndian.Uint64(p[8:])
		crc = t[15][byte(crc)] ^
			t[14][byte(crc>>8)] ^
			t[13][byte(crc>>16)] ^
			t[12][byte(crc>>24)] ^
			t[11][byte(crc>>32)] ^
			t[10][byte(crc>>40)] ^
			t[9][byte(crc>>48)] ^
			t[8][byte(crc>>56)] ^
			t[7][byte(hi)] ^
			t[6][byte(hi>>8)] ^
			t[5][byte(hi>>16)] ^
			t[4][byte(hi>>24)] ^
			t[3][byte(hi>>32)] ^
			t[2][byte(hi>>40)] ^
			t[1][byte(hi>>48)] ^
			t[0][byte(hi>>56)]
		p = p[16:]
	}
	for len(p) >= 8 {
		crc ^= binary.LittleEndian.Uint64(p)
		crc = t[7][byte(crc)] ^
			t[6][byte(crc>>8)] ^
			t[5][byte(crc>>16)] ^
			t[4][byte(crc>>24)] ^
			t[3][byte(crc>>32)] ^
			t[2][byte(crc>>40)] ^
			t[1][byte(crc>>48)] ^
			t[0][byte(crc>>56)]
		p = p[8:]
	}
	for _, b := range p {
		crc = t[0][byte(crc)^b] ^ (crc >> 8)
	}
	return crc
}

// Checksum verdicts reported by Checker.Result and Summary.Checksum.
const (
	// ChecksumOK means the trailer's stored CRC equals the computed one.
	ChecksumOK = "ok"
	// ChecksumMismatch means a non-zero stored CRC differs from the computed one.
	ChecksumMismatch = "mismatch"
	// ChecksumDisabled means the stored CRC is zero: the server ran with
	// rdbchecksum no, so there is nothing to compare against.
	ChecksumDisabled = "disabled"
	// ChecksumMissing means the data does not end in an EOF opcode followed by
	// eight checksum bytes (too short, cut off, or an RDB older than version 5).
	ChecksumMissing = "missing"
	// ChecksumUnchecked means the trailer is there but the CRC was not
	// computed (Options.SkipChecksum: the caller checks it elsewhere).
	ChecksumUnchecked = "unchecked"
)

// Checker verifies an RDB checksum while the file streams past. Feed it every
// byte of the snapshot, in any chunking, through Write; it folds all but the
// most recent eight bytes into a running CRC, so when the stream ends the held
// back eight bytes are exactly the stored checksum and the CRC covers
// everything before them: the magic, the body and the 0xFF EOF opcode.
//
// A Checker costs one pass over the bytes the caller already has in hand and
// keeps a constant 17 bytes of state besides the CRC. It is not safe for
// concurrent use.
type Checker struct {
	crc   uint64
	size  int64
	tail  [8]byte // the most recent bytes, not yet folded into crc
	ntail int
	last  byte // the latest byte folded into crc: the EOF opcode at the end
	head  [9]byte
	nhead int
	noCRC bool // frame the trailer but do not compute the CRC
}

// NewChecker returns a Checker with nothing written yet.
func NewChecker() *Checker {
	return &Checker{}
}

// Write feeds p to the checker. It never fails.
func (c *Checker) Write(p []byte) (int, error) {
	n := len(p)
	if c.nhead < len(c.head) {
		c.nhead += copy(c.head[c.nhead:], p)
	}
	c.size += int64(n)
	if c.ntail+n <= len(c.tail) {
		c.ntail += copy(c.tail[c.ntail:], p)
		return n, nil
	}
	// Bytes that drop out of the eight-byte window: first the oldest held
	// bytes, then the front of p.
	excess := c.ntail + n - len(c.tail)
	fromTail := min(excess, c.ntail)
	if fromTail > 0 {
		if !c.noCRC {
			c.crc = updateCRC(c.crc, c.tail[:fromTail])
		}
		c.last = c.tail[fromTail-1]
		c.ntail = copy(c.tail[:], c.tail[fromTail:c.ntail])
	}
	if fromP := excess - fromTail; fromP > 0 {
		if !c.noCRC {
			c.crc = updateCRC(c.crc, p[:fromP])
		}
		c.last = p[fromP-1]
		p = p[fromP:]
	}
	c.ntail += copy(c.tail[c.ntail:], p)
	return n, nil
}

// Size returns the number of bytes written so far.
func (c *Checker) Size() int64 { return c.size }

// Sum returns the checksum stored in the last eight bytes seen (little
// endian), the CRC computed over every earlier byte, and whether the two
// agree. ok also holds when the stored value is 0, which is how Redis marks a
// file saved with checksums disabled. ok is false when fewer than nine bytes
// were written or the byte before the stored checksum is not the 0xFF EOF
// opcode.
func (c *Checker) Sum() (stored, computed uint64, ok bool) {
	r := c.Result()
	return r.Stored, r.Computed, r.Status == ChecksumOK || r.Status == ChecksumDisabled
}

// MagicOK reports whether the first nine bytes written look like an RDB
// header: "REDIS" and a four digit version, or "VALKEY" and three digits.
func (c *Checker) MagicOK() bool {
	_, _, err := parseMagic(c.head[:c.nhead])
	return err == nil
}

// CheckResult is a Checker's verdict on everything written to it.
type CheckResult struct {
	Size     int64  // bytes written
	Magic    bool   // the data starts with a valid RDB magic and version
	Trailer  bool   // the data ends with 0xFF followed by eight checksum bytes
	Stored   uint64 // checksum read from the last eight bytes (when Trailer)
	Computed uint64 // CRC-64 of all bytes but the last eight (when Trailer)
	Status   string // ChecksumOK, ChecksumMismatch, ChecksumDisabled or ChecksumMissing
}

// Result reports the verdict for the bytes written so far.
func (c *Checker) Result() CheckResult {
	r := CheckResult{Size: c.size, Magic: c.MagicOK(), Status: ChecksumMissing}
	if c.size < 9 || c.ntail != len(c.tail) || c.last != opEOF {
		return r
	}
	r.Trailer = true
	r.Stored = binary.LittleEndian.Uint64(c.tail[:])
	r.Computed = c.crc
	switch {
	case c.noCRC:
		r.Status = ChecksumUnchecked
	case r.Stored == 0:
		r.Status = ChecksumDisabled
	case r.Stored == r.Computed:
		r.Status = ChecksumOK
	default:
		r.Status = ChecksumMismatch
	}
	return r
}
