package replstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var smallOpts = LogOptions{RingSize: 64, SegmentSize: 100}

// mirror is a log together with a copy of everything it should hold.
type mirror struct {
	t    testing.TB
	l    *Log
	dir  string
	opt  LogOptions
	base Offset // offset of data[0]
	data []byte // the bytes [base, Next)
}

func newMirror(t testing.TB, start Offset, opt LogOptions) *mirror {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "log")
	l, err := CreateLog(dir, start, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &mirror{t: t, l: l, dir: dir, opt: opt, base: start}
}

func (m *mirror) next() Offset { return m.base + Offset(len(m.data)) }

// appendStream appends stream, whose command ends (relative to stream) are
// ends, in pieces: half of them of up to maxPiece bytes cut anywhere, the
// others running to the end of a command, as a relay reading a socket sees.
// atBoundary is true exactly when a piece ends a command.
func (m *mirror) appendStream(rng *rand.Rand, stream []byte, ends []int, maxPiece int) {
	m.t.Helper()
	isEnd := map[int]bool{}
	for _, e := range ends {
		isEnd[e] = true
	}
	for at := 0; at < len(stream); {
		n := min(1+rng.IntN(maxPiece), len(stream)-at)
		if rng.IntN(2) == 0 {
			for !isEnd[at+n] {
				n++
			}
		}
		if err := m.l.Append(stream[at:at+n], isEnd[at+n]); err != nil {
			m.t.Fatal(err)
		}
		at += n
		m.data = append(m.data, stream[at-n:at]...)
	}
}

// appendRandom appends about size bytes of random commands.
func (m *mirror) appendRandom(rng *rand.Rand, size, maxPiece int) {
	m.t.Helper()
	stream, ends := randStream(rng, size)
	m.appendStream(rng, stream, ends, maxPiece)
}

// check compares the log's extent with the mirror and reads it back from a
// spread of offsets with a spread of buffer sizes.
func (m *mirror) check() {
	m.t.Helper()
	first, next := m.l.Range()
	if next != m.next() || first < m.base || first > next {
		m.t.Fatalf("Range = [%d, %d), mirror holds [%d, %d)", first, next, m.base, m.next())
	}
	n := int(next - first)
	type read struct {
		from Offset
		buf  int
	}
	reads := []read{{first, 1}, {first, 4096}} // everything, byte by byte and in bulk
	sizes := []int{1, 7, 64, 100, 4096}
	for i := 0; i <= n; i++ {
		switch {
		case n-i < 150: // near the head: the ring and its edge
			reads = append(reads, read{first + Offset(i), sizes[i%len(sizes)]})
		case i < 10 || i%41 == 0:
			reads = append(reads, read{first + Offset(i), sizes[1+i%(len(sizes)-1)]})
		}
	}
	for _, r := range reads {
		got := readUpTo(m.t, m.l, r.from, next, r.buf)
		want := m.data[r.from-m.base:]
		if !bytes.Equal(got, want) {
			i := firstDiff(got, want)
			m.t.Fatalf("read from %d (buf %d): %d bytes, want %d; first difference at offset %d: got %q want %q",
				r.from, r.buf, len(got), len(want), r.from+Offset(i), clip(got[i:]), clip(want[i:]))
		}
	}
}

func firstDiff(a, b []byte) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

func clip(b []byte) []byte { return b[:min(len(b), 16)] }

// readUpTo reads from offset from until to with reads of bufSize bytes.
func readUpTo(t testing.TB, l *Log, from, to Offset, bufSize int) []byte {
	t.Helper()
	c, err := l.Cursor(from)
	if err != nil {
		t.Fatalf("Cursor(%d): %v", from, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []byte
	buf := make([]byte, bufSize)
	for c.Offset() < to {
		n, err := c.Read(ctx, buf)
		if err != nil {
			t.Fatalf("Read at %d: %v", c.Offset(), err)
		}
		if n == 0 {
			t.Fatalf("Read at %d returned 0 bytes", c.Offset())
		}
		out = append(out, buf[:n]...)
	}
	if c.Offset() != to {
		t.Fatalf("cursor went to %d, past %d", c.Offset(), to)
	}
	return out
}

func TestLogAppendRead(t *testing.T) {
	for _, start := range []Offset{1, 1 << 40} {
		t.Run(fmt.Sprint(start), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(start), 1))
			m := newMirror(t, start, smallOpts)
			if st := m.l.Stats(); st.First != start || st.Next != start || st.Segments != 1 || st.RingBytes != 0 || st.RingSize != 64 {
				t.Fatalf("empty log stats %+v", st)
			}
			m.check()
			m.appendRandom(rng, 5000, 150)
			m.check()
			st := m.l.Stats()
			if st.Segments < 4 || st.DiskBytes != int64(len(m.data)) || st.RingBytes != 64 || st.First != start || st.Next != m.next() {
				t.Fatalf("stats %+v after %d bytes", st, len(m.data))
			}
			if m.l.Dir() != m.dir {
				t.Fatalf("Dir = %q", m.l.Dir())
			}
		})
	}
}

