package replstream

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkLogAppendSmall appends one 140-byte SET at a time, each
// Append taking a time mark when 10 ms have passed: the path every
// command from the master takes.
func BenchmarkLogAppendSmall(b *testing.B) {
	cmd := encodeCmd("SET", "key:000000", string(make([]byte, 110)))
	l := benchLog(b)
	b.SetBytes(int64(len(cmd)))
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Append(cmd, true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLogTrimDayIndex: a log of 300 segments whose time index holds a
// day of marks (8.64 million). Each op trims the oldest segment while
// another goroutine appends a 140-byte command every 100 µs or so (well
// within what the disk takes); max-append-µs is the longest that one
// Append took meanwhile.
func BenchmarkLogTrimDayIndex(b *testing.B) {
	l, firsts := dayIndexLog(b)
	cmd := encodeCmd("SET", "key:000000", string(make([]byte, 110)))
	var worst atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			if err := l.Append(cmd, true); err != nil {
				b.Error(err)
				return
			}
			if d := time.Since(t0).Nanoseconds(); d > worst.Load() {
				worst.Store(d)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	i := 1
	for b.Loop() {
		if i >= len(firsts) {
			b.Fatal("out of segments to trim")
		}
		if err := l.TrimBefore(firsts[i]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(worst.Load())/1e3, "max-append-µs")
}

// dayIndexLog builds a log of 300 segments of 64 KiB and gives it a day of
// time marks, two bytes apart, written as the log writes them.
func dayIndexLog(b *testing.B) (*Log, []Offset) {
	b.Helper()
	l, err := CreateLog(b.TempDir(), 1, LogOptions{RingSize: 1 << 20, SegmentSize: 64 << 10})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	chunk := benchChunkData()
	for range 300 * 4 {
		if err := l.Append(chunk, true); err != nil {
			b.Fatal(err)
		}
		if _, err := l.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	var firsts []Offset
	for _, s := range l.Segments() {
		firsts = append(firsts, s.First)
	}
	const perDay = int(24 * time.Hour / markEvery)
	first, next := l.Range()
	if next-first < 2*Offset(perDay) {
		b.Fatalf("log of %d bytes, too short for a day of marks", next-first)
	}
	start := time.Now().Add(-24 * time.Hour)
	ms := make([]mark, perDay)
	for i := range ms {
		ms[i] = mark{off: first + 2*Offset(i), nano: start.Add(time.Duration(i) * markEvery).UnixNano()}
	}
	putMarks(b, l, ms)
	if len(firsts) < 200 {
		b.Fatalf("%d segments", len(firsts))
	}
	return l, firsts
}

// putMarks gives l the marks ms, as if it had taken them.
func putMarks(b *testing.B, l *Log, ms []mark) {
	b.Helper()
	l.mu.Lock()
	l.times.pending = append(l.times.pending, ms...)
	l.times.last = ms[len(ms)-1]
	l.mu.Unlock()
	if _, err := l.Sync(); err != nil {
		b.Fatal(err)
	}
}
