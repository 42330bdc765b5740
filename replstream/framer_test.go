package replstream

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/resp"
)

var update = flag.Bool("update", false, "rewrite the stream files in testdata/streams")

// seenCmd is a Command copied out of the callback.
type seenCmd struct {
	Offset, Len, Args int64
	Name, Arg1        string
	GetAck            bool
}

func collect(cmds *[]seenCmd) func(*Command) {
	return func(c *Command) {
		*cmds = append(*cmds, seenCmd{c.Offset, c.Len, c.Args, string(c.Name), string(c.Arg1), c.IsGetAck()})
	}
}

// feedChunks feeds chunks until one fails and returns the commands seen, the
// number of valid bytes and the error. It checks the Feed contract on the way.
func feedChunks(t testing.TB, f *Framer, chunks [][]byte) (cmds []seenCmd, valid int, err error) {
	t.Helper()
	for _, c := range chunks {
		before := f.Next()
		n, ferr := f.Feed(c, collect(&cmds))
		valid += n
		if ferr != nil {
			if n >= len(c) || n < 0 {
				t.Fatalf("Feed returned n=%d of %d with error %v", n, len(c), ferr)
			}
			return cmds, valid, ferr
		}
		if n != len(c) {
			t.Fatalf("Feed returned n=%d of %d without error", n, len(c))
		}
		if f.Next() != before+Offset(n) {
			t.Fatalf("Next moved from %d to %d after %d bytes", before, f.Next(), n)
		}
	}
	return cmds, valid, nil
}

// checkTiling asserts that cmds are contiguous from base and that the last
// one ends at or before base+valid.
func checkTiling(t testing.TB, cmds []seenCmd, base Offset, valid int) Offset {
	t.Helper()
	at := base
	for i, c := range cmds {
		if c.Offset != at || c.Len <= 0 {
			t.Fatalf("command %d spans [%d, +%d), want it to start at %d", i, c.Offset, c.Len, at)
		}
		at += c.Len
	}
	if at > base+Offset(valid) {
		t.Fatalf("commands end at %d, beyond the valid prefix end %d", at, base+Offset(valid))
	}
	return at
}

func wantCmds(base Offset, cmds [][]string) []seenCmd {
	var out []seenCmd
	at := base
	for _, c := range cmds {
		n := int64(len(encodeCmd(c...)))
		s := seenCmd{Offset: at, Len: n, Args: int64(len(c)), Name: trunc32(c[0])}
		if len(c) > 1 {
			s.Arg1 = trunc32(c[1])
		}
		s.GetAck = len(c) == 3 && strings.EqualFold(c[0], "replconf") && strings.EqualFold(c[1], "getack")
		out = append(out, s)
		at += n
	}
	return out
}

func trunc32(s string) string {
	if len(s) > nameCap {
		return s[:nameCap]
	}
	return s
}