// TestLogServesRingFromMemory overwrites the segment files behind the log's
// back: reads within the newest RingSize bytes must still return the real
// bytes (they come from memory), older reads return what is on disk.
func TestLogServesRingFromMemory(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	m := newMirror(t, 1, smallOpts)
	m.appendRandom(rng, 1000, 40)
	flushedSegments(t, m.l)
	names, _ := filepath.Glob(filepath.Join(m.dir, "*.seg"))
	for _, name := range names {
		st, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, bytes.Repeat([]byte("#"), int(st.Size())), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	first, next := m.l.Range()
	ringStart := next - 64
	// One byte at a time, each read shows where its byte came from.
	got := readUpTo(t, m.l, first, next, 1)
	for i, b := range got {
		off := first + Offset(i)
		if off < ringStart && b != '#' {
			t.Fatalf("offset %d (before the ring) not read from disk", off)
		}
		if off >= ringStart && b != m.data[off-m.base] {
			t.Fatalf("offset %d (in the ring) not read from memory", off)
		}
	}
	// A cursor that starts in the ring is served from memory throughout.
	if got := readUpTo(t, m.l, ringStart, next, 4096); !bytes.Equal(got, m.data[ringStart-m.base:]) {
		t.Fatalf("ring read returned %q", got)
	}
	// A read that starts on disk stays on disk, within one segment.
	c, _ := m.l.Cursor(ringStart - 1)
	buf := make([]byte, 200)
	n, err := c.Read(context.Background(), buf)
	if err != nil || n < 1 || !bytes.Equal(buf[:n], bytes.Repeat([]byte("#"), n)) {
		t.Fatalf("read starting on disk: n=%d err=%v %q", n, err, buf[:n])
	}
}

func TestLogSegmentsRollOnlyAtBoundary(t *testing.T) {
	m := newMirror(t, 1, smallOpts)
	big := encodeCmd("SET", "k", strings.Repeat("v", 300))
	// A command of 300+ bytes fed in 10-byte pieces: the segment passes
	// SegmentSize in the middle of it but must not be cut there.
	for at := 0; at < len(big); at += 10 {
		end := min(at+10, len(big))
		if err := m.l.Append(big[at:end], end == len(big)); err != nil {
			t.Fatal(err)
		}
		m.data = append(m.data, big[at:end]...)
		if want := 1 + btoi(end == len(big)); flushedSegments(t, m.l) != want {
			t.Fatalf("after %d bytes: %d segments, want %d", end, m.l.Stats().Segments, want)
		}
	}
	if _, err := os.Stat(filepath.Join(m.dir, segName(m.next()))); err != nil {
		t.Fatalf("new segment not named by its first offset: %v", err)
	}
	// Appends ending mid-command never roll, however much they add.
	half := encodeCmd("SET", "k2", strings.Repeat("w", 500))
	for _, piece := range [][]byte{half[:5], half[5:250], half[250:]} {
		end := &piece[len(piece)-1] == &half[len(half)-1]
		if err := m.l.Append(piece, end); err != nil {
			t.Fatal(err)
		}
		m.data = append(m.data, piece...)
	}
	if got := flushedSegments(t, m.l); got != 3 {
		t.Fatalf("%d segments, want 3", got)
	}
	rng := rand.New(rand.NewPCG(6, 6))
	m.appendRandom(rng, 3000, 70)
	m.check()
	checkSegmentFiles(t, m.dir, smallOpts.SegmentSize)
}

// flushedSegments is the number of segments once every appended byte is
// written.
func flushedSegments(t testing.TB, l *Log) int {
	t.Helper()
	if _, err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	return l.Stats().Segments
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// checkSegmentFiles checks that every segment is named by its first offset,
// holds whole commands only, and that all but the last reached the size.
func checkSegmentFiles(t *testing.T, dir string, size int64) {
	t.Helper()
	names, err := segmentFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	var at Offset = -1
	for i, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		var first Offset
		fmt.Sscanf(name, "%d.seg", &first)
		if at >= 0 && first != at {
			t.Fatalf("%s starts at %d, previous ended at %d", name, first, at)
		}
		at = first + Offset(len(data))
		f := NewFramer(first, DefaultLimits)
		if n, err := f.Feed(data, nil); err != nil || n != len(data) || !f.AtBoundary() && i < len(names)-1 {
			t.Fatalf("%s is not whole commands: n=%d err=%v boundary=%v", name, n, err, f.AtBoundary())
		}
		if i < len(names)-1 && int64(len(data)) < size {
			t.Fatalf("%s closed at %d bytes, below the segment size %d", name, len(data), size)
		}
	}
}

func TestLogAppendLargerThanRing(t *testing.T) {
	m := newMirror(t, 1, smallOpts)
	rng := rand.New(rand.NewPCG(7, 7))
	for _, size := range []int{10, 1000, 63, 64, 65, 129, 5000} {
		cmd := encodeCmd("SET", "big", string(randBytes(rng, size)))
		if err := m.l.Append(cmd, true); err != nil {
			t.Fatal(err)
		}
		m.data = append(m.data, cmd...)
		if st := m.l.Stats(); st.RingBytes != min(64, int64(len(m.data))) {
			t.Fatalf("RingBytes %d", st.RingBytes)
		}
		m.check()
	}
}

func TestLogRingWrap(t *testing.T) {
	// Appends of sizes prime to the ring size make the ring wrap at every
	// position; each read crosses the wrap point sooner or later.
	m := newMirror(t, 3, LogOptions{RingSize: 61, SegmentSize: 1 << 20})
	for i := 0; i < 200; i++ {
		cmd := encodeCmd("INCR", strings.Repeat("k", i%13))
		if err := m.l.Append(cmd, true); err != nil {
			t.Fatal(err)
		}
		m.data = append(m.data, cmd...)
		_, next := m.l.Range()
		for _, back := range []Offset{1, 7, 30, 60, 61} {
			if next-back < m.base {
				continue
			}
			got := readUpTo(t, m.l, next-back, next, 64)
			if !bytes.Equal(got, m.data[next-back-m.base:]) {
				t.Fatalf("append %d: last %d bytes differ", i, back)
			}
		}
	}
}

func TestLogCursorRange(t *testing.T) {
	m := newMirror(t, 100, smallOpts)
	m.appendRandom(rand.New(rand.NewPCG(8, 8)), 1000, 50)
	first, next := m.l.Range()
	if _, err := m.l.Cursor(first - 1); !errors.Is(err, ErrNotRetained) {
		t.Fatalf("Cursor(First-1): %v", err)
	}
	if _, err := m.l.Cursor(0); !errors.Is(err, ErrNotRetained) {
		t.Fatalf("Cursor(0): %v", err)
	}
	if _, err := m.l.Cursor(next + 1); !errors.Is(err, ErrFuture) {
		t.Fatalf("Cursor(Next+1): %v", err)
	}
	for _, off := range []Offset{first, next} {
		c, err := m.l.Cursor(off)
		if err != nil || c.Offset() != off {
			t.Fatalf("Cursor(%d): %v", off, err)
		}
	}
	// A Read into an empty buffer returns nothing and does not move.
	c, _ := m.l.Cursor(first)
	if n, err := c.Read(context.Background(), nil); n != 0 || err != nil || c.Offset() != first {
		t.Fatalf("empty Read: n=%d err=%v", n, err)
	}
	m.l.Close()
	if _, err := m.l.Cursor(first); !errors.Is(err, ErrClosed) {
		t.Fatalf("Cursor after Close: %v", err)
	}
}

// blockedRead starts a Read at the head of the log and returns a channel
// with its outcome.
type readResult struct {
	data []byte
	err  error
}

func blockedRead(t *testing.T, l *Log, ctx context.Context) <-chan readResult {
	t.Helper()
	_, next := l.Range()
	c, err := l.Cursor(next)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan readResult, 1)
	go func() {
		buf := make([]byte, 1000)
		n, err := c.Read(ctx, buf)
		ch <- readResult{buf[:n], err}
	}()
	select {
	case r := <-ch:
		t.Fatalf("Read at the head returned at once: %q, %v", r.data, r.err)
	case <-time.After(50 * time.Millisecond):
	}
	return ch
}

