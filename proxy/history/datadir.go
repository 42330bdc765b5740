package history

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/redis-relay/redis-relay/replstream"
)

// The history on disk. state.json names the files in the data dir that
// form the history (the snapshot, older snapshots kept for recovery, the
// log directory) and its identity; anything else named snapshot-* or log-*
// is a leftover of an interrupted change and is removed at start.

// at marks a step where a crash must leave the data dir consistent:
// "commit" (a snapshot fully received, before its checks and fsync),
// "refresh-received" (the same for a refreshed snapshot),
// "refresh-commit" (a refreshed snapshot checked, before the swap),
// "state-written" (state.json names a new snapshot or log, before the old
// files go) and "shift-written" (state.json holds a new replid). The
// downstream server marks one more of its own ("hold-lookup").
func (h *Store) at(point string) {
	if f := h.cfg.Fixed().CrashPoint; f != nil {
		f(point)
	}
}

// Path is where the file name of the data dir is.
func (h *Store) Path(name string) string { return filepath.Join(h.dir, name) }

func (h *Store) logOptions() replstream.LogOptions {
	f := h.cfg.Fixed()
	return replstream.LogOptions{RingSize: f.RingSize, SegmentSize: f.SegmentSize, Limits: f.Limits}
}

// recover loads state.json and the files it names. Anything it cannot trust
// is discarded with a log line; the relay then full-syncs from upstream.
func (h *Store) recover() error {
	st, err := ReadState(h.dir)
	if errors.Is(err, os.ErrNotExist) {
		h.removeStrays("")
		return nil
	}
	if errors.Is(err, ErrInvalidState) {
		h.logger.Warn("state file unreadable, starting without history", "path", h.Path(StateFile), "err", err)
		h.removeStrays("")
		return nil
	}
	if err != nil {
		return err
	}
	snapPath := h.Path(st.Snapshot.File)
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
	log, repaired, err := replstream.OpenLog(h.Path(logDir), h.logOptions())
	if err == nil {
		if first, next := log.Range(); first > start || next < start {
			err = fmt.Errorf("log holds [%d, %d), snapshot needs %d", first, next, start)
			log.Close()
		}
	}
	if err != nil {
		h.logger.Warn("log unusable, keeping the snapshot and starting a new log after it", "path", h.Path(logDir), "err", err)
		logDir = newLogDirName()
		if log, err = replstream.CreateLog(h.Path(logDir), start, h.logOptions()); err != nil {
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
		h.logger.Warn("log repaired", "path", h.Path(logDir), "what", repaired)
	}
	h.id = st.Identity
	h.hold = st.Hold
	h.holding.Store(st.Hold != nil)
	h.snap = completeSnapshot(st.Snapshot, snapPath)
	h.snap.log = log
	h.log = log
	keep := []string{st.Snapshot.File}
	for _, o := range st.Older {
		if fi, err := os.Stat(h.Path(o.File)); err == nil && fi.Size() == o.Size {
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
func (h *Store) removeStrays(keepLog string, keepSnaps ...string) {
	ents, err := os.ReadDir(h.dir)
	if err != nil {
		h.logger.Warn("list the data dir for leftovers", "path", h.dir, "err", err)
	}
	for _, e := range ents {
		name := e.Name()
		if name == keepLog || slices.Contains(keepSnaps, name) || slices.Contains(keepSnaps, strings.TrimSuffix(name, ".json")) {
			continue
		}
		if strings.HasPrefix(name, "snapshot-") || strings.HasPrefix(name, "log-") || strings.HasPrefix(name, StateFile+".tmp") {
			if err := os.RemoveAll(h.Path(name)); err != nil {
				h.logger.Warn("remove stale file", "path", h.Path(name), "err", err)
			}
		}
	}
}

// writeState replaces state.json with st: a temporary file, fsynced, renamed
// over it, and the directory fsynced. Caller holds stateMu.
func (h *Store) writeState(st State) error {
	return WriteState(h.dir, st, h.fsyncFile)
}

func newLogDirName() string { return "log-" + replstream.RandomHex40()[:12] }

func logDirName(l *replstream.Log) string { return filepath.Base(l.Dir()) }

// broadcast wakes everyone waiting for a change. Caller holds mu.
func (h *Store) broadcast() {
	close(h.changed)
	h.changed = make(chan struct{})
}
