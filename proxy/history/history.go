package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis-relay/redis-relay/proxy/settings"
	"github.com/redis-relay/redis-relay/rdbparse"
	"github.com/redis-relay/redis-relay/replstream"
)

// Store is the replication history the relay serves: its identity, the
// newest accepted snapshot (and older ones kept for recovery), the log of
// bytes after it, the guard's and the tripwire's holds, and state.json,
// which records them. It owns the data dir. The upstream link writes it
// (and RELAY GUARD RELEASE, through ReleaseGuard); downstream replicas read
// it and register as its readers (the Reader interface), so that a replid
// shift or a trim can reach them.
//
// Locks, in the order they nest: stateMu, then mu, then a snapshot's or
// the log's own.
type Store struct {
	cfg    *settings.Live
	dir    string // the data dir
	logger *slog.Logger
	stats  counters
	lock   *os.File // flock on the data dir

	// stateMu makes every change of the history's identity, snapshot or
	// log one step: compute the new state.json under mu, write it, then
	// apply it under mu. Held across the file write, never across network
	// I/O. Only its holder changes id, snap, log, older and hold.
	stateMu sync.Mutex
	// fsyncFile makes a file durable: (*os.File).Sync, or a test's
	// Hooks.Sync (SetHooks). Set under stateMu and mu.
	fsyncFile func(*os.File) error

	mu   sync.Mutex
	id   replstream.Identity // guarded by mu; ReplID empty before the first sync
	snap *SnapshotFile       // newest accepted snapshot; guarded by mu
	// older snapshots of the same history and log, newest first, kept
	// while the log still holds the stream after them (recovery to a
	// point starts from the newest one before it); guarded by mu
	older   []Snapshot
	log     *replstream.Log // log of the current history, snap.log; guarded by mu
	pending *SnapshotFile   // being received from upstream; guarded by mu
	hold    *Hold           // the command tripwire holds replicas before hold.At; guarded by mu
	holding atomic.Bool     // hold != nil, for sessions' fast path
	changed chan struct{}   // closed and replaced when id, snap, pending or hold change; guarded by mu
	// readers registered with this history, each with its pin: during
	// its full sync, the log offset it streams from after the snapshot,
	// which trimLog keeps; 0 otherwise. Guarded by mu.
	readers map[Reader]int64
	guard   guardState     // guarded by mu
	bg      sync.WaitGroup // background work: snapshot parsers
}

// Open locks the data dir and recovers the history kept there, if
// any.
func Open(cfg *settings.Live, logger *slog.Logger) (*Store, error) {
	dir := cfg.Fixed().DataDir
	if dir == "" {
		return nil, errors.New("data dir is required")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("data dir %s is in use by another process: %w", dir, err)
	}
	h := &Store{
		cfg: cfg, dir: dir, logger: logger, lock: lock,
		fsyncFile: (*os.File).Sync,
		changed:   make(chan struct{}),
		readers:   make(map[Reader]int64),
	}
	h.WarnHoldCommands(nil, cfg.HoldCommands())
	if err := h.recover(); err != nil {
		lock.Close()
		return nil, err
	}
	return h, nil
}

// Close waits for background work, makes the log durable and releases the
// data dir. The upstream link and every session must have stopped.
func (h *Store) Close() error {
	h.bg.Wait()
	h.mu.Lock()
	log := h.log
	h.mu.Unlock()
	var err error
	if log != nil {
		_, serr := log.Sync()
		err = errors.Join(serr, log.Close())
	}
	return errors.Join(err, h.lock.Close())
}

// counters are the history's monotonic counts, read without locks.
type counters struct {
	snapshotsRejected atomic.Int64
	parseErrors       atomic.Int64
	guardTrips        atomic.Int64
	holdTrips         atomic.Int64
}

// Hooks let a test watch the history's durable steps, or slow or fail
// them. Crash points are named in the configuration (Config.CrashPoint,
// see at).
type Hooks interface {
	// Sync makes f durable; the default is (*os.File).Sync.
	Sync(f *os.File) error
}

// SetHooks installs a test's hooks. Every later sync goes through them.
func (h *Store) SetHooks(hk Hooks) {
	h.stateMu.Lock()
	h.mu.Lock()
	h.fsyncFile = hk.Sync
	h.mu.Unlock()
	h.stateMu.Unlock()
}

