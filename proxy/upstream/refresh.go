package upstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Snapshot refresh. The log since the snapshot grows with every write; once
// it passes RefreshRatio times the snapshot's size (or the snapshot is older
// than RefreshMaxAge) the relay fetches a fresh snapshot of the same history
// over a second connection (never for less than RefreshMinBytes of log;
// REPLCONF rdb-only 1 where the master knows it), swaps it in, and drops log
// segments older than it that retention does not keep. One master fork per
// refresh, however many replicas there are.

// refreshAsks are refreshes asked for out of turn, by a tool that needs a
// current snapshot (the downstream server's rdbonly.go). Guarded by Link.mu
// but wake, which is made once with the Link.
type refreshAsks struct {
	wanted bool          // a refresh is wanted as soon as one can start
	wake   chan struct{} // buffered(1): wakes the refresh loop at once
	ended  chan struct{} // closed and replaced when an asked-for refresh ends
	err    error         // how the last one ended
}

// AskRefresh asks for a refresh now, and returns a channel closed when it
// has ended, and a function that tells how: nil once the new snapshot is
// in, else why it was not taken.
func (u *Link) AskRefresh() (<-chan struct{}, func() error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.asked.wanted = true
	select {
	case u.asked.wake <- struct{}{}:
	default:
	}
	ended := u.asked.ended
	return ended, func() error {
		u.mu.Lock()
		defer u.mu.Unlock()
		return u.asked.err
	}
}

// takeAsk reports whether a refresh was asked for, and clears the ask.
func (u *Link) takeAsk() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	wanted := u.asked.wanted
	u.asked.wanted = false
	return wanted
}

// answerAsk ends an asked-for refresh with err.
func (u *Link) answerAsk(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.asked.err = err
	close(u.asked.ended)
	u.asked.ended = make(chan struct{})
}

// RefreshLoop checks once a second whether a refresh is due, or asked for,
// until ctx ends. An asked-for refresh waits for a full sync in progress;
// it does not wait out the pause after a failed refresh.
func (u *Link) RefreshLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var notBefore time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-u.asked.wake:
		}
		asked := false
		if st, _, _ := u.hist.Status(); !st.SyncPending {
			asked = u.takeAsk()
		}
		if asked {
			if why := u.RefreshBlocked(); why != "" {
				u.answerAsk(errors.New(why))
				continue
			}
		} else if time.Now().Before(notBefore) || !u.refreshDue() {
			continue
		}
		err := u.refresh(ctx, asked)
		if ctx.Err() != nil {
			return
		}
		if asked {
			u.answerAsk(err)
		}
		if err != nil {
			u.stats.refreshFailures.Add(1)
			u.logger.Warn("snapshot refresh failed", "err", err)
			notBefore = time.Now().Add(30 * time.Second)
		}
	}
}

// RefreshBlocked says why no refresh can start now, "" when one can.
func (u *Link) RefreshBlocked() string {
	st, _, _ := u.hist.Status()
	switch {
	case !st.HasHistory:
		return "the relay has no history yet"
	case st.GuardTripped:
		return "the empty-master guard holds back a new history (" + st.GuardReason + ")"
	case st.HoldActive:
		return "the command tripwire holds the stream before " + st.HoldCommand
	}
	if state := u.status.current(); state != LinkConnected {
		return "the relay is not connected to its master (link " + state + ")"
	}
	return ""
}

// refreshDue reports whether the snapshot should be replaced.
func (u *Link) refreshDue() bool {
	st, _, _ := u.hist.Status()
	if st.SyncPending || u.RefreshBlocked() != "" {
		return false
	}
	cfg := u.cfg.Get()
	since := st.Log.Next - 1 - st.Snapshot.Offset
	if since <= 0 {
		return false
	}
	if !st.Identity.Accepts(st.Snapshot.ReplID, st.Snapshot.Offset+1) {
		// Two ID changes since the snapshot (failovers): its RDB names an
		// ID no longer accepted, so no +FULLRESYNC can agree with it and
		// a relay below would refuse it. Replace it, whatever the ratio.
		return true
	}
	if cfg.RefreshRatio >= 0 && since >= cfg.RefreshMinBytes && float64(since) > cfg.RefreshRatio*float64(max(st.Snapshot.Size, 1)) {
		return true
	}
	return cfg.RefreshMaxAge > 0 && time.Since(st.Snapshot.Created) > cfg.RefreshMaxAge
}

// refresh fetches a snapshot of the current history and swaps it in. With
// forTool (a tool asked for it), an upstream relay is asked for a current
// snapshot rather than any.
func (u *Link) refresh(ctx context.Context, forTool bool) error {
	addr, _ := u.MasterAddr()
	ctx, cancel := context.WithTimeout(ctx, 24*time.Hour)
	defer cancel()
	cfg := u.cfg.Get()
	from := "master"
	var c *upstreamConn
	var replid string
	var offset int64
	var err error
	if cfg.SnapshotSource != "" {
		c, replid, offset, err = u.fetchSnapshot(ctx, sourcePeer(cfg), forTool)
		switch {
		case err == nil:
			addr, from = cfg.SnapshotSource, cfg.SnapshotSource
		case !cfg.SnapshotSourceFallback:
			return fmt.Errorf("%w: %s: %v", errSourceDown, cfg.SnapshotSource, err)
		default:
			u.sourceFallback(fmt.Sprintf("snapshot source %s: %v", cfg.SnapshotSource, err))
		}
	}
	if c == nil {
		if c, replid, offset, err = u.fetchSnapshot(ctx, masterPeer(cfg, addr), forTool); err != nil {
			return err
		}
	}
	defer c.close()
	fields := []string{"+FULLRESYNC", replid, strconv.FormatInt(offset, 10)}
	same, current := u.hist.RefreshBase(fields[1], offset)
	if !same {
		return fmt.Errorf("upstream answered with history %s, not the relay's; the main link will deal with it", fields[1])
	}
	if offset <= current {
		// An upstream relay serves its own snapshot, which may be no newer
		// than ours; fetching it would gain nothing.
		return fmt.Errorf("upstream offers a snapshot at offset %d, no newer than the relay's at %d", offset, current)
	}
	start := time.Now()
	u.logger.Info("snapshot refresh started", "upstream", addr, "replid", fields[1], "offset", offset)
	s, err := u.receiveSnapshot(c, addr, fields[1], offset, "receiving refreshed snapshot", true)
	if err != nil {
		return err
	}
	if from != "master" {
		if err := u.proveSource(s); err != nil {
			u.hist.AbortFullSync(s, err)
			return err
		}
	}
	if err := u.hist.CommitRefresh(ctx, s); err != nil {
		u.hist.AbortFullSync(s, err)
		return err
	}
	u.stats.refreshes.Add(1)
	u.noteSnapshotFrom(from)
	if from != "master" {
		u.stats.forksAvoided.Add(1)
	}
	meta := s.Meta()
	u.logger.Info("snapshot refreshed", "offset", meta.Offset, "bytes", meta.Size, "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}