var validStreams = []struct {
	name string
	cmds [][]string
}{
	{"select set", [][]string{{"SELECT", "0"}, {"SET", "foo", "bar"}}},
	{"multi exec", [][]string{{"MULTI"}, {"INCR", "counter"}, {"SET", "a", "1"}, {"EXEC"}}},
	{"ping", [][]string{{"PING"}}},
	{"lower-case ping", [][]string{{"ping"}}},
	{"getack", [][]string{{"REPLCONF", "GETACK", "*"}}},
	{"getack lower", [][]string{{"replconf", "getack", "*"}, {"ping"}}},
	{"replconf not getack", [][]string{{"REPLCONF", "GETACKS", "*"}, {"REPLCONF", "GETACK"}, {"REPLCONF", "GETACK", "*", "x"}, {"REPLCONF", "ACK", "1"}}},
	{"binary value", [][]string{{"SET", "bin", "a\r\nb\r\n*1\r\n$4\r\nPING\r\n\x00\xff"}, {"SET", "crlf", "\r\n"}}},
	{"binary key", [][]string{{"SET", "\r\n\x00", "v"}}},
	{"empty bulk", [][]string{{"SET", "empty", ""}, {"SET", "", ""}, {""}}},
	{"long name and arg1", [][]string{{strings.Repeat("N", 40), strings.Repeat("a", 33), "x"}, {strings.Repeat("M", 32), strings.Repeat("b", 32)}}},
	{"many args", [][]string{append([]string{"DEL"}, strings.Split(strings.Repeat("k,", 300)+"k", ",")...)}},
	{"big value", [][]string{{"SET", "big", strings.Repeat("0123456789", 30_000)}, {"PING"}}},
	{"value of ten thousand", [][]string{{"SET", "k", strings.Repeat("x", 10_000)}}},
	{"capture-like", [][]string{
		{"SELECT", "0"}, {"SET", "foo", "bar"}, {"PING"}, {"REPLCONF", "GETACK", "*"},
		{"PEXPIREAT", "foo", "1700000000000"}, {"HSET", "h", "f1", "v1", "f2", "v2"},
		{"MULTI"}, {"INCRBY", "n", "5"}, {"EXEC"}, {"SELECT", "15"}, {"DEL", "x", "y"},
	}},
}

func TestFramerValid(t *testing.T) {
	for _, vs := range validStreams {
		stream := joinCmds(vs.cmds...)
		for _, base := range []Offset{1, 12345} {
			want := wantCmds(base, vs.cmds)
			for _, ch := range chunkings {
				if len(stream) > 100_000 && ch.name == "bytewise" && base != 1 {
					continue // once is enough for the big streams
				}
				t.Run(vs.name+"/"+ch.name, func(t *testing.T) {
					f := NewFramer(base, Limits{})
					got, valid, err := feedChunks(t, f, split(stream, ch.cuts(len(stream))))
					if err != nil {
						t.Fatalf("error on a valid stream: %v", err)
					}
					if valid != len(stream) || f.Next() != base+Offset(len(stream)) || !f.AtBoundary() {
						t.Fatalf("valid=%d Next=%d AtBoundary=%v; stream is %d bytes from %d", valid, f.Next(), f.AtBoundary(), len(stream), base)
					}
					if end := checkTiling(t, got, base, valid); end != base+Offset(len(stream)) {
						t.Fatalf("spans end at %d, stream ends at %d", end, base+Offset(len(stream)))
					}
					if len(got) != len(want) {
						t.Fatalf("got %d commands, want %d", len(got), len(want))
					}
					for i := range want {
						if got[i] != want[i] {
							t.Errorf("command %d = %+v, want %+v", i, got[i], want[i])
						}
					}
				})
			}
		}
	}
}

// TestFramerAtBoundary checks AtBoundary after every possible cut.
func TestFramerAtBoundary(t *testing.T) {
	cmds := validStreams[len(validStreams)-1].cmds
	stream := joinCmds(cmds...)
	ends := map[int]bool{0: true}
	at := 0
	for _, c := range cmds {
		at += len(encodeCmd(c...))
		ends[at] = true
	}
	for cut := 0; cut <= len(stream); cut++ {
		f := NewFramer(1, DefaultLimits)
		if _, err := f.Feed(stream[:cut], nil); err != nil {
			t.Fatal(err)
		}
		if f.AtBoundary() != ends[cut] {
			t.Fatalf("cut %d: AtBoundary=%v, want %v", cut, f.AtBoundary(), ends[cut])
		}
		if _, err := f.Feed(stream[cut:], nil); err != nil || !f.AtBoundary() {
			t.Fatalf("cut %d: second half: err=%v AtBoundary=%v", cut, err, f.AtBoundary())
		}
	}
}

