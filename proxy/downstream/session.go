package downstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/proxy/history"
	"github.com/redis-relay/redis-relay/proxy/internal/wire"
	"github.com/redis-relay/redis-relay/replstream"
)

// CloseReason says why a replica session ended. The same value appears in
// the log line and in the metric label.
type CloseReason string

const (
	ReasonReplicaClosed     CloseReason = "replica_closed"
	ReasonWriteError        CloseReason = "write_error"
	ReasonTimeout           CloseReason = "timeout"
	ReasonFellBehind        CloseReason = "fell_behind"
	ReasonHistoryReplaced   CloseReason = "history_replaced"
	ReasonReplIDChanged     CloseReason = "replid_changed"
	ReasonSnapshotAbandoned CloseReason = "snapshot_abandoned"
	ReasonProtocol          CloseReason = "protocol_error"
	ReasonShutdown          CloseReason = "shutdown"
	ReasonRDBOnlyDone       CloseReason = "rdb_only_done"
	ReasonKilled            CloseReason = "killed"
	// The relay answered the sync with an error: it had no snapshot it
	// could truthfully give (rdb-only from a tool, rdb-filter-only).
	ReasonRefused CloseReason = "refused"
	// The replica received part of a command the upstream never finished;
	// it resumes from its last whole command.
	ReasonStreamCut CloseReason = "stream_cut"
)

// CloseReasons lists every CloseReason, for metrics.
func CloseReasons() []CloseReason {
	return []CloseReason{
		ReasonReplicaClosed, ReasonWriteError, ReasonTimeout, ReasonFellBehind, ReasonHistoryReplaced,
		ReasonReplIDChanged, ReasonSnapshotAbandoned, ReasonProtocol, ReasonShutdown, ReasonRDBOnlyDone, ReasonKilled,
		ReasonStreamCut, ReasonRefused,
	}
}

// closeError carries a CloseReason through context cancellation causes.
type closeError struct {
	reason CloseReason
	err    error
}

func (e *closeError) Error() string {
	if e.err != nil {
		return string(e.reason) + ": " + e.err.Error()
	}
	return string(e.reason)
}

func (e *closeError) Unwrap() error { return e.err }

// Replica states, as INFO shows them.
const (
	StateWaitBgsave = "wait_bgsave"
	StateSendBulk   = "send_bulk"
	StateOnline     = "online"
)

// ReplicaStates are a session's states, as INFO names them.
func ReplicaStates() []string { return []string{StateWaitBgsave, StateSendBulk, StateOnline} }

// session serves one downstream replica after PSYNC or SYNC: a cursor on the
// shared log, a writer goroutine and an ACK reader. It holds no copy of the
// stream beyond one read buffer.
type session struct {
	srv    *Server
	c      *client
	logger *slog.Logger
	replid string // as asked in PSYNC
	off    int64  // as asked in PSYNC
	legacy bool   // SYNC: no +FULLRESYNC line, no ACKs expected

	cancel  context.CancelCauseFunc
	state   atomic.Value // string
	ack     atomic.Int64 // last ACKed offset
	ackTime atomic.Int64 // unix nanoseconds of the last ACK or keepalive
	sent    atomic.Int64 // offset of the next stream byte to send, once streaming
	// During a full sync: snapshot bytes sent, and the snapshot's size (-1
	// while it is still arriving with its size unknown).
	bulkSent  atomic.Int64
	bulkTotal atomic.Int64
	buf       []byte        // snapshot bytes on their way to a TLS or compressed replica; allocated on first use
	enc       *zstd.Encoder // set after +FULLRESYNC/+CONTINUE on a compressed link; writes go through it
	firstAck  chan struct{}
	acked     atomic.Bool
	started   time.Time
}

func newSession(c *client, replid string, off int64, legacy bool) *session {
	s := &session{
		srv: c.srv, c: c, replid: replid, off: off, legacy: legacy,
		logger:   c.srv.logger.With("replica", c.addr),
		firstAck: make(chan struct{}),
		started:  time.Now(),
	}
	s.state.Store(StateWaitBgsave)
	return s
}

// end stops the session with reason.
func (s *session) end(reason CloseReason) {
	if s.cancel != nil {
		s.cancel(&closeError{reason: reason})
	}
}

