package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// hurryInterval is how often a Watcher asks while its caller is in a
// hurry, when Interval is longer.
const hurryInterval = 250 * time.Millisecond

// Watcher follows one shard of a cluster. Set its fields, then call Run.
type Watcher struct {
	Seeds    []string      // host:port of nodes to ask while no other node is known, and when none of those answers
	Slot     int           // picks the shard when none is followed yet
	Interval time.Duration // how often to ask; 0: 1 s
	Options  Options
	Logger   *slog.Logger // nil: slog.Default()
	// ReplID, when set, returns the replication ID the caller's data
	// follows ("" for none). Until it follows a shard, the Watcher then
	// prefers the shard whose master's history holds that ID (its
	// master_replid or master_replid2) to the one serving Slot: a relay
	// restarted after the slot moved away finds its own shard again.
	ReplID func() string
	// Hurry, when set and true, makes the Watcher ask every quarter
	// second (or Interval, if shorter): the caller's link is down, and a
	// failover may be under way.
	Hurry func() bool
}

// Run asks for the topology until ctx ends: every Interval, at once when
// poke receives, and every quarter second while Hurry says so. It calls
// found with the followed shard after every round that read the topology,
// so that a caller re-pointed by hand is put back. A round in which no
// node answers is logged and tried again.
func (w *Watcher) Run(ctx context.Context, poke <-chan struct{}, found func(Shard)) {
	interval := w.Interval
	if interval <= 0 {
		interval = time.Second
	}
	if w.Logger == nil {
		w.Logger = slog.Default()
	}
	var cur Shard
	var known []string // the node that answered last, then those it named
	first, failing := true, false
	for ctx.Err() == nil {
		t, err := w.ask(ctx, known)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				w.Logger.Warn("no cluster node answered; asking again", "err", err)
			}
			failing = true
		default:
			if failing {
				w.Logger.Info("cluster topology read again", "from", t.From)
			}
			failing = false
			known = append([]string{t.From}, t.Addrs()...)
			if len(cur.Nodes) == 0 && w.ReplID != nil {
				if id := w.ReplID(); id != "" {
					cur, _ = w.holding(ctx, t, id)
				}
			}
			s, ok := t.Follow(cur, w.Slot)
			if ok {
				cur = s
				found(s)
			} else if first {
				w.Logger.Warn("no shard serves the slot", "slot", w.Slot, "from", t.From)
			}
			first = false
		}
		wait := interval
		if w.Hurry != nil && w.Hurry() {
			wait = min(wait, hurryInterval)
		}
		select {
		case <-ctx.Done():
		case <-poke:
		case <-time.After(wait):
		}
	}
}

// ask asks the nodes in known (the one that answered last first), then
// the seeds, and returns the first answer.
func (w *Watcher) ask(ctx context.Context, known []string) (*Topology, error) {
	var errs []error
	var tried []string
	for _, addr := range append(slices.Clone(known), w.Seeds...) {
		if slices.Contains(tried, addr) {
			continue
		}
		tried = append(tried, addr)
		t, err := Ask(ctx, addr, w.Options)
		if err == nil {
			return t, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, errors.New("no node to ask")
	}
	return nil, fmt.Errorf("%d nodes asked: %w", len(tried), errors.Join(errs...))
}

// holding returns the shard of t whose master's history holds replid.
func (w *Watcher) holding(ctx context.Context, t *Topology, replid string) (Shard, bool) {
	for _, s := range t.Shards {
		m, ok := s.Master()
		if !ok {
			continue
		}
		id, id2, err := ReplIDs(ctx, m.Addr, w.Options)
		if err != nil {
			w.Logger.Warn("could not ask a shard's master for its history", "upstream", m.Addr, "err", err)
			continue
		}
		if strings.EqualFold(id, replid) || strings.EqualFold(id2, replid) {
			return s, true
		}
	}
	return Shard{}, false
}
