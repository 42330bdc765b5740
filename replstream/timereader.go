package replstream

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// TimeIndex reads the time index of a log on disk without changing it:
// for tools beside a running relay, or on a copy of its data dir. It
// searches the files in place; what it holds in memory does not grow with
// the index. It sees the marks of offsets in [first, next) that the files
// held when it was opened.
type TimeIndex struct {
	parts []indexPart // oldest first
	lo    int         // the marks before lo are of offsets before first
	hi    int         // the marks from hi on are of offsets at or after next
	total int         // marks in parts
	first Offset
	next  Offset
}

// indexPart is one segment's file, or the marks of a times.idx file.
type indexPart struct {
	f    *os.File
	mem  []mark // the marks of a times.idx file (f is nil)
	base int    // the index of its first mark among all
	n    int
}

// OpenTimeIndex opens the index of the log in dir for the offsets in
// [first, next). A log without an index has no marks.
func OpenTimeIndex(dir string, first, next Offset) (*TimeIndex, error) {
	x := &TimeIndex{first: first, next: next}
	names, err := indexFiles(dir)
	if err != nil {
		return nil, err
	}
	if legacy, err := readLegacyIndex(filepath.Join(dir, legacyIndexFile), first, next); err != nil {
		return nil, err
	} else if len(legacy) > 0 {
		// Not converted yet: an older version's index, whole in one file.
		x.parts = []indexPart{{mem: legacy, n: len(legacy)}}
		names = nil
	}
	firsts := make([]Offset, 0, len(names))
	for f := range names {
		firsts = append(firsts, f)
	}
	sort.Slice(firsts, func(i, j int) bool { return firsts[i] < firsts[j] })
	var prev mark
	total := 0
	for i, f := range firsts {
		end := next
		if i+1 < len(firsts) {
			end = firsts[i+1]
		}
		if end <= first || f >= next {
			continue
		}
		p, last, ok, err := openIndexPart(filepath.Join(dir, names[f]), f, end, i == len(firsts)-1, prev)
		if err != nil {
			x.Close()
			return nil, err
		}
		if !ok {
			continue
		}
		p.base = total
		total += p.n
		x.parts = append(x.parts, p)
		prev = last
	}
	if len(x.parts) == 1 && x.parts[0].mem != nil {
		total = x.parts[0].n
	}
	x.total = total
	if err := x.Clip(first, next); err != nil {
		x.Close()
		return nil, err
	}
	return x, nil
}

// Clip narrows the index to the marks of offsets in [first, next). A tool
// that reads a running relay's data dir opens the index first, over every
// offset, then the log, then clips the index to the log's range: a
// segment trimmed in between keeps its marks, held open.
func (x *TimeIndex) Clip(first, next Offset) error {
	lo, err := x.search(0, x.total, func(m mark) bool { return m.off >= first })
	if err != nil {
		return err
	}
	hi, err := x.search(lo, x.total, func(m mark) bool { return m.off >= next })
	if err != nil {
		return err
	}
	x.lo, x.hi, x.first, x.next = lo, hi, first, next
	return nil
}

// openIndexPart opens the index file of the segment that holds [first,
// end). A file whose first or last mark is out of that range (the newest
// may hold marks past its end: of bytes appended since), or not after
// prev, is left out (ok false): it cannot be searched with the rest.
func openIndexPart(name string, first, end Offset, newest bool, prev mark) (p indexPart, last mark, ok bool, err error) {
	f, err := os.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return p, last, false, nil // trimmed meanwhile
	}
	if err != nil {
		return p, last, false, fmt.Errorf("open time index: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return p, last, false, fmt.Errorf("stat time index: %w", err)
	}
	p = indexPart{f: f, n: int(st.Size() / markSize)}
	if p.n == 0 {
		f.Close()
		return p, last, false, nil
	}
	var raw [2 * markSize]byte
	if _, err := f.ReadAt(raw[:markSize], 0); err != nil {
		f.Close()
		return p, last, false, fmt.Errorf("read time index: %w", err)
	}
	if _, err := f.ReadAt(raw[markSize:], int64(p.n-1)*markSize); err != nil {
		f.Close()
		return p, last, false, fmt.Errorf("read time index: %w", err)
	}
	head, tail := decodeMark(raw[:]), decodeMark(raw[markSize:])
	if head.off < first || tail.off < head.off || tail.nano < head.nano || !newest && tail.off >= end ||
		prev.nano != 0 && (head.off <= prev.off || head.nano < prev.nano) {
		f.Close()
		return p, last, false, nil
	}
	return p, tail, true, nil
}