func waitResult(t *testing.T, ch <-chan readResult) readResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("blocked Read did not wake")
	}
	return readResult{}
}

func TestLogCursorWakes(t *testing.T) {
	t.Run("append", func(t *testing.T) {
		m := newMirror(t, 1, smallOpts)
		for i := 0; i < 3; i++ { // from the ring, across segments
			ch := blockedRead(t, m.l, context.Background())
			cmd := encodeCmd("SET", "k", strings.Repeat("x", 40*i))
			if err := m.l.Append(cmd, true); err != nil {
				t.Fatal(err)
			}
			r := waitResult(t, ch)
			if r.err != nil || !bytes.HasPrefix(cmd, r.data) || len(r.data) == 0 {
				t.Fatalf("woken Read: %q, %v", r.data, r.err)
			}
		}
	})
	t.Run("after appends nobody waited for", func(t *testing.T) {
		m := newMirror(t, 1, smallOpts)
		m.appendRandom(rand.New(rand.NewPCG(3, 3)), 20, 50)
		c, err := m.l.Cursor(m.next())
		if err != nil {
			t.Fatal(err)
		}
		ch := make(chan readResult, 1)
		go func() {
			buf := make([]byte, 64)
			n, err := c.Read(context.Background(), buf)
			ch <- readResult{buf[:n], err}
		}()
		// Append until the reader has been woken: whether it was waiting
		// before the first Append or not, one of them must wake it.
		cmd := encodeCmd("PING")
		for {
			if err := m.l.Append(cmd, true); err != nil {
				t.Fatal(err)
			}
			select {
			case r := <-ch:
				if r.err != nil || !bytes.HasPrefix(cmd, r.data) || len(r.data) == 0 {
					t.Fatalf("woken Read: %q, %v", r.data, r.err)
				}
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	t.Run("close", func(t *testing.T) {
		m := newMirror(t, 1, smallOpts)
		ch := blockedRead(t, m.l, context.Background())
		if err := m.l.Close(); err != nil {
			t.Fatal(err)
		}
		if r := waitResult(t, ch); !errors.Is(r.err, ErrClosed) {
			t.Fatalf("Read after Close: %v", r.err)
		}
		if err := m.l.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		m := newMirror(t, 1, smallOpts)
		ctx, cancel := context.WithCancel(context.Background())
		ch := blockedRead(t, m.l, ctx)
		cancel()
		if r := waitResult(t, ch); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("Read after cancel: %v", r.err)
		}
		ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		c, _ := m.l.Cursor(m.next())
		if _, err := c.Read(ctx, make([]byte, 10)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Read past deadline: %v", err)
		}
	})
	t.Run("read after close with data", func(t *testing.T) {
		m := newMirror(t, 1, smallOpts)
		m.appendRandom(rand.New(rand.NewPCG(9, 9)), 500, 50)
		c, _ := m.l.Cursor(1)
		m.l.Close()
		if _, err := c.Read(context.Background(), make([]byte, 10)); !errors.Is(err, ErrClosed) {
			t.Fatalf("Read after Close: %v", err)
		}
	})
}

// TestLogAppendAllocs guards the append path: with no reader waiting, an
// Append allocates nothing (no wake-up channel is replaced).
func TestLogAppendAllocs(t *testing.T) {
	l, err := CreateLog(t.TempDir(), 1, LogOptions{RingSize: 1 << 20, SegmentSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cmd := encodeCmd("SET", "k", strings.Repeat("v", 100))
	if n := testing.AllocsPerRun(200, func() {
		if err := l.Append(cmd, true); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Append with no reader waiting: %v allocations, want 0", n)
	}
}

func TestLogWaitFor(t *testing.T) {
	m := newMirror(t, 10, smallOpts)
	ctx := context.Background()
	if err := m.l.WaitFor(ctx, 9); err != nil {
		t.Fatalf("WaitFor before the start: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- m.l.WaitFor(ctx, 12) }()
	cmd := encodeCmd("PING") // 14 bytes: [10, 24)
	if err := m.l.Append(cmd[:2], false); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("WaitFor(12) returned with Next=12: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := m.l.Append(cmd[2:], true); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitFor(12): %v", err)
	}
	if err := m.l.WaitFor(ctx, 23); err != nil {
		t.Fatalf("WaitFor(last byte): %v", err)
	}
	tctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := m.l.WaitFor(tctx, 24); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor(Next): %v", err)
	}
	go func() { done <- m.l.WaitFor(ctx, 1000) }()
	time.Sleep(20 * time.Millisecond)
	m.l.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitFor after Close: %v", err)
	}
}

func TestLogTrimBefore(t *testing.T) {
	m := newMirror(t, 1, smallOpts)
	m.appendRandom(rand.New(rand.NewPCG(10, 10)), 3000, 60)
	flushedSegments(t, m.l)
	names, _ := segmentFiles(m.dir)
	if len(names) < 5 {
		t.Fatalf("only %d segments", len(names))
	}
	var firsts []Offset
	for _, n := range names {
		var o Offset
		fmt.Sscanf(n, "%d.seg", &o)
		firsts = append(firsts, o)
	}
	old, err := m.l.Cursor(1)
	if err != nil {
		t.Fatal(err)
	}
	// An offset inside segment 2 keeps segment 2 and drops 0 and 1.
	cut := firsts[2] + 3
	if err := m.l.TrimBefore(cut); err != nil {
		t.Fatal(err)
	}
	if first, _ := m.l.Range(); first != firsts[2] {
		t.Fatalf("First = %d after TrimBefore(%d), want %d", first, cut, firsts[2])
	}
	if _, err := os.Stat(filepath.Join(m.dir, names[1])); !os.IsNotExist(err) {
		t.Fatalf("trimmed segment still on disk: %v", err)
	}
	if _, err := old.Read(context.Background(), make([]byte, 10)); !errors.Is(err, ErrNotRetained) {
		t.Fatalf("trimmed cursor: %v", err)
	}
	if _, err := m.l.Cursor(firsts[2] - 1); !errors.Is(err, ErrNotRetained) {
		t.Fatalf("Cursor before First: %v", err)
	}
	// Trimming at a segment's first byte keeps that segment.
	if err := m.l.TrimBefore(firsts[3]); err != nil {
		t.Fatal(err)
	}
	if first, _ := m.l.Range(); first != firsts[3] {
		t.Fatalf("First = %d, want %d", first, firsts[3])
	}
	m.data = m.data[firsts[3]-m.base:]
	m.base = firsts[3]
	m.check()
	// The newest segment is never dropped.
	if err := m.l.TrimBefore(m.next() + 1000); err != nil {
		t.Fatal(err)
	}
	st := m.l.Stats()
	if st.Segments != 1 || st.First != firsts[len(firsts)-1] || st.DiskBytes != st.Next-st.First {
		t.Fatalf("after trimming everything: %+v", st)
	}
	m.data = m.data[st.First-m.base:]
	m.base = st.First
	m.check()
	m.appendRandom(rand.New(rand.NewPCG(11, 11)), 500, 60)
	m.check()
}

// TestLogTrimWhileReading races disk reads against TrimBefore: a reader gets
// the right bytes or ErrNotRetained, nothing else.
func TestLogTrimWhileReading(t *testing.T) {
	for round := 0; round < 20; round++ {
		m := newMirror(t, 1, LogOptions{RingSize: 64, SegmentSize: 256})
		m.appendRandom(rand.New(rand.NewPCG(12, uint64(round))), 20_000, 300)
		var wg sync.WaitGroup
		for r := 0; r < 4; r++ {
			c, err := m.l.Cursor(m.base)
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 1+r*50)
				for c.Offset() < m.next() {
					at := c.Offset()
					n, err := c.Read(context.Background(), buf)
					if errors.Is(err, ErrNotRetained) {
						return
					}
					if err != nil {
						t.Errorf("Read at %d: %v", at, err)
						return
					}
					if !bytes.Equal(buf[:n], m.data[at-m.base:at-m.base+Offset(n)]) {
						t.Errorf("Read at %d returned wrong bytes", at)
						return
					}
				}
			}()
		}
		for off := m.base; off < m.next(); off += 500 {
			if err := m.l.TrimBefore(off); err != nil {
				t.Fatal(err)
			}
		}
		wg.Wait()
		m.l.Close()
	}
}

func TestLogReopen(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 13))
	m := newMirror(t, 1000, smallOpts)
	m.appendRandom(rng, 3000, 80)
	if err := m.l.Close(); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 3; round++ {
		l, repaired, err := OpenLog(m.dir, smallOpts)
		if err != nil {
			t.Fatal(err)
		}
		m.l = l
		if repaired != "" {
			t.Fatalf("clean log repaired: %s", repaired)
		}
		st := l.Stats()
		if st.First != m.base || st.Next != m.next() || st.Synced != m.next() || st.DiskBytes != int64(len(m.data)) || st.RingBytes != 0 {
			t.Fatalf("reopened stats %+v, want [%d, %d)", st, m.base, m.next())
		}
		m.check()
		m.appendRandom(rng, 700, 80)
		m.check()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	checkSegmentFiles(t, m.dir, smallOpts.SegmentSize)
}

func TestLogReopenRepairs(t *testing.T) {
	cmdA := encodeCmd("SET", "a", strings.Repeat("1", 30))
	cmdB := encodeCmd("SET", "b", strings.Repeat("2", 30))
	cases := []struct {
		name string
		tail []byte // appended to the last segment behind the log's back
		torn []byte // appended through Append with atBoundary=false
		keep int    // bytes of tail+torn that survive
	}{
		{"half a command", nil, cmdB[:20], 0},
		{"all but the last byte", nil, cmdB[:len(cmdB)-1], 0},
		{"whole command then half", nil, append(append([]byte(nil), cmdB...), cmdA[:9]...), len(cmdB)},
		{"garbage", []byte("garbage\r\n"), nil, 0},
		{"newline", []byte("\n"), nil, 0},
		{"zeros", make([]byte, 4096), nil, 0},
		{"command then garbage", append(append([]byte(nil), cmdA...), "\x00\x00\x00"...), nil, len(cmdA)},
	}
	for _, c := range cases {
		for _, freshSegment := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/fresh=%v", c.name, freshSegment), func(t *testing.T) {
				m := newMirror(t, 1, smallOpts)
				m.appendRandom(rand.New(rand.NewPCG(14, 14)), 1000, 50)
				if freshSegment {
					// End the current segment so the damage is in a new,
					// otherwise empty one.
					big := encodeCmd("SET", "fill", strings.Repeat("f", 120))
					if err := m.l.Append(big, true); err != nil {
						t.Fatal(err)
					}
					m.data = append(m.data, big...)
				}
				good := m.next()
				nsegs := flushedSegments(t, m.l)
				if c.torn != nil {
					if err := m.l.Append(c.torn, false); err != nil {
						t.Fatal(err)
					}
				}
				m.l.Close()
				if c.tail != nil {
					names, _ := segmentFiles(m.dir)
					f, err := os.OpenFile(filepath.Join(m.dir, names[len(names)-1]), os.O_WRONLY|os.O_APPEND, 0)
					if err != nil {
						t.Fatal(err)
					}
					f.Write(c.tail)
					f.Close()
				}
				l, repaired, err := OpenLog(m.dir, smallOpts)
				if err != nil {
					t.Fatal(err)
				}
				m.l = l
				t.Cleanup(func() { l.Close() })
				damage := append(append([]byte(nil), c.torn...), c.tail...)
				m.data = append(m.data, damage[:c.keep]...)
				wantRepair := c.keep < len(damage)
				if (repaired != "") != wantRepair {
					t.Fatalf("repaired = %q, want a repair: %v", repaired, wantRepair)
				}
				st := l.Stats()
				if st.Next != good+Offset(c.keep) || st.Segments != nsegs || st.DiskBytes != int64(len(m.data)) {
					t.Fatalf("after repair: %+v; want Next %d, %d segments", st, good+Offset(c.keep), nsegs)
				}
				m.check()
				// The log goes on where the repair left it, and a second
				// open finds nothing to repair.
				m.appendRandom(rand.New(rand.NewPCG(15, 15)), 300, 50)
				m.check()
				l.Close()
				l2, repaired, err := OpenLog(m.dir, smallOpts)
				if err != nil || repaired != "" {
					t.Fatalf("second open: %q, %v", repaired, err)
				}
				m.l = l2
				t.Cleanup(func() { l2.Close() })
				m.check()
				checkSegmentFiles(t, m.dir, smallOpts.SegmentSize)
			})
		}
	}
}

