package upstream

import (
	"context"
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

// RefreshLoop checks once a second whether a refresh is due, until ctx ends.
func (u *Link) RefreshLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var notBefore time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Now().Before(notBefore) || !u.refreshDue() {
			continue
		}
		if err := u.refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			u.stats.refreshFailures.Add(1)
			u.logger.Warn("snapshot refresh failed", "err", err)
			notBefore = time.Now().Add(30 * time.Second)
		}
	}
}

// refreshDue reports whether the snapshot should be replaced.
func (u *Link) refreshDue() bool {
	st, _, _ := u.hist.Status()
	if u.status.current() != LinkConnected {
		return false
	}
	if !st.HasHistory || st.SyncPending || st.GuardTripped || st.HoldActive {
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

// refresh fetches a snapshot of the current history and swaps it in.
func (u *Link) refresh(ctx context.Context) error {
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
		c, replid, offset, err = u.fetchSnapshot(ctx, sourcePeer(cfg))
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
		if c, replid, offset, err = u.fetchSnapshot(ctx, masterPeer(cfg, addr)); err != nil {
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
