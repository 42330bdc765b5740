package replstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis-relay/redis-relay/internal/fsutil"
)

var (
	// ErrNotRetained: the requested offset is older than the log holds.
	ErrNotRetained = errors.New("replstream: offset not retained")
	// ErrFuture: the requested offset is beyond Next.
	ErrFuture = errors.New("replstream: offset beyond the end of the log")
	// ErrClosed: the log was closed (shut down, or replaced by a new history).
	ErrClosed = errors.New("replstream: log closed")
	// ErrTruncated: bytes the cursor already returned were cut from the log
	// (a partial command the upstream never finished); what follows them may
	// differ, so the reader must resume from a resume point.
	ErrTruncated = errors.New("replstream: log truncated behind the cursor")
)

// LogOptions configure a Log.
type LogOptions struct {
	// RingSize is the memory ring (the backlog): the newest bytes, served
	// without touching the disk, and the most the log holds in memory ahead
	// of its segment files when the disk is slower than the stream; default
	// 1 MiB.
	RingSize    int
	SegmentSize int64 // a segment is closed once it holds at least this many bytes and the stream is at a command boundary; default 64 MiB
	// Limits for the framing check run over the tail on recovery.
	Limits Limits
}

func (o *LogOptions) setDefaults() {
	if o.RingSize <= 0 {
		o.RingSize = 1 << 20
	}
	if o.SegmentSize <= 0 {
		o.SegmentSize = 64 << 20
	}
}

// Log holds bytes [First, Next) of one replication history. Append copies
// bytes into a memory ring and returns: readers see them at once. A
// goroutine of the log (the write-behind) writes them to segment files in
// its directory (named by the offset of their first byte, %020d.seg); the
// ring always holds every byte not yet written, so a disk that falls
// behind a burst costs ring space, not a stalled Append, until the ring is
// full of unwritten bytes (then Append waits). Readers near the head read
// the ring, older ones the files. Segments are cut only at resume points
// (see ResumePoint), so each starts with a whole command outside any
// transaction.
//
// Bytes are written at explicit file offsets: a write that fails half way
// leaves the log's size unchanged, and the retry overwrites the torn bytes.
// After a failed write Append returns the error until a retry succeeds.
//
// There is one appender (Append, Sync, Truncate, CutToResumePoint,
// TrimBefore) and any number of Cursors. Lock order: wmu, then mu.
type Log struct {
	dir string
	opt LogOptions

	// wmu is held by the write-behind while it writes or rolls a segment
	// or writes time marks, and by Truncate, so that a cut never races a
	// write of the cut bytes or their marks.
	wmu sync.Mutex

	mu      sync.RWMutex
	ring    []byte           // ring[o % len(ring)] holds offset o for o in [ringStart(), next); guarded by mu
	ringLo  Offset           // the ring holds nothing before this offset (it starts empty); guarded by mu
	segs    []*segment       // oldest first, contiguous; the last one is written to; guarded by mu
	first   Offset           // offset of the oldest byte held; guarded by mu
	next    Offset           // master_repl_offset+1; guarded by mu
	written Offset           // bytes before this offset are in segment files; next-len(ring) <= written <= next; guarded by mu
	synced  Offset           // bytes before this offset are fsynced; guarded by mu
	resume  Offset           // the newest resume point appended; guarded by mu
	werr    error            // the last write error, until a write succeeds; guarded by mu
	cuts    []Offset         // the new Next of every Truncate, oldest first; guarded by mu
	times   timeIndex        // when bytes arrived: the marks not yet written; guarded by mu
	clock   func() time.Time // time.Now; tests set a synthetic clock before any Append
	wake    chan struct{}    // closed and replaced when next grows or shrinks, if waiting; guarded by mu
	waiting atomic.Bool      // a reader holds wake; set under mu read-locked (waitChan), cleared under mu locked (wakeReaders)
	space   chan struct{}    // closed and replaced when written, werr or closed change
	closed  bool

	started bool          // the write-behind runs; set before any Append
	work    chan struct{} // buffered(1): there are bytes to write
	stop    chan struct{} // closed by Close: write what is appended, then exit
	done    chan struct{} // closed when the write-behind has exited

	freeRing func() // releases ring's memory; called by Close under mu
}

type segment struct {
	first Offset
	size  int64 // guarded by Log.mu
	f     segmentFile
}

// segmentFile is what the log needs of a segment's *os.File (tests wrap it
// to inject faults).
type segmentFile interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Truncate(size int64) error
	Close() error
	Name() string
	Stat() (os.FileInfo, error)
}

