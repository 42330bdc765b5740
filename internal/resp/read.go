package resp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/redis-relay/redis-relay/replstream"
)

// Limits on what a client may send in one request. They bound memory per
// connection whatever the peer claims.
const (
	MaxArgs   = 4096     // arguments in one request
	MaxBulk   = 1 << 20  // bytes in one argument
	MaxInline = 64 << 10 // bytes in one inline command line
)

// ProtocolError is a malformed request; the connection is answered with
// -ERR and closed, as Redis does.
type ProtocolError struct{ what string }

func (e ProtocolError) Error() string { return "Protocol error: " + e.what }

// ReadCommand reads one request: a RESP array of bulk strings, or an
// inline command line. An empty inline line returns (nil, nil): replicas
// send "\n" as a keepalive.
func ReadCommand(br *bufio.Reader) ([][]byte, error) {
	b, err := br.Peek(1)
	if err != nil {
		return nil, err
	}
	if b[0] != '*' {
		line, err := readLine(br, MaxInline)
		if err != nil {
			return nil, err
		}
		fields := bytes.Fields(line)
		if len(fields) > MaxArgs {
			return nil, ProtocolError{"too many inline arguments"}
		}
		return fields, nil
	}
	line, err := readLine(br, 32)
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseInt(string(line[1:]), 10, 64)
	if err != nil {
		return nil, ProtocolError{"invalid multibulk length"}
	}
	if n > MaxArgs {
		return nil, ProtocolError{fmt.Sprintf("multibulk length %d over the limit of %d", n, MaxArgs)}
	}
	if n <= 0 {
		return nil, nil
	}
	args := make([][]byte, 0, n)
	for range n {
		line, err := readLine(br, 32)
		if err != nil {
			return nil, err
		}
		if len(line) == 0 || line[0] != '$' {
			return nil, ProtocolError{fmt.Sprintf("expected '$', got '%s'", Excerpt(line, 16))}
		}
		size, err := strconv.ParseInt(string(line[1:]), 10, 64)
		if err != nil || size < 0 {
			return nil, ProtocolError{"invalid bulk length"}
		}
		if size > MaxBulk {
			return nil, ProtocolError{fmt.Sprintf("bulk length %d over the limit of %d", size, MaxBulk)}
		}
		arg := make([]byte, size+2)
		if _, err := io.ReadFull(br, arg); err != nil {
			return nil, err
		}
		if arg[size] != '\r' || arg[size+1] != '\n' {
			return nil, ProtocolError{"bulk string not terminated by CRLF"}
		}
		args = append(args, arg[:size])
	}
	return args, nil
}

// readLine reads a line of at most max bytes without its "\r\n".
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	line, err := replstream.ReadLine(br, max)
	if errors.Is(err, replstream.ErrLineTooLong) {
		return nil, ProtocolError{"line too long"}
	}
	return line, err
}

// Excerpt is at most the first n bytes of b as valid UTF-8, for quoting a
// peer's bytes in an error or a log line.
func Excerpt(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return strings.ToValidUTF8(string(b), "?")
}