func TestFramerIncomplete(t *testing.T) {
	whole := joinCmds([]string{"SET", "a", "b"}, []string{"SET", "key", "value"})
	first := len(encodeCmd("SET", "a", "b"))
	for cut := first + 1; cut < len(whole); cut++ {
		f := NewFramer(1, DefaultLimits)
		var got []seenCmd
		n, err := f.Feed(whole[:cut], collect(&got))
		if err != nil || n != cut || len(got) != 1 || f.AtBoundary() {
			t.Fatalf("cut %d: n=%d err=%v cmds=%d AtBoundary=%v", cut, n, err, len(got), f.AtBoundary())
		}
	}
}

var malformedStreams = []struct {
	name   string
	prefix [][]string // whole commands before the bad bytes
	bad    string
	lim    Limits
	errAt  int // offset of the offending byte within bad
}{
	{"inline command", nil, "PING\r\n", Limits{}, 0},
	{"inline after commands", [][]string{{"SET", "a", "b"}}, "PING\r\n", Limits{}, 0},
	{"newline keepalive", [][]string{{"SELECT", "0"}, {"PING"}}, "\n", Limits{}, 0},
	{"crlf keepalive", [][]string{{"PING"}}, "\r\n", Limits{}, 0},
	{"empty array", [][]string{{"PING"}}, "*0\r\n", Limits{}, 2},
	{"null array", nil, "*-1\r\n", Limits{}, 1},
	{"null bulk in array", [][]string{{"PING"}}, "*2\r\n$3\r\nGET\r\n$-1\r\n", Limits{}, 14},
	{"missing CR after payload", nil, "*1\r\n$4\r\nPING\n", Limits{}, 12},
	{"missing CR after array length", nil, "*1\n$4\r\nPING\r\n", Limits{}, 2},
	{"missing LF after array length", nil, "*1\r$4\r\nPING\r\n", Limits{}, 3},
	{"missing LF after bulk length", nil, "*1\r\n$4\rPING\r\n", Limits{}, 7},
	{"missing LF after payload", nil, "*1\r\n$4\r\nPING\r*1", Limits{}, 13},
	{"payload longer than length", nil, "*1\r\n$3\r\nPING\r\n", Limits{}, 11},
	{"payload shorter than length", nil, "*1\r\n$5\r\nPING\r\n*1\r\n", Limits{}, 13},
	{"simple string element", nil, "*1\r\n+OK\r\n", Limits{}, 4},
	{"integer element", nil, "*1\r\n:1\r\n", Limits{}, 4},
	{"nested array", nil, "*1\r\n*1\r\n$1\r\na\r\n", Limits{}, 4},
	{"empty array length", nil, "*\r\n", Limits{}, 1},
	{"empty bulk length", nil, "*1\r\n$\r\n", Limits{}, 5},
	{"letter in length", nil, "*1x\r\n", Limits{}, 2},
	{"plus sign in length", nil, "*+1\r\n", Limits{}, 1},
	{"space in bulk length", nil, "*1\r\n$ 1\r\na\r\n", Limits{}, 5},
	{"bulk length overflow", nil, "*1\r\n$" + strings.Repeat("9", 19) + "\r\n", Limits{}, 5 + 18},
	{"array length overflow", nil, "*" + strings.Repeat("9", 40) + "\r\n", Limits{}, 1 + 18},
	{"array length over default limit", nil, "*2147483649\r\n", Limits{}, 11},
	{"bulk length over default limit", nil, "*1\r\n$17179869185\r\n", Limits{}, 16},
	{"array length over small limit", [][]string{{"PING"}}, "*5\r\n$1\r\na\r\n", Limits{MaxArgs: 4}, 2},
	{"huge array length, small limit", nil, "*1000000000\r\n", Limits{MaxArgs: 16, MaxBulk: 16}, 11},
	{"bulk over small limit", [][]string{{"SET", "a", "0123456789abcdef"}}, "*1\r\n$17\r\n", Limits{MaxArgs: 4, MaxBulk: 16}, 7},
	{"too many args under small limit", [][]string{{"SET", "a", "b", "c"}}, "*5\r\n", Limits{MaxArgs: 4}, 2},
	{"RESP3 push", nil, ">2\r\n", Limits{}, 0},
	{"NUL", [][]string{{"PING"}}, "\x00", Limits{}, 0},
}

