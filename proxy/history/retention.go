package history

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis-relay/redis-relay/replstream"
)

// Retention: what the history keeps after a refresh. The log keeps the
// stream after the newest snapshot, the bytes retention asks for
// (RetainBytes, RetainAge), and what a full sync in progress will stream
// after its snapshot; older snapshots are kept while the log still holds
// the stream after them.

// CommitRefresh validates a refreshed snapshot and swaps it in: same
// history, same log, newer starting point.
func (h *Store) CommitRefresh(ctx context.Context, s *SnapshotFile) error {
	s.MarkReceived()
	h.at("refresh-received")
	if err := h.validate(s); err != nil {
		h.stats.snapshotsRejected.Add(1)
		return fmt.Errorf("snapshot rejected: %w", err)
	}
	if err := h.syncSnapshot(s); err != nil {
		return err
	}
	// The main link may be a little behind the refresh's fork point; serve
	// the new snapshot only once the log holds the byte just before the
	// stream it continues with. By then the command tripwire has seen every
	// command the snapshot holds: one that holds the held command is
	// dropped, and its last byte never reaches a replica.
	log := h.CurrentLog()
	wctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout())
	err := log.WaitFor(wctx, s.meta.Offset)
	cancel()
	if err != nil {
		return fmt.Errorf("log did not reach the snapshot's offset %d: %w", s.meta.Offset, err)
	}
	h.mu.Lock()
	err = h.pastHold(s.meta.Offset)
	h.mu.Unlock()
	if err != nil {
		return err
	}
	s.markVerified()
	h.at("refresh-commit")
	err = h.adopt(s, log, func() error { // under mu
		if h.log != log || h.pending != s || !h.id.Accepts(s.meta.ReplID, s.meta.Offset+1) {
			return errors.New("history changed during the refresh")
		}
		if err := h.pastHold(s.meta.Offset); err != nil {
			return err
		}
		first, next := log.Range()
		if first > s.meta.Offset+1 {
			return fmt.Errorf("log starts at %d, after the snapshot's offset %d", first, s.meta.Offset)
		}
		if next <= s.meta.Offset {
			return fmt.Errorf("log was cut back to %d, before the snapshot's offset %d", next, s.meta.Offset)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The new snapshot is the relay's now: a failed trim only keeps old
	// segments for longer, it must not undo the refresh.
	if err := h.trimLog(); err != nil {
		h.logger.Warn("trim log after refresh", "err", err)
	}
	return nil
}

// RefreshBase reports whether a snapshot of replid at offset continues
// the current history, and the current snapshot's offset (-1: none).
func (h *Store) RefreshBase(replid string, offset int64) (same bool, current int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	current = -1
	if h.snap != nil {
		current = h.snap.meta.Offset
	}
	return h.log != nil && h.id.Accepts(replid, offset+1), current
}

// trimLog drops log segments that hold only bytes before the snapshot and
// outside the retention window (RetainBytes before the head, RetainAge),
// and never what a full sync in progress will stream after its snapshot.
func (h *Store) trimLog() error {
	h.mu.Lock()
	log, snap := h.log, h.snap
	keep := int64(0)
	if snap != nil {
		keep = snap.meta.Offset + 1
	}
	for _, pin := range h.readers {
		if pin > 0 {
			keep = min(keep, pin)
		}
	}
	h.mu.Unlock()
	if log == nil {
		return nil
	}
	_, next := log.Range()
	cfg := h.cfg.Get()
	if cfg.RetainBytes > 0 {
		keep = min(keep, next-cfg.RetainBytes)
	}
	if cfg.RetainAge > 0 {
		cutoff := time.Now().Add(-cfg.RetainAge)
		for _, seg := range log.Segments() {
			// A segment whose age is unknown counts as young: keeping it
			// costs disk, dropping it could lose retained history.
			if seg.ModTime.IsZero() || seg.ModTime.After(cutoff) {
				keep = min(keep, seg.First)
				break
			}
		}
	}
	err := log.TrimBefore(keep)
	h.dropFellBehind(log)
	return errors.Join(err, h.dropUnreachableSnapshots(log))
}

// dropUnreachableSnapshots forgets the older snapshots whose stream the
// log no longer holds, and deletes their files.
func (h *Store) dropUnreachableSnapshots(log *replstream.Log) error {
	first, _ := log.Range()
	h.stateMu.Lock()
	h.mu.Lock()
	if h.log != log {
		h.mu.Unlock()
		h.stateMu.Unlock()
		return nil
	}
	var kept, dropped []Snapshot
	for _, o := range h.older {
		if o.Offset+1 >= first {
			kept = append(kept, o)
		} else {
			dropped = append(dropped, o)
		}
	}
	st := h.currentState()
	st.Older = kept
	h.mu.Unlock()
	if len(dropped) == 0 {
		h.stateMu.Unlock()
		return nil
	}
	err := h.writeState(st)
	if err == nil {
		h.mu.Lock()
		h.older = kept
		h.mu.Unlock()
	}
	h.stateMu.Unlock()
	if err != nil {
		return err
	}
	for _, o := range dropped {
		h.removeSnapshotFiles(h.Path(o.File))
	}
	return nil
}

// dropFellBehind ends the readers whose next byte is no longer retained
// (a replica that stopped reading); they will full-sync from the relay's
// snapshot when they come back. Their cursors would find out at their next
// read, which a replica that stopped reading may never ask for.
func (h *Store) dropFellBehind(log *replstream.Log) {
	first, _ := log.Range()
	h.mu.Lock()
	var behind []Reader
	for r := range h.readers {
		if next := r.NextOffset(); r.Online() && next > 0 && next < first {
			behind = append(behind, r)
		}
	}
	h.mu.Unlock()
	for _, r := range behind {
		h.logger.Warn("replica fell out of the retained log", "replica", r.String(), "sent", r.NextOffset(), "first", first)
		r.EndReader(EndFellBehind)
	}
}
