package proxy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	hstate "github.com/redis-relay/redis-relay/proxy/history"
	"github.com/redis-relay/redis-relay/replstream"
)

// The history on disk. state.json names the files in the data dir that
// form the history (the snapshot, older snapshots kept for recovery, the
// log directory) and its identity; anything else named snapshot-* or log-*
// is a leftover of an interrupted change and is removed at start.

// The on-disk types and state.json's reading and writing are the history
// package's, where point-in-time recovery reads them without the daemon.
type (
	// Snapshot describes an RDB file in the data dir (history.Snapshot).
	Snapshot = hstate.Snapshot

	diskState = hstate.State
	holdState = hstate.Hold // guarded by history.mu
)

const stateFile = hstate.StateFile

// at marks a step where a crash must leave the data dir consistent:
// "commit" (a snapshot fully received, before its checks and fsync),
// "refresh-received" (the same for a refreshed snapshot),
// "refresh-commit" (a refreshed snapshot checked, before the swap),
// "state-written" (state.json names a new snapshot or log, before the old
// files go) and "shift-written" (state.json holds a new replid). Tests also
// stop at "hold-lookup": a session has read bytes of the log and has not
// yet looked up the command tripwire's hold for them.
func (h *history) at(point string) {
	if f := h.cfg.Fixed().CrashPoint; f != nil {
		f(point)
	}
}

func (h *history) path(name string) string { return filepath.Join(h.dir, name) }

func (h *history) logOptions() replstream.LogOptions {
	f := h.cfg.Fixed()
	return replstream.LogOptions{RingSize: f.RingSize, SegmentSize: f.SegmentSize, Limits: f.Limits}
}

// recover loads state.json and the files it names. Anything it cannot trust
// is discarded with a log line; the relay then full-syncs from upstream.
func (h *history) recover() error {
	st, err := hstate.ReadState(h.dir)
	if errors.Is(err, os.ErrNotExist) {
		h.removeStrays("")
		return nil
	}
	if errors.Is(err, hstate.ErrInvalidState) {
		h.logger.Warn("state file unreadable, starting without history", "path", h.path(stateFile), "err", err)
		h.removeStrays("")
		return nil
	}
	if err != nil {
		return err
	}
	snapPath := h.path(st.Snapshot.File)
	fi, err := os.Stat(snapPath)
	if err != nil || fi.Size() != st.Snapshot.Size {
		h.logger.Warn("snapshot missing or of the wrong size, starting without history", "path", snapPath, "want", st.Snapshot.Size, "err", err)
		h.removeStrays("")
		return nil
	}
	if err := h.verifySnapshotFile(snapPath, st.Snapshot.ReplID, st.Snapshot.Offset); err != nil {
		h.logger.Warn("snapshot rejected, starting without history", "path", snapPath, "err", err)
		h.removeStrays("")
		return nil
	}
	start := st.Snapshot.Offset + 1
	logDir := st.LogDir
	log, repaired, err := replstream.OpenLog(h.path(logDir), h.logOptions())
	if err == nil {
		if first, next := log.Range(); first > start || next < start {
			err = fmt.Errorf("log holds [%d, %d), snapshot needs %d", first, next, start)
			log.Close()
		}
	}
	if err != nil {
		h.logger.Warn("log unusable, keeping the snapshot and starting a new log after it", "path", h.path(logDir), "err", err)
		logDir = newLogDirName()
		if log, err = replstream.CreateLog(h.path(logDir), start, h.logOptions()); err != nil {
			return err
		}
		st.LogDir = logDir
		h.stateMu.Lock()
		err := h.writeState(st)
		h.stateMu.Unlock()
		if err != nil {
			return err
		}
	} else if repaired != "" {
		h.logger.Warn("log repaired", "path", h.path(logDir), "what", repaired)
	}
	h.id = st.Identity
	h.hold = st.Hold
	h.holding.Store(st.Hold != nil)
	h.snap = completeSnapshot(st.Snapshot, snapPath)
	h.snap.log = log
	h.log = log
	keep := []string{st.Snapshot.File}
	for _, o := range st.Older {
		if fi, err := os.Stat(h.path(o.File)); err == nil && fi.Size() == o.Size {
			h.older = append(h.older, o)
			keep = append(keep, o.File)
		}
	}
	h.removeStrays(logDir, keep...)
	first, next := log.Range()
	h.logger.Info("history recovered", "replid", h.id.ReplID, "snapshot_offset", st.Snapshot.Offset, "first", first, "next", next)
	// A crash between a refresh and its trim leaves segments older than
	// the snapshot that retention does not keep.
	if err := h.trimLog(); err != nil {
		h.logger.Warn("trim log after recovery", "err", err)
	}
	return nil
}

// removeStrays deletes snapshot files and log dirs other than the ones named.
func (h *history) removeStrays(keepLog string, keepSnaps ...string) {
	ents, err := os.ReadDir(h.dir)
	if err != nil {
		h.logger.Warn("list the data dir for leftovers", "path", h.dir, "err", err)
	}
	for _, e := range ents {
		name := e.Name()
		if name == keepLog || slices.Contains(keepSnaps, name) || slices.Contains(keepSnaps, strings.TrimSuffix(name, ".json")) {
			continue
		}
		if strings.HasPrefix(name, "snapshot-") || strings.HasPrefix(name, "log-") || strings.HasPrefix(name, stateFile+".tmp") {
			if err := os.RemoveAll(h.path(name)); err != nil {
				h.logger.Warn("remove stale file", "path", h.path(name), "err", err)
			}
		}
	}
}

// writeState replaces state.json with st: a temporary file, fsynced, renamed
// over it, and the directory fsynced. Caller holds stateMu.
func (h *history) writeState(st diskState) error {
	return hstate.WriteState(h.dir, st, h.fsyncFile)
}

func newLogDirName() string { return "log-" + replstream.RandomHex40()[:12] }

func logDirName(l *replstream.Log) string { return filepath.Base(l.Dir()) }

// broadcast wakes everyone waiting for a change. Caller holds mu.
func (h *history) broadcast() {
	close(h.changed)
	h.changed = make(chan struct{})
}