func TestFramerMalformed(t *testing.T) {
	for _, mc := range malformedStreams {
		prefix := joinCmds(mc.prefix...)
		stream := append(append([]byte(nil), prefix...), mc.bad...)
		const base = 101
		wantAt := len(prefix) + mc.errAt
		for _, ch := range chunkings {
			t.Run(mc.name+"/"+ch.name, func(t *testing.T) {
				f := NewFramer(base, mc.lim)
				got, valid, err := feedChunks(t, f, split(stream, ch.cuts(len(stream))))
				var pe *ProtocolError
				if !errors.As(err, &pe) {
					t.Fatalf("err = %v, want a *ProtocolError", err)
				}
				if pe.Offset != base+Offset(wantAt) || valid != wantAt {
					t.Fatalf("error at %d (valid %d), want at %d: %v", pe.Offset, valid, base+wantAt, err)
				}
				if !strings.Contains(err.Error(), "protocol error at offset") || pe.What == "" {
					t.Fatalf("error text %q", err.Error())
				}
				if len(got) != len(mc.prefix) {
					t.Fatalf("%d commands before the error, want %d", len(got), len(mc.prefix))
				}
				if end := checkTiling(t, got, base, valid); end != base+Offset(len(prefix)) {
					t.Fatalf("commands end at %d, want %d", end, base+len(prefix))
				}
			})
		}
	}
}

// TestFramerLimitsBoundary checks that the limits themselves are allowed.
func TestFramerLimitsBoundary(t *testing.T) {
	lim := Limits{MaxArgs: 3, MaxBulk: 5}
	ok := joinCmds([]string{"SET", "12345", "abcde"})
	f := NewFramer(1, lim)
	if n, err := f.Feed(ok, nil); err != nil || n != len(ok) {
		t.Fatalf("at the limits: n=%d err=%v", n, err)
	}
	if n, err := NewFramer(1, lim).Feed(encodeCmd("SET", "123456", "a"), nil); err == nil {
		t.Fatalf("bulk over MaxBulk accepted (n=%d)", n)
	}
	if n, err := NewFramer(1, lim).Feed(encodeCmd("A", "b", "c", "d"), nil); err == nil {
		t.Fatalf("array over MaxArgs accepted (n=%d)", n)
	}
	// Zero limits mean the defaults.
	if f := NewFramer(1, Limits{}); f.lim != DefaultLimits {
		t.Fatalf("zero limits became %+v", f.lim)
	}
}

func TestFramerNilCallbackAndEmptyFeed(t *testing.T) {
	f := NewFramer(7, DefaultLimits)
	if n, err := f.Feed(nil, nil); n != 0 || err != nil || f.Next() != 7 {
		t.Fatalf("empty Feed: n=%d err=%v next=%d", n, err, f.Next())
	}
	s := joinCmds([]string{"PING"}, []string{"SET", "a", "b"})
	if n, err := f.Feed(s, nil); n != len(s) || err != nil || !f.AtBoundary() {
		t.Fatalf("nil callback: n=%d err=%v", n, err)
	}
}

// readTidwall parses a stream of multibulk commands with tidwall/resp and
// returns each command's arguments and length in bytes.
func readTidwall(t testing.TB, stream []byte) (cmds [][]string, lens []int) {
	t.Helper()
	rd := resp.NewReader(bytes.NewReader(stream))
	for {
		v, telnet, n, err := rd.ReadMultiBulk()
		if err == io.EOF {
			return cmds, lens
		}
		if err != nil {
			t.Fatalf("tidwall/resp after %d commands: %v", len(cmds), err)
		}
		if telnet {
			t.Fatalf("tidwall/resp read an inline command after %d commands", len(cmds))
		}
		var args []string
		for _, a := range v.Array() {
			args = append(args, a.String())
		}
		cmds = append(cmds, args)
		lens = append(lens, n)
	}
}

