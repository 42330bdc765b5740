package proxy

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

// Limits on what a downstream client may send. They bound memory per
// connection whatever the peer claims.
const (
	maxClientArgs   = 4096
	maxClientBulk   = 1 << 20
	maxInlineLength = 64 << 10
)

// errProtocol is a malformed request; the connection is answered with -ERR
// and closed, as Redis does.
type errProtocol struct{ what string }

func (e errProtocol) Error() string { return "Protocol error: " + e.what }

// readCommand reads one request: a RESP array of bulk strings, or an inline
// command line. An empty inline line returns (nil, nil): replicas send "\n"
// as a keepalive.
func readCommand(br *bufio.Reader) ([][]byte, error) {
	b, err := br.Peek(1)
	if err != nil {
		return nil, err
	}
	if b[0] != '*' {
		line, err := readClientLine(br, maxInlineLength)
		if err != nil {
			return nil, err
		}
		fields := bytes.Fields(line)
		if len(fields) > maxClientArgs {
			return nil, errProtocol{"too many inline arguments"}
		}
		return fields, nil
	}
	line, err := readClientLine(br, 32)
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseInt(string(line[1:]), 10, 64)
	if err != nil {
		return nil, errProtocol{"invalid multibulk length"}
	}
	if n > maxClientArgs {
		return nil, errProtocol{fmt.Sprintf("multibulk length %d over the limit of %d", n, maxClientArgs)}
	}
	if n <= 0 {
		return nil, nil
	}
	args := make([][]byte, 0, n)
	for range n {
		line, err := readClientLine(br, 32)
		if err != nil {
			return nil, err
		}
		if len(line) == 0 || line[0] != '$' {
			return nil, errProtocol{fmt.Sprintf("expected '$', got '%s'", truncateText(line, 16))}
		}
		size, err := strconv.ParseInt(string(line[1:]), 10, 64)
		if err != nil || size < 0 {
			return nil, errProtocol{"invalid bulk length"}
		}
		if size > maxClientBulk {
			return nil, errProtocol{fmt.Sprintf("bulk length %d over the limit of %d", size, maxClientBulk)}
		}
		arg := make([]byte, size+2)
		if _, err := io.ReadFull(br, arg); err != nil {
			return nil, err
		}
		if arg[size] != '\r' || arg[size+1] != '\n' {
			return nil, errProtocol{"bulk string not terminated by CRLF"}
		}
		args = append(args, arg[:size])
	}
	return args, nil
}

// readClientLine reads a line of at most max bytes without its "\r\n".
func readClientLine(br *bufio.Reader, max int) ([]byte, error) {
	line, err := replstream.ReadLine(br, max)
	if errors.Is(err, replstream.ErrLineTooLong) {
		return nil, errProtocol{"line too long"}
	}
	return line, err
}

func truncateText(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return strings.ToValidUTF8(string(b), "?")
}

// Reply encoders. They append to a buffer so a reply is written in one call.

func appendSimple(b []byte, s string) []byte { return append(append(append(b, '+'), s...), "\r\n"...) }
func appendError(b []byte, s string) []byte  { return append(append(append(b, '-'), s...), "\r\n"...) }
func appendInt(b []byte, n int64) []byte {
	return append(strconv.AppendInt(append(b, ':'), n, 10), "\r\n"...)
}
func appendBulk(b []byte, s string) []byte {
	b = strconv.AppendInt(append(b, '$'), int64(len(s)), 10)
	return append(append(append(b, "\r\n"...), s...), "\r\n"...)
}
func appendNull(b []byte) []byte { return append(b, "$-1\r\n"...) }
func appendArray(b []byte, n int) []byte {
	return append(strconv.AppendInt(append(b, '*'), int64(n), 10), "\r\n"...)
}

// appendCommand encodes args as a RESP array of bulk strings.
func appendCommand(b []byte, args ...string) []byte {
	b = appendArray(b, len(args))
	for _, a := range args {
		b = appendBulk(b, a)
	}
	return b
}