func TestLogOpenErrors(t *testing.T) {
	t.Run("gap", func(t *testing.T) {
		m := newMirror(t, 1, smallOpts)
		m.appendRandom(rand.New(rand.NewPCG(16, 16)), 1000, 50)
		m.l.Close()
		names, _ := segmentFiles(m.dir)
		if len(names) < 3 {
			t.Fatalf("only %d segments", len(names))
		}
		if err := os.Remove(filepath.Join(m.dir, names[1])); err != nil {
			t.Fatal(err)
		}
		// What follows a hole cannot be served: the log keeps what comes
		// before it and drops the rest.
		l, repaired, err := OpenLog(m.dir, smallOpts)
		if err != nil || !strings.Contains(repaired, "gap") {
			t.Fatalf("OpenLog with a missing segment: %q, %v", repaired, err)
		}
		defer l.Close()
		var second Offset
		fmt.Sscanf(names[1], "%d.seg", &second)
		if first, next := l.Range(); first != 1 || next != second {
			t.Fatalf("after the gap the log holds [%d, %d), want [1, %d)", first, next, second)
		}
		if left, _ := segmentFiles(m.dir); len(left) != 1 {
			t.Fatalf("%d segment files left, want 1", len(left))
		}
	})
	t.Run("overlap", func(t *testing.T) {
		m := newMirror(t, 1, smallOpts)
		m.appendRandom(rand.New(rand.NewPCG(17, 17)), 1000, 50)
		m.l.Close()
		names, _ := segmentFiles(m.dir)
		data, _ := os.ReadFile(filepath.Join(m.dir, names[1]))
		os.WriteFile(filepath.Join(m.dir, names[1]), append(data, encodeCmd("PING")...), 0o644)
		if l, _, err := OpenLog(m.dir, smallOpts); err == nil {
			l.Close()
			t.Fatal("OpenLog with overlapping segments succeeded")
		}
	})
	t.Run("empty dir", func(t *testing.T) {
		if _, _, err := OpenLog(t.TempDir(), smallOpts); err == nil {
			t.Fatal("OpenLog of an empty directory succeeded")
		}
	})
	t.Run("missing dir", func(t *testing.T) {
		if _, _, err := OpenLog(filepath.Join(t.TempDir(), "nope"), smallOpts); err == nil {
			t.Fatal("OpenLog of a missing directory succeeded")
		}
	})
	t.Run("create over segments", func(t *testing.T) {
		m := newMirror(t, 1, smallOpts)
		m.l.Close()
		if l, err := CreateLog(m.dir, 1, smallOpts); err == nil {
			l.Close()
			t.Fatal("CreateLog over an existing log succeeded")
		}
	})
	t.Run("other files ignored", func(t *testing.T) {
		m := newMirror(t, 5, smallOpts)
		m.appendRandom(rand.New(rand.NewPCG(18, 18)), 500, 50)
		m.l.Close()
		for _, junk := range []string{"README", "123.seg", "x0000000000000000000.seg", "00000000000000000001.seg.tmp", "-0000000000000000001.seg"} {
			os.WriteFile(filepath.Join(m.dir, junk), []byte("junk"), 0o644)
		}
		l, repaired, err := OpenLog(m.dir, smallOpts)
		if err != nil || repaired != "" {
			t.Fatalf("OpenLog with junk files: %q, %v", repaired, err)
		}
		m.l = l
		defer l.Close()
		m.check()
	})
}