// A session is the history's reader (history.Reader): Online, SetOnline
// (below), NextOffset, EndReader and String.

func (s *session) Online() bool { return s.state.Load() == StateOnline }

func (s *session) NextOffset() int64 { return s.sent.Load() }

func (s *session) String() string { return s.c.addr }

// EndReader ends the session with the close reason for why.
func (s *session) EndReader(why history.ReaderEnd) {
	switch why {
	case history.EndReplIDChanged:
		s.end(ReasonReplIDChanged)
	case history.EndFellBehind:
		s.end(ReasonFellBehind)
	default:
		panic(fmt.Sprintf("unknown reader end %d", why))
	}
}

// run serves the replica until it goes away or the session is ended.
func (s *session) run(parent context.Context) {
	ctx, cancel := context.WithCancelCause(parent)
	s.cancel = cancel
	defer cancel(nil)
	srv := s.srv
	srv.hist.AddReader(s)
	srv.addSession(s)
	defer func() {
		srv.removeSession(s)
		srv.hist.RemoveReader(s)
	}()

	stop := context.AfterFunc(ctx, func() { s.c.nc.Close() })
	defer stop()
	// The deadline of the PSYNC command itself must not outlive it: a
	// replica sends nothing while it receives and loads a snapshot. Once it
	// is online, SetOnline gives it repl-timeout between ACKs.
	s.c.nc.SetReadDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.readAcks(ctx)
	}()
	err := s.serve(ctx)
	if cause := context.Cause(ctx); cause != nil && (err == nil || errors.Is(err, context.Canceled) || errors.Is(err, net.ErrClosed)) {
		err = cause
	}
	s.c.nc.Close()
	<-done
	if s.enc != nil {
		s.enc.Close()
	}

	reason := classify(err, parent)
	srv.stats.disconnects[reason].Add(1)
	level := slog.LevelWarn
	switch reason {
	case ReasonShutdown, ReasonRDBOnlyDone, ReasonReplIDChanged, ReasonHistoryReplaced, ReasonReplicaClosed, ReasonStreamCut:
		level = slog.LevelInfo
	}
	s.logger.Log(context.Background(), level, "replica disconnected", "reason", reason, "acked", s.ack.Load(), "err", err)
}

func classify(err error, parent context.Context) CloseReason {
	var ce *closeError
	switch {
	case errors.As(err, &ce):
		return ce.reason
	case parent.Err() != nil:
		return ReasonShutdown
	case errors.Is(err, replstream.ErrNotRetained):
		return ReasonFellBehind
	case errors.Is(err, replstream.ErrClosed):
		return ReasonHistoryReplaced
	case errors.Is(err, replstream.ErrTruncated):
		return ReasonStreamCut
	case errors.Is(err, history.ErrSnapshotAbandoned):
		return ReasonSnapshotAbandoned
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return ReasonReplicaClosed
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ReasonTimeout
	}
	return ReasonWriteError
}

// write sends p to the replica, failing after ReplTimeout without progress.
func (s *session) write(p []byte) error {
	if s.enc != nil {
		// Flushed at once: a quiet link must not hold bytes back.
		if _, err := s.enc.Write(p); err != nil {
			return err
		}
		err := s.enc.Flush()
		s.srv.stats.zOut.Stream.Add(int64(len(p)))
		s.srv.stats.bytesToReplicas.Add(int64(len(p)))
		return err
	}
	s.c.nc.SetWriteDeadline(time.Now().Add(s.srv.cfg.Timeout()))
	n, err := s.c.nc.Write(p)
	s.srv.stats.bytesToReplicas.Add(int64(n))
	return err
}

// compressed reports whether this replica gets a compressed link: a relay
// that asked for one, and the relay serves them.
func (s *session) compressed() bool {
	return s.c.capaZstd && !s.legacy && !s.srv.cfg.Get().NoServeCompression
}

// startCompression sends everything from now on through a zstd encoder at
// the level the replica asked for.
func (s *session) startCompression() {
	wire := wire.CountingWriter{W: deadlineWriter{nc: s.c.nc, timeout: s.srv.cfg.Timeout}, N: &s.srv.stats.zOut.Wire}
	s.enc, _ = zstd.NewWriter(wire, zstd.WithEncoderLevel(s.c.zstdLevel), zstd.WithEncoderConcurrency(1))
	s.logger.Info("compressed link", "level", s.c.zstdLevel.String())
}