func segName(first Offset) string { return fmt.Sprintf("%020d.seg", first) }

// CreateLog starts an empty log in dir (created if missing; it must hold no
// segments) whose first byte will have offset start.
func CreateLog(dir string, start Offset, opt LogOptions) (*Log, error) {
	opt.setDefaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	names, err := segmentFiles(dir)
	if err != nil {
		return nil, err
	}
	if len(names) > 0 {
		return nil, fmt.Errorf("create log in %s: directory already holds segments", dir)
	}
	if err := removeTimeIndex(dir); err != nil { // of segments gone: not ours
		return nil, err
	}
	l := newLog(dir, opt, start)
	if err := l.addSegment(start); err != nil {
		l.Close()
		return nil, err
	}
	if err := fsutil.SyncDir(dir); err != nil {
		l.Close()
		return nil, err
	}
	l.startWriter()
	return l, nil
}

func newLog(dir string, opt LogOptions, start Offset) *Log {
	ring, free := allocRing(opt.RingSize)
	return &Log{
		dir: dir, opt: opt, ring: ring, freeRing: free,
		ringLo: start, first: start, next: start, written: start, synced: start, resume: start, clock: time.Now,
		wake: make(chan struct{}), space: make(chan struct{}),
		work: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
}

// OpenLog recovers a log written by an earlier process. Segments must be
// contiguous; the newest one is checked with the RESP framer and cut back to
// its last resume point, so a torn write or half a transaction is never
// served. The ring starts
// empty and fills as bytes are appended. Repaired describes what was cut.
func OpenLog(dir string, opt LogOptions) (l *Log, repaired string, err error) {
	opt.setDefaults()
	names, err := segmentFiles(dir)
	if err != nil {
		return nil, "", err
	}
	if len(names) == 0 {
		return nil, "", fmt.Errorf("open log %s: no segments", dir)
	}
	var segs []*segment
	defer func() {
		if err != nil {
			for _, s := range segs {
				s.f.Close()
			}
		}
	}()
	for _, name := range names {
		first, _ := strconv.ParseInt(strings.TrimSuffix(name, ".seg"), 10, 64)
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR, 0)
		if err != nil {
			return nil, "", fmt.Errorf("open segment: %w", err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, "", fmt.Errorf("stat segment: %w", err)
		}
		s := &segment{first: first, size: st.Size(), f: f}
		if n := len(segs); n > 0 && segs[n-1].first+segs[n-1].size > first {
			f.Close()
			return nil, "", fmt.Errorf("open log %s: segment %s overlaps the previous one (which ends at %d)", dir, name, segs[n-1].first+segs[n-1].size)
		}
		if n := len(segs); n > 0 && segs[n-1].first+segs[n-1].size < first {
			// Segments are fsynced together, once a second: a power loss
			// can leave an older one short. What follows the hole cannot
			// be served; the master resends it.
			f.Close()
			repaired = fmt.Sprintf("gap before segment %s (previous ends at %d): dropped it and every later segment", name, segs[n-1].first+segs[n-1].size)
			if err := removeSegmentsFrom(dir, names, name); err != nil {
				return nil, "", err
			}
			break
		}
		segs = append(segs, s)
	}
	last := segs[len(segs)-1]
	good, what, err := frameSegment(last, last.size, opt.Limits)
	if err != nil {
		return nil, "", err
	}
	if good < last.size {
		if err := last.f.Truncate(good); err != nil {
			return nil, "", fmt.Errorf("truncate segment %s: %w", last.f.Name(), err)
		}
		repaired = strings.TrimPrefix(repaired+"; ", "; ") + fmt.Sprintf("segment %s cut from %d to %d bytes: %s", last.f.Name(), last.size, good, what)
		last.size = good
	}
	l = newLog(dir, opt, segs[0].first)
	l.segs = segs
	l.next = last.first + last.size
	l.ringLo, l.written, l.synced, l.resume = l.next, l.next, l.next, l.next
	firsts := make([]Offset, len(segs))
	for i, s := range segs {
		firsts[i] = s.first
	}
	if l.times.last, err = openTimeIndex(dir, firsts, l.next); err != nil {
		return nil, "", err
	}
	l.startWriter()
	return l, repaired, nil
}

// frameSegment returns the length of the longest prefix of the first size
// bytes of s that ends on a resume point: whole commands, and no
// transaction left open. The segment must start on a resume point.
func frameSegment(s *segment, size int64, lim Limits) (good int64, what string, err error) {
	fr := NewFramer(s.first, lim)
	rp := NewResumePoint(s.first)
	buf := make([]byte, 256<<10)
	var pos int64
	for pos < size {
		n, rerr := s.f.ReadAt(buf[:min(int64(len(buf)), size-pos)], pos)
		if n == 0 && rerr != nil {
			return 0, "", fmt.Errorf("read segment %s: %w", s.f.Name(), rerr)
		}
		valid, ferr := fr.Feed(buf[:n], rp.Add)
		if ferr != nil {
			return rp.At() - s.first, ferr.Error(), nil
		}
		pos += int64(valid)
	}
	good = rp.At() - s.first
	if good < size {
		what = "incomplete command or transaction at the end"
	}
	return good, what, nil
}

// removeSegmentsFrom deletes the segment files from name on (names is
// sorted).
func removeSegmentsFrom(dir string, names []string, name string) error {
	for _, n := range names {
		if n >= name {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				return fmt.Errorf("remove segment after a gap: %w", err)
			}
		}
	}
	return fsutil.SyncDir(dir)
}

func segmentFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("read log dir: %w", err)
	}
	var names []string
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".seg") || len(name) != 24 {
			continue
		}
		if _, err := strconv.ParseUint(name[:20], 10, 63); err != nil {
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names) // fixed width: lexical order is numeric order
	return names, nil
}

func (l *Log) addSegment(first Offset) error {
	s, err := l.createSegment(first)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.attachSegment(s)
}

// createSegment creates the file of a segment starting at first.
func (l *Log) createSegment(first Offset) (*segment, error) {
	f, err := os.OpenFile(filepath.Join(l.dir, segName(first)), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	return &segment{first: first, f: f}, nil
}

// attachSegment makes s the newest segment. Caller holds mu.
func (l *Log) attachSegment(s *segment) error {
	if l.closed { // Close has closed the other files; don't leak this one
		s.f.Close()
		return ErrClosed
	}
	l.segs = append(l.segs, s)
	return nil
}

// Dir is the directory holding the segments.
func (l *Log) Dir() string { return l.dir }

// Append adds p at offset Next. atBoundary says whether the stream ends on a
// resume point after p; only there may a full segment be closed. Append
// waits only when the ring is full of bytes the disk has not taken yet; it
// returns the write-behind's error while writes fail (a full disk).
func (l *Log) Append(p []byte, atBoundary bool) error {
	limit := max(l.opt.RingSize/2, 1)
	for len(p) > 0 {
		n := min(len(p), limit)
		if err := l.appendChunk(p[:n], atBoundary && n == len(p)); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

func (l *Log) appendChunk(p []byte, atBoundary bool) error {
	n := Offset(len(p))
	l.mu.Lock()
	for {
		if l.closed {
			l.mu.Unlock()
			return ErrClosed
		}
		if l.werr != nil {
			err := l.werr
			l.mu.Unlock()
			return err
		}
		if l.next+n-l.written <= Offset(len(l.ring)) {
			break
		}
		space := l.space
		l.mu.Unlock()
		<-space
		l.mu.Lock()
	}
	l.times.mark(l.next, l.clock())
	l.copyToRing(p)
	l.next += n
	if atBoundary {
		l.resume = l.next
	}
	l.wakeReaders()
	l.mu.Unlock()
	select {
	case l.work <- struct{}{}:
	default:
	}
	return nil
}

// wakeReaders wakes every reader waiting for next to change. Only when one
// waits is the channel closed and replaced: at a high append rate most
// appends find every reader busy copying, and skip the allocation and the
// close. Caller holds mu locked, so no reader is between waitChan and its
// read unlock.
func (l *Log) wakeReaders() {
	if l.waiting.Load() {
		l.waiting.Store(false)
		close(l.wake)
		l.wake = make(chan struct{})
	}
}

// waitChan returns the channel the next change of next closes, and marks
// that someone waits on it. Caller holds mu, read-locked or locked.
func (l *Log) waitChan() chan struct{} {
	l.waiting.Store(true)
	return l.wake
}

// copyToRing stores p at offsets [next, next+len(p)). Caller holds mu.
func (l *Log) copyToRing(p []byte) {
	r := int64(len(l.ring))
	start := l.next
	if n := int64(len(p)); n > r {
		start += n - r
		p = p[n-r:]
	}
	k := copy(l.ring[start%r:], p)
	copy(l.ring, p[k:])
}

func (l *Log) setSynced(off Offset) {
	l.mu.Lock()
	if off = min(off, l.written); off > l.synced {
		l.synced = off
	}
	l.mu.Unlock()
}

// waitWritten blocks until the write-behind has written every byte before
// off (or before Next, if that is smaller after a Truncate).
func (l *Log) waitWritten(off Offset) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	for {
		switch {
		case l.closed:
			return ErrClosed
		case l.written >= min(off, l.next):
			return nil
		case l.werr != nil:
			return l.werr
		}
		space := l.space
		l.mu.RUnlock()
		<-space
		l.mu.RLock()
	}
}

// Sync makes every appended byte durable and returns the offset of the next
// byte after them: every segment written since the last Sync, oldest first,
// then the directory that names them. It may run concurrently with Append.
func (l *Log) Sync() (Offset, error) {
	l.mu.RLock()
	upto := l.next
	l.mu.RUnlock()
	if err := l.waitWritten(upto); err != nil {
		return 0, err
	}
	if err := l.flushMarks(); err != nil {
		return 0, err
	}
	if err := l.syncMarks(); err != nil {
		return 0, err
	}
	l.mu.RLock()
	synced := l.synced
	var segs []*segment
	for _, s := range l.segs {
		if s.first+s.size > synced || s == l.segs[len(l.segs)-1] {
			segs = append(segs, s)
		}
	}
	rolled := len(segs) > 1
	l.mu.RUnlock()
	for _, seg := range segs {
		if err := seg.f.Sync(); err != nil {
			if !errors.Is(err, os.ErrClosed) {
				return 0, fmt.Errorf("sync segment %d: %w", seg.first, err)
			}
			// A segment trimmed meanwhile is fine; a closed log has
			// synced nothing.
			l.mu.RLock()
			closed := l.closed
			l.mu.RUnlock()
			if closed {
				return 0, ErrClosed
			}
		}
	}
	if rolled {
		if err := fsutil.SyncDir(l.dir); err != nil {
			return 0, err
		}
	}
	l.setSynced(upto)
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.synced, nil
}

// Truncate drops the bytes at offsets at and after, which must all lie in
// the newest segment: the tail of a command (or transaction) the upstream
// never finished. Cursors that have already read past at fail with
// ErrTruncated; the bytes appended next take the cut offsets.
func (l *Log) Truncate(at Offset) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	seg := l.segs[len(l.segs)-1]
	if at < seg.first || at < l.first || at > l.next {
		l.mu.Unlock()
		return fmt.Errorf("truncate at %d: outside the newest segment [%d, %d)", at, seg.first, l.next)
	}
	if at == l.next {
		l.mu.Unlock()
		return nil
	}
	// The cut bytes overwrote ring slots of older offsets: the ring now
	// holds only what it held before them.
	l.ringLo = max(l.ringLo, l.next-Offset(len(l.ring)))
	l.next = at
	l.resume = min(l.resume, at)
	inFile := at < l.written
	if inFile {
		seg.size = at - seg.first
		l.written = at
	}
	l.synced = min(l.synced, at)
	l.cuts = append(l.cuts, at)
	marksCut := l.times.cut(at)
	l.wakeReaders()
	l.mu.Unlock()
	if inFile {
		if err := seg.f.Truncate(at - seg.first); err != nil {
			return fmt.Errorf("truncate segment %d: %w", seg.first, err)
		}
	}
	if marksCut {
		return l.cutMarks(seg.first, at)
	}
	return nil
}

// CutToResumePoint truncates the log back to its last resume point (see
// ResumePoint) and returns how many bytes it cut. A stock replica drops a
// partial command, or an unfinished MULTI, when its link breaks; the relay
// does the same before it asks any master to continue. The newest segment
// is framed from its start, from the disk and from the ring alike.
func (l *Log) CutToResumePoint() (int64, error) {
	l.mu.RLock()
	closed, from, next := l.closed, l.segs[len(l.segs)-1].first, l.next
	l.mu.RUnlock()
	if closed {
		return 0, ErrClosed
	}
	rp := NewResumePoint(from)
	// Appended bytes are always framed: only the tail can be short, so a
	// framing error just ends the walk.
	if _, err := l.Frame(from, next, rp.Add); err != nil && !errors.As(err, new(*ProtocolError)) {
		return 0, err
	}
	at := rp.At()
	if at == next {
		return 0, nil
	}
	return next - at, l.Truncate(at)
}

// Frame reads the log's bytes [from, to) as commands, from being where
// one starts, and calls fn for each whole one. It returns the offset just
// after the last whole command, and a *ProtocolError where the bytes stop
// being commands (the rest is not read).
func (l *Log) Frame(from, to Offset, fn func(*Command)) (Offset, error) {
	c, err := l.Cursor(from)
	if err != nil {
		return from, err
	}
	fr := NewFramer(from, l.opt.Limits)
	end := from
	add := func(cmd *Command) {
		end = cmd.Offset + cmd.Len
		fn(cmd)
	}
	buf := make([]byte, 256<<10)
	for c.Offset() < to {
		n, err := c.Read(context.Background(), buf[:min(int64(len(buf)), to-c.Offset())])
		if err != nil {
			return end, fmt.Errorf("read the log at %d: %w", c.Offset(), err)
		}
		if _, err := fr.Feed(buf[:n], add); err != nil {
			return end, err
		}
	}
	return end, nil
}

// TrimBefore drops whole segments that hold only offsets before off. The
// newest segment is never dropped. Cursors reading a dropped range end with
// ErrNotRetained.
func (l *Log) TrimBefore(off Offset) error {
	l.mu.Lock()
	var drop []*segment
	for len(l.segs) > 1 && l.segs[1].first <= off {
		drop = append(drop, l.segs[0])
		l.segs = l.segs[1:]
	}
	l.first = l.segs[0].first
	l.mu.Unlock()
	var err error
	for _, s := range drop {
		name := s.f.Name()
		s.f.Close()
		if rerr := os.Remove(name); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("remove segment: %w", rerr))
		}
	}
	if len(drop) > 0 {
		// Under wmu: a flush of marks in progress may have been about to
		// write to these files; later ones skip trimmed offsets.
		l.wmu.Lock()
		for _, s := range drop {
			if rerr := os.Remove(filepath.Join(l.dir, indexName(s.first))); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = errors.Join(err, fmt.Errorf("remove time index: %w", rerr))
			}
		}
		l.wmu.Unlock()
	}
	return err
}