// readLegacyIndex reads a times.idx file of an older version: the marks
// in [first, next), in increasing order. A missing file has none.
func readLegacyIndex(name string, first, next Offset) ([]mark, error) {
	raw, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read time index: %w", err)
	}
	var ms []mark
	for i := 0; i+markSize <= len(raw); i += markSize {
		m := decodeMark(raw[i:])
		if m.off < first || m.off >= next {
			continue
		}
		if n := len(ms); n > 0 && (m.off <= ms[n-1].off || m.nano < ms[n-1].nano) {
			continue // written twice around a truncation, or a clock step back
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// Close closes the files.
func (x *TimeIndex) Close() error {
	var err error
	for _, p := range x.parts {
		if p.f != nil {
			err = errors.Join(err, p.f.Close())
		}
	}
	return err
}

// Len is the number of marks.
func (x *TimeIndex) Len() int { return x.hi - x.lo }

// At is mark i, oldest first.
func (x *TimeIndex) At(i int) (TimeMark, error) {
	m, err := x.at(x.lo + i)
	return m.public(), err
}

func (x *TimeIndex) at(i int) (mark, error) {
	k := sort.Search(len(x.parts), func(k int) bool { return x.parts[k].base > i }) - 1
	p := x.parts[k]
	if p.f == nil {
		return p.mem[i-p.base], nil
	}
	var buf [markSize]byte
	if _, err := p.f.ReadAt(buf[:], int64(i-p.base)*markSize); err != nil {
		return mark{}, fmt.Errorf("read time index: %w", err)
	}
	return decodeMark(buf[:]), nil
}

// search is the smallest i in [lo, hi) whose mark satisfies ok (hi if
// none), ok being false and then true along the marks.
func (x *TimeIndex) search(lo, hi int, ok func(mark) bool) (int, error) {
	var err error
	i := sort.Search(hi-lo, func(i int) bool {
		if err != nil {
			return true
		}
		m, rerr := x.at(lo + i)
		if rerr != nil {
			err = rerr
			return true
		}
		return ok(m)
	})
	return lo + i, err
}

// TimeOf is the earliest time the byte at off can have arrived: the time of
// the last mark at or before it. ok is false before the first mark.
func (x *TimeIndex) TimeOf(off Offset) (t time.Time, ok bool, err error) {
	i, err := x.search(x.lo, x.hi, func(m mark) bool { return m.off > off })
	if err != nil || i == x.lo {
		return time.Time{}, false, err
	}
	m, err := x.at(i - 1)
	return m.public().Time, err == nil, err
}

// OffsetAfter is the offset of the first byte known to have arrived after
// t (the first mark later than t), or next when no mark is.
func (x *TimeIndex) OffsetAfter(t time.Time) (Offset, error) {
	nano := t.UnixNano()
	i, err := x.search(x.lo, x.hi, func(m mark) bool { return m.nano > nano })
	if err != nil || i == x.hi {
		return x.next, err
	}
	m, err := x.at(i)
	// Only a damaged file puts a mark out of range; the answer stays in it.
	return min(max(m.off, x.first), x.next), err
}

// Newest is the newest mark; ok is false when there is none.
func (x *TimeIndex) Newest() (m TimeMark, ok bool, err error) {
	if x.hi == x.lo {
		return TimeMark{}, false, nil
	}
	mm, err := x.at(x.hi - 1)
	return mm.public(), err == nil, err
}