func (s *session) keepalive() error { return s.write([]byte("\n")) }

func (s *session) serve(ctx context.Context) error {
	srv := s.srv
	if s.c.filtered {
		return s.filteredSync(ctx)
	}
	if !s.legacy {
		d, cur, replid := srv.hist.PsyncDecision(s.replid, s.off)
		if d == replstream.WaitAhead {
			// The replica holds bytes the relay cut or lost (a partial
			// command, a crash); the upstream resends them. Newlines keep
			// the replica waiting for the PSYNC reply, as Redis's replica
			// skips them there (slaveTryPartialResynchronization).
			s.logger.Info("replica is ahead of the relay, waiting for upstream", "offset", s.off)
			if err := srv.waitAhead(ctx, s.replid, s.off, s.keepalive); err != nil {
				return err
			}
			if d, cur, replid = srv.hist.PsyncDecision(s.replid, s.off); d == replstream.WaitAhead {
				d = replstream.FullResync
			}
		}
		if d == replstream.Continue {
			zstd := s.compressed() && s.c.capaPSYNC2
			reply := "+CONTINUE\r\n"
			switch {
			case zstd:
				reply = "+CONTINUE " + replid + " " + wire.CompressionWord + "\r\n"
			case s.c.capaPSYNC2:
				reply = "+CONTINUE " + replid + "\r\n"
			}
			if !srv.hist.GoOnline(s, replid) {
				return &closeError{reason: ReasonReplIDChanged}
			}
			if err := s.write([]byte(reply)); err != nil {
				return err
			}
			if zstd {
				s.startCompression()
			}
			srv.stats.partialSyncsServed.Add(1)
			s.logger.Info("partial resync", "replid", replid, "offset", s.off)
			return s.stream(ctx, cur)
		}
		if !strings.HasPrefix(s.replid, "?") {
			srv.stats.partialSyncsErr.Add(1)
		}
	}
	if s.c.rdbOnly && (s.legacy || s.c.rdbCurrent) {
		// A tool, which cannot continue from the snapshot's offset, or a
		// relay below refreshing for one.
		if err := s.toolSnapshot(ctx); err != nil {
			return err
		}
	}
	return s.fullSync(ctx)
}

// fullSync sends a snapshot and then the log from just after it.
func (s *session) fullSync(ctx context.Context) error {
	srv := s.srv
	// Wait for a slot (full-sync-max-concurrent), newlines meanwhile.
	release, err := srv.slots.acquire(ctx, func() int { return srv.cfg.Get().FullSyncMaxConcurrent }, s.keepalive)
	if err != nil {
		return err
	}
	released := false
	done := func() {
		if !released {
			released = true
			release()
		}
	}
	defer done()
	snap, f, err := srv.hist.SyncSource(ctx, s, s.keepalive)
	if err != nil {
		return err
	}
	defer f.Close()
	meta := snap.Meta()
	replid := srv.hist.AnnouncedID(snap, s.legacy)
	// Counted when it starts, as Redis counts sync_full: a transfer cut
	// half way costs the replica a full sync all the same.
	srv.stats.fullSyncsServed.Add(1)
	s.logger.Info("full resync", "replid", replid, "offset", meta.Offset, "reason_replid", s.replid, "reason_offset", s.off)
	if !s.legacy {
		zstd := s.compressed()
		word := ""
		if zstd {
			word = " " + wire.CompressionWord
		}
		if err := s.write(fmt.Appendf(nil, "+FULLRESYNC %s %d%s\r\n", replid, meta.Offset, word)); err != nil {
			return err
		}
		if zstd {
			s.startCompression()
		}
	}
	var p replstream.Payload
	if s.c.capaEOF {
		p = replstream.Payload{Size: -1, Mark: []byte(replstream.RandomHex40())}
	} else {
		size, err := snap.WaitSize(ctx, s.keepalive)
		if err != nil {
			return err
		}
		p = replstream.Payload{Size: size}
	}
	s.state.Store(StateSendBulk)
	if err := s.write(p.Preamble()); err != nil {
		return err
	}
	pw := &wire.ProgressWriter{N: &s.bulkSent, Total: p.Size, Logger: s.logger, What: "sending snapshot"}
	if p.Size < 0 {
		_, size, _, _, _ := snap.Progress()
		pw.Total = size
	}
	s.bulkTotal.Store(pw.Total)
	var own pacer // full-sync-replica-bandwidth-limit
	send := func(f *os.File, pos, n int64) (int64, error) {
		k, err := srv.paced(ctx, &own, n, s.sendStep(), func(n int64) (int64, error) { return s.sendFile(f, pos, n) })
		pw.Count(int(k))
		return k, err
	}
	if _, err := snap.CopyTo(ctx, send, f); err != nil {
		return err
	}
	if p.Mark != nil {
		if err := s.write(p.Mark); err != nil {
			return err
		}
	}
	done() // the payload is out: the next queued full sync may start
	log, err := snap.WaitAccepted(ctx)
	if err != nil {
		return err
	}
	if s.c.rdbOnly {
		return &closeError{reason: ReasonRDBOnlyDone}
	}
	cur, err := log.Cursor(meta.Offset + 1)
	if err != nil {
		return err
	}
	if p.Mark != nil {
		if err := s.waitFirstAck(ctx); err != nil {
			return err
		}
	}
	if !srv.hist.GoOnline(s, replid) {
		// The history moved to a new ID during the transfer, or before
		// it (a snapshot served under replid2, see announcedID). The
		// replica comes back with PSYNC <replid> <offset+1>, which the new
		// ID accepts through replid2, and learns the new ID.
		return &closeError{reason: ReasonReplIDChanged}
	}
	return s.stream(ctx, cur)
}

