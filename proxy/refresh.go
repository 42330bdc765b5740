package proxy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis-relay/redis-relay/replstream"
)

// Snapshot refresh. The log since the snapshot grows with every write; once
// it passes RefreshRatio times the snapshot's size (or the snapshot is older
// than RefreshMaxAge) the relay fetches a fresh snapshot of the same history
// over a second connection (never for less than RefreshMinBytes of log) (REPLCONF rdb-only 1 where the master knows it),
// swaps it in, and drops log segments older than it that retention does not
// keep. One master fork per refresh, however many replicas there are.

// refreshLoop checks once a second whether a refresh is due, until ctx ends.
func (r *Relay) refreshLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var notBefore time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Now().Before(notBefore) || !r.refreshDue() {
			continue
		}
		if err := r.refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			r.stats.refreshFailures.Add(1)
			r.logger.Warn("snapshot refresh failed", "err", err)
			notBefore = time.Now().Add(30 * time.Second)
		}
	}
}

// refreshDue reports whether the snapshot should be replaced.
func (r *Relay) refreshDue() bool {
	st := r.Status()
	if !st.HasHistory || st.LinkState != linkConnected || st.SyncPending || st.GuardTripped || st.HoldActive {
		return false
	}
	cfg := r.conf()
	since := st.Log.Next - 1 - st.Snapshot.Offset
	if since <= 0 {
		return false
	}
	if cfg.RefreshRatio >= 0 && since >= cfg.RefreshMinBytes && float64(since) > cfg.RefreshRatio*float64(max(st.Snapshot.Size, 1)) {
		return true
	}
	return cfg.RefreshMaxAge > 0 && time.Since(st.Snapshot.Created) > cfg.RefreshMaxAge
}

