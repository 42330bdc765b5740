package replstream

import (
	"bytes"
	"fmt"
)

// Limits bound what the Framer accepts from the network. A master's stream is
// exempt from Redis's client limits, so the defaults are generous; they exist
// so that a corrupt length is reported instead of trusted.
type Limits struct {
	MaxArgs int64 // elements in one command array
	MaxBulk int64 // bytes in one bulk string
}

// DefaultLimits match what a stock Redis master can produce.
var DefaultLimits = Limits{MaxArgs: 1 << 31, MaxBulk: 1 << 34}

// Command describes one complete command seen by the Framer. Name and Arg1
// hold at most the first nameCap bytes of the first two arguments. The
// Command is reused: it is only valid during the callback.
type Command struct {
	Offset Offset // offset of the '*' that starts it
	Len    int64  // bytes, including all framing
	Args   int64
	Name   []byte
	Arg1   []byte
}

// ProtocolError says where and why a stream stopped making sense.
type ProtocolError struct {
	Offset Offset // offset of the offending byte
	What   string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("replstream: protocol error at offset %d: %s", e.Offset, e.What)
}

const nameCap = 32

// Framer follows the RESP command stream of a replication link, byte by byte,
// without copying payloads: for each complete command it reports the offset
// and length, and the (prefix of the) command name and first argument. It
// accepts only what a master sends: arrays of bulk strings.
//
// The zero value is not ready; use NewFramer.
type Framer struct {
	lim   Limits
	next  Offset // offset of the next byte to be fed
	state fstate
	num   int64 // number being parsed (array or bulk length)
	nd    int   // digits seen in num
	args  int64 // arguments remaining in the current command
	argn  int64 // index of the current argument
	left  int64 // payload bytes remaining in the current bulk
	start Offset
	name  [nameCap]byte
	nlen  int
	arg1  [nameCap]byte
	alen  int
	cmd   Command // passed to the callback; reused so that framing does not allocate
}

type fstate uint8

const (
	fBegin     fstate = iota // expecting '*'
	fArrayLen                // digits of the array length
	fArrayLF                 // '\n' after the array length
	fBulkBegin               // expecting '$'
	fBulkLen                 // digits of the bulk length
	fBulkLF                  // '\n' after the bulk length
	fBulkBody                // payload bytes
	fBulkCR                  // '\r' after the payload
	fBulkLF2                 // '\n' after the payload
)

// NewFramer returns a framer whose first byte has offset next.
func NewFramer(next Offset, lim Limits) *Framer {
	if lim.MaxArgs <= 0 {
		lim.MaxArgs = DefaultLimits.MaxArgs
	}
	if lim.MaxBulk <= 0 {
		lim.MaxBulk = DefaultLimits.MaxBulk
	}
	return &Framer{lim: lim, next: next}
}

// Next is the offset of the next byte the framer expects.
func (f *Framer) Next() Offset { return f.next }

// AtBoundary reports whether everything fed so far ends on a command boundary.
func (f *Framer) AtBoundary() bool { return f.state == fBegin }