func compareWithTidwall(t testing.TB, stream []byte, got []seenCmd) {
	t.Helper()
	ref, lens := readTidwall(t, stream)
	if len(ref) != len(got) {
		t.Fatalf("framer saw %d commands, tidwall/resp %d", len(got), len(ref))
	}
	for i, args := range ref {
		g := got[i]
		if int64(len(args)) != g.Args || int64(lens[i]) != g.Len || trunc32(args[0]) != g.Name {
			t.Fatalf("command %d: framer %+v, tidwall %d args %d bytes name %q", i, g, len(args), lens[i], args[0])
		}
		if len(args) > 1 && trunc32(args[1]) != g.Arg1 {
			t.Fatalf("command %d: framer arg1 %q, tidwall %q", i, g.Arg1, args[1])
		}
	}
}

func TestFramerAgainstTidwall(t *testing.T) {
	check := func(t *testing.T, stream []byte) {
		var got []seenCmd
		if n, err := NewFramer(1, DefaultLimits).Feed(stream, collect(&got)); err != nil || n != len(stream) {
			t.Fatalf("n=%d err=%v", n, err)
		}
		compareWithTidwall(t, stream, got)
	}
	for _, vs := range validStreams {
		t.Run(vs.name, func(t *testing.T) { check(t, joinCmds(vs.cmds...)) })
	}
	for seed := uint64(0); seed < 20; seed++ {
		stream, _ := randStream(rand.New(rand.NewPCG(seed, 99)), 64<<10)
		t.Run("random", func(t *testing.T) { check(t, stream) })
	}
	t.Run("files", func(t *testing.T) {
		for name, data := range readStreamFiles(t) {
			var got []seenCmd
			n, _ := NewFramer(1, DefaultLimits).Feed(data, collect(&got))
			end := checkTiling(t, got, 1, n)
			compareWithTidwall(t, data[:end-1], got)
			_ = name
		}
	})
}

// The files in testdata/streams seed FuzzFramer. They are written by
// "go test -run TestStreamFiles -update".
var streamFiles = map[string][]byte{
	"capture.resp": joinCmds(validStreams[len(validStreams)-1].cmds...),
	"mixed.resp": joinCmds(
		[]string{"SELECT", "0"}, []string{"SET", "bin", "a\r\nb\r\n*1\r\n$4\r\nPING\r\n"},
		[]string{"SET", "empty", ""}, []string{"PING"}, []string{"REPLCONF", "GETACK", "*"},
		[]string{"MULTI"}, []string{"LPUSH", "list", "x", "y", "z"}, []string{"EXEC"},
		[]string{"SET", "k", strings.Repeat("v", 100)}, []string{"REPLCONF", "GETACK", "*"},
	),
	"torn.resp":      joinCmds([]string{"SELECT", "1"}, []string{"SET", "a", "b"}, []string{"SET", "torn", "value"})[:60],
	"keepalive.resp": append(joinCmds([]string{"SELECT", "0"}, []string{"PING"}), "\n*1\r\n$4\r\nPING\r\n"...),
	"inline.resp":    append(joinCmds([]string{"PING"}), "PING\r\n"...),
}

func readStreamFiles(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	names, err := filepath.Glob(filepath.Join("testdata", "streams", "*.resp"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no stream files in testdata/streams (%v)", err)
	}
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(name)] = data
	}
	return out
}