// Reader is a downstream replica reading the history: a full sync from a
// snapshot and then a stream from the log, or a stream at once. The
// history calls Online, SetOnline and NextOffset while it holds mu: they
// must not block or take a history lock. It calls EndReader and String
// with no lock held.
type Reader interface {
	// Online reports whether GoOnline has marked the reader online.
	Online() bool
	// SetOnline marks the reader online; GoOnline calls it.
	SetOnline()
	// NextOffset is the offset of the next log byte the reader sends; 0
	// before it streams.
	NextOffset() int64
	// EndReader stops the reader, for the reason given.
	EndReader(why ReaderEnd)
	// String names the replica in the history's log lines.
	String() string
}

// ReaderEnd says why the history ends a reader.
type ReaderEnd int

const (
	// EndReplIDChanged: the history took a new replication ID. The
	// replica comes back, continues through replid2 and learns the new ID.
	EndReplIDChanged ReaderEnd = iota + 1
	// EndFellBehind: the log no longer holds the reader's next byte. The
	// replica comes back and full-syncs.
	EndFellBehind
)

// AddReader registers a downstream replica, until RemoveReader.
func (h *Store) AddReader(r Reader) {
	h.mu.Lock()
	h.readers[r] = 0
	h.mu.Unlock()
}

// RemoveReader unregisters r; the history no longer reaches it.
func (h *Store) RemoveReader(r Reader) {
	h.mu.Lock()
	delete(h.readers, r)
	h.mu.Unlock()
}

// Position is what the upstream link asks for in PSYNC: the history and the
// offset of the next byte wanted. ok is false when there is no history.
func (h *Store) Position() (id replstream.Identity, next int64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.log == nil {
		return id, 0, false
	}
	_, next = h.log.Range()
	return h.id, next, true
}

// Changes returns a channel closed at the next change of the history's
// ID, snapshot, refresh in flight or hold.
func (h *Store) Changes() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.changed
}

// CurrentLog is the log the upstream link appends to.
func (h *Store) CurrentLog() *replstream.Log {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.log
}

// BeginFullSync starts receiving a snapshot of history replid as of offset.
// Sessions waiting for a full sync attach to it at once.
func (h *Store) BeginFullSync(replid string, offset int64) (*SnapshotFile, error) {
	s, err := h.NewIncomingSnapshot(replid, offset)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.pending = s
	h.broadcast()
	h.mu.Unlock()
	return s, nil
}

// NewIncomingSnapshot starts receiving a snapshot that no replica sees
// until it is installed.
func (h *Store) NewIncomingSnapshot(replid string, offset int64) (*SnapshotFile, error) {
	// The file gets its final name at once: state.json names it only once it
	// is accepted, and recovery deletes snapshot files it does not name.
	name := fmt.Sprintf("snapshot-%d-%s.rdb", offset, replstream.RandomHex40()[:8])
	s, err := newSnapshot(replid, offset, h.Path(name))
	if err != nil {
		return nil, err
	}
	s.meta.File = name
	h.bg.Add(1)
	go func() {
		defer h.bg.Done()
		s.parse()
	}()
	return s, nil
}

// AbortFullSync drops a snapshot that failed or was rejected; sessions
// streaming it are cut. A snapshot that became the relay's history is
// never dropped here.
func (h *Store) AbortFullSync(s *SnapshotFile, why error) {
	h.mu.Lock()
	current := h.snap == s
	if h.pending == s {
		h.pending = nil
		h.broadcast()
	}
	h.mu.Unlock()
	if current {
		h.logger.Error("refusing to drop the current snapshot", "path", s.path, "err", why)
		return
	}
	s.finish(nil, why)
	h.removeSnapshotFiles(s.path)
}

// CommitFullSync checks a fully received snapshot and makes it the relay's
// history: a new log starts after it, state.json names both, and the old
// history is dropped (its sessions end when its log closes). A snapshot that
// trips the empty-master guard, or arrives while the command tripwire
// holds, is held back instead (ErrGuardTripped).
func (h *Store) CommitFullSync(s *SnapshotFile) (*replstream.Log, error) {
	s.MarkReceived()
	h.at("commit")
	if err := h.validate(s); err != nil {
		h.stats.snapshotsRejected.Add(1)
		return nil, fmt.Errorf("snapshot rejected: %w", err)
	}
	if h.holdNewHistory(s) {
		return nil, fmt.Errorf("%w: the command tripwire holds replicas", ErrGuardTripped)
	}
	if why := h.guardCheck(s); why != "" {
		h.holdSnapshot(s, why)
		return nil, fmt.Errorf("%w: %s", ErrGuardTripped, why)
	}
	s.markVerified()
	return h.install(s)
}

