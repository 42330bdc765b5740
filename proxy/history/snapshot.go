package history

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/redis-relay/redis-relay/rdbparse"
	"github.com/redis-relay/redis-relay/replstream"
)

// SnapshotFile is an RDB being received from upstream, or a complete one. Any
// number of sessions read it while it is written (pipelined fan-out); the
// final bytes are released only once the whole file has been received and
// checked, so no replica can load a snapshot the relay did not accept.
type SnapshotFile struct {
	meta Snapshot // ReplID, Offset, File fixed at creation; Size when complete
	path string

	mu      sync.Mutex
	f       *os.File // the writer's handle; nil once complete
	written int64
	size    int64 // total RDB bytes when known (sized transfer, or complete), else -1
	done    bool  // no more bytes will come
	err     error // why the transfer failed; nil when done and accepted
	wake    chan struct{}
	log     *replstream.Log // the log of this history, set when accepted
	// received: every byte is in, the transfer awaits acceptance; guarded by mu
	received bool
	// verified: checksum, header and guard passed; replicas may have the
	// last byte while the relay makes its own copy durable; guarded by mu
	verified bool

	check    *rdbparse.Checker // CRC of the bytes written; used by the writer goroutine only
	flushed  int64             // bytes handed to startWriteback; used by the writer goroutine only
	parsed   chan struct{}     // closed when the parser is done with the file
	summary  *rdbparse.Summary // set before parsed is closed
	parseErr error             // set before parsed is closed
}

// completeSnapshot describes a snapshot file already whole on disk (one
// recovered from state.json, or one the guard holds back). It is not
// parsed again: its counts are the ones meta carries, and parsed stays open
// unless the caller closes it.
func completeSnapshot(meta Snapshot, path string) *SnapshotFile {
	return &SnapshotFile{meta: meta, path: path, written: meta.Size, size: meta.Size, done: true, received: true, wake: make(chan struct{}), parsed: make(chan struct{})}
}

func newSnapshot(replid string, offset int64, path string) (*SnapshotFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create snapshot file: %w", err)
	}
	return &SnapshotFile{
		meta: Snapshot{ReplID: replid, Offset: offset, Created: time.Now(), Keys: -1, Expires: -1},
		path: path, f: f, size: -1, wake: make(chan struct{}),
		check: rdbparse.NewChecker(), parsed: make(chan struct{}),
	}, nil
}

// Meta returns the metadata; Size and the parser's counts change after
// creation, the other fields never do.
func (s *SnapshotFile) Meta() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.meta
}

// Path is where the snapshot's file is; it never changes.
func (s *SnapshotFile) Path() string { return s.path }

func (s *SnapshotFile) notify() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// SetSize records the total size once the payload header gives it.
func (s *SnapshotFile) SetSize(n int64) {
	s.mu.Lock()
	s.size = n
	s.notify()
	s.mu.Unlock()
}

// writebackEvery is how many bytes of a snapshot may be written before the
// relay starts writing them to disk (REPL_MAX_WRITTEN_BEFORE_FSYNC in Redis).
const writebackEvery = 8 << 20

// Write appends RDB bytes from upstream; it implements io.Writer.
func (s *SnapshotFile) Write(p []byte) (int, error) {
	n, err := s.f.Write(p)
	s.check.Write(p[:n])
	s.mu.Lock()
	s.written += int64(n)
	written := s.written
	s.notify()
	s.mu.Unlock()
	if written-s.flushed >= writebackEvery {
		startWriteback(s.f, s.flushed, written-s.flushed)
		s.flushed = written
	}
	if err != nil {
		return n, fmt.Errorf("write snapshot: %w", err)
	}
	return n, nil
}

// MarkReceived records that every byte is in. The parser may now reach the
// end of the file; replicas still wait for acceptance.
func (s *SnapshotFile) MarkReceived() {
	s.mu.Lock()
	s.received = true
	s.size = s.written
	s.notify()
	s.mu.Unlock()
}

// markVerified releases the last byte to replicas: the snapshot is sound,
// only the relay's own commit (fsync, state.json) is still to come.
func (s *SnapshotFile) markVerified() {
	s.mu.Lock()
	s.verified = true
	s.notify()
	s.mu.Unlock()
}