// Close writes what was appended to the segment files (without fsync),
// stops the write-behind and closes the files; waiting cursors return
// ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	select {
	case <-l.stop:
	default:
		close(l.stop)
		if !l.started {
			close(l.done)
		}
	}
	l.mu.Unlock()
	<-l.done
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.wake)
	close(l.space)
	// Every ring access checks closed under mu first, and the write-behind
	// has exited, so nobody touches the ring after this.
	l.freeRing()
	l.ring = nil
	segs := l.segs
	l.mu.Unlock()
	var err error
	for _, s := range segs {
		err = errors.Join(err, s.f.Close())
	}
	return err
}

// Remove closes the log and deletes its directory.
func (l *Log) Remove() error {
	return errors.Join(l.Close(), os.RemoveAll(l.dir))
}

// LogStats is a snapshot of the log's extent.
type LogStats struct {
	First, Next, Synced Offset
	Written             Offset // bytes before it are in segment files; Next-Written wait in the ring
	RingBytes           int64  // bytes currently served from memory
	RingSize            int64
	DiskBytes           int64
	Segments            int
}

// Stats reports the log's extent.
func (l *Log) Stats() LogStats {
	l.mu.RLock()
	defer l.mu.RUnlock()
	s := LogStats{First: l.first, Next: l.next, Written: l.written, Synced: l.synced, RingSize: int64(l.opt.RingSize), Segments: len(l.segs)}
	s.RingBytes = l.next - l.ringStart()
	for _, seg := range l.segs {
		s.DiskBytes += seg.size
	}
	return s
}

