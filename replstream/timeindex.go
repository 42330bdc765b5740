package replstream

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis-relay/redis-relay/internal/fsutil"
)

// The time index of a Log: when its bytes arrived. Each mark says "the
// byte at Offset, and those after it up to the next mark, were appended
// at or after Time". Append takes a mark when the wall clock has moved at
// least markEvery past the previous mark, so a point in time resolves to
// a stream offset within markEvery, however old it is; offsets and times
// only grow from mark to mark.
//
// Each segment has its marks in a file beside it, named like the segment
// with the suffix .times: 16 bytes a mark (offset and Unix nanoseconds,
// little endian). The write-behind appends a segment's marks to its file
// once it has written the bytes they describe, and Sync fsyncs the file
// with the segment. So the log holds in memory only the marks taken since
// the last write (a few, unless the disk stalls) and the newest one,
// whatever the retention. A trim deletes a segment's marks with the
// segment and a truncation cuts the newest file: nothing is rewritten,
// and no file is touched under mu. OpenLog cuts the newest file back to
// the log's end (after a crash it can name bytes that were lost) and
// converts the single times.idx file older versions kept. The marks on
// disk are searched in place (TimeIndex, timereader.go), never loaded
// whole.

// TimeMark pairs a stream offset with the wall-clock time it arrived.
type TimeMark struct {
	Offset Offset
	Time   time.Time
}

const (
	indexSuffix     = ".times"
	legacyIndexFile = "times.idx"
	markSize        = 16
	markEvery       = 10 * time.Millisecond
)

// mark is a TimeMark as stored: the time in Unix nanoseconds.
type mark struct {
	off  Offset
	nano int64
}

func (m mark) public() TimeMark { return TimeMark{Offset: m.off, Time: time.Unix(0, m.nano)} }

func indexName(first Offset) string { return fmt.Sprintf("%020d%s", first, indexSuffix) }

func appendMark(b []byte, m mark) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(m.off))
	return binary.LittleEndian.AppendUint64(b, uint64(m.nano))
}

func decodeMark(b []byte) mark {
	return mark{off: Offset(binary.LittleEndian.Uint64(b)), nano: int64(binary.LittleEndian.Uint64(b[8:]))}
}

// timeIndex is the part of the index a Log keeps in memory; guarded by
// Log.mu.
type timeIndex struct {
	pending  []mark   // taken, not yet written to a file; oldest first
	last     mark     // the newest mark taken or on disk (zero: none)
	unsynced []Offset // segments whose index file was written since the last Sync
}

func (ti *timeIndex) mark(off Offset, now time.Time) {
	m := mark{off: off, nano: now.UnixNano()}
	if ti.last.nano != 0 && (m.nano < ti.last.nano+int64(markEvery) || m.off <= ti.last.off) {
		return
	}
	ti.pending = append(ti.pending, m)
	ti.last = m
}

