package history

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// The empty-master guard. A master that runs without persistence and
// restarts comes back empty under a new replication ID, and every replica
// that follows it loses its data. When a full sync from upstream brings a
// new history whose snapshot is empty (or smaller than GuardMinKeysRatio of
// the current one), the relay holds the snapshot back: replicas keep their
// data and are served the old history, the upstream link pauses, and an
// operator releases the snapshot with RELAY GUARD RELEASE.

var ErrGuardTripped = errors.New("empty-master guard tripped")

// guardState is guarded by history.mu.
type guardState struct {
	held     *SnapshotFile // the snapshot held back; nil while the guard is not tripped
	tripwire bool          // held with the command tripwire's hold, not for the guard's own reasons
	reason   string
	since    time.Time
	released chan struct{} // closed when the held snapshot is released or discarded
}

// guardCheck returns why s must be held back, or "".
func (h *Store) guardCheck(s *SnapshotFile) string {
	cfg := h.cfg.Get()
	if cfg.DisableGuard {
		return ""
	}
	h.mu.Lock()
	cur := h.snap
	id := h.id
	h.mu.Unlock()
	if cur == nil || strings.EqualFold(s.meta.ReplID, id.ReplID) || strings.EqualFold(s.meta.ReplID, id.ReplID2) {
		return "" // first sync, or the same history
	}
	cur.mu.Lock()
	oldKeys := cur.meta.Keys
	cur.mu.Unlock()
	if oldKeys <= 0 {
		return "" // nothing to protect, or not known
	}
	<-s.parsed
	if s.summary == nil || s.parseErr != nil {
		return fmt.Sprintf("new history %s could not be counted (%v) while the current one holds %d keys", s.meta.ReplID, s.parseErr, oldKeys)
	}
	newKeys := s.summary.Keys
	if newKeys == 0 {
		return fmt.Sprintf("new history %s is empty while the current one holds %d keys", s.meta.ReplID, oldKeys)
	}
	if float64(newKeys) < cfg.GuardMinKeysRatio*float64(oldKeys) {
		return fmt.Sprintf("new history %s holds %d keys, under %.2f of the current %d", s.meta.ReplID, newKeys, cfg.GuardMinKeysRatio, oldKeys)
	}
	return ""
}

// holdSnapshot quarantines s for the empty-master guard.
func (h *Store) holdSnapshot(s *SnapshotFile, why string) {
	h.quarantine(s, why, false)
	h.stats.guardTrips.Add(1)
	h.logger.Error("EMPTY-MASTER GUARD TRIPPED: not propagating the new master's snapshot; replicas keep their data. Release with RELAY GUARD RELEASE once the master is known good", "reason", why, "replid", s.meta.ReplID, "path", s.path)
}

// quarantine holds s back: replicas streaming it are cut before its last
// byte, replicas keep being served the current history, and the upstream
// link waits until RELAY GUARD RELEASE makes s the relay's history. With
// tripwire it is held for the command tripwire: INFO shows it with the hold,
// not as the guard's.
func (h *Store) quarantine(s *SnapshotFile, why string, tripwire bool) {
	written, _, _, _, _ := s.Progress()
	s.finish(nil, ErrGuardTripped)
	held := completeSnapshot(s.Meta(), s.path)
	held.meta.Size = written
	held.written, held.size = written, written
	held.summary, held.parseErr = s.summary, s.parseErr
	close(held.parsed)
	h.mu.Lock()
	h.guard = guardState{held: held, tripwire: tripwire, reason: why, since: time.Now(), released: make(chan struct{})}
	if h.pending == s {
		h.pending = nil
	}
	h.broadcast()
	h.mu.Unlock()
}

// GuardHold returns a channel that is closed when the guard is not (or no
// longer) tripped.
func (h *Store) GuardHold() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.guard.held == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return h.guard.released
}

// ReleaseGuard makes the held snapshot the relay's history: replicas then
// full-sync to it and follow the new master. A new history ends the
// command tripwire's hold too. With no snapshot held it releases the
// command tripwire's hold.
func (h *Store) ReleaseGuard() error {
	h.mu.Lock()
	g := h.guard
	h.guard = guardState{}
	h.mu.Unlock()
	if g.held == nil {
		// The same command releases the command tripwire.
		if err := h.releaseHold(); !errors.Is(err, errNotHolding) {
			return err
		}
		return errors.New("the guard is not tripped, and no command is held")
	}
	defer close(g.released)
	if _, err := h.install(g.held); err != nil {
		return fmt.Errorf("install released snapshot: %w", err)
	}
	h.logger.Warn("held snapshot released by operator", "replid", g.held.meta.ReplID, "offset", g.held.meta.Offset, "reason", g.reason)
	return nil
}

// DiscardHeld drops a held snapshot (the upstream was re-pointed).
func (h *Store) DiscardHeld() {
	h.mu.Lock()
	g := h.guard
	h.guard = guardState{}
	h.mu.Unlock()
	if g.held != nil {
		h.removeSnapshotFiles(g.held.path)
		close(g.released)
	}
}
