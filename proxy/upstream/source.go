package upstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/proxy/history"
	"github.com/redis-relay/redis-relay/proxy/internal/wire"
	"github.com/redis-relay/redis-relay/rdbparse"
	"github.com/redis-relay/redis-relay/replstream"
)

// Snapshots from a source other than the master. With snapshot-source set
// (a stock replica of the master, or another relay), the relay takes its
// first snapshot and its refreshes from there: that server forks, the
// master does not. After a first snapshot it asks the master for
// PSYNC <replid> <snapshot offset + 1>; while the master's backlog still
// holds that offset it answers +CONTINUE and never forks for this relay.
// When it does not (the source was too far behind, or holds another
// history), the master's own full sync is taken instead, with a log line
// and a counter: never a snapshot of another history.
//
// A source must prove what it sends: its RDB's repl-id and repl-offset aux
// fields must be there and name the history and offset of its
// +FULLRESYNC (proveSource). A refresh must also be of the history the
// relay follows (history.Store.RefreshBase); a first snapshot becomes the
// relay's only when the master continues after that offset. The source is
// dialled with its own credentials (sourcePeer), never the master's.

// sourceStats says where snapshots came from; guarded by Link.mu.
type sourceStats struct {
	lastFrom     string // "master" or the source's address
	lastFallback string // why the last fallback to the master happened
}

// fetchSnapshot asks addr for a snapshot only (REPLCONF rdb-only 1 where
// it knows it, else a full PSYNC closed after the payload) and returns the
// connection positioned at the payload, with the replid and offset of
// +FULLRESYNC. With current, a relay there is asked for a current snapshot
// (wire.RDBCurrentOption), not any.
func (u *Link) fetchSnapshot(ctx context.Context, p peer, current bool) (*upstreamConn, string, int64, error) {
	var status linkStatus
	c, err := u.dial(ctx, p, &status)
	if err != nil {
		return nil, "", 0, err
	}
	replconfs := [][]string{{"REPLCONF", "capa", "eof", "capa", "psync2"}, {"REPLCONF", "rdb-only", "1"}}
	if current {
		replconfs = append(replconfs, []string{"REPLCONF", wire.RDBCurrentOption, "1"})
	}
	replies, err := u.handshake(c, replconfs...)
	if err != nil {
		c.close()
		return nil, "", 0, err
	}
	if len(replies[1]) > 0 && replies[1][0] == '-' {
		u.logger.Info("snapshot source does not know REPLCONF rdb-only; taking a full PSYNC closed after the snapshot", "upstream", p.addr)
	}
	if err := c.write(resp.AppendCommand(nil, "PSYNC", "?", "-1")); err != nil {
		c.close()
		return nil, "", 0, fmt.Errorf("send PSYNC: %w", err)
	}
	// A relay with nothing to serve yet (no first sync, no master) keeps
	// the request waiting with newlines. A snapshot source gets
	// repl-timeout to name the snapshot it sends, newlines or not; after
	// that the fetch fails and snapshot-source-fallback decides. (A stock
	// server answers +FULLRESYNC as soon as its fork starts.) The master
	// is waited for as a replica waits.
	var line []byte
	if p.offerWithin > 0 {
		line, err = c.readReplyWithin(p.offerWithin)
	} else {
		line, err = c.readReply()
	}
	if err != nil {
		c.close()
		return nil, "", 0, fmt.Errorf("read PSYNC reply: %w", err)
	}
	fields := strings.Fields(string(line))
	if len(fields) != 3 || fields[0] != "+FULLRESYNC" || !replstream.ValidReplID(fields[1]) {
		c.close()
		return nil, "", 0, fmt.Errorf("unexpected reply %q", resp.Excerpt(line, 100))
	}
	offset, err := strconv.ParseInt(fields[2], 10, 64)
	if err != nil || offset < 0 {
		c.close()
		return nil, "", 0, fmt.Errorf("bad FULLRESYNC offset %q", fields[2])
	}
	return c, fields[1], offset, nil
}

