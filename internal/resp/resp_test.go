package resp

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// readMakers wrap the input the ways a network connection splits it.
var readMakers = []struct {
	name string
	fn   func(io.Reader) io.Reader
}{
	{"whole", func(r io.Reader) io.Reader { return r }},
	{"onebyte", iotest.OneByteReader},
	{"half", iotest.HalfReader},
}

func TestReadCommand(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  [][]string // one per request read
		proto bool       // the next read after want is a ProtocolError
	}{
		{name: "multibulk", in: "*2\r\n$4\r\nPING\r\n$3\r\nabc\r\n", want: [][]string{{"PING", "abc"}}},
		{name: "inline", in: "REPLCONF ack  100\r\n", want: [][]string{{"REPLCONF", "ack", "100"}}},
		{name: "keepalive", in: "\nPING\r\n", want: [][]string{nil, {"PING"}}},
		{name: "empty array", in: "*0\r\n*1\r\n$0\r\n\r\n", want: [][]string{nil, {""}}},
		{name: "bad multibulk length", in: "*x\r\n", proto: true},
		{name: "too many args", in: "*4097\r\n", proto: true},
		{name: "bulk over limit", in: "*1\r\n$1048577\r\n", proto: true},
		{name: "no dollar", in: "*1\r\n:1\r\n", proto: true},
		{name: "negative bulk", in: "*1\r\n$-1\r\n", proto: true},
		{name: "no crlf after bulk", in: "*1\r\n$1\r\nab\r\n", proto: true},
		{name: "inline too long", in: strings.Repeat("a", MaxInline+1) + "\r\n", proto: true},
	}
	for _, tt := range tests {
		for _, rm := range readMakers {
			t.Run(tt.name+"/"+rm.name, func(t *testing.T) {
				br := bufio.NewReader(rm.fn(strings.NewReader(tt.in)))
				for i, want := range tt.want {
					args, err := ReadCommand(br)
					if err != nil {
						t.Fatalf("request %d: %v", i, err)
					}
					var got []string
					for _, a := range args {
						got = append(got, string(a))
					}
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("request %d = %q, want %q", i, got, want)
					}
				}
				_, err := ReadCommand(br)
				var pe ProtocolError
				if isProto := errors.As(err, &pe); isProto != tt.proto {
					t.Fatalf("after the requests: err = %v, want protocol error %v", err, tt.proto)
				}
				if !tt.proto && !errors.Is(err, io.EOF) {
					t.Fatalf("after the requests: err = %v, want EOF", err)
				}
			})
		}
	}
}

func TestAppendReadsBack(t *testing.T) {
	b := AppendCommand(nil, "SET", "k", "")
	args, err := ReadCommand(bufio.NewReader(strings.NewReader(string(b))))
	if err != nil || len(args) != 3 || string(args[0]) != "SET" || string(args[1]) != "k" || len(args[2]) != 0 {
		t.Fatalf("ReadCommand(%q) = %q, %v", b, args, err)
	}
	var out []byte
	out = AppendArray(out, 4)
	out = AppendSimple(out, "OK")
	out = AppendError(out, "ERR no")
	out = AppendInt(out, -7)
	out = AppendNull(out)
	if want := "*4\r\n+OK\r\n-ERR no\r\n:-7\r\n$-1\r\n"; string(out) != want {
		t.Fatalf("replies = %q, want %q", out, want)
	}
}

func TestExcerpt(t *testing.T) {
	if got := Excerpt([]byte("abc\xffdef"), 4); got != "abc?" {
		t.Fatalf("Excerpt = %q, want %q", got, "abc?")
	}
}

func TestAppendResp3Forms(t *testing.T) {
	for _, tt := range []struct {
		name  string
		resp3 bool
		want  string
	}{
		{"resp2", false, "*2\r\n$1\r\nk\r\n$-1\r\n$2\r\nhi\r\n*0\r\n"},
		{"resp3", true, "%1\r\n$1\r\nk\r\n_\r\n=6\r\ntxt:hi\r\n>0\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := AppendMapHeader(nil, 1, tt.resp3)
			out = AppendBulk(out, "k")
			out = AppendNil(out, tt.resp3)
			out = AppendText(out, "hi", tt.resp3)
			out = AppendPushHeader(out, 0, tt.resp3)
			if string(out) != tt.want {
				t.Fatalf("got %q, want %q", out, tt.want)
			}
		})
	}
}

// TestAppendErrorOneLine: an error that quotes what a client sent (an
// unknown command's name) stays one line, as Redis keeps it
// (addReplyErrorLength turns CR and LF into spaces).
func TestAppendErrorOneLine(t *testing.T) {
	got := string(AppendError(nil, "ERR unknown command '00\r\n\"', with args beginning with: \r\n"))
	if want := "-ERR unknown command '00  \"', with args beginning with:   \r\n"; got != want {
		t.Fatalf("AppendError = %q, want %q", got, want)
	}
}