// flushMarks writes the pending marks of bytes already in segment files
// to the index files of their segments. The write-behind calls it after
// each batch, Sync before it fsyncs.
func (l *Log) flushMarks() error {
	l.mu.RLock()
	idle := len(l.times.pending) == 0 || l.times.pending[0].off >= l.written
	l.mu.RUnlock()
	if idle {
		return nil // most batches: no mark taken in the last 10 ms
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	k := sort.Search(len(l.times.pending), func(k int) bool { return l.times.pending[k].off >= l.written })
	if k == 0 {
		l.mu.Unlock()
		return nil
	}
	type batch struct {
		first Offset
		raw   []byte
	}
	var batches []batch
	for _, m := range l.times.pending[:k] {
		if m.off < l.first {
			continue // trimmed before it was written
		}
		seg := l.segmentFor(m.off).first
		if n := len(batches); n == 0 || batches[n-1].first != seg {
			batches = append(batches, batch{first: seg})
		}
		b := &batches[len(batches)-1]
		b.raw = appendMark(b.raw, m)
	}
	rest := copy(l.times.pending, l.times.pending[k:])
	l.times.pending = l.times.pending[:rest]
	if rest == 0 && cap(l.times.pending) > 1024 {
		l.times.pending = nil // after a burst, or a disk that stalled
	}
	l.mu.Unlock()
	for i, b := range batches {
		if err := appendFile(filepath.Join(l.dir, indexName(b.first)), b.raw); err != nil {
			// The marks not written go back: the next flush tries again.
			l.mu.Lock()
			var back []mark
			for _, bb := range batches[i:] {
				for j := 0; j < len(bb.raw); j += markSize {
					back = append(back, decodeMark(bb.raw[j:]))
				}
			}
			l.times.pending = append(back, l.times.pending...)
			l.mu.Unlock()
			return fmt.Errorf("write time index: %w", err)
		}
		l.mu.Lock()
		if n := len(l.times.unsynced); n == 0 || l.times.unsynced[n-1] != b.first {
			l.times.unsynced = append(l.times.unsynced, b.first)
		}
		l.mu.Unlock()
	}
	return nil
}

func appendFile(name string, raw []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(raw)
	return errors.Join(err, f.Close())
}

// syncMarks fsyncs the index files written since the last call. A file
// trimmed meanwhile is fine.
func (l *Log) syncMarks() error {
	l.mu.Lock()
	firsts := l.times.unsynced
	l.times.unsynced = nil
	l.mu.Unlock()
	for i, first := range firsts {
		f, err := os.OpenFile(filepath.Join(l.dir, indexName(first)), os.O_WRONLY, 0)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err == nil {
			err = errors.Join(f.Sync(), f.Close())
		}
		if err != nil {
			l.mu.Lock()
			l.times.unsynced = append(firsts[i:], l.times.unsynced...)
			l.mu.Unlock()
			return fmt.Errorf("sync time index: %w", err)
		}
	}
	return nil
}

// cut drops the pending marks of offsets at and after at, and reports
// whether marks of such offsets may be in the newest index file. Caller
// holds mu.
func (ti *timeIndex) cut(at Offset) (onDisk bool) {
	k := sort.Search(len(ti.pending), func(k int) bool { return ti.pending[k].off >= at })
	ti.pending = ti.pending[:k]
	if ti.last.off < at {
		return false
	}
	if k > 0 {
		ti.last = ti.pending[k-1]
		return false
	}
	ti.last = mark{} // found on disk by cutMarks, unless a new mark comes first
	return true
}

// cutMarks cuts the index file of the newest segment (first is its first
// offset) back to the marks of offsets before at, and finds the newest
// mark left. Caller holds wmu, so no flush runs.
func (l *Log) cutMarks(first, at Offset) error {
	if err := cutIndexFile(filepath.Join(l.dir, indexName(first)), at); err != nil {
		return err
	}
	last, err := l.newestOnDisk()
	if err != nil {
		return err
	}
	l.mu.Lock()
	if l.times.last.nano == 0 {
		l.times.last = last
	}
	l.mu.Unlock()
	return nil
}

// cutIndexFile cuts an index file to its whole marks of offsets before
// at. A missing file has nothing to cut.
func cutIndexFile(name string, at Offset) error {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open time index: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat time index: %w", err)
	}
	n := int(st.Size() / markSize)
	var rerr error
	buf := make([]byte, markSize)
	k := sort.Search(n, func(i int) bool {
		if _, err := f.ReadAt(buf, int64(i)*markSize); err != nil {
			rerr = err
			return true
		}
		return decodeMark(buf).off >= at
	})
	if rerr != nil {
		return fmt.Errorf("read time index: %w", rerr)
	}
	if int64(k)*markSize == st.Size() {
		return nil
	}
	if err := f.Truncate(int64(k) * markSize); err != nil {
		return fmt.Errorf("cut time index: %w", err)
	}
	return nil
}

// newestOnDisk is the newest mark in the index files of the log's
// segments (zero when there is none). Caller holds wmu.
func (l *Log) newestOnDisk() (mark, error) {
	l.mu.RLock()
	firsts := make([]Offset, len(l.segs))
	for i, s := range l.segs {
		firsts[i] = s.first
	}
	l.mu.RUnlock()
	for i := len(firsts) - 1; i >= 0; i-- {
		raw, err := readLastMark(filepath.Join(l.dir, indexName(firsts[i])))
		if err != nil {
			return mark{}, err
		}
		if raw != nil {
			return decodeMark(raw), nil
		}
	}
	return mark{}, nil
}

func readLastMark(name string) ([]byte, error) {
	f, err := os.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open time index: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() < markSize {
		return nil, err
	}
	buf := make([]byte, markSize)
	if _, err := f.ReadAt(buf, (st.Size()/markSize-1)*markSize); err != nil {
		return nil, fmt.Errorf("read time index: %w", err)
	}
	return buf, nil
}