// receiveSnapshot reads the payload after +FULLRESYNC into a new snapshot
// and closes the connection; with publish, replicas waiting for a full
// sync stream it as it arrives. On error the snapshot is dropped.
func (u *Link) receiveSnapshot(c *upstreamConn, addr, replid string, offset int64, what string, publish bool) (*history.SnapshotFile, error) {
	defer c.close() // rdb-only: the sender closes too; without it, we want no stream here
	begin := u.hist.NewIncomingSnapshot
	if publish {
		begin = u.hist.BeginFullSync
	}
	s, err := begin(replid, offset)
	if err != nil {
		return nil, err
	}
	p, err := c.readPayloadHeader()
	if err == nil {
		if p.Mark == nil {
			s.SetSize(p.Size)
		}
		pw := &wire.ProgressWriter{W: s, N: new(atomic.Int64), Also: &u.stats.bytesFromUpstream, Total: p.Size, Logger: u.logger.With("upstream", addr), What: what}
		_, err = replstream.CopyPayload(pw, c.br, p)
	}
	if err != nil {
		u.hist.AbortFullSync(s, err)
		return nil, err
	}
	return s, nil
}

// snapshotFromSource takes a first snapshot from the snapshot source and
// checks it; it is not the relay's history until the master continues
// after it (see upstream.run).
func (u *Link) snapshotFromSource(ctx context.Context, p peer) (*history.SnapshotFile, error) {
	addr := p.addr
	start := time.Now()
	c, replid, offset, err := u.fetchSnapshot(ctx, p, false)
	if err != nil {
		return nil, err
	}
	u.logger.Info("taking the first snapshot from the snapshot source", "upstream", addr, "replid", replid, "offset", offset)
	// Not published while it arrives: until the master continues after
	// it, it may be of another history, and no replica may see a byte.
	s, err := u.receiveSnapshot(c, addr, replid, offset, "receiving snapshot from the snapshot source", false)
	if err != nil {
		return nil, err
	}
	s.MarkReceived()
	if err := u.proveSource(s); err != nil {
		u.hist.AbortFullSync(s, err)
		return nil, err
	}
	if err := u.hist.Validate(s); err != nil {
		u.hist.AbortFullSync(s, err)
		return nil, fmt.Errorf("snapshot rejected: %w", err)
	}
	meta := s.Meta()
	written, _, _, _, _ := s.Progress()
	u.logger.Info("snapshot from the snapshot source received", "upstream", addr, "offset", meta.Offset, "bytes", written, "elapsed", time.Since(start).Round(time.Millisecond))
	return s, nil
}

// errUnproven: a snapshot from the snapshot source does not show which
// history and offset it holds.
var errUnproven = errors.New("snapshot from the snapshot source refused: its RDB does not prove the history and offset announced")

// proveSource checks that a snapshot received from the snapshot source
// names, in its RDB's repl-id and repl-offset aux fields, the history and
// offset its +FULLRESYNC announced. The master's own snapshots need no
// such proof: the master is what the relay follows. A source's word alone
// is not enough: any server can announce the master's replid and offset
// over another dataset, and the master would continue after it. Every
// Redis since 4.0 writes both fields into the RDB it sends a replica, and
// a relay forwards the master's RDB as it is.
func (u *Link) proveSource(s *history.SnapshotFile) error {
	meta := s.Meta()
	hdr, err := rdbparse.ReadHeaderFile(s.Path())
	if err != nil {
		return fmt.Errorf("read rdb header: %w", err)
	}
	id := hdr.ReplID()
	off, ok := hdr.ReplOffset()
	switch {
	case id == "":
		err = fmt.Errorf("%w: the RDB has no repl-id aux field (announced %s %d)", errUnproven, meta.ReplID, meta.Offset)
	case !ok:
		err = fmt.Errorf("%w: the RDB has no repl-offset aux field (announced %s %d)", errUnproven, meta.ReplID, meta.Offset)
	case !strings.EqualFold(id, meta.ReplID) || off != meta.Offset:
		err = fmt.Errorf("%w: the RDB says %s %d, +FULLRESYNC said %s %d", errUnproven, id, off, meta.ReplID, meta.Offset)
	default:
		return nil
	}
	u.stats.sourceUnproven.Add(1)
	return err
}

// sourceFallback records that a snapshot came from the master after all.
func (u *Link) sourceFallback(why string) {
	u.stats.sourceFallbacks.Add(1)
	u.mu.Lock()
	u.source.lastFallback = why
	u.mu.Unlock()
	u.logger.Warn("snapshot source not used; the master's own snapshot is taken instead", "reason", why)
}

// noteSnapshotFrom records where the newest snapshot came from.
func (u *Link) noteSnapshotFrom(from string) {
	u.mu.Lock()
	u.source.lastFrom = from
	u.mu.Unlock()
}

// errSourceDown: no snapshot source, and no fallback allowed.
var errSourceDown = errors.New("snapshot source unavailable (snapshot-source-fallback is no)")