// refresh fetches a snapshot of the current history and swaps it in.
func (r *Relay) refresh(ctx context.Context) error {
	addr, _ := r.masterAddr()
	ctx, cancel := context.WithTimeout(ctx, 24*time.Hour)
	defer cancel()
	cfg := r.conf()
	from := "master"
	var c *upConn
	var replid string
	var offset int64
	var err error
	if cfg.SnapshotSource != "" {
		c, replid, offset, err = r.fetchSnapshot(ctx, cfg.SnapshotSource)
		switch {
		case err == nil:
			addr, from = cfg.SnapshotSource, cfg.SnapshotSource
		case !cfg.SnapshotSourceFallback:
			return fmt.Errorf("%w: %s: %v", errSourceDown, cfg.SnapshotSource, err)
		default:
			r.sourceFallback(fmt.Sprintf("snapshot source %s: %v", cfg.SnapshotSource, err))
		}
	}
	if c == nil {
		if c, replid, offset, err = r.fetchSnapshot(ctx, addr); err != nil {
			return err
		}
	}
	defer c.close()
	fields := []string{"+FULLRESYNC", replid, strconv.FormatInt(offset, 10)}
	r.mu.Lock()
	same := r.log != nil && r.id.Accepts(fields[1], offset+1)
	current := int64(-1)
	if r.snap != nil {
		current = r.snap.meta.Offset
	}
	r.mu.Unlock()
	if !same {
		return fmt.Errorf("upstream answered with history %s, not the relay's; the main link will deal with it", fields[1])
	}
	if offset <= current {
		// An upstream relay serves its own snapshot, which may be no newer
		// than ours; fetching it would gain nothing.
		return fmt.Errorf("upstream offers a snapshot at offset %d, no newer than the relay's at %d", offset, current)
	}
	start := time.Now()
	r.logger.Info("snapshot refresh started", "upstream", addr, "replid", fields[1], "offset", offset)
	s, err := r.receiveSnapshot(c, addr, fields[1], offset, "receiving refreshed snapshot", true)
	if err != nil {
		return err
	}
	if err := r.commitRefresh(ctx, s); err != nil {
		r.abortFullSync(s, err)
		return err
	}
	r.stats.refreshes.Add(1)
	r.noteSnapshotFrom(from)
	if from != "master" {
		r.stats.forksAvoided.Add(1)
	}
	meta := s.metaCopy()
	r.logger.Info("snapshot refreshed", "offset", meta.Offset, "bytes", meta.Size, "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

// commitRefresh validates a refreshed snapshot and swaps it in: same
// history, same log, newer starting point.
func (r *Relay) commitRefresh(ctx context.Context, s *snapshot) error {
	s.markReceived()
	if err := r.validate(s); err != nil {
		r.stats.snapshotsRejected.Add(1)
		return fmt.Errorf("snapshot rejected: %w", err)
	}
	s.markVerified()
	if err := r.syncSnapshot(s); err != nil {
		return err
	}
	// The main link may be a little behind the refresh's fork point; serve
	// the new snapshot only once the log holds the byte just before the
	// stream it continues with.
	log := r.currentLog()
	wctx, cancel := context.WithTimeout(ctx, r.timeout())
	err := log.WaitFor(wctx, s.meta.Offset)
	cancel()
	if err != nil {
		return fmt.Errorf("log did not reach the snapshot's offset %d: %w", s.meta.Offset, err)
	}
	r.at("refresh-commit")
	err = r.adopt(s, log, func() error { // under mu
		if r.log != log || r.pending != s || !r.id.Accepts(s.meta.ReplID, s.meta.Offset+1) {
			return errors.New("history changed during the refresh")
		}
		if first, _ := log.Range(); first > s.meta.Offset+1 {
			return fmt.Errorf("log starts at %d, after the snapshot's offset %d", first, s.meta.Offset)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The new snapshot is the relay's now: a failed trim only keeps old
	// segments for longer, it must not undo the refresh.
	if err := r.trimLog(); err != nil {
		r.logger.Warn("trim log after refresh", "err", err)
	}
	return nil
}

// trimLog drops log segments that hold only bytes before the snapshot and
// outside the retention window (RetainBytes before the head, RetainAge),
// and never what a full sync in progress will stream after its snapshot.
func (r *Relay) trimLog() error {
	r.mu.Lock()
	log, snap := r.log, r.snap
	keep := int64(0)
	if snap != nil {
		keep = snap.meta.Offset + 1
	}
	for s := range r.sessions {
		if pin := s.pin.Load(); pin > 0 {
			keep = min(keep, pin)
		}
	}
	r.mu.Unlock()
	if log == nil {
		return nil
	}
	_, next := log.Range()
	cfg := r.conf()
	if cfg.RetainBytes > 0 {
		keep = min(keep, next-cfg.RetainBytes)
	}
	if cfg.RetainAge > 0 {
		cutoff := time.Now().Add(-cfg.RetainAge)
		for _, seg := range log.Segments() {
			if seg.ModTime.After(cutoff) {
				keep = min(keep, seg.First)
				break
			}
		}
	}
	err := log.TrimBefore(keep)
	r.dropFellBehind(log)
	return errors.Join(err, r.dropUnreachableSnapshots(log))
}

// dropUnreachableSnapshots forgets the older snapshots whose stream the
// log no longer holds, and deletes their files.
func (r *Relay) dropUnreachableSnapshots(log *replstream.Log) error {
	first, _ := log.Range()
	r.stateMu.Lock()
	r.mu.Lock()
	if r.log != log {
		r.mu.Unlock()
		r.stateMu.Unlock()
		return nil
	}
	var kept, dropped []Snapshot
	for _, o := range r.older {
		if o.Offset+1 >= first {
			kept = append(kept, o)
		} else {
			dropped = append(dropped, o)
		}
	}
	st := r.currentState()
	st.Older = kept
	r.mu.Unlock()
	if len(dropped) == 0 {
		r.stateMu.Unlock()
		return nil
	}
	err := r.writeState(st)
	if err == nil {
		r.mu.Lock()
		r.older = kept
		r.mu.Unlock()
	}
	r.stateMu.Unlock()
	if err != nil {
		return err
	}
	for _, o := range dropped {
		removeSnapshotFiles(r.path(o.File))
	}
	return nil
}

// dropFellBehind ends the sessions whose next byte is no longer retained
// (a replica that stopped reading); they will full-sync from the relay's
// snapshot when they come back. Their cursors would find out at their next
// read, which a replica that stopped reading may never ask for.
func (r *Relay) dropFellBehind(log *replstream.Log) {
	first, _ := log.Range()
	r.mu.Lock()
	var behind []*session
	for s := range r.sessions {
		if s.state.Load() == stateOnline && s.sent.Load() > 0 && s.sent.Load() < first {
			behind = append(behind, s)
		}
	}
	r.mu.Unlock()
	for _, s := range behind {
		r.logger.Warn("replica fell out of the retained log", "replica", s.c.addr, "sent", s.sent.Load(), "first", first)
		s.end(reasonFellBehind)
	}
}
