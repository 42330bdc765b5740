package replstream

import (
	"testing"
	"time"
)

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
	check := func(ms []TimeMark) {
		t.Helper()
		for i, b := range bounds {
			if got := OffsetAfter(ms, times[i].Add(-time.Millisecond), m.next()); got != b {
				t.Fatalf("OffsetAfter(just before pause %d) = %d, want %d", i, got, b)
			}
			if at, ok := TimeOf(ms, b); !ok || at.Before(times[i]) {
				t.Fatalf("TimeOf(%d) = %v, %v; want at or after %v", b, at, ok, times[i])
			}
		}
		if got := OffsetAfter(ms, time.Now(), m.next()); got != m.next() {
			t.Fatalf("OffsetAfter(now) = %d, want Next %d", got, m.next())
		}
	}
	check(m.l.TimeMarks())
	if _, err := m.l.Sync(); err != nil {
		t.Fatal(err)
	}
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
	check(m.l.TimeMarks())
	m.l.Close()
	l, _, err := OpenLog(m.dir, smallOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	check(l.TimeMarks())
	ms, err := ReadTimeIndex(m.dir, 1, m.next())
	if err != nil || len(ms) != len(l.TimeMarks()) {
		t.Fatalf("ReadTimeIndex: %d marks, %v; the log holds %d", len(ms), err, len(l.TimeMarks()))
	}
}
