package replstream

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// The write-behind: one goroutine per Log that moves appended bytes from
// the ring to the segment files, so that Append never waits for the disk
// while the ring has room.

// writeChunk bounds one write, so that appenders waiting for ring space
// are woken as the disk makes progress.
const writeChunk = 1 << 20

// retryWrite is how long the write-behind waits after a failed write.
const retryWrite = time.Second

// While fewer than batchBytes wait (and less than an eighth of the ring),
// the write-behind lets batchDelay pass before it writes, so that a stream
// of small appends costs one wake-up and one write per batch rather than
// per append. The bytes are in the ring meanwhile: readers do not wait for
// them, and Sync waits at most batchDelay longer.
const (
	batchBytes = 256 << 10
	batchDelay = 500 * time.Microsecond
)

func (l *Log) startWriter() {
	l.started = true
	go l.writeBehind()
}

func (l *Log) writeBehind() {
	defer close(l.done)
	batch := time.NewTimer(batchDelay)
	batch.Stop()
	for {
		select {
		case <-l.work:
		case <-l.stop:
			l.writeAll() // a clean Close keeps what was appended
			return
		}
		if l.fewWaiting() {
			batch.Reset(batchDelay)
			select {
			case <-batch.C:
			case <-l.stop:
				batch.Stop()
				l.writeAll()
				return
			}
		}
		if err := l.writeAll(); err != nil {
			select {
			case <-time.After(retryWrite):
				select { // try again even if nothing new is appended
				case l.work <- struct{}{}:
				default:
				}
			case <-l.stop:
				l.writeAll()
				return
			}
		}
	}
}

// fewWaiting reports whether the bytes waiting to be written are few enough
// to wait for more (see batchDelay).
func (l *Log) fewWaiting() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	n := l.next - l.written
	return n < batchBytes && n < Offset(len(l.ring))/8
}

// writeAll writes what is appended now, and records the outcome.
func (l *Log) writeAll() error {
	for {
		more, err := l.writeOnce()
		l.mu.Lock()
		if err != l.werr {
			l.werr = err
			close(l.space)
			l.space = make(chan struct{})
		}
		l.mu.Unlock()
		if err != nil {
			return err
		}
		if !more {
			// The marks of the bytes written go to disk too. One that
			// cannot be written stays pending; Sync reports the error.
			l.flushMarks()
			return nil
		}
	}
}

// writeOnce writes the next piece of unwritten bytes, closing a full
// segment first where the stream is at a resume point. It reports whether
// more bytes wait.
func (l *Log) writeOnce() (more bool, err error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return false, nil
	}
	seg := l.segs[len(l.segs)-1]
	written, next, resume, ring := l.written, l.next, l.resume, l.ring
	l.mu.RUnlock()
	if written == next {
		return false, nil
	}
	full := seg.size >= l.opt.SegmentSize
	if full && resume == written {
		if err := l.addSegment(written); err != nil {
			return false, err
		}
		return true, nil
	}
	end := min(next, written+writeChunk)
	if resume > written && (full || seg.size+(end-written) >= l.opt.SegmentSize) {
		end = min(end, resume) // close the segment at the resume point
	}
	// The ring holds [written, end): appenders never overwrite bytes not
	// yet written, and Truncate waits for wmu.
	r := Offset(len(ring))
	at := written % r
	first := ring[at:min(r, at+end-written)]
	if _, err := seg.f.WriteAt(first, written-seg.first); err != nil {
		return false, segmentWriteError(seg, err)
	}
	if rest := end - written - Offset(len(first)); rest > 0 {
		if _, err := seg.f.WriteAt(ring[:rest], written-seg.first+Offset(len(first))); err != nil {
			return false, segmentWriteError(seg, err)
		}
	}
	// A segment full at a resume point is closed at once, in the same step
	// that publishes the bytes, so that a flushed log has its final shape.
	var newSeg *segment
	if seg.size+end-written >= l.opt.SegmentSize && resume == end {
		if newSeg, err = l.createSegment(end); err != nil {
			return false, err
		}
	}
	l.mu.Lock()
	seg.size += end - written
	l.written = end
	if newSeg != nil {
		err = l.attachSegment(newSeg)
	}
	close(l.space)
	l.space = make(chan struct{})
	l.mu.Unlock()
	return end < next, err
}

func segmentWriteError(seg *segment, err error) error {
	if errors.Is(err, os.ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("append to segment %d: %w", seg.first, err)
}