func TestLogSyncAndStats(t *testing.T) {
	m := newMirror(t, 1, smallOpts)
	if off, err := m.l.Sync(); err != nil || off != 1 {
		t.Fatalf("Sync of an empty log: %d, %v", off, err)
	}
	m.appendRandom(rand.New(rand.NewPCG(19, 19)), 1000, 50)
	if st := m.l.Stats(); st.Synced > st.Next || st.Synced < 1 {
		t.Fatalf("Synced %d out of range", st.Synced)
	}
	off, err := m.l.Sync()
	if err != nil || off != m.next() || m.l.Stats().Synced != m.next() {
		t.Fatalf("Sync = %d, %v; Next %d", off, err, m.next())
	}
	// Rolling a segment does not wait for the disk: Synced stays until
	// the next Sync, which covers every segment written since.
	before := m.l.Stats().Synced
	m.appendRandom(rand.New(rand.NewPCG(20, 20)), 1000, 50)
	if st := m.l.Stats(); st.Synced != before {
		t.Fatalf("Synced moved from %d to %d without a Sync", before, st.Synced)
	}
	if off, err := m.l.Sync(); err != nil || off != m.next() {
		t.Fatalf("Sync after rolling segments = %d, %v; want %d", off, err, m.next())
	}
}

func TestLogAppendAfterClose(t *testing.T) {
	m := newMirror(t, 1, smallOpts)
	if err := m.l.Append(nil, true); err != nil {
		t.Fatalf("empty Append: %v", err)
	}
	m.l.Close()
	if err := m.l.Append(encodeCmd("PING"), true); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if _, err := m.l.Sync(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close: %v", err)
	}
}

