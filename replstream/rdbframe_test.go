package replstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadLine(t *testing.T) {
	long := strings.Repeat("x", 100)
	cases := []struct {
		name  string
		in    string
		bufsz int // bufio size; 16 is bufio's minimum
		max   int
		want  []string // lines read successfully, in order
		err   error    // error of the read after them
	}{
		{"crlf", "+OK\r\n", 16, 64, []string{"+OK"}, io.EOF},
		{"lf", "+OK\n", 16, 64, []string{"+OK"}, io.EOF},
		{"empty lines", "\r\n\n", 16, 64, []string{"", ""}, io.EOF},
		{"keepalives then preamble", "\n\n$10\r\n", 16, 64, []string{"", "", "$10"}, io.EOF},
		{"two lines", "+FULLRESYNC " + idA + " 1\r\n$5\r\n", 16, 128, []string{"+FULLRESYNC " + idA + " 1", "$5"}, io.EOF},
		{"longer than bufio buffer", long + "\r\n", 16, 200, []string{long}, io.EOF},
		{"exactly max with crlf", long + "\r\n", 16, 102, []string{long}, io.EOF},
		{"max plus one", long + "\r\n", 16, 101, nil, ErrLineTooLong},
		{"too long beyond the buffer", long + long + "\r\n", 16, 150, nil, ErrLineTooLong},
		{"too long within the buffer", long + "\r\n", 4096, 50, nil, ErrLineTooLong},
		{"only CR kept when not before LF", "a\rb\n", 16, 64, []string{"a\rb"}, io.EOF},
		{"unterminated", "+OK", 16, 64, nil, io.EOF},
		{"unterminated long", long, 16, 200, nil, io.EOF},
		{"empty input", "", 16, 64, nil, io.EOF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(c.in), c.bufsz)
			var got [][]byte
			for range c.want {
				line, err := ReadLine(br, c.max)
				if err != nil {
					t.Fatalf("line %d: %v", len(got), err)
				}
				got = append(got, line)
			}
			if _, err := ReadLine(br, c.max); !errors.Is(err, c.err) {
				t.Fatalf("final read: err %v, want %v", err, c.err)
			}
			// Earlier lines must not alias the reader's buffer.
			for i, w := range c.want {
				if string(got[i]) != w {
					t.Errorf("line %d = %q, want %q", i, got[i], w)
				}
			}
		})
	}
}

// TestReadLineLeavesRest checks ReadLine consumes exactly one line.
func TestReadLineLeavesRest(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("$5\r\nhello*1\r\n"))
	line, err := ReadLine(br, 64)
	if err != nil || string(line) != "$5" {
		t.Fatalf("ReadLine = %q, %v", line, err)
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != "hello*1\r\n" {
		t.Fatalf("rest = %q", rest)
	}
}

func TestParsePayloadLine(t *testing.T) {
	mark := RandomHex40()
	cases := []struct {
		line      string
		want      Payload
		keepalive bool
		err       string // substring of the error; "" for none
	}{
		{"", Payload{}, true, ""},
		{"$0", Payload{Size: 0}, false, ""},
		{"$123", Payload{Size: 123}, false, ""},
		{"$9223372036854775807", Payload{Size: 1<<63 - 1}, false, ""},
		{"$EOF:" + mark, Payload{Size: -1, Mark: []byte(mark)}, false, ""},
		{"-ERR can't BGSAVE", Payload{}, false, "aborted"},
		{"-LOADING", Payload{}, false, "aborted"},
		{"$-1", Payload{}, false, "bad transfer length"},
		{"$-5", Payload{}, false, "bad transfer length"},
		{"$9223372036854775808", Payload{}, false, "bad transfer length"},
		{"$99999999999999999999999", Payload{}, false, "bad transfer length"},
		{"$", Payload{}, false, "bad transfer length"},
		{"$12a", Payload{}, false, "bad transfer length"},
		{"$ 12", Payload{}, false, "bad transfer length"},
		{"$12 ", Payload{}, false, "bad transfer length"},
		{"$EOF", Payload{}, false, "bad transfer length"},
		{"$EOF:", Payload{}, false, "EOF mark of 0 bytes"},
		{"$EOF:" + mark[:39], Payload{}, false, "EOF mark of 39 bytes"},
		{"$EOF:" + mark + "0", Payload{}, false, "EOF mark of 41 bytes"},
		{"+FULLRESYNC " + idA + " 1", Payload{}, false, "bad transfer preamble"},
		{"+CONTINUE", Payload{}, false, "bad transfer preamble"},
		{"garbage", Payload{}, false, "bad transfer preamble"},
		{"*1", Payload{}, false, "bad transfer preamble"},
		{strings.Repeat("z", 1000), Payload{}, false, "bad transfer preamble"},
	}
	for _, c := range cases {
		p, ka, err := ParsePayloadLine([]byte(c.line))
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: unexpected error %v", c.line, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want one containing %q", c.line, err, c.err)
		case ka != c.keepalive:
			t.Errorf("%q: keepalive=%v", c.line, ka)
		case p.Size != c.want.Size || !bytes.Equal(p.Mark, c.want.Mark):
			t.Errorf("%q: payload %+v, want %+v", c.line, p, c.want)
		}
		if err != nil && len(err.Error()) > 200 {
			t.Errorf("%q: error text not truncated: %d bytes", c.line, len(err.Error()))
		}
	}
}

