package replstream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/redis-relay/redis-relay/internal/fsutil"
)

// The time index of a Log: when its bytes arrived. Each mark says "the
// byte at Offset, and those after it up to the next mark, were appended
// at or after Time". Append takes a mark when at least markEvery has
// passed since the previous one, so a point in time resolves to a stream
// offset within markEvery. Marks are kept in memory and written to
// times.idx in the log's directory by Sync (16 bytes a mark: offset and
// Unix nanoseconds, little endian); a mark past the log's end after a
// crash is dropped when the log is opened.

// TimeMark pairs a stream offset with the wall-clock time it arrived.
type TimeMark struct {
	Offset Offset
	Time   time.Time
}

const (
	timeIndexFile = "times.idx"
	markSize      = 16
	markEvery     = 10 * time.Millisecond
)

// timeIndex is guarded by Log.mu.
type timeIndex struct {
	marks   []TimeMark
	written int // marks already in the file
}

func (ti *timeIndex) mark(off Offset, now time.Time) {
	if n := len(ti.marks); n > 0 && (now.Sub(ti.marks[n-1].Time) < markEvery || ti.marks[n-1].Offset == off) {
		return
	}
	ti.marks = append(ti.marks, TimeMark{Offset: off, Time: now})
}

func encodeMarks(ms []TimeMark) []byte {
	b := make([]byte, 0, len(ms)*markSize)
	for _, m := range ms {
		b = binary.LittleEndian.AppendUint64(b, uint64(m.Offset))
		b = binary.LittleEndian.AppendUint64(b, uint64(m.Time.UnixNano()))
	}
	return b
}

// ReadTimeIndex reads the marks of the log in dir, oldest first, keeping
// only those in [first, next) and in increasing order. A missing file is
// an empty index.
func ReadTimeIndex(dir string, first, next Offset) ([]TimeMark, error) {
	raw, err := os.ReadFile(filepath.Join(dir, timeIndexFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read time index: %w", err)
	}
	var ms []TimeMark
	for i := 0; i+markSize <= len(raw); i += markSize {
		m := TimeMark{
			Offset: Offset(binary.LittleEndian.Uint64(raw[i:])),
			Time:   time.Unix(0, int64(binary.LittleEndian.Uint64(raw[i+8:]))),
		}
		if m.Offset < first || m.Offset >= next {
			continue
		}
		if n := len(ms); n > 0 && (m.Offset <= ms[n-1].Offset || m.Time.Before(ms[n-1].Time)) {
			continue // written twice around a truncation, or a clock step back
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// TimeOf is the earliest time the byte at off can have arrived: the time of
// the last mark at or before it. ok is false before the first mark.
func TimeOf(ms []TimeMark, off Offset) (t time.Time, ok bool) {
	i := sort.Search(len(ms), func(i int) bool { return ms[i].Offset > off })
	if i == 0 {
		return time.Time{}, false
	}
	return ms[i-1].Time, true
}

// OffsetAfter is the offset of the first byte known to have arrived after
// t (the first mark later than t), or next when no mark is.
func OffsetAfter(ms []TimeMark, t time.Time, next Offset) Offset {
	i := sort.Search(len(ms), func(i int) bool { return ms[i].Time.After(t) })
	if i == len(ms) {
		return next
	}
	return ms[i].Offset
}

// writeTimeIndex appends the marks taken since the last call to times.idx.
// Called by Sync, before the segments are fsynced.
func (l *Log) writeTimeIndex() error {
	l.tmu.Lock()
	defer l.tmu.Unlock()
	l.mu.Lock()
	pending := l.times.marks[l.times.written:]
	l.times.written = len(l.times.marks)
	l.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(l.dir, timeIndexFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open time index: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(encodeMarks(pending)); err != nil {
		return fmt.Errorf("write time index: %w", err)
	}
	return f.Sync()
}

// rewriteTimeIndex replaces times.idx with the marks of bytes still in the
// log. Called by TrimBefore and Truncate.
func (l *Log) rewriteTimeIndex() error {
	l.tmu.Lock()
	defer l.tmu.Unlock()
	l.mu.Lock()
	first, next := l.first, l.next
	i := sort.Search(len(l.times.marks), func(i int) bool { return l.times.marks[i].Offset >= first })
	j := sort.Search(len(l.times.marks), func(j int) bool { return l.times.marks[j].Offset >= next })
	l.times.marks = append([]TimeMark(nil), l.times.marks[i:j]...)
	l.times.written = len(l.times.marks)
	raw := encodeMarks(l.times.marks)
	l.mu.Unlock()
	if err := fsutil.WriteFile(filepath.Join(l.dir, timeIndexFile), raw, 0o644); err != nil {
		return fmt.Errorf("rewrite time index: %w", err)
	}
	return nil
}

// NewestTime is when the newest mark was taken: about when the newest
// bytes arrived (zero before any).
func (l *Log) NewestTime() time.Time {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if n := len(l.times.marks); n > 0 {
		return l.times.marks[n-1].Time
	}
	return time.Time{}
}

// TimeMarks returns the marks of the bytes the log holds, oldest first.
func (l *Log) TimeMarks() []TimeMark {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return append([]TimeMark(nil), l.times.marks...)
}
