package replstream

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// LogReader reads the segments of a log without changing them: for tools
// that work on a data dir beside a running relay, or on a copy of one. It
// holds every segment open from the start, so a segment the relay trims
// meanwhile stays readable, and it sees the bytes the files held when it
// was opened (a torn tail included: framing it is the caller's business).
type LogReader struct {
	segs  []*segment
	first Offset
	next  Offset
}

// OpenLogReader opens the segments of the log in dir, up to the first gap.
func OpenLogReader(dir string) (*LogReader, error) {
	names, err := segmentFiles(dir)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("open log %s: no segments", dir)
	}
	r := &LogReader{}
	for _, name := range names {
		first, _ := strconv.ParseInt(strings.TrimSuffix(name, ".seg"), 10, 64)
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("open segment: %w", err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			r.Close()
			return nil, fmt.Errorf("stat segment: %w", err)
		}
		if n := len(r.segs); n > 0 && r.next != first {
			f.Close()
			break // a hole: what follows cannot be read in order
		}
		r.segs = append(r.segs, &segment{first: first, size: st.Size(), f: f})
		r.next = first + st.Size()
	}
	r.first = r.segs[0].first
	return r, nil
}

// Range returns [First, Next) as the files held it at open.
func (r *LogReader) Range() (first, next Offset) { return r.first, r.next }

// ReadAt reads the bytes at offset off into p; io.EOF at Next.
func (r *LogReader) ReadAt(p []byte, off Offset) (int, error) {
	if off < r.first {
		return 0, ErrNotRetained
	}
	n := 0
	for n < len(p) {
		if off >= r.next {
			return n, io.EOF
		}
		i := sort.Search(len(r.segs), func(i int) bool { return r.segs[i].first > off })
		s := r.segs[i-1]
		k, err := s.f.ReadAt(p[n:min(int64(len(p)), int64(n)+s.first+s.size-off)], off-s.first)
		n += k
		off += Offset(k)
		if err != nil && !errors.Is(err, io.EOF) {
			return n, fmt.Errorf("read segment %d: %w", s.first, err)
		}
		if k == 0 {
			return n, io.ErrUnexpectedEOF
		}
	}
	return n, nil
}

// Close closes the segment files.
func (r *LogReader) Close() error {
	var err error
	for _, s := range r.segs {
		err = errors.Join(err, s.f.Close())
	}
	return err
}