func TestParsePayloadLineMarkIsCopied(t *testing.T) {
	line := []byte("$EOF:" + strings.Repeat("a", 40))
	p, _, err := ParsePayloadLine(line)
	if err != nil {
		t.Fatal(err)
	}
	copy(line[5:], strings.Repeat("b", 40))
	if string(p.Mark) != strings.Repeat("a", 40) {
		t.Fatal("Mark aliases the line buffer")
	}
}

func TestPreamble(t *testing.T) {
	mark := RandomHex40()
	for _, p := range []Payload{{Size: 0}, {Size: 5}, {Size: 1 << 40}, {Size: -1, Mark: []byte(mark)}} {
		pre := p.Preamble()
		if !bytes.HasSuffix(pre, []byte("\r\n")) {
			t.Fatalf("Preamble %q lacks CRLF", pre)
		}
		back, ka, err := ParsePayloadLine(pre[:len(pre)-2])
		if err != nil || ka || back.Size != p.Size || !bytes.Equal(back.Mark, p.Mark) {
			t.Fatalf("Preamble %q parsed back as %+v, %v, %v", pre, back, ka, err)
		}
	}
	if got := string((Payload{Size: 123}).Preamble()); got != "$123\r\n" {
		t.Fatalf("Preamble = %q", got)
	}
	if got := string((Payload{Size: -1, Mark: []byte(mark)}).Preamble()); got != "$EOF:"+mark+"\r\n" {
		t.Fatalf("Preamble = %q", got)
	}
}

func TestCopyPayloadSized(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	follow := encodeCmd("PING")
	for _, size := range []int{0, 1, 39, 40, 41, 4096, 64<<10 + 7, 300_000} {
		payload := randBytes(rng, size)
		input := append(append([]byte(nil), payload...), follow...)
		for name, mk := range readerMakers(rng) {
			var dst bytes.Buffer
			br := bufio.NewReader(mk(input))
			n, err := CopyPayload(&dst, br, Payload{Size: int64(size)})
			if err != nil || n != int64(size) || !bytes.Equal(dst.Bytes(), payload) {
				t.Fatalf("size %d via %s: n=%d err=%v equal=%v", size, name, n, err, bytes.Equal(dst.Bytes(), payload))
			}
			rest, err := io.ReadAll(br)
			if err != nil || !bytes.Equal(rest, follow) {
				t.Fatalf("size %d via %s: stream after the payload %q, %v", size, name, rest, err)
			}
		}
		// Short input.
		if size > 0 {
			var dst bytes.Buffer
			n, err := CopyPayload(&dst, bytes.NewReader(payload[:size-1]), Payload{Size: int64(size)})
			if !errors.Is(err, io.ErrUnexpectedEOF) || n != int64(size-1) {
				t.Fatalf("short sized payload: n=%d err=%v", n, err)
			}
		}
	}
}

// chunkReader returns data in pseudo-random pieces of 1..max bytes, with an
// occasional empty read.
type chunkReader struct {
	data []byte
	rng  *rand.Rand
	max  int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	if r.rng.IntN(16) == 0 {
		return 0, nil
	}
	n := min(len(p), len(r.data), 1+r.rng.IntN(r.max))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// readerMakers are the ways the tests deliver a byte stream.
func readerMakers(rng *rand.Rand) map[string]func([]byte) io.Reader {
	seed := rng.Uint64()
	return map[string]func([]byte) io.Reader{
		"whole":    func(b []byte) io.Reader { return bytes.NewReader(b) },
		"onebyte":  func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
		"half":     func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
		"dataerr":  func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) },
		"chunks7":  func(b []byte) io.Reader { return &chunkReader{b, rand.New(rand.NewPCG(seed, 7)), 7} },
		"chunks50": func(b []byte) io.Reader { return &chunkReader{b, rand.New(rand.NewPCG(seed, 50)), 50} },
		"chunks9k": func(b []byte) io.Reader { return &chunkReader{b, rand.New(rand.NewPCG(seed, 9000)), 9000} },
	}
}

