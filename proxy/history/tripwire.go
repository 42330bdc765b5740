package history

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis-relay/redis-relay/replstream"
)

// The command tripwire (hold-on-commands, off by default). Replication
// copies an application's FLUSHALL to every replica within milliseconds.
// With the tripwire set, the relay keeps appending the master's stream to
// its log, but stops its replicas just before the first such command: they
// keep their data, INFO and a metric say so, and the operator either lets
// it through (RELAY GUARD RELEASE) or recovers the dataset from before it
// (redis-relay recover --before-command). The cost: while held, the
// replicas fall behind the master by everything written since.

// errNotHolding: RELAY GUARD RELEASE with nothing held.
var errNotHolding = errors.New("neither the guard nor the command tripwire is holding anything")

// WarnHoldCommands logs a warning for each command newly named in
// hold-on-commands (held, against was) that also matches deletions the
// master makes on its own (history.ExpiryCaveat).
func (h *Store) WarnHoldCommands(was, held map[string]bool) {
	for name := range held {
		if why := ExpiryCaveat(name); why != "" && !was[name] {
			h.logger.Warn("hold-on-commands names "+strings.ToUpper(name)+": it will also trip on keys the master expires or evicts", "reason", why)
		}
	}
}

// tripwire is called by the upstream link for every command, with the
// resume point just before it. It starts a hold when the command is one of
// HoldOnCommands and nothing is held yet.
func (h *Store) Tripwire(cmd *replstream.Command, before int64) {
	if set := h.cfg.HoldCommands(); len(set) == 0 || !set[strings.ToLower(string(cmd.Name))] {
		return
	}
	h.mu.Lock()
	if h.hold != nil {
		h.mu.Unlock()
		return
	}
	hs := &Hold{At: before, Command: strings.ToUpper(string(cmd.Name)), Since: time.Now()}
	h.hold = hs
	h.holding.Store(true)
	h.broadcast()
	h.mu.Unlock()
	h.stats.holdTrips.Add(1)
	h.logger.Error("COMMAND TRIPWIRE: replicas are held before a command the master sent; they keep their data. Let it through with RELAY GUARD RELEASE, or recover the dataset from before it with redis-relay recover --before-command",
		"command", hs.Command, "offset", hs.At)
	h.saveHold()
}

// releaseHold lets the held stream through.
func (h *Store) releaseHold() error {
	h.mu.Lock()
	hs := h.hold
	h.hold = nil
	h.holding.Store(false)
	h.broadcast()
	h.mu.Unlock()
	if hs == nil {
		return errNotHolding
	}
	h.logger.Warn("command tripwire released by operator", "command", hs.Command, "offset", hs.At)
	h.saveHold()
	return nil
}

// A hold covers every way a replica could get past its point, not only
// the stream: while it is on,
//   - a full sync from upstream (a restarted relay whose master's backlog
//     moved on, a new master) is held back as the empty-master guard holds
//     a snapshot (holdNewHistory): the upstream link pauses, replicas are
//     served the current history up to the hold, and RELAY GUARD RELEASE
//     installs the held snapshot, which ends the hold;
//   - a refreshed snapshot taken at or past the hold point is dropped
//     (pastHold), and none still arriving is served (SyncSource);
//   - sessions look the hold up after each read of the log, and send
//     nothing at or past it (session.stream).

// errPastHold: a refreshed snapshot would carry what the tripwire holds
// back from the replicas.
var errPastHold = errors.New("the command tripwire holds replicas before this snapshot's offset")

// holdNewHistory holds back a snapshot that would start a new history while
// the tripwire holds (it may carry the held command, or be another
// master's); it reports whether it did.
func (h *Store) holdNewHistory(s *SnapshotFile) bool {
	h.mu.Lock()
	hs := h.hold
	h.mu.Unlock()
	if hs == nil {
		return false
	}
	<-s.parsed // installed on release with its summary (keys, version)
	why := fmt.Sprintf("the command tripwire holds replicas before %s at offset %d; a full sync brought snapshot %s at offset %d, which may carry it", hs.Command, hs.At, s.meta.ReplID, s.meta.Offset)
	h.quarantine(s, why, true)
	h.logger.Error("COMMAND TRIPWIRE: a full sync from upstream is held back with the hold; replicas keep their data. RELAY GUARD RELEASE lets both through",
		"command", hs.Command, "offset", hs.At, "replid", s.meta.ReplID, "snapshot_offset", s.meta.Offset, "path", s.path)
	return true
}

// pastHold fails when a snapshot at offset holds bytes at or past the hold
// point. Caller holds mu.
func (h *Store) pastHold(offset int64) error {
	if h.hold != nil && offset >= h.hold.At {
		return fmt.Errorf("%w: %s held at offset %d, snapshot at %d", errPastHold, h.hold.Command, h.hold.At, offset)
	}
	return nil
}

// saveHold records the hold (or its absence) in state.json.
func (h *Store) saveHold() {
	h.stateMu.Lock()
	defer h.stateMu.Unlock()
	h.mu.Lock()
	if h.snap == nil {
		h.mu.Unlock()
		return
	}
	st := h.currentState()
	h.mu.Unlock()
	if err := h.writeState(st); err != nil {
		h.logger.Warn("record the command tripwire's hold", "err", err)
	}
}

// TripwireArmed reports whether sessions must look for a hold: commands
// are named, or a hold (recovered from state.json) is still on.
func (h *Store) TripwireArmed() bool {
	if len(h.cfg.HoldCommands()) > 0 {
		return true
	}
	return h.holding.Load()
}

// holdLimit returns the offset a replica's stream must stop before (-1:
// none) and a channel closed when that may change.
func (h *Store) holdLimit() (int64, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hold == nil {
		return -1, h.changed
	}
	return h.hold.At, h.changed
}

// WaitHold blocks while the stream at off is held; it returns how many
// bytes from off may be sent now (-1: no limit).
func (h *Store) WaitHold(ctx context.Context, off int64) (int64, error) {
	for {
		at, changed := h.holdLimit()
		if at < 0 {
			return -1, nil
		}
		if off < at {
			return at - off, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return 0, context.Cause(ctx)
		}
	}
}