// Range returns [First, Next).
func (l *Log) Range() (first, next Offset) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.first, l.next
}

// LastResumePoint is the newest resume point appended (see ResumePoint): a
// reader that starts there starts on a whole command outside any
// transaction.
func (l *Log) LastResumePoint() Offset {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.resume
}

// ringStart is the oldest offset the ring holds. Caller holds mu.
func (l *Log) ringStart() Offset {
	return max(l.first, l.ringLo, l.next-Offset(len(l.ring)))
}

// Cursor returns a reader positioned at offset from, which must be in
// [First, Next].
func (l *Log) Cursor(from Offset) (*Cursor, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	switch {
	case l.closed:
		return nil, ErrClosed
	case from < l.first:
		return nil, ErrNotRetained
	case from > l.next:
		return nil, ErrFuture
	}
	return &Cursor{l: l, off: from, cuts: len(l.cuts)}, nil
}

// WaitFor blocks until Next > off (the log holds offset off), the context
// ends, or the log is closed.
func (l *Log) WaitFor(ctx context.Context, off Offset) error {
	for {
		l.mu.RLock()
		next, closed := l.next, l.closed
		var wake chan struct{}
		if !closed && next <= off {
			wake = l.waitChan()
		}
		l.mu.RUnlock()
		if closed {
			return ErrClosed
		}
		if next > off {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Cursor reads a Log forward from one offset. It belongs to one goroutine.
type Cursor struct {
	l    *Log
	off  Offset
	cuts int // len(l.cuts) when the cursor last checked them
}

// checkCuts fails when a Truncate since the last check cut bytes the cursor
// has already returned. Caller holds l.mu.
func (c *Cursor) checkCuts() error {
	for _, at := range c.l.cuts[c.cuts:] {
		if c.off > at {
			return ErrTruncated
		}
	}
	c.cuts = len(c.l.cuts)
	return nil
}

// Offset is the offset of the next byte Read will return.
func (c *Cursor) Offset() Offset { return c.off }

// Wait blocks until the byte at the cursor is in the log (a Read would not
// block), the context ends or the log is closed.
func (c *Cursor) Wait(ctx context.Context) error { return c.l.WaitFor(ctx, c.off) }

// Read copies the bytes at the cursor into p, blocking until at least one is
// available or ctx ends. It returns ErrNotRetained once the cursor's offset
// has been trimmed away, and ErrClosed when the log is closed.
func (c *Cursor) Read(ctx context.Context, p []byte) (int, error) {
	l := c.l
	for {
		l.mu.RLock()
		if l.closed {
			l.mu.RUnlock()
			return 0, ErrClosed
		}
		if c.off < l.first {
			l.mu.RUnlock()
			return 0, ErrNotRetained
		}
		if err := c.checkCuts(); err != nil {
			l.mu.RUnlock()
			return 0, err
		}
		if c.off < l.next {
			if c.off >= l.ringStart() {
				n := l.readRing(c.off, p)
				l.mu.RUnlock()
				c.off += Offset(n)
				return n, nil
			}
			seg := l.segmentFor(c.off)
			avail := seg.first + seg.size - c.off
			l.mu.RUnlock()
			return c.readDisk(seg, p[:min(int64(len(p)), avail)])
		}
		wake := l.waitChan()
		l.mu.RUnlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (c *Cursor) readDisk(seg *segment, p []byte) (int, error) {
	n, err := seg.f.ReadAt(p, c.off-seg.first)
	if err != nil && !(err == io.EOF && n == len(p)) {
		c.l.mu.RLock()
		trimmed, closed := c.off < c.l.first, c.l.closed
		c.l.mu.RUnlock()
		switch {
		case closed:
			return 0, ErrClosed
		case trimmed:
			return 0, ErrNotRetained
		}
		return 0, fmt.Errorf("read segment %d at offset %d: %w", seg.first, c.off, err)
	}
	c.off += Offset(n)
	return n, nil
}

// readRing copies from the ring starting at off (in [ringStart, next)).
// Caller holds mu.
func (l *Log) readRing(off Offset, p []byte) int {
	n := min(int64(len(p)), l.next-off)
	r := int64(len(l.ring))
	at := off % r
	k := copy(p[:n], l.ring[at:])
	copy(p[k:n], l.ring)
	return int(n)
}

// segmentFor finds the segment holding off (in [first, next)). Caller holds mu.
func (l *Log) segmentFor(off Offset) *segment {
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].first > off })
	return l.segs[i-1]
}

// SegmentInfo describes one segment file.
type SegmentInfo struct {
	First   Offset
	Size    int64
	ModTime time.Time // when its last byte was written; zero when the file could not be read
}

// Segments describes the segments, oldest first.
func (l *Log) Segments() []SegmentInfo {
	l.mu.RLock()
	segs := append([]*segment(nil), l.segs...)
	sizes := make([]int64, len(segs))
	for i, s := range segs {
		sizes[i] = s.size
	}
	l.mu.RUnlock()
	out := make([]SegmentInfo, len(segs))
	for i, s := range segs {
		out[i] = SegmentInfo{First: s.first, Size: sizes[i]}
		if fi, err := s.f.Stat(); err == nil {
			out[i].ModTime = fi.ModTime()
		}
	}
	return out
}