func TestCopyPayloadEOFMark(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var mark []byte
	var payloads [][]byte
	// Payloads built from pieces of the mark must not contain the whole
	// mark before their end: a stock replica would stop there too. Draw
	// marks until that holds.
	for unique := false; !unique; {
		mark = []byte(RandomHex40())
		payloads = nil
		for _, size := range []int{0, 1, 10, 39, 40, 41, 79, 80, 81, 1000, 64 << 10, 64<<10 - 1, 64<<10 + 1, 64<<10 + 40, 200_000} {
			payloads = append(payloads, randBytes(rng, size))
		}
		// Payloads that hold (or end with) a partial mark.
		payloads = append(payloads,
			mark[:39],
			mark[:1],
			append(randBytes(rng, 100), mark[:39]...),
			append(append([]byte(nil), mark[:20]...), mark[:20]...),
			bytes.Repeat(mark[:39], 10),
			append(append([]byte(nil), mark[1:]...), mark[:39]...),
		)
		unique = true
		for _, p := range payloads {
			if bytes.Index(append(append([]byte(nil), p...), mark...), mark) != len(p) {
				unique = false
			}
		}
	}
	for i, payload := range payloads {
		input := append(append([]byte(nil), payload...), mark...)
		for name, mk := range readerMakers(rng) {
			var dst bytes.Buffer
			n, err := CopyPayload(&dst, mk(input), Payload{Size: -1, Mark: mark})
			if err != nil || n != int64(len(payload)) || !bytes.Equal(dst.Bytes(), payload) {
				t.Fatalf("payload %d (%d bytes) via %s: n=%d err=%v equal=%v", i, len(payload), name, n, err, bytes.Equal(dst.Bytes(), payload))
			}
		}
		// Truncated: the mark never completes.
		for _, cut := range []int{1, 20, 40} {
			trunc := input[:len(input)-cut]
			for name, mk := range readerMakers(rng) {
				var dst bytes.Buffer
				n, err := CopyPayload(&dst, mk(trunc), Payload{Size: -1, Mark: mark})
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("payload %d truncated by %d via %s: err=%v", i, cut, name, err)
				}
				if n != int64(dst.Len()) || !bytes.HasPrefix(trunc, dst.Bytes()) {
					t.Fatalf("payload %d truncated by %d via %s: wrote %d bytes (n=%d), not a prefix", i, cut, name, dst.Len(), n)
				}
			}
		}
	}
}

type failWriter struct{ after int }

var errWrite = errors.New("disk full")

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.after {
		n := w.after
		w.after = 0
		return n, errWrite
	}
	w.after -= len(p)
	return len(p), nil
}