// TestLogCloseWhileAppending closes the log under a busy appender: Append
// must fail cleanly (ErrClosed), never panic.
func TestLogCloseWhileAppending(t *testing.T) {
	cmd := encodeCmd("SET", "k", "v")
	for round := 0; round < 200; round++ {
		l, err := CreateLog(t.TempDir(), 1, LogOptions{RingSize: 1024, SegmentSize: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			for {
				if err := l.Append(cmd, true); err != nil {
					done <- err
					return
				}
			}
		}()
		time.Sleep(time.Duration(round%5) * 100 * time.Microsecond)
		l.Close()
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Fatalf("round %d: Append during Close: %v", round, err)
		}
	}
}

func TestLogRemove(t *testing.T) {
	m := newMirror(t, 1, smallOpts)
	m.appendRandom(rand.New(rand.NewPCG(21, 21)), 500, 50)
	if err := m.l.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.dir); !os.IsNotExist(err) {
		t.Fatalf("log dir still there: %v", err)
	}
}

// TestLogConcurrentReaders runs one appender, a syncer and 8 cursors that
// each read the whole stream, compared byte for byte with what was appended.
func TestLogConcurrentReaders(t *testing.T) {
	rng := rand.New(rand.NewPCG(22, 22))
	stream, ends := randStream(rng, 512<<10)
	isEnd := map[int]bool{}
	for _, e := range ends {
		isEnd[e] = true
	}
	const start = 1
	l, err := CreateLog(t.TempDir(), start, LogOptions{RingSize: 4096, SegmentSize: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for r := 0; r < 8; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := l.Cursor(start)
			if err != nil {
				t.Error(err)
				return
			}
			buf := make([]byte, []int{3, 13, 100, 512, 4096, 5000, 65536, 300}[r])
			for c.Offset() < start+Offset(len(stream)) {
				at := c.Offset() - start
				n, err := c.Read(ctx, buf)
				if err != nil {
					t.Errorf("reader %d at %d: %v", r, at, err)
					return
				}
				if !bytes.Equal(buf[:n], stream[at:at+Offset(n)]) {
					t.Errorf("reader %d: wrong bytes at offset %d", r, at+start)
					return
				}
			}
		}()
	}
	wg.Add(1)
	stop := make(chan struct{})
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := l.Sync(); err != nil {
				t.Errorf("Sync: %v", err)
				return
			}
			_ = l.Stats()
			time.Sleep(time.Millisecond)
		}
	}()
	prng := rand.New(rand.NewPCG(23, 23))
	for at := 0; at < len(stream); {
		n := min(1+prng.IntN(8000), len(stream)-at)
		if prng.IntN(2) == 0 {
			for !isEnd[at+n] {
				n++
			}
		}
		if err := l.Append(stream[at:at+n], isEnd[at+n]); err != nil {
			t.Fatal(err)
		}
		at += n
	}
	close(stop)
	wg.Wait()
	if st := l.Stats(); st.Next != start+Offset(len(stream)) || st.Segments < 10 {
		t.Fatalf("stats %+v", st)
	}
}

