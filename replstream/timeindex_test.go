package replstream

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// openIndex syncs l and opens its time index on disk.
func openIndex(t testing.TB, l *Log) *TimeIndex {
	t.Helper()
	if _, err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	first, next := l.Range()
	x, err := OpenTimeIndex(l.Dir(), first, next)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

func TestTimeIndex(t *testing.T) {
	m := newMirror(t, 1, LogOptions{RingSize: 4096, SegmentSize: 1 << 20})
	var bounds []Offset // offsets of the first byte appended after each pause
	var times []time.Time
	for i := range 4 {
		if i > 0 {
			time.Sleep(3 * markEvery)
		}
		times = append(times, time.Now())
		bounds = append(bounds, m.next())
		cmd := encodeCmd("SET", "k", "v")
		for range 3 {
			if err := m.l.Append(cmd, true); err != nil {
				t.Fatal(err)
			}
			m.data = append(m.data, cmd...)
		}
	}
	check := func(x *TimeIndex) {
		t.Helper()
		for i, b := range bounds {
			if got, err := x.OffsetAfter(times[i].Add(-time.Millisecond)); err != nil || got != b {
				t.Fatalf("OffsetAfter(just before pause %d) = %d, %v; want %d", i, got, err, b)
			}
			if at, ok, err := x.TimeOf(b); !ok || err != nil || at.Before(times[i]) {
				t.Fatalf("TimeOf(%d) = %v, %v, %v; want at or after %v", b, at, ok, err, times[i])
			}
		}
		if got, err := x.OffsetAfter(time.Now()); err != nil || got != m.next() {
			t.Fatalf("OffsetAfter(now) = %d, %v; want Next %d", got, err, m.next())
		}
	}
	check(openIndex(t, m.l))
	// A truncated tail takes its marks along, also on disk.
	half := encodeCmd("SET", "half", "value")[:7]
	time.Sleep(3 * markEvery)
	if err := m.l.Append(half, false); err != nil {
		t.Fatal(err)
	}
	if _, err := m.l.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.l.CutToResumePoint(); err != nil {
		t.Fatal(err)
	}
	x := openIndex(t, m.l)
	check(x)
	if newest, _, _ := x.Newest(); !m.l.NewestTime().Equal(newest.Time) || newest.Offset >= m.next() {
		t.Fatalf("after the cut: newest mark %+v, NewestTime %v; next %d", newest, m.l.NewestTime(), m.next())
	}
	m.l.Close()
	l, _, err := OpenLog(m.dir, smallOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	check(openIndex(t, l))
	if got := l.NewestTime(); !got.Equal(m.l.NewestTime()) {
		t.Fatalf("NewestTime after reopening %v, before %v", got, m.l.NewestTime())
	}
}

// TestTimeIndexDay: a day of writes, one every 10 ms, by a synthetic
// clock. The log holds a bounded few marks in memory, whatever their
// number, and the index on disk resolves every time to within 10 ms, from
// the oldest hour to the newest.
func TestTimeIndexDay(t *testing.T) {
	if testing.Short() {
		t.Skip("a day of marks")
	}
	const (
		perDay  = int(24 * time.Hour / markEvery)
		perSync = int(time.Hour / markEvery)
		// The bound stated: what the log holds of the index in memory
		// does not grow with the marks (a day of them held whole took 32
		// bytes a mark: 276 MB). It holds the marks of bytes the disk has
		// not taken yet: here, where a day passes in seconds, up to one
		// per append in the ring; with a real clock, one per 10 ms of
		// write-behind lag.
		memBound = 1 << 20
	)
	dir := filepath.Join(t.TempDir(), "log")
	l, err := CreateLog(dir, 1, LogOptions{RingSize: 256 << 10, SegmentSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	start := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	now := start
	l.clock = func() time.Time { return now }
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	cmd := []byte("*1\r\n$4\r\nPING\r\n")
	peak := 0 // the most marks the log held in memory at once, sampled
	for i := range perDay {
		now = start.Add(time.Duration(i) * markEvery)
		if err := l.Append(cmd, true); err != nil {
			t.Fatal(err)
		}
		if i%10000 == 0 {
			l.mu.RLock()
			peak = max(peak, cap(l.times.pending))
			l.mu.RUnlock()
		}
		if i%perSync == perSync-1 {
			if _, err := l.Sync(); err != nil { // the write-behind writes marks without it
				t.Fatal(err)
			}
		}
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("a day: %d marks; heap grew %d bytes; at most %d marks (%d bytes) in memory; %d segments", perDay, grown, peak, peak*markSize, l.Stats().Segments)
	if grown > memBound || peak*markSize > memBound {
		t.Fatalf("heap grew by %d bytes, marks held up to %d bytes: want both under %d", grown, peak*markSize, memBound)
	}
	x := openIndex(t, l)
	if x.Len() != perDay {
		t.Fatalf("%d marks on disk, want %d", x.Len(), perDay)
	}
	off := func(i int) Offset { return 1 + Offset(i*len(cmd)) } // of write i
	for _, i := range []int{0, 1, 4321, perDay / 3, perDay / 2, perDay - 360000, perDay - 2, perDay - 1} {
		at := start.Add(time.Duration(i) * markEvery)
		if got, err := x.OffsetAfter(at.Add(markEvery / 2)); err != nil || got != off(i+1) {
			t.Fatalf("OffsetAfter(write %d + 5 ms) = %d, %v; want %d", i, got, err, off(i+1))
		}
		if got, err := x.OffsetAfter(at.Add(-time.Nanosecond)); err != nil || got != off(i) {
			t.Fatalf("OffsetAfter(just before write %d) = %d, %v; want %d", i, got, err, off(i))
		}
		if got, ok, err := x.TimeOf(off(i) + 3); err != nil || !ok || !got.Equal(at) {
			t.Fatalf("TimeOf(inside write %d) = %v, %v, %v; want %v", i, got, ok, err, at)
		}
	}
	// Trimming drops index files with their segments; nothing else moves.
	segs := l.Segments()
	newest := filepath.Join(dir, indexName(segs[len(segs)-1].First))
	st0, err := os.Stat(newest)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.TrimBefore(segs[len(segs)/2].First); err != nil {
		t.Fatal(err)
	}
	names, err := indexFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != l.Stats().Segments {
		t.Fatalf("%d index files for %d segments after a trim", len(names), l.Stats().Segments)
	}
	if st1, err := os.Stat(newest); err != nil || !os.SameFile(st0, st1) {
		t.Fatalf("the newest index file was replaced by the trim (%v)", err)
	}
	x = openIndex(t, l)
	first, _ := l.Range()
	if m, err := x.At(0); err != nil || m.Offset < first || x.Len() >= perDay {
		t.Fatalf("after the trim: first mark %+v (%v) of %d; the log starts at %d", m, err, x.Len(), first)
	}
}

// TestTimeIndexLegacy: the single times.idx of earlier versions is read
// as it is, and converted into the segments' files when the log opens.
func TestTimeIndexLegacy(t *testing.T) {
	m := newMirror(t, 1, LogOptions{RingSize: 4096, SegmentSize: 200})
	start := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	var legacy []byte
	var offs []Offset
	for i := range 40 {
		offs = append(offs, m.next())
		legacy = appendMark(legacy, mark{off: m.next(), nano: start.Add(time.Duration(i) * time.Second).UnixNano()})
		cmd := encodeCmd("SET", "k", "value")
		if err := m.l.Append(cmd, true); err != nil {
			t.Fatal(err)
		}
		m.data = append(m.data, cmd...)
		if i%5 == 4 {
			flushedSegments(t, m.l) // a segment every 200 bytes
		}
	}
	m.l.Close()
	// What an earlier version left: no .times files, one times.idx.
	names, _ := indexFiles(m.dir)
	for _, name := range names {
		os.Remove(filepath.Join(m.dir, name))
	}
	if err := os.WriteFile(filepath.Join(m.dir, legacyIndexFile), legacy, 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(what string) {
		t.Helper()
		x, err := OpenTimeIndex(m.dir, 1, m.next())
		if err != nil {
			t.Fatal(err)
		}
		defer x.Close()
		if x.Len() != len(offs) {
			t.Fatalf("%s: %d marks, want %d", what, x.Len(), len(offs))
		}
		for i, o := range offs {
			if got, err := x.OffsetAfter(start.Add(time.Duration(i)*time.Second - time.Millisecond)); err != nil || got != o {
				t.Fatalf("%s: OffsetAfter(mark %d) = %d, %v; want %d", what, i, got, err, o)
			}
		}
	}
	check("times.idx")
	l, _, err := OpenLog(m.dir, smallOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := os.Stat(filepath.Join(m.dir, legacyIndexFile)); !os.IsNotExist(err) {
		t.Fatalf("times.idx still there after the log opened (%v)", err)
	}
	if names, _ := indexFiles(m.dir); len(names) < 2 {
		t.Fatalf("converted into %d files", len(names))
	}
	check("converted")
	if got, want := l.NewestTime(), start.Add(39*time.Second); !got.Equal(want) {
		t.Fatalf("NewestTime %v, want %v", got, want)
	}
}

// FuzzTimeIndex: whatever the index files hold, opening the log and
// searching the index neither fails nor panics, and a time resolves to an
// offset within the log's range.
func FuzzTimeIndex(f *testing.F) {
	var seed []byte
	for i := range 8 {
		seed = appendMark(seed, mark{off: 1 + Offset(i*14), nano: int64(1e18) + int64(i)*int64(markEvery)})
	}
	f.Add(seed, false)
	f.Add(seed[:37], true)
	f.Add([]byte{}, false)
	// A log of 10 PINGs in segments of 5, built once; each run works on a
	// copy of its segments.
	tmpl := f.TempDir()
	l, err := CreateLog(tmpl, 1, LogOptions{RingSize: 4096, SegmentSize: 64})
	if err != nil {
		f.Fatal(err)
	}
	cmd := []byte("*1\r\n$4\r\nPING\r\n")
	for range 10 {
		if err := l.Append(cmd, true); err != nil {
			f.Fatal(err)
		}
		if _, err := l.Sync(); err != nil {
			f.Fatal(err)
		}
	}
	l.Close()
	segs, err := segmentFiles(tmpl)
	if err != nil || len(segs) < 2 {
		f.Fatalf("template log: %v segments, %v", segs, err)
	}
	f.Fuzz(func(t *testing.T, raw []byte, legacy bool) {
		dir := t.TempDir()
		for _, name := range segs {
			b, err := os.ReadFile(filepath.Join(tmpl, name))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		name := indexName(1)
		if legacy {
			name = legacyIndexFile
		}
		if err := os.WriteFile(filepath.Join(dir, name), raw, 0o644); err != nil {
			t.Fatal(err)
		}
		query := func() {
			first, next := Offset(1), Offset(1+10*len(cmd))
			x, err := OpenTimeIndex(dir, first, next)
			if err != nil {
				t.Fatal(err)
			}
			defer x.Close()
			for _, at := range []time.Time{{}, time.Unix(0, 1e18), time.Unix(0, 1e18+int64(markEvery)*3+1), time.Unix(1<<40, 0)} {
				if o, err := x.OffsetAfter(at); err != nil || o < first || o > next {
					t.Fatalf("OffsetAfter(%v) = %d, %v", at, o, err)
				}
			}
			for o := first; o <= next; o += 7 {
				if _, _, err := x.TimeOf(o); err != nil {
					t.Fatal(err)
				}
			}
			for i := range x.Len() {
				if _, err := x.At(i); err != nil {
					t.Fatalf("mark %d: %v", i, err)
				}
			}
		}
		query()
		l, _, err := OpenLog(dir, LogOptions{RingSize: 4096, SegmentSize: 64})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Append(cmd, true); err != nil {
			t.Fatal(err)
		}
		l.Close()
		query()
	})
}

// TestTimeIndexHeldAcrossTrim: an index opened before a trim still
// resolves times in the segments the trim removed, as a tool reading a
// running relay's data dir needs (it opens the index before the log).
func TestTimeIndexHeldAcrossTrim(t *testing.T) {
	m := newMirror(t, 1, LogOptions{RingSize: 4096, SegmentSize: 100})
	start := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	now := start
	m.l.clock = func() time.Time { return now }
	cmd := encodeCmd("SET", "k", "value")
	for i := range 30 {
		now = start.Add(time.Duration(i) * time.Second)
		if err := m.l.Append(cmd, true); err != nil {
			t.Fatal(err)
		}
		m.data = append(m.data, cmd...)
		if i%3 == 2 {
			flushedSegments(t, m.l)
		}
	}
	x, err := OpenTimeIndex(m.dir, 0, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	segs := m.l.Segments()
	if len(segs) < 4 {
		t.Fatalf("%d segments", len(segs))
	}
	if err := m.l.TrimBefore(segs[3].First); err != nil {
		t.Fatal(err)
	}
	if err := x.Clip(1, m.next()); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		want := 1 + Offset(i*len(cmd))
		if got, err := x.OffsetAfter(start.Add(time.Duration(i)*time.Second - time.Millisecond)); err != nil || got != want {
			t.Fatalf("OffsetAfter(write %d) = %d, %v; want %d", i, got, err, want)
		}
	}
}