func TestStreamFiles(t *testing.T) {
	dir := filepath.Join("testdata", "streams")
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range streamFiles {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	files := readStreamFiles(t)
	for name, want := range streamFiles {
		if !bytes.Equal(files[name], want) {
			t.Errorf("%s is stale; run go test -run TestStreamFiles -update", name)
		}
	}
	type expect struct {
		cmds, getacks int
		err, boundary bool
	}
	want := map[string]expect{
		"capture.resp":   {11, 1, false, true},
		"mixed.resp":     {10, 2, false, true},
		"torn.resp":      {2, 0, false, false},
		"keepalive.resp": {2, 0, true, true},
		"inline.resp":    {1, 0, true, true},
	}
	for name, w := range want {
		var got []seenCmd
		f := NewFramer(1, DefaultLimits)
		_, err := f.Feed(files[name], collect(&got))
		getacks := 0
		for _, c := range got {
			if c.GetAck {
				getacks++
			}
		}
		if len(got) != w.cmds || getacks != w.getacks || (err != nil) != w.err || f.AtBoundary() != w.boundary {
			t.Errorf("%s: %d commands, %d GETACKs, err %v, AtBoundary %v; want %+v", name, len(got), getacks, err, f.AtBoundary(), w)
		}
	}
}

// FuzzFramer feeds the input whole and split in two at a fuzzer-chosen cut,
// and checks both runs agree and describe the stream consistently.
func FuzzFramer(f *testing.F) {
	for _, data := range readStreamFiles(f) {
		f.Add(data, uint(len(data)/2))
		f.Add(data, uint(0))
		f.Add(data, uint(len(data)-1))
	}
	for _, mc := range malformedStreams {
		s := append(joinCmds(mc.prefix...), mc.bad...)
		f.Add(s, uint(len(s)/3))
	}
	f.Add([]byte("*1\r\n$0\r\n\r\n"), uint(7))
	f.Fuzz(func(t *testing.T, data []byte, cut uint) {
		const base = 1000
		c := int(cut % uint(len(data)+1))
		whole := NewFramer(base, DefaultLimits)
		cmds1, n1, err1 := feedChunks(t, whole, [][]byte{data})
		parts := NewFramer(base, DefaultLimits)
		cmds2, n2, err2 := feedChunks(t, parts, [][]byte{data[:c], data[c:]})

		if n1 != n2 {
			t.Fatalf("valid prefix %d whole, %d split at %d", n1, n2, c)
		}
		if (err1 == nil) != (err2 == nil) || err1 != nil && err1.Error() != err2.Error() {
			t.Fatalf("errors differ: whole %v, split at %d %v", err1, c, err2)
		}
		if err1 != nil {
			var pe *ProtocolError
			if !errors.As(err1, &pe) || pe.Offset != base+Offset(n1) {
				t.Fatalf("error %v does not point at the end of the valid prefix %d", err1, base+n1)
			}
		} else if n1 != len(data) || whole.Next() != base+Offset(len(data)) {
			t.Fatalf("no error but valid=%d of %d, Next=%d", n1, len(data), whole.Next())
		}
		if len(cmds1) != len(cmds2) {
			t.Fatalf("%d commands whole, %d split", len(cmds1), len(cmds2))
		}
		for i := range cmds1 {
			if cmds1[i] != cmds2[i] {
				t.Fatalf("command %d: whole %+v, split %+v", i, cmds1[i], cmds2[i])
			}
		}
		end := checkTiling(t, cmds1, base, n1)
		if err1 == nil && whole.AtBoundary() != (end == base+Offset(len(data))) {
			t.Fatalf("AtBoundary=%v but commands end at %d of %d", whole.AtBoundary(), end, base+len(data))
		}
		// Whatever the framer accepted as whole commands, an independent
		// RESP parser reads the same way.
		compareWithTidwall(t, data[:end-base], cmds1)
	})
}

// TestFramerDoesNotAllocate guards the hot path: framing a stream must not
// allocate per command.
func TestFramerDoesNotAllocate(t *testing.T) {
	stream := setStream(100, 100)
	f := NewFramer(1, DefaultLimits)
	cmds := 0
	count := func(c *Command) {
		if c.IsGetAck() {
			t.Fatal("GETACK in a SET stream")
		}
		cmds++
	}
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := f.Feed(stream, count); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 || cmds != 21*100 {
		t.Fatalf("%v allocations per Feed of 100 commands (%d commands seen)", allocs, cmds)
	}
}
