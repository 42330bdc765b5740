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

// The RESP3 forms, for a connection that chose protocol 3 with HELLO 3.
// Each takes resp3 and falls back to the RESP2 form Redis sends a
// protocol 2 client, so a handler writes one call for both.

// AppendMapHeader appends the header of a map of n key/value pairs: %n in
// RESP3, an array of 2n values in RESP2. The caller appends the 2n values.
func AppendMapHeader(b []byte, n int, resp3 bool) []byte {
	if !resp3 {
		return AppendArray(b, 2*n)
	}
	return append(strconv.AppendInt(append(b, '%'), int64(n), 10), "\r\n"...)
}

// AppendPushHeader appends the header of an out-of-band message of n
// values (published messages and subscription confirmations): >n in RESP3,
// an array in RESP2. The two headers have the same length.
func AppendPushHeader(b []byte, n int, resp3 bool) []byte {
	if !resp3 {
		return AppendArray(b, n)
	}
	return append(strconv.AppendInt(append(b, '>'), int64(n), 10), "\r\n"...)
}

// AppendNil appends the null value: _ in RESP3, the null bulk string $-1
// in RESP2.
func AppendNil(b []byte, resp3 bool) []byte {
	if !resp3 {
		return AppendNull(b)
	}
	return append(b, "_\r\n"...)
}

// AppendText appends human-readable text (INFO, CLIENT LIST): a verbatim
// string of format txt (=len, then "txt:" and s) in RESP3, a bulk string
// in RESP2.
func AppendText(b []byte, s string, resp3 bool) []byte {
	if !resp3 {
		return AppendBulk(b, s)
	}
	b = strconv.AppendInt(append(b, '='), int64(len(s)+4), 10)
	return append(append(append(b, "\r\ntxt:"...), s...), "\r\n"...)
}

// AppendWrongArgs appends the error Redis gives for a command called with
// the wrong number of arguments.
func AppendWrongArgs(b []byte, name string) []byte {
	return AppendError(b, "ERR wrong number of arguments for '"+name+"' command")
}