// Feed consumes p and calls fn (if not nil) for every command completed in it.
// It returns how many bytes of p are valid stream. On error, n < len(p) is the
// length of the valid prefix, and the framer must not be used again.
func (f *Framer) Feed(p []byte, fn func(*Command)) (n int, err error) {
	i := 0
	for i < len(p) {
		switch f.state {
		case fBegin:
			if p[i] != '*' {
				return i, f.errf(i, "expected '*', got %q", p[i])
			}
			f.start = f.next + Offset(i)
			f.num, f.nd, f.nlen, f.alen, f.argn = 0, 0, 0, 0, 0
			f.state = fArrayLen
			i++
		case fArrayLen, fBulkLen:
			c := p[i]
			if c == '\r' {
				if f.nd == 0 {
					return i, f.errf(i, "empty length")
				}
				if f.state == fArrayLen {
					if f.num < 1 || f.num > f.lim.MaxArgs {
						return i, f.errf(i, "array length %d out of range", f.num)
					}
					f.args = f.num
					f.state = fArrayLF
				} else {
					if f.num > f.lim.MaxBulk {
						return i, f.errf(i, "bulk length %d out of range", f.num)
					}
					f.left = f.num
					f.state = fBulkLF
				}
				i++
				continue
			}
			if c < '0' || c > '9' || f.nd >= 18 {
				return i, f.errf(i, "bad length byte %q", c)
			}
			f.num = f.num*10 + int64(c-'0')
			f.nd++
			i++
		case fArrayLF, fBulkLF, fBulkLF2:
			if p[i] != '\n' {
				return i, f.errf(i, "expected '\\n', got %q", p[i])
			}
			i++
			switch f.state {
			case fArrayLF:
				f.state = fBulkBegin
			case fBulkLF:
				f.state = fBulkBody
			case fBulkLF2:
				f.argn++
				if f.argn == f.args {
					f.state = fBegin
					if fn != nil {
						f.report(i, fn)
					}
				} else {
					f.state = fBulkBegin
				}
			}
		case fBulkBegin:
			if p[i] != '$' {
				return i, f.errf(i, "expected '$', got %q", p[i])
			}
			f.num, f.nd = 0, 0
			f.state = fBulkLen
			i++
		case fBulkBody:
			k := int64(len(p) - i)
			if k > f.left {
				k = f.left
			}
			if f.argn < 2 {
				f.capture(p[i : i+int(k)])
			}
			i += int(k)
			f.left -= k
			if f.left == 0 {
				f.state = fBulkCR
			}
		case fBulkCR:
			if p[i] != '\r' {
				return i, f.errf(i, "expected '\\r' after bulk, got %q", p[i])
			}
			f.state = fBulkLF2
			i++
		}
	}
	f.next += Offset(len(p))
	return len(p), nil
}

func (f *Framer) capture(b []byte) {
	buf, n := &f.name, &f.nlen
	if f.argn == 1 {
		buf, n = &f.arg1, &f.alen
	}
	*n += copy(buf[*n:], b)
}

func (f *Framer) report(i int, fn func(*Command)) {
	end := f.next + Offset(i)
	f.cmd = Command{
		Offset: f.start,
		Len:    end - f.start,
		Args:   f.args,
		Name:   f.name[:f.nlen],
		Arg1:   f.arg1[:f.alen],
	}
	fn(&f.cmd)
}

func (f *Framer) errf(i int, format string, args ...any) error {
	at := f.next + Offset(i)
	f.next = at
	return &ProtocolError{Offset: at, What: fmt.Sprintf(format, args...)}
}

// IsGetAck reports whether c is "REPLCONF GETACK <anything>".
func (c *Command) IsGetAck() bool {
	return c.Args == 3 && bytes.EqualFold(c.Name, []byte("replconf")) && bytes.EqualFold(c.Arg1, []byte("getack"))
}

// IsMulti reports whether c is MULTI.
func (c *Command) IsMulti() bool { return c.Args == 1 && bytes.EqualFold(c.Name, []byte("multi")) }

// endsTransaction reports whether c is EXEC or DISCARD.
func (c *Command) endsTransaction() bool {
	return c.Args == 1 && (bytes.EqualFold(c.Name, []byte("exec")) || bytes.EqualFold(c.Name, []byte("discard")))
}

// ResumePoint follows a command stream the way a stock replica applies it
// and remembers where such a replica would resume after losing its link: the
// offset just after the last whole command that is not inside MULTI/EXEC.
// Redis moves a replica's replication offset only there (commandProcessed in
// networking.c skips the update while the master client is in MULTI, and the
// partial command in its query buffer is dropped with the link), so a
// promoted replica's second_repl_offset always falls on such a point.
type ResumePoint struct {
	at   Offset // offset of the first byte after the last applied command
	inTx bool   // between MULTI and EXEC
}

// NewResumePoint starts at offset at, which must be such a point.
func NewResumePoint(at Offset) ResumePoint { return ResumePoint{at: at} }

// Add takes the next complete command of the stream.
func (r *ResumePoint) Add(c *Command) {
	end := c.Offset + c.Len
	switch {
	case c.IsMulti():
		r.inTx = true
	case c.endsTransaction():
		r.inTx = false
		r.at = end
	case !r.inTx:
		r.at = end
	}
}

// At is the offset a replica that saw everything so far would resume from.
func (r *ResumePoint) At() Offset { return r.at }
