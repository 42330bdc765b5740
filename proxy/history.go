package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis-relay/redis-relay/rdbparse"
	"github.com/redis-relay/redis-relay/replstream"
)

// position is what the upstream link asks for in PSYNC: the history and the
// offset of the next byte wanted. ok is false when there is no history.
func (r *Relay) position() (id replstream.Identity, next int64, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.log == nil {
		return id, 0, false
	}
	_, next = r.log.Range()
	return r.id, next, true
}

// currentLog is the log the upstream link appends to.
func (r *Relay) currentLog() *replstream.Log {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log
}

// beginFullSync starts receiving a snapshot of history replid as of offset.
// Sessions waiting for a full sync attach to it at once.
func (r *Relay) beginFullSync(replid string, offset int64) (*snapshot, error) {
	s, err := r.newIncomingSnapshot(replid, offset)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.pending = s
	r.broadcast()
	r.mu.Unlock()
	return s, nil
}

// newIncomingSnapshot starts receiving a snapshot that no replica sees
// until it is installed.
func (r *Relay) newIncomingSnapshot(replid string, offset int64) (*snapshot, error) {
	// The file gets its final name at once: state.json names it only once it
	// is accepted, and recovery deletes snapshot files it does not name.
	name := fmt.Sprintf("snapshot-%d-%s.rdb", offset, replstream.RandomHex40()[:8])
	s, err := newSnapshot(replid, offset, r.path(name))
	if err != nil {
		return nil, err
	}
	s.meta.File = name
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		s.parse()
	}()
	return s, nil
}

// abortFullSync drops a snapshot that failed or was rejected; sessions
// streaming it are cut. A snapshot that became the relay's history is
// never dropped here.
func (r *Relay) abortFullSync(s *snapshot, why error) {
	r.mu.Lock()
	current := r.snap == s
	if r.pending == s {
		r.pending = nil
		r.broadcast()
	}
	r.mu.Unlock()
	if current {
		r.logger.Error("refusing to drop the current snapshot", "path", s.path, "err", why)
		return
	}
	s.finish(nil, why)
	removeSnapshotFiles(s.path)
}

// commitFullSync checks a fully received snapshot and makes it the relay's
// history: a new log starts after it, state.json names both, and the old
// history is dropped (its sessions end when its log closes). A snapshot that
// trips the empty-master guard is held back instead (errGuardTripped).
func (r *Relay) commitFullSync(s *snapshot) (*replstream.Log, error) {
	s.markReceived()
	r.at("commit")
	if err := r.validate(s); err != nil {
		r.stats.snapshotsRejected.Add(1)
		return nil, fmt.Errorf("snapshot rejected: %w", err)
	}
	if why := r.guardCheck(s); why != "" {
		r.holdSnapshot(s, why)
		return nil, fmt.Errorf("%w: %s", errGuardTripped, why)
	}
	s.markVerified()
	return r.install(s)
}

// validate checks a received snapshot before any replica may load it: an
// RDB magic, the EOF opcode and a matching CRC-64 (computed as the bytes
// arrived), and repl-id/repl-offset aux fields that agree with the
// +FULLRESYNC reply. Without a checksum (rdbchecksum no) the parser must
// have framed the whole file.
func (r *Relay) validate(s *snapshot) error {
	res := s.check.Result()
	if err := checksumError(res); err != nil {
		return err
	}
	if err := r.checkSnapshotFile(s.path, s.meta.ReplID, s.meta.Offset); err != nil {
		return err
	}
	if res.Status == rdbparse.ChecksumDisabled {
		<-s.parsed
		if s.parseErr != nil {
			return fmt.Errorf("snapshot without checksum does not parse: %w", s.parseErr)
		}
	}
	return nil
}

// install makes an accepted snapshot the relay's history, with a new log.
func (r *Relay) install(s *snapshot) (*replstream.Log, error) {
	if err := r.syncSnapshot(s); err != nil {
		return nil, err
	}
	logDir := newLogDirName()
	log, err := replstream.CreateLog(r.path(logDir), s.meta.Offset+1, r.logOptions())
	if err != nil {
		return nil, err
	}
	if err := r.adopt(s, log, nil); err != nil {
		log.Remove()
		return nil, err
	}
	return log, nil
}

// syncSnapshot makes a snapshot's file durable before anything names it:
// through the writer's handle while it is open, else by path (a snapshot
// the guard held back and an operator released).
func (r *Relay) syncSnapshot(s *snapshot) error {
	s.mu.Lock()
	f := s.f
	s.mu.Unlock()
	if f == nil {
		var err error
		if f, err = os.Open(s.path); err != nil {
			return fmt.Errorf("open snapshot to sync: %w", err)
		}
		defer f.Close()
	}
	if err := r.fsyncFile(f); err != nil {
		return fmt.Errorf("sync snapshot: %w", err)
	}
	return nil
}