// Validate checks a snapshot received outside a full sync (one from the
// snapshot source) as CommitFullSync checks its own, and counts it when it
// is rejected.
func (h *Store) Validate(s *SnapshotFile) error {
	if err := h.validate(s); err != nil {
		h.stats.snapshotsRejected.Add(1)
		return err
	}
	return nil
}

// validate checks a received snapshot before any replica may load it: an
// RDB magic, the EOF opcode and a matching CRC-64 (computed as the bytes
// arrived), and repl-id/repl-offset aux fields that agree with the
// +FULLRESYNC reply. Without a checksum (rdbchecksum no) the parser must
// have framed the whole file.
func (h *Store) validate(s *SnapshotFile) error {
	res := s.check.Result()
	if err := checksumError(res); err != nil {
		return err
	}
	if err := h.checkSnapshotFile(s.path, s.meta.ReplID, s.meta.Offset); err != nil {
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
func (h *Store) install(s *SnapshotFile) (*replstream.Log, error) {
	if err := h.syncSnapshot(s); err != nil {
		return nil, err
	}
	logDir := newLogDirName()
	log, err := replstream.CreateLog(h.Path(logDir), s.meta.Offset+1, h.logOptions())
	if err != nil {
		return nil, err
	}
	if err := h.adopt(s, log, nil); err != nil {
		if rerr := log.Remove(); rerr != nil {
			h.logger.Warn("remove unused log", "path", log.Dir(), "err", rerr)
		}
		return nil, err
	}
	return log, nil
}

// syncSnapshot makes a snapshot's file durable before anything names it:
// through the writer's handle while it is open, else by path (a snapshot
// the guard held back and an operator released).
func (h *Store) syncSnapshot(s *SnapshotFile) error {
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
	if err := h.fsyncFile(f); err != nil {
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
func (h *Store) adopt(s *SnapshotFile, log *replstream.Log, check func() error) error {
	written, _, _, _, _ := s.Progress()
	meta := s.Meta()
	meta.Size = written

	h.stateMu.Lock()
	h.mu.Lock()
	id := replstream.NewIdentity(meta.ReplID)
	var older, dropped []Snapshot // kept for recovery to a point; not
	var hold *Hold                // a new history ends a hold on the old one
	if log == h.log {
		id, hold = h.id, h.hold
		if h.snap != nil && h.snap.path != s.path {
			older = append([]Snapshot{h.snap.Meta()}, h.older...)
		}
	} else {
		dropped = h.older
	}
	var err error
	if check != nil {
		err = check()
	}
	h.mu.Unlock()
	if err == nil {
		err = h.writeState(State{Identity: id, Snapshot: meta, LogDir: logDirName(log), Older: older, Hold: hold})
	}
	if err != nil {
		h.stateMu.Unlock()
		return err
	}
	h.at("state-written")
	s.finish(log, nil)
	h.mu.Lock()
	oldSnap, oldLog := h.snap, h.log
	h.id, h.snap, h.log, h.older, h.hold = id, s, log, older, hold
	h.holding.Store(hold != nil)
	if h.pending == s {
		h.pending = nil
	}
	h.broadcast()
	h.mu.Unlock()
	h.stateMu.Unlock()

	if oldLog != nil && oldLog != log {
		if err := oldLog.Remove(); err != nil {
			h.logger.Warn("remove the replaced history's log", "path", oldLog.Dir(), "err", err)
		}
	}
	if oldSnap != nil && oldSnap.path != s.path && len(older) == 0 {
		h.removeSnapshotFiles(oldSnap.path)
	}
	for _, o := range dropped {
		h.removeSnapshotFiles(h.Path(o.File))
	}
	h.afterParse(s)
	return nil
}

// currentState is state.json for the history held in memory. Caller
// holds mu.
func (h *Store) currentState() State {
	return State{Identity: h.id, Snapshot: h.snap.Meta(), LogDir: logDirName(h.log), Older: h.older, Hold: h.hold}
}

// afterParse records the parser's summary of s once it is ready: keys and
// version in state.json and INFO, the full summary in a JSON file beside the
// snapshot.
func (h *Store) afterParse(s *SnapshotFile) {
	h.bg.Add(1)
	go func() {
		defer h.bg.Done()
		<-s.parsed
		if s.parseErr != nil {
			h.stats.parseErrors.Add(1)
			h.logger.Warn("snapshot summary incomplete", "path", s.path, "err", s.parseErr)
		}
		sum := s.summary
		if sum == nil {
			return
		}
		if sum.Unparsed != "" {
			h.logger.Info("snapshot partly understood", "path", s.path, "unparsed", sum.Unparsed)
		}
		if raw, err := json.MarshalIndent(sum, "", "  "); err == nil {
			if err := os.WriteFile(s.path+".json", raw, 0o600); err != nil {
				h.logger.Warn("write snapshot summary", "path", s.path+".json", "err", err)
			}
		}
		h.stateMu.Lock()
		defer h.stateMu.Unlock()
		h.mu.Lock()
		current := h.snap == s
		s.mu.Lock()
		if s.parseErr == nil {
			s.meta.Keys, s.meta.Expires = sum.Keys, sum.Expires
			s.meta.DBs = make([]DBKeys, 0, len(sum.DBs))
			for _, d := range sum.DBs {
				s.meta.DBs = append(s.meta.DBs, DBKeys{DB: d.DB, Keys: d.Keys, Expires: d.Expires})
			}
		}
		s.meta.Version = sum.Version
		s.mu.Unlock()
		var st State
		if current {
			st = h.currentState()
		}
		h.mu.Unlock()
		if current {
			if err := h.writeState(st); err != nil {
				h.logger.Warn("record snapshot summary", "err", err)
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
func (h *Store) verifySnapshotFile(path, replid string, offset int64) error {
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
	h.logger.Info("snapshot verified", "path", path, "bytes", c.Size(), "elapsed", time.Since(start).Round(time.Millisecond))
	return h.checkSnapshotFile(path, replid, offset)
}

// checkSnapshotFile makes sure an RDB file is what the +FULLRESYNC reply (or
// state.json) says it is: an RDB whose repl-id and repl-offset aux fields,
// when present, name that history and offset.
func (h *Store) checkSnapshotFile(path, replid string, offset int64) error {
	hdr, err := rdbparse.ReadHeaderFile(path)
	if err != nil {
		return fmt.Errorf("read rdb header: %w", err)
	}
	if id := hdr.ReplID(); id != "" && !strings.EqualFold(id, replid) {
		return fmt.Errorf("rdb repl-id %s contradicts replid %s", id, replid)
	}
	if off, ok := hdr.ReplOffset(); ok && off != offset {
		return fmt.Errorf("rdb repl-offset %d contradicts offset %d", off, offset)
	}
	return nil
}

// ShiftReplID follows "+CONTINUE <newid>": the current ID becomes replid2,
// valid up to the current offset, and every online reader is ended so its
// replica reconnects and learns the new ID (it will continue via
// replid2). Full syncs in progress go on: their snapshot and offsets
// are valid under replid2, and GoOnline sends them back to reconnect the
// same way once the transfer is done.
func (h *Store) ShiftReplID(newID string) error {
	h.stateMu.Lock()
	defer h.stateMu.Unlock()
	h.mu.Lock()
	_, next := h.log.Range()
	id := h.id.Shift(newID, next)
	st := h.currentState()
	st.Identity = id
	h.mu.Unlock()
	if err := h.writeState(st); err != nil {
		return err
	}
	h.at("shift-written")
	h.mu.Lock()
	h.id = id
	h.broadcast()
	var online []Reader
	for r := range h.readers {
		if r.Online() {
			online = append(online, r)
		}
	}
	h.mu.Unlock()
	for _, r := range online {
		r.EndReader(EndReplIDChanged)
	}
	return nil
}

// PsyncDecision answers PSYNC <replid> <off> from the current history. With
// Continue it returns a cursor at off and the current replid.
func (h *Store) PsyncDecision(replid string, off int64) (replstream.Decision, *replstream.Cursor, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.log == nil {
		return replstream.FullResync, nil, ""
	}
	first, next := h.log.Range()
	d := replstream.Decide(h.id, first, next, replid, off)
	if d != replstream.Continue {
		return d, nil, h.id.ReplID
	}
	c, err := h.log.Cursor(off)
	if err != nil {
		return replstream.FullResync, nil, h.id.ReplID
	}
	return d, c, h.id.ReplID
}

// DropTail cuts the log back to offset at, and returns how many bytes it
// cut, when check finds the log's bytes [at, next) safe to drop (the
// upstream link decides which commands are). It refuses when the newest
// snapshot, a refresh in flight or a tripwire hold lies at or past at.
// Only the upstream link, the log's one writer, calls it, between two
// links.
func (h *Store) DropTail(at int64, check func(log *replstream.Log, from, to int64) error) (int64, error) {
	h.stateMu.Lock() // a refresh commits under stateMu: none lands meanwhile
	defer h.stateMu.Unlock()
	h.mu.Lock()
	log, snap, pending, hold := h.log, h.snap, h.pending, h.hold
	h.mu.Unlock()
	if log == nil || snap == nil {
		return 0, errors.New("no history")
	}
	first, next := log.Range()
	switch {
	case at >= next:
		return 0, nil
	case at < first || at <= snap.meta.Offset:
		return 0, fmt.Errorf("the branch point %d is not after the snapshot's offset %d", at, snap.meta.Offset)
	case pending != nil && pending.meta.Offset >= at:
		return 0, fmt.Errorf("a refresh at offset %d is in flight", pending.meta.Offset)
	case hold != nil && hold.At > at:
		return 0, fmt.Errorf("the command tripwire holds at offset %d", hold.At)
	}
	if err := check(log, at, next); err != nil {
		return 0, err
	}
	return next - at, log.Truncate(at)
}

// AckFloor is what a downstream policy ACKs when too few replicas are
// online: the relay's snapshot offset, which the master already counts as
// held (an ACK never lowers the master's view of a replica).
func (h *Store) AckFloor() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.snap == nil {
		return 0
	}
	return h.snap.meta.Offset
}

// AnnouncedID is the replication ID to announce with +FULLRESYNC for snap,
// to a replica that learns it (legacy is SYNC: no ID is announced).
//
// A snapshot taken before the history changed ID (a failover the relay
// followed with a partial resync) names the old ID in its RDB aux fields
// (repl-id, repl-offset). While that ID is the history's replid2 and the
// snapshot lies before the change, it is announced under that ID, so the
// +FULLRESYNC line and the RDB agree: a relay below checks that they do.
// The replica then goes online under an ID that is no longer current, so
// GoOnline sends it back, and it continues partially at the snapshot's
// offset through replid2 and learns the new ID, as Redis's PSYNC2 rule
// has it.
//
// Any other snapshot the relay keeps lies on its current history and is
// announced under the current ID, as a stock master announces its own:
// the replica's next PSYNC must name an ID the relay still accepts. A
// snapshot of a new history still arriving is announced with its own ID.
func (h *Store) AnnouncedID(snap *SnapshotFile, legacy bool) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	own, next := snap.meta.ReplID, snap.meta.Offset+1
	switch {
	case strings.EqualFold(own, h.id.ReplID):
		return h.id.ReplID
	case !legacy && h.id.SecondOffset >= 0 && strings.EqualFold(own, h.id.ReplID2) && next <= h.id.SecondOffset:
		return own
	case snap == h.snap || h.id.Accepts(own, next):
		return h.id.ReplID
	}
	return own
}

// GoOnline marks r online if replid is still the history's current ID. It
// runs under mu, so that a replid shift ends every reader that is online
// under the old ID and no other.
func (h *Store) GoOnline(r Reader, replid string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !strings.EqualFold(replid, h.id.ReplID) {
		return false
	}
	r.SetOnline()
	if _, ok := h.readers[r]; ok {
		h.readers[r] = 0 // an online reader's cursor is held by the retention rule
	}
	return true
}

// SyncSource picks the snapshot a full sync is served from: one still
// arriving from upstream (pipelined), else the newest accepted one. With
// neither, it waits, calling keepalive every second. The returned file is
// open on the snapshot so it survives a concurrent replacement. r's pin is
// set, under the same lock, to the offset r will stream from after the
// snapshot: trimLog keeps the log from there until r is online, so a
// refresh during the transfer cannot trim what it needs.
func (h *Store) SyncSource(ctx context.Context, r Reader, keepalive func() error) (*SnapshotFile, *os.File, error) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		h.mu.Lock()
		s := h.pending
		if s == nil || h.hold != nil {
			// While the command tripwire holds, a snapshot still arriving
			// may carry what it holds back.
			s = h.snap
		}
		var f *os.File
		var err error
		if s != nil {
			if f, err = os.Open(s.path); err == nil {
				if _, ok := h.readers[r]; ok {
					h.readers[r] = s.meta.Offset + 1
				}
			}
		}
		changed := h.changed
		h.mu.Unlock()
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

// FilterSource is what a filtered full sync (rdb-filter-only) is built
// from; see FilteredSource.
type FilterSource struct {
	Snap   Snapshot // the newest accepted snapshot
	File   *os.File // open on it; the caller closes it
	Log    *replstream.Log
	ReplID string
	At     int64 // the replica's stream starts here: what it is given is as of At-1
}

// FilteredSource gives what a filtered full sync is built from: the newest
// accepted snapshot, the log after it, the history's ID and the offset the
// replica's stream starts at: the log's newest resume point, or the
// tripwire's hold point when that comes first. r's pin is set to the
// offset after the snapshot, so that the log from there is kept while the
// caller reads it. With no accepted snapshot yet it waits, calling
// keepalive every second.
func (h *Store) FilteredSource(ctx context.Context, r Reader, keepalive func() error) (src FilterSource, err error) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		h.mu.Lock()
		if s := h.snap; s != nil && h.log != nil {
			src = FilterSource{Snap: s.Meta(), Log: h.log, ReplID: h.id.ReplID, At: h.log.LastResumePoint()}
			if h.hold != nil {
				src.At = min(src.At, h.hold.At)
			}
			src.File, err = os.Open(s.path)
			if _, ok := h.readers[r]; ok && err == nil {
				h.readers[r] = src.Snap.Offset + 1
			}
			h.mu.Unlock()
			if err != nil {
				return src, fmt.Errorf("open snapshot: %w", err)
			}
			return src, nil
		}
		changed := h.changed
		h.mu.Unlock()
		select {
		case <-changed:
		case <-t.C:
			if err := keepalive(); err != nil {
				return src, err
			}
		case <-ctx.Done():
			return src, ctx.Err()
		}
	}
}

// removes what state.json does not name.
func (h *Store) removeSnapshotFiles(path string) {
	for _, name := range []string{path, path + ".json"} {
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			h.logger.Warn("remove snapshot file", "path", name, "err", err)
		}
	}
}

// Status is the history's part of the relay's status: the fields of one
// Status are read under one lock, so they agree with each other.
type Status struct {
	Identity     replstream.Identity
	HasHistory   bool
	Log          replstream.LogStats
	Snapshot     Snapshot
	SyncPending  bool // a snapshot is arriving from upstream
	GuardTripped bool // the empty-master guard holds back a snapshot
	GuardReason  string
	GuardSince   time.Time
	// The reach of point-in-time recovery: from the oldest snapshot the
	// log still follows to the newest byte held.
	RecoverOldestOffset int64
	RecoverOldestTime   time.Time
	RecoverNewestTime   time.Time
	HoldActive          bool // the command tripwire holds replicas before HoldAt
	HoldCommand         string
	HoldAt              int64
	HoldSince           time.Time
	HoldSnapshot        bool  // a full sync from upstream is held back with the hold
	HoldSnapshotOffset  int64 // its offset

	SnapshotsRejected int64 // snapshots that failed their checks
	ParseErrors       int64 // accepted snapshots the parser could not summarise
	GuardTrips        int64
	HoldTrips         int64
}

// Status reports the history's state, and returns the current snapshot
// (nil without history) and the one arriving, if any.
func (h *Store) Status() (st Status, current, pending *SnapshotFile) {
	st.SnapshotsRejected = h.stats.snapshotsRejected.Load()
	st.ParseErrors = h.stats.parseErrors.Load()
	st.GuardTrips = h.stats.guardTrips.Load()
	st.HoldTrips = h.stats.holdTrips.Load()
	st.Log.RingSize = int64(h.cfg.Fixed().RingSize)
	h.mu.Lock()
	defer h.mu.Unlock()
	st.Identity = h.id
	st.SyncPending = h.pending != nil
	if h.log != nil {
		st.HasHistory = true
		st.Log = h.log.Stats()
		st.Snapshot = h.snap.Meta()
		oldest := st.Snapshot
		if n := len(h.older); n > 0 {
			oldest = h.older[n-1]
		}
		st.RecoverOldestOffset, st.RecoverOldestTime = oldest.Offset, oldest.Created
		st.RecoverNewestTime = h.log.NewestTime()
		current = h.snap
	}
	if g := h.guard; g.held != nil && g.tripwire {
		st.HoldSnapshot, st.HoldSnapshotOffset = true, g.held.meta.Offset
	} else if g.held != nil {
		st.GuardTripped, st.GuardReason, st.GuardSince = true, g.reason, g.since
	}
	if hd := h.hold; hd != nil {
		st.HoldActive, st.HoldCommand, st.HoldAt, st.HoldSince = true, hd.Command, hd.At, hd.Since
	}
	return st, current, h.pending
}
