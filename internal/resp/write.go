package resp

import (
	"strconv"
	"strings"
)

// Encoders. Each appends one RESP value to b and returns the extended
// buffer, so a reply is built whole and written in one call.

// AppendSimple appends a simple string: +s.
func AppendSimple(b []byte, s string) []byte { return append(append(append(b, '+'), s...), "\r\n"...) }

// AppendError appends an error: -s. s starts with its code ("ERR ...").
// CR and LF in s become spaces, as Redis makes them, so that an error
// quoting what a client sent stays one line.
func AppendError(b []byte, s string) []byte {
	return append(append(append(b, '-'), oneLine.Replace(s)...), "\r\n"...)
}

var oneLine = strings.NewReplacer("\r", " ", "\n", " ")

// AppendInt appends an integer: :n.
func AppendInt(b []byte, n int64) []byte {
	return append(strconv.AppendInt(append(b, ':'), n, 10), "\r\n"...)
}

// AppendBulk appends a bulk string: $len, then s.
func AppendBulk(b []byte, s string) []byte {
	b = strconv.AppendInt(append(b, '$'), int64(len(s)), 10)
	return append(append(append(b, "\r\n"...), s...), "\r\n"...)
}

// AppendNull appends the null bulk string: $-1.
func AppendNull(b []byte) []byte { return append(b, "$-1\r\n"...) }

// AppendArray appends the header of an array of n values; the caller
// appends the n values after it.
func AppendArray(b []byte, n int) []byte {
	return append(strconv.AppendInt(append(b, '*'), int64(n), 10), "\r\n"...)
}

// AppendCommand appends a command as a client sends it: an array of bulk
// strings.
func AppendCommand(b []byte, args ...string) []byte {
	b = AppendArray(b, len(args))
	for _, a := range args {
		b = AppendBulk(b, a)
	}
	return b
}

// AppendWrongArgs appends the error Redis gives for a command called with
// the wrong number of arguments.
func AppendWrongArgs(b []byte, name string) []byte {
	return AppendError(b, "ERR wrong number of arguments for '"+name+"' command")
}
