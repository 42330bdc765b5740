package replstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// EOFMarkLen is the length of the mark that ends a diskless transfer
// (RDB_EOF_MARK_SIZE in Redis).
const EOFMarkLen = 40

// Payload describes the preamble of an RDB transfer, one of:
//
//	$<len>\r\n<len bytes of RDB>                (disk-based)
//	$EOF:<40 chars>\r\n<RDB bytes><same 40 chars> (diskless)
type Payload struct {
	Size int64  // -1 for the EOF form
	Mark []byte // the EOF mark, nil for the sized form
}

// ErrLineTooLong is returned for a reply line longer than the caller allows.
var ErrLineTooLong = errors.New("replstream: line too long")

// ReadLine reads one line ending in "\n" of at most max bytes and returns it
// without the trailing "\r\n" or "\n".
func ReadLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > max {
			return nil, ErrLineTooLong
		}
		line = append(line, frag...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			return nil, err
		}
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// ParsePayloadLine reads the line that precedes an RDB transfer. An empty
// line is a keepalive (keepalive=true); a line starting with '-' is the
// master aborting the sync.
func ParsePayloadLine(line []byte) (p Payload, keepalive bool, err error) {
	switch {
	case len(line) == 0:
		return p, true, nil
	case line[0] == '-':
		return p, false, fmt.Errorf("replstream: master aborted the transfer: %s", line)
	case line[0] != '$':
		return p, false, fmt.Errorf("replstream: bad transfer preamble %q", truncate(line, 64))
	}
	body := line[1:]
	if bytes.HasPrefix(body, []byte("EOF:")) {
		mark := body[4:]
		if len(mark) != EOFMarkLen {
			return p, false, fmt.Errorf("replstream: EOF mark of %d bytes, want %d", len(mark), EOFMarkLen)
		}
		return Payload{Size: -1, Mark: bytes.Clone(mark)}, false, nil
	}
	n, err := strconv.ParseInt(string(body), 10, 64)
	if err != nil || n < 0 {
		return p, false, fmt.Errorf("replstream: bad transfer length %q", truncate(line, 64))
	}
	return Payload{Size: n}, false, nil
}

// Preamble is the line that announces p on the wire.
func (p Payload) Preamble() []byte {
	if p.Mark != nil {
		return fmt.Appendf(nil, "$EOF:%s\r\n", p.Mark)
	}
	return fmt.Appendf(nil, "$%d\r\n", p.Size)
}

// CopyPayload copies the RDB bytes of a transfer announced by p from r to
// dst and returns how many it copied. For the sized form it reads exactly
// p.Size bytes. For the EOF form it stops when the bytes read so far end
// with the mark, as a stock replica does; the mark itself is not copied.
// Bytes that follow the payload stay unread in r.
func CopyPayload(dst io.Writer, r io.Reader, p Payload) (int64, error) {
	if p.Mark == nil {
		n, err := io.CopyN(dst, r, p.Size)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return n, err
	}
	const chunk = 64 << 10
	buf := make([]byte, chunk+EOFMarkLen)
	held := 0 // buf[:held] is read but not yet written; the last EOFMarkLen may be the mark
	var total int64
	for {
		n, err := r.Read(buf[held:])
		held += n
		if held >= EOFMarkLen && n > 0 && bytes.Equal(buf[held-EOFMarkLen:held], p.Mark) {
			w, werr := dst.Write(buf[:held-EOFMarkLen])
			return total + int64(w), werr
		}
		if held > EOFMarkLen {
			out := held - EOFMarkLen
			w, werr := dst.Write(buf[:out])
			total += int64(w)
			if werr != nil {
				return total, werr
			}
			held = copy(buf, buf[out:held])
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return total, err
		}
	}
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