// adopt makes an accepted snapshot the relay's. With a new log it starts a
// new history named by the snapshot's replid; with the current log
// (refresh) it keeps the current identity, and check, when set, runs under
// mu to confirm nothing changed meanwhile. state.json is written first (so
// a crash leaves either the old or the new history on disk), then the
// swap, then the old log (if replaced) and the old snapshot files are
// removed.
func (r *Relay) adopt(s *snapshot, log *replstream.Log, check func() error) error {
	written, _, _, _, _ := s.state()
	meta := s.metaCopy()
	meta.Size = written

	r.stateMu.Lock()
	r.mu.Lock()
	id := replstream.NewIdentity(meta.ReplID)
	var older, dropped []Snapshot // kept for recovery to a point; not
	var hold *holdState           // a new history ends a hold on the old one
	if log == r.log {
		id, hold = r.id, r.hold
		if r.snap != nil && r.snap.path != s.path {
			older = append([]Snapshot{r.snap.metaCopy()}, r.older...)
		}
	} else {
		dropped = r.older
	}
	var err error
	if check != nil {
		err = check()
	}
	r.mu.Unlock()
	if err == nil {
		err = r.writeState(diskState{Identity: id, Snapshot: meta, LogDir: logDirName(log), Older: older, Hold: hold})
	}
	if err != nil {
		r.stateMu.Unlock()
		return err
	}
	r.at("state-written")
	s.finish(log, nil)
	r.mu.Lock()
	oldSnap, oldLog := r.snap, r.log
	r.id, r.snap, r.log, r.older, r.hold = id, s, log, older, hold
	r.holding.Store(hold != nil)
	if r.pending == s {
		r.pending = nil
	}
	r.broadcast()
	r.mu.Unlock()
	r.stateMu.Unlock()

	if oldLog != nil && oldLog != log {
		oldLog.Remove()
	}
	if oldSnap != nil && oldSnap.path != s.path && len(older) == 0 {
		removeSnapshotFiles(oldSnap.path)
	}
	for _, o := range dropped {
		removeSnapshotFiles(r.path(o.File))
	}
	r.afterParse(s)
	return nil
}

// currentState is state.json for the history held in memory. Caller
// holds mu.
func (r *Relay) currentState() diskState {
	return diskState{Identity: r.id, Snapshot: r.snap.metaCopy(), LogDir: logDirName(r.log), Older: r.older, Hold: r.hold}
}

// afterParse records the parser's summary of s once it is ready: keys and
// version in state.json and INFO, the full summary in a JSON file beside the
// snapshot.
func (r *Relay) afterParse(s *snapshot) {
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		<-s.parsed
		if s.parseErr != nil {
			r.stats.parseErrors.Add(1)
			r.logger.Warn("snapshot summary incomplete", "path", s.path, "err", s.parseErr)
		}
		sum := s.summary
		if sum == nil {
			return
		}
		if sum.Unparsed != "" {
			r.logger.Info("snapshot partly understood", "path", s.path, "unparsed", sum.Unparsed)
		}
		if raw, err := json.MarshalIndent(sum, "", "  "); err == nil {
			os.WriteFile(s.path+".json", raw, 0o644)
		}
		r.stateMu.Lock()
		defer r.stateMu.Unlock()
		r.mu.Lock()
		current := r.snap == s
		s.mu.Lock()
		if s.parseErr == nil {
			s.meta.Keys, s.meta.Expires = sum.Keys, sum.Expires
		}
		s.meta.Version = sum.Version
		s.mu.Unlock()
		var st diskState
		if current {
			st = r.currentState()
		}
		r.mu.Unlock()
		if current {
			if err := r.writeState(st); err != nil {
				r.logger.Warn("record snapshot summary", "err", err)
			}
		}
	}()
}

// checksumError says why the bytes a Checker saw are not a sound RDB.
func checksumError(res rdbparse.CheckResult) error {
	switch {
	case !res.Magic:
		return errors.New("not an RDB (bad magic)")
	case !res.Trailer:
		return fmt.Errorf("no EOF opcode and checksum at the end of %d bytes", res.Size)
	case res.Status == rdbparse.ChecksumMismatch:
		return fmt.Errorf("checksum mismatch: stored %016x, computed %016x", res.Stored, res.Computed)
	}
	return nil
}

// verifySnapshotFile reads a stored snapshot through the CRC-64 check and
// the header check; a snapshot that fails either is never served.
func (r *Relay) verifySnapshotFile(path, replid string, offset int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	start := time.Now()
	c := rdbparse.NewChecker()
	if _, err := io.Copy(c, f); err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	if err := checksumError(c.Result()); err != nil {
		return err
	}
	r.logger.Info("snapshot verified", "path", path, "bytes", c.Size(), "elapsed", time.Since(start).Round(time.Millisecond))
	return r.checkSnapshotFile(path, replid, offset)
}

// checkSnapshotFile makes sure an RDB file is what the +FULLRESYNC reply (or
// state.json) says it is: an RDB whose repl-id and repl-offset aux fields,
// when present, name that history and offset.
func (r *Relay) checkSnapshotFile(path, replid string, offset int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h, err := rdbparse.ReadHeader(f)
	if err != nil {
		return fmt.Errorf("read rdb header: %w", err)
	}
	if id := h.ReplID(); id != "" && !strings.EqualFold(id, replid) {
		return fmt.Errorf("rdb repl-id %s contradicts replid %s", id, replid)
	}
	if off, ok := h.ReplOffset(); ok && off != offset {
		return fmt.Errorf("rdb repl-offset %d contradicts offset %d", off, offset)
	}
	return nil
}