// openTimeIndex brings the index files of a log being opened in line with
// its segments (firsts, oldest first; the log ends at next): it converts
// a times.idx of an older version, deletes the files of segments that are
// gone, cuts the newest file back to next and returns the newest mark.
func openTimeIndex(dir string, firsts []Offset, next Offset) (mark, error) {
	names, err := indexFiles(dir)
	if err != nil {
		return mark{}, err
	}
	have := make(map[Offset]bool, len(firsts))
	for _, f := range firsts {
		have[f] = true
	}
	legacy := filepath.Join(dir, legacyIndexFile)
	_, lerr := os.Stat(legacy)
	convert := lerr == nil
	for first, name := range names {
		// A conversion interrupted by a crash is done again from the start.
		if !have[first] || convert {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return mark{}, fmt.Errorf("remove time index: %w", err)
			}
		}
	}
	if convert {
		if err := convertLegacyIndex(dir, firsts, next); err != nil {
			return mark{}, err
		}
	}
	// A crash during a rewrite by an older version leaves its temporary
	// file. Removing it only saves disk, so a failure is not an error.
	stray, _ := filepath.Glob(filepath.Join(dir, legacyIndexFile+".tmp-*"))
	for _, name := range stray {
		os.Remove(name)
	}
	newest := filepath.Join(dir, indexName(firsts[len(firsts)-1]))
	if err := cutIndexFile(newest, next); err != nil {
		return mark{}, err
	}
	for i := len(firsts) - 1; i >= 0; i-- {
		raw, err := readLastMark(filepath.Join(dir, indexName(firsts[i])))
		if err != nil {
			return mark{}, err
		}
		if raw != nil {
			if m := decodeMark(raw); m.off >= firsts[i] && m.off < next {
				return m, nil
			}
			return mark{}, nil // a damaged file: the next mark starts afresh
		}
	}
	return mark{}, nil
}

// convertLegacyIndex splits times.idx into the segments' index files and
// removes it. The marks are streamed, never held whole.
func convertLegacyIndex(dir string, firsts []Offset, next Offset) error {
	legacy := filepath.Join(dir, legacyIndexFile)
	in, err := os.Open(legacy)
	if err != nil {
		return fmt.Errorf("open time index: %w", err)
	}
	defer in.Close()
	br := bufio.NewReaderSize(in, 64<<10)
	var (
		out     *os.File
		bw      *bufio.Writer
		outSeg  = Offset(-1)
		prev    mark
		written []string
	)
	closeOut := func() error {
		if out == nil {
			return nil
		}
		err := errors.Join(bw.Flush(), out.Sync(), out.Close())
		out = nil
		return err
	}
	buf := make([]byte, markSize)
	for {
		if _, err := io.ReadFull(br, buf); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				break
			}
			closeOut()
			return fmt.Errorf("read time index: %w", err)
		}
		m := decodeMark(buf)
		if m.off < firsts[0] || m.off >= next || prev.nano != 0 && (m.off <= prev.off || m.nano < prev.nano) {
			continue // trimmed, lost in a crash, or written twice around a truncation
		}
		prev = m
		i := sort.Search(len(firsts), func(i int) bool { return firsts[i] > m.off }) - 1
		if firsts[i] != outSeg {
			if err := closeOut(); err != nil {
				return fmt.Errorf("write time index: %w", err)
			}
			outSeg = firsts[i]
			name := filepath.Join(dir, indexName(outSeg))
			if out, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
				return fmt.Errorf("create time index: %w", err)
			}
			bw = bufio.NewWriterSize(out, 64<<10)
			written = append(written, name)
		}
		bw.Write(appendMark(buf[:0:0], m))
	}
	if err := closeOut(); err != nil {
		return fmt.Errorf("write time index: %w", err)
	}
	if err := fsutil.SyncDir(dir); err != nil {
		return err
	}
	if err := os.Remove(legacy); err != nil {
		return fmt.Errorf("remove %s: %w", legacyIndexFile, err)
	}
	return fsutil.SyncDir(dir)
}

// removeTimeIndex deletes every index file in dir.
func removeTimeIndex(dir string) error {
	names, err := indexFiles(dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("remove time index: %w", err)
		}
	}
	if err := os.Remove(filepath.Join(dir, legacyIndexFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove time index: %w", err)
	}
	return nil
}

// indexFiles maps the first offset of each index file in dir to its name.
func indexFiles(dir string) (map[Offset]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("read log dir: %w", err)
	}
	names := map[Offset]string{}
	for _, e := range ents {
		name := e.Name()
		digits, ok := strings.CutSuffix(name, indexSuffix)
		if !ok || len(digits) != 20 {
			continue
		}
		first, err := strconv.ParseUint(digits, 10, 63)
		if err != nil {
			continue
		}
		names[Offset(first)] = name
	}
	return names, nil
}

// NewestTime is when the newest mark was taken: about when the newest
// bytes arrived (zero before any).
func (l *Log) NewestTime() time.Time {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.times.last.nano == 0 {
		return time.Time{}
	}
	return time.Unix(0, l.times.last.nano)
}