func TestCopyPayloadWriteError(t *testing.T) {
	mark := []byte(RandomHex40())
	payload := bytes.Repeat([]byte("r"), 100_000)
	input := append(append([]byte(nil), payload...), mark...)
	n, err := CopyPayload(&failWriter{after: 70_000}, bytes.NewReader(input), Payload{Size: -1, Mark: mark})
	if !errors.Is(err, errWrite) || n != 70_000 {
		t.Fatalf("EOF form: n=%d err=%v", n, err)
	}
	n, err = CopyPayload(&failWriter{after: 70_000}, bytes.NewReader(payload), Payload{Size: int64(len(payload))})
	if !errors.Is(err, errWrite) || n != 70_000 {
		t.Fatalf("sized form: n=%d err=%v", n, err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestCopyPayloadReadError(t *testing.T) {
	boom := errors.New("connection reset")
	r := io.MultiReader(strings.NewReader("0123456789"), errReader{boom})
	if _, err := CopyPayload(io.Discard, r, Payload{Size: -1, Mark: []byte(RandomHex40())}); !errors.Is(err, boom) {
		t.Fatalf("EOF form: err=%v", err)
	}
	r = io.MultiReader(strings.NewReader("0123456789"), errReader{boom})
	if _, err := CopyPayload(io.Discard, r, Payload{Size: 100}); !errors.Is(err, boom) {
		t.Fatalf("sized form: err=%v", err)
	}
}

// FuzzPayloadLine checks that ParsePayloadLine never panics, classifies the
// line by its first byte, and that what it accepts re-encodes to a line that
// parses back the same.
func FuzzPayloadLine(f *testing.F) {
	for _, s := range []string{"", "$0", "$123", "$-1", "$EOF:" + idA, "$EOF:" + idA[:39], "-ERR x", "+OK", "$9223372036854775808", "$+5", "$007", "\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		p, ka, err := ParsePayloadLine(line)
		if ka != (len(line) == 0) {
			t.Fatalf("keepalive=%v for %q", ka, line)
		}
		if len(line) > 0 && line[0] != '$' && err == nil {
			t.Fatalf("%q accepted", line)
		}
		if err != nil || ka {
			return
		}
		if p.Mark == nil && p.Size < 0 || p.Mark != nil && (p.Size != -1 || len(p.Mark) != EOFMarkLen) {
			t.Fatalf("%q: inconsistent payload %+v", line, p)
		}
		pre := p.Preamble()
		back, ka2, err := ParsePayloadLine(pre[:len(pre)-2])
		if err != nil || ka2 || back.Size != p.Size || !bytes.Equal(back.Mark, p.Mark) {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", line, p, pre, back, err)
		}
		// Read from the wire, the line comes back the same. (A line holding
		// '\n' cannot have come from the wire: ReadLine ends lines there.)
		if bytes.IndexByte(line, '\n') >= 0 {
			return
		}
		br := bufio.NewReaderSize(bytes.NewReader(pre), 16)
		got, err := ReadLine(br, len(pre))
		if err != nil || !bytes.Equal(got, pre[:len(pre)-2]) {
			t.Fatalf("ReadLine(%q) = %q, %v", pre, got, err)
		}
	})
}

// refCopyEOF is the stock replica's rule, spelled out: after each read,
// stop if everything read so far ends with the mark.
func refCopyEOF(chunks [][]byte, mark []byte) (out []byte, ok bool) {
	var seen []byte
	for _, c := range chunks {
		if len(c) == 0 {
			continue
		}
		seen = append(seen, c...)
		if bytes.HasSuffix(seen, mark) {
			return seen[:len(seen)-len(mark)], true
		}
	}
	return nil, false
}

type scriptedReader struct{ chunks [][]byte }

func (r *scriptedReader) Read(p []byte) (int, error) {
	for len(r.chunks) > 0 {
		c := r.chunks[0]
		if len(c) == 0 {
			r.chunks = r.chunks[1:]
			return 0, nil
		}
		n := copy(p, c)
		if n == len(c) {
			r.chunks = r.chunks[1:]
		} else {
			r.chunks[0] = c[n:]
		}
		return n, nil
	}
	return 0, io.EOF
}

// FuzzCopyPayloadEOF compares CopyPayload's EOF form with refCopyEOF over
// fuzzer-chosen contents and read boundaries. The mark is short-alphabet so
// that the fuzzer can build partial and full marks.
func FuzzCopyPayloadEOF(f *testing.F) {
	f.Add([]byte("hello"), []byte{3, 1, 4}, true)
	f.Add([]byte(""), []byte{40}, true)
	f.Add([]byte("abababab"), []byte{1}, false)
	f.Fuzz(func(t *testing.T, data []byte, sizes []byte, appendMark bool) {
		mark := bytes.Repeat([]byte("ab"), EOFMarkLen/2)
		input := append([]byte(nil), data...)
		if appendMark {
			input = append(input, mark...)
		}
		// Cut input into pieces of the given sizes (0 = an empty read),
		// cycling through them; the rest goes in one piece.
		var chunks [][]byte
		rest := input
		for i := 0; len(rest) > 0 && len(sizes) > 0 && i < 10_000; i++ {
			n := min(int(sizes[i%len(sizes)]), len(rest))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		if len(rest) > 0 {
			chunks = append(chunks, rest)
		}
		want, ok := refCopyEOF(chunks, mark)
		var dst bytes.Buffer
		n, err := CopyPayload(&dst, &scriptedReader{chunks: chunks}, Payload{Size: -1, Mark: mark})
		if ok {
			if err != nil || n != int64(len(want)) || !bytes.Equal(dst.Bytes(), want) {
				t.Fatalf("want %d bytes; got n=%d (%d written) err=%v", len(want), n, dst.Len(), err)
			}
			return
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) || n != int64(dst.Len()) || !bytes.HasPrefix(input, dst.Bytes()) {
			t.Fatalf("no mark: n=%d err=%v", n, err)
		}
	})
}