// waitFirstAck holds the stream back after an EOF-marked snapshot until the
// replica's first ACK: a replica (redis-server, redis-cli --replica) finds
// the mark in the last 40 bytes it read, so nothing may follow it before
// then. Redis does the same for every EOF transfer
// (repl_start_cmd_stream_on_ack, released in replconfCommand). A replica
// that loads a large snapshot sends "\n" meanwhile; like Redis
// (processInlineBuffer refreshes repl_ack_time on an empty line), the relay
// takes it as a sign of life and only gives up after repl-timeout of silence.
func (s *session) waitFirstAck(ctx context.Context) error {
	s.ackTime.Store(time.Now().UnixNano())
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.firstAck:
			return nil
		case <-t.C:
			if time.Since(time.Unix(0, s.ackTime.Load())) > s.srv.cfg.Timeout() {
				return &closeError{reason: ReasonTimeout, err: errors.New("no ACK after the snapshot")}
			}
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// sendChunk bounds one send of snapshot bytes, so that the write deadline
// (repl-timeout) applies to a bounded amount of data; bufferChunk bounds
// one send through a buffer (TLS, compression).
const (
	sendChunk   = 4 << 20
	bufferChunk = 256 << 10
)

// sendStep is the most one sendFile sends to this replica.
func (s *session) sendStep() int64 {
	if _, ok := s.c.nc.(*net.TCPConn); ok && s.enc == nil {
		return sendChunk
	}
	return bufferChunk
}

// sendFile sends n bytes of f from pos, at most sendChunk: with sendfile
// on plain TCP (the kernel copies from the page cache to the socket, once
// for each replica, no user-space copy), through a buffer on TLS.
func (s *session) sendFile(f *os.File, pos, n int64) (int64, error) {
	n = min(n, sendChunk)
	if tc, ok := s.c.nc.(*net.TCPConn); ok && s.enc == nil {
		s.c.nc.SetWriteDeadline(time.Now().Add(s.srv.cfg.Timeout()))
		var k int64
		_, err := f.Seek(pos, io.SeekStart)
		if err == nil {
			k, err = tc.ReadFrom(&io.LimitedReader{R: f, N: n})
		}
		s.srv.stats.bytesToReplicas.Add(k)
		return k, err
	}
	if s.buf == nil {
		s.buf = make([]byte, bufferChunk)
	}
	rn, err := f.ReadAt(s.buf[:min(n, int64(len(s.buf)))], pos)
	if rn == 0 {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	if err := s.write(s.buf[:rn]); err != nil {
		return 0, err
	}
	return int64(rn), nil
}

type writerFunc func([]byte) error

func (w writerFunc) Write(p []byte) (int, error) {
	if err := w(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s *session) SetOnline() {
	s.state.Store(StateOnline)
	s.ackTime.Store(time.Now().UnixNano())
	if !s.legacy {
		// From now on the replica must ACK at least every ReplTimeout.
		s.c.nc.SetReadDeadline(time.Now().Add(s.srv.cfg.Timeout()))
	}
}

// stream copies the log to the replica from the cursor on.
//
// Bytes first, then the hold: the command tripwire is set before the
// command's bytes reach the log, so a hold looked up after a read covers
// every command the read returned. Bytes at or past the hold point wait in
// out until it is released.
func (s *session) stream(ctx context.Context, cur *replstream.Cursor) error {
	buf := make([]byte, 64<<10)
	s.sent.Store(cur.Offset())
	var out []byte // read and not sent yet; ends at cur.Offset()
	for {
		if len(out) == 0 {
			n, err := cur.Read(ctx, buf)
			if err != nil {
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				return err
			}
			out = buf[:n]
		}
		n := int64(len(out))
		if s.srv.hist.TripwireArmed() {
			s.srv.at("hold-lookup")
			limit, err := s.srv.hist.WaitHold(ctx, cur.Offset()-n)
			if err != nil {
				return err
			}
			if limit >= 0 {
				n = min(n, limit)
			}
		}
		if err := s.write(out[:n]); err != nil {
			return err
		}
		out = out[n:]
		s.sent.Store(cur.Offset() - int64(len(out)))
	}
}

// readAcks reads what a replica sends after PSYNC: REPLCONF ACK <off> [FACK
// <off>] and "\n" keepalives. Anything else ends the session.
func (s *session) readAcks(ctx context.Context) {
	br := s.c.br
	for {
		args, err := resp.ReadCommand(br)
		if err != nil {
			if ctx.Err() == nil {
				var pe resp.ProtocolError
				reason := ReasonReplicaClosed
				var ne net.Error
				switch {
				case errors.As(err, &pe):
					reason = ReasonProtocol
				case errors.As(err, &ne) && ne.Timeout():
					reason = ReasonTimeout
				}
				s.cancel(&closeError{reason: reason, err: err})
			}
			return
		}
		now := time.Now()
		s.ackTime.Store(now.UnixNano())
		if s.state.Load() == StateOnline && !s.legacy {
			s.c.nc.SetReadDeadline(now.Add(s.srv.cfg.Timeout()))
		}
		if len(args) == 0 {
			continue // keepalive
		}
		if len(args) >= 3 && strings.EqualFold(string(args[0]), "replconf") {
			switch strings.ToLower(string(args[1])) {
			case "ack":
				off, err := strconv.ParseInt(string(args[2]), 10, 64)
				if err != nil {
					continue
				}
				if off > s.ack.Load() {
					s.ack.Store(off)
					s.srv.up.NoteDownstreamAck()
				}
				if s.acked.CompareAndSwap(false, true) {
					close(s.firstAck)
				}
				continue
			case "getack":
				continue
			}
		}
		s.cancel(&closeError{reason: ReasonProtocol, err: fmt.Errorf("replica sent %q after PSYNC", resp.Excerpt(args[0], 32))})
		return
	}
}

// waitAhead waits up to WaitAhead for the current log to hold offset off-1
// (a replica asking for off has everything before it), calling keepalive
// every second. It gives up at once when the relay has no upstream to
// resend those bytes, and as soon as the history is no longer replid
// (the upstream branched before off: those bytes will never come). Only a
// failed keepalive is an error.
func (srv *Server) waitAhead(ctx context.Context, replid string, off int64, keepalive func() error) error {
	log := srv.hist.CurrentLog()
	if addr, _ := srv.up.MasterAddr(); log == nil || addr == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, srv.cfg.Get().WaitAhead)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- log.WaitFor(ctx, off-1) }()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		changed := srv.hist.Changes()
		if id, _, ok := srv.hist.Position(); !ok || !strings.EqualFold(id.ReplID, replid) {
			cancel()
			<-done
			return nil
		}
		select {
		case <-done:
			return nil
		case <-changed:
		case <-t.C:
			if err := keepalive(); err != nil {
				cancel()
				<-done
				return err
			}
		}
	}
}
