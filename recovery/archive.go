package recovery

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis-relay/redis-relay/proxy/history"
	"github.com/redis-relay/redis-relay/replstream"
)

// archive is a read-only view of a data dir: state.json, the snapshots it
// names that the log still follows, and the log, all opened at once.
type archive struct {
	state history.State
	snaps []history.Snapshot // newest first; snaps[len-1] is where framing starts
	files []*os.File         // open on snaps
	log   *replstream.LogReader
	times *replstream.TimeIndex
}

func openArchive(dir string) (*archive, error) {
	st, err := history.ReadState(dir)
	if err != nil {
		return nil, fmt.Errorf("%w (is %s a relay's data dir?)", err, dir)
	}
	h := &archive{state: st}
	logDir := filepath.Join(dir, h.state.LogDir)
	// The time index first, so that its files of segments a running relay
	// trims before the log is opened are still held.
	if h.times, err = replstream.OpenTimeIndex(logDir, 0, math.MaxInt64); err != nil {
		return nil, err
	}
	if h.log, err = replstream.OpenLogReader(logDir); err != nil {
		h.times.Close()
		return nil, err
	}
	first, next := h.log.Range()
	if err := h.times.Clip(first, next); err != nil {
		h.close()
		return nil, err
	}
	for i, s := range append([]history.Snapshot{h.state.Snapshot}, h.state.Older...) {
		if s.Offset+1 < first || s.Offset+1 > next {
			continue // the log no longer (or not yet) holds the stream after it
		}
		f, err := os.Open(filepath.Join(dir, s.File))
		if err != nil {
			if i == 0 {
				h.close()
				return nil, fmt.Errorf("open snapshot: %w", err)
			}
			continue // dropped by the relay meanwhile
		}
		h.snaps, h.files = append(h.snaps, s), append(h.files, f)
	}
	if len(h.snaps) == 0 {
		h.close()
		return nil, fmt.Errorf("log holds [%d, %d), the snapshot needs %d", first, next, h.state.Snapshot.Offset+1)
	}
	return h, nil
}

func (h *archive) close() {
	for _, f := range h.files {
		f.Close()
	}
	h.times.Close()
	h.log.Close()
}

// oldest is the oldest snapshot the log follows: the start of the reach.
func (h *archive) oldest() history.Snapshot { return h.snaps[len(h.snaps)-1] }

// start is the offset of the first stream byte after the oldest snapshot.
func (h *archive) start() int64 { return h.oldest().Offset + 1 }

// base is the newest snapshot at or before cut, and its file.
func (h *archive) base(cut int64) (history.Snapshot, *os.File) {
	for i, s := range h.snaps {
		if s.Offset+1 <= cut {
			return s, h.files[i]
		}
	}
	return h.oldest(), h.files[len(h.files)-1]
}

// span says what the data dir can go back to, for error messages.
func (h *archive) span() string {
	_, next := h.log.Range()
	s := fmt.Sprintf("offsets %d to %d", h.start()-1, next-1)
	if created := h.oldest().Created; !created.IsZero() {
		s += ", from " + created.UTC().Format(time.RFC3339Nano)
		if m, ok, _ := h.times.Newest(); ok {
			s += " to " + m.Time.UTC().Format(time.RFC3339Nano)
		}
	}
	return s
}

// cutPoint frames the log from the snapshot on and returns the offset of
// the first byte left out: a resume point.
func (h *archive) cutPoint(o Options) (int64, Result, error) {
	var res Result
	_, next := h.log.Range()
	limit := next
	switch {
	case o.UntilOffset >= 0:
		limit = o.UntilOffset + 1
		if limit < h.start() || limit > next {
			return 0, res, fmt.Errorf("%w: offset %d; this data dir holds %s", ErrOutOfRange, o.UntilOffset, h.span())
		}
	case !o.Until.IsZero():
		if o.Until.Before(h.oldest().Created) {
			return 0, res, fmt.Errorf("%w: %s is before the snapshot; this data dir holds %s", ErrOutOfRange, o.Until.UTC().Format(time.RFC3339Nano), h.span())
		}
		var err error
		if limit, err = h.times.OffsetAfter(o.Until); err != nil {
			return 0, res, err
		}
	case o.BeforeCommand == "":
		return 0, res, errors.New("say which point: a time, an offset or a command")
	}
	name := []byte(strings.ToLower(o.BeforeCommand))
	// With After, only commands from the first mark at or after that time
	// on count (marks grow in offset and time alike).
	from := h.start()
	if !o.After.IsZero() {
		var err error
		if from, err = h.times.OffsetAfter(o.After.Add(-time.Nanosecond)); err != nil {
			return 0, res, err
		}
	}
	fr := replstream.NewFramer(h.start(), replstream.DefaultLimits)
	rp := replstream.NewResumePoint(h.start())
	found := false
	onCmd := func(c *replstream.Command) {
		if found {
			return
		}
		if len(name) > 0 && bytes.EqualFold(c.Name, name) {
			if c.Offset >= from {
				found = true
				res.Command, res.CmdAt = strings.ToUpper(o.BeforeCommand), c.Offset
				return
			}
		}
		rp.Add(c)
	}
	buf := make([]byte, 256<<10)
	for off := h.start(); off < limit && !found; {
		n, err := h.log.ReadAt(buf[:min(int64(len(buf)), limit-off)], off)
		if n > 0 {
			if _, ferr := fr.Feed(buf[:n], onCmd); ferr != nil {
				break // a torn tail: what came before it stands
			}
			off += int64(n)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, res, err
		}
		if n == 0 {
			break
		}
	}
	if len(name) > 0 && !found {
		after := ""
		if !o.After.IsZero() {
			after = " after " + o.After.UTC().Format(time.RFC3339Nano)
		}
		return 0, res, fmt.Errorf("%w: no %s%s in the log; this data dir holds %s", ErrOutOfRange, strings.ToUpper(o.BeforeCommand), after, h.span())
	}
	cut := rp.At()
	res.Offset = cut - 1
	if cut > h.start() {
		var err error
		if res.Time, _, err = h.times.TimeOf(cut - 1); err != nil {
			return 0, res, err
		}
	} else {
		res.Time = h.oldest().Created
	}
	return cut, res, nil
}