// shiftReplID follows "+CONTINUE <newid>": the current ID becomes replid2,
// valid up to the current offset, and every online downstream session is
// ended so its replica reconnects and learns the new ID (it will continue
// via replid2). Full syncs in progress go on: their snapshot and offsets
// are valid under replid2, and goOnline sends them back to reconnect the
// same way once the transfer is done.
func (r *Relay) shiftReplID(newID string) error {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	r.mu.Lock()
	_, next := r.log.Range()
	id := r.id.Shift(newID, next)
	st := r.currentState()
	st.Identity = id
	r.mu.Unlock()
	if err := r.writeState(st); err != nil {
		return err
	}
	r.at("shift-written")
	r.mu.Lock()
	r.id = id
	r.broadcast()
	sessions := make([]*session, 0, len(r.sessions))
	for s := range r.sessions {
		if s.state.Load() == stateOnline {
			sessions = append(sessions, s)
		}
	}
	r.mu.Unlock()
	for _, s := range sessions {
		s.end(reasonReplIDChanged)
	}
	return nil
}

// psyncDecision answers PSYNC <replid> <off> from the current history. With
// Continue it returns a cursor at off and the current replid.
func (r *Relay) psyncDecision(replid string, off int64) (replstream.Decision, *replstream.Cursor, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.log == nil {
		return replstream.FullResync, nil, ""
	}
	first, next := r.log.Range()
	d := replstream.Decide(r.id, first, next, replid, off)
	if d != replstream.Continue {
		return d, nil, r.id.ReplID
	}
	c, err := r.log.Cursor(off)
	if err != nil {
		return replstream.FullResync, nil, r.id.ReplID
	}
	return d, c, r.id.ReplID
}

// waitAhead waits up to WaitAhead for the current log to hold offset off-1
// (a replica asking for off has everything before it), calling keepalive
// every second. It gives up at once when the relay has no upstream to
// resend those bytes. Only a failed keepalive is an error.
func (r *Relay) waitAhead(ctx context.Context, off int64, keepalive func() error) error {
	log := r.currentLog()
	if addr, _ := r.masterAddr(); log == nil || addr == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.conf().WaitAhead)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- log.WaitFor(ctx, off-1) }()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return nil
		case <-t.C:
			if err := keepalive(); err != nil {
				cancel()
				<-done
				return err
			}
		}
	}
}

// announcedID is the replication ID to announce with +FULLRESYNC for snap.
// Every snapshot the relay keeps lies on its current history, which may
// have changed ID since the snapshot was taken (a failover): a stock
// master in the relay's place announces its current ID, and so must the
// relay, or the replica's next PSYNC names an ID the relay no longer
// accepts past second_repl_offset. A snapshot of a new history still
// arriving is announced with its own ID.
func (r *Relay) announcedID(snap *snapshot) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if snap == r.snap || r.id.Accepts(snap.meta.ReplID, snap.meta.Offset+1) {
		return r.id.ReplID
	}
	return snap.meta.ReplID
}

// goOnline marks s online if replid is still the history's current ID. It
// runs under mu, so that a replid shift ends every session that is online
// under the old ID and no other.
func (r *Relay) goOnline(s *session, replid string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !strings.EqualFold(replid, r.id.ReplID) {
		return false
	}
	s.setOnline()
	s.pin.Store(0) // an online session's cursor is held by the retention rule
	return true
}

// syncSource picks the snapshot a full sync is served from: one still
// arriving from upstream (pipelined), else the newest accepted one. With
// neither, it waits, calling keepalive every second. The returned file is
// open on the snapshot so it survives a concurrent replacement. pin is set,
// under the same lock, to the offset the session will stream from after
// the snapshot: trimLog keeps the log from there until the session is
// online, so a refresh during the transfer cannot trim what it needs.
func (r *Relay) syncSource(ctx context.Context, keepalive func() error, pin *atomic.Int64) (*snapshot, *os.File, error) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		r.mu.Lock()
		s := r.pending
		if s == nil {
			s = r.snap
		}
		var f *os.File
		var err error
		if s != nil {
			if f, err = os.Open(s.path); err == nil {
				pin.Store(s.meta.Offset + 1)
			}
		}
		changed := r.changed
		r.mu.Unlock()
		if s != nil {
			if err != nil {
				return nil, nil, fmt.Errorf("open snapshot: %w", err)
			}
			return s, f, nil
		}
		select {
		case <-changed:
		case <-t.C:
			if err := keepalive(); err != nil {
				return nil, nil, err
			}
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// removeSnapshotFiles deletes a snapshot and its summary file.
func removeSnapshotFiles(path string) {
	os.Remove(path)
	os.Remove(path + ".json")
}