// finish marks the transfer over: accepted with the log of its history, or
// failed with err.
func (s *SnapshotFile) finish(log *replstream.Log, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	s.done, s.err, s.log = true, err, log
	if err == nil {
		s.size = s.written
		s.meta.Size = s.written
	}
	s.notify()
}

// Progress returns what is known now, and a channel closed on the next change.
func (s *SnapshotFile) Progress() (written, size int64, done bool, err error, wake <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written, s.size, s.done, s.err, s.wake
}

// WaitAccepted returns the log of the snapshot's history once the relay
// has committed it, or ErrSnapshotAbandoned.
func (s *SnapshotFile) WaitAccepted(ctx context.Context) (*replstream.Log, error) {
	for {
		s.mu.Lock()
		log, done, err, wake := s.log, s.done, s.err, s.wake
		s.mu.Unlock()
		switch {
		case done && err == nil:
			return log, nil
		case done:
			return nil, fmt.Errorf("%w: %v", ErrSnapshotAbandoned, err)
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// ErrSnapshotAbandoned: the upstream transfer failed or was rejected.
var ErrSnapshotAbandoned = errors.New("snapshot transfer abandoned")

// WaitSize blocks until the total size is known, calling keepalive every
// second meanwhile.
func (s *SnapshotFile) WaitSize(ctx context.Context, keepalive func() error) (int64, error) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		_, size, done, err, wake := s.Progress()
		if done && err != nil {
			return 0, fmt.Errorf("%w: %v", ErrSnapshotAbandoned, err)
		}
		if size >= 0 {
			return size, nil
		}
		select {
		case <-wake:
		case <-t.C:
			if err := keepalive(); err != nil {
				return 0, err
			}
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// CopyTo sends the snapshot's RDB bytes as they become available, holding
// back the final byte until the snapshot is verified. f is a handle on the
// snapshot file opened by the caller; send sends n bytes of it from pos
// and returns how many it sent.
func (s *SnapshotFile) CopyTo(ctx context.Context, send func(f *os.File, pos, n int64) (int64, error), f *os.File) (int64, error) {
	var pos int64
	for {
		s.mu.Lock()
		written, done, err, wake, verified := s.written, s.done, s.err, s.wake, s.verified
		s.mu.Unlock()
		if done && err != nil {
			return pos, fmt.Errorf("%w: %v", ErrSnapshotAbandoned, err)
		}
		limit := written
		if !done && !verified {
			limit-- // the last byte waits for the checks
		}
		if pos >= limit {
			if done {
				return pos, nil
			}
			select {
			case <-wake:
				continue
			case <-ctx.Done():
				return pos, ctx.Err()
			}
		}
		n, err := send(f, pos, limit-pos)
		pos += n
		if err != nil {
			return pos, err
		}
		if n == 0 {
			return pos, fmt.Errorf("read snapshot %s at %d: %w", s.path, pos, io.ErrUnexpectedEOF)
		}
	}
}

// follower reads the snapshot file as it grows, for the parser. It ends at
// the last byte once all are received, or with the transfer's error.
type follower struct {
	s   *SnapshotFile
	f   *os.File
	pos int64
}

func (fl *follower) Read(p []byte) (int, error) {
	for {
		fl.s.mu.Lock()
		written, received, done, err, wake := fl.s.written, fl.s.received, fl.s.done, fl.s.err, fl.s.wake
		fl.s.mu.Unlock()
		if fl.pos < written {
			n, rerr := fl.f.ReadAt(p[:min(int64(len(p)), written-fl.pos)], fl.pos)
			fl.pos += int64(n)
			if n > 0 {
				return n, nil
			}
			return 0, rerr
		}
		switch {
		case done && err != nil:
			return 0, err
		case received || done:
			return 0, io.EOF
		}
		<-wake
	}
}

// parse summarises the snapshot with rdbparse while it arrives, then closes
// parsed. The relay never waits for it except where a check needs its
// verdict. Snapshots made by completeSnapshot are never parsed.
func (s *SnapshotFile) parse() {
	defer close(s.parsed)
	f, err := os.Open(s.path)
	if err != nil {
		s.parseErr = err
		return
	}
	defer f.Close()
	// Framing only: keys, expiries and structure are what the relay needs;
	// the CRC is already computed by Write as the bytes arrive.
	s.summary, s.parseErr = rdbparse.ParseWith(&follower{s: s, f: f}, -1, rdbparse.Options{SkipChecksum: true})
}