// TestLogModel runs random sequences of appends (sometimes ending in the
// middle of a command), trims, and close/reopen cycles, and checks the log
// against a model after each step.
func TestLogModel(t *testing.T) {
	for seed := uint64(0); seed < 16; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 77))
			opt := LogOptions{RingSize: 32 + rng.IntN(200), SegmentSize: int64(50 + rng.IntN(400))}
			m := newMirror(t, Offset(1+rng.IntN(1000)), opt)
			whole := 0 // len(m.data) at the end of the last whole command
			for step := 0; step < 40; step++ {
				switch op := rng.IntN(11); {
				case op < 5:
					if whole != len(m.data) { // finish the torn command first
						break
					}
					m.appendRandom(rng, 1+rng.IntN(400), 1+rng.IntN(200))
					whole = len(m.data)
				case op == 5 && whole == len(m.data):
					// Half a command, as when the master link drops.
					cmd := encodeCmd("SET", "torn", string(randBytes(rng, rng.IntN(100))))
					cut := 1 + rng.IntN(len(cmd)-1)
					if err := m.l.Append(cmd[:cut], false); err != nil {
						t.Fatal(err)
					}
					m.data = append(m.data, cmd[:cut]...)
				case op == 6:
					first, next := m.l.Range()
					off := first + Offset(rng.Int64N(int64(next-first)+1))
					if err := m.l.TrimBefore(off); err != nil {
						t.Fatal(err)
					}
					nf, _ := m.l.Range()
					if nf < first || nf > off && nf != first {
						t.Fatalf("TrimBefore(%d) moved First from %d to %d", off, first, nf)
					}
					m.data = m.data[nf-m.base:]
					whole -= int(nf - m.base)
					m.base = nf
				case op == 7:
					if err := m.l.Close(); err != nil {
						t.Fatal(err)
					}
					l, repaired, err := OpenLog(m.dir, opt)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { l.Close() })
					if (repaired != "") != (whole != len(m.data)) {
						t.Fatalf("repaired=%q with %d torn bytes", repaired, len(m.data)-whole)
					}
					m.l = l
					if whole < 0 {
						t.Fatalf("torn command trimmed away")
					}
					m.data = m.data[:whole]
				case op == 8:
					// The link dropped: cut back to the last whole command.
					// Readers past the cut fail, the others go on.
					first, next := m.l.Range()
					c, err := m.l.Cursor(first + Offset(rng.Int64N(int64(next-first)+1)))
					if err != nil {
						t.Fatal(err)
					}
					for c.Offset() < next {
						buf := make([]byte, 1+rng.IntN(300))
						if _, err := c.Read(context.Background(), buf); err != nil {
							t.Fatal(err)
						}
					}
					cut, err := m.l.CutToResumePoint()
					if err != nil || cut != int64(len(m.data)-whole) {
						t.Fatalf("CutToResumePoint = %d, %v; want %d", cut, err, len(m.data)-whole)
					}
					m.data = m.data[:whole]
					buf := make([]byte, 10)
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
					_, err = c.Read(ctx, buf)
					cancel()
					if wantCut := cut > 0 && c.Offset() > m.next(); wantCut != errors.Is(err, ErrTruncated) {
						t.Fatalf("cursor at %d after a cut to %d: %v", c.Offset(), m.next(), err)
					}
				default:
					m.check()
				}
			}
			m.check()
		})
	}
}

// TestLastResumePoint: the newest resume point is where the last append
// that ended on one left off; an append that ends mid-command or inside a
// transaction leaves it, and Truncate pulls it back.
func TestLastResumePoint(t *testing.T) {
	l, err := CreateLog(t.TempDir(), 100, LogOptions{RingSize: 1 << 20, SegmentSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	set := []byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")
	multi := []byte("*1\r\n$5\r\nMULTI\r\n")
	steps := []struct {
		p          []byte
		atBoundary bool
		want       Offset
	}{
		{set, true, 100 + Offset(len(set))},
		{multi, false, 100 + Offset(len(set))},
		{set[:5], false, 100 + Offset(len(set))},
	}
	for i, st := range steps {
		if err := l.Append(st.p, st.atBoundary); err != nil {
			t.Fatal(err)
		}
		if got := l.LastResumePoint(); got != st.want {
			t.Fatalf("step %d: LastResumePoint = %d, want %d", i, got, st.want)
		}
	}
	if err := l.Truncate(105); err != nil {
		t.Fatal(err)
	}
	if got := l.LastResumePoint(); got != 105 {
		t.Fatalf("after Truncate(105): LastResumePoint = %d, want 105", got)
	}
}
