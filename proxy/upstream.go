package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/redis-relay/redis-relay/replstream"
)

// Link states, as Redis names them in ROLE.
const (
	LinkNone       = "none"
	LinkConnect    = "connect" // not connected; will connect (Redis: REPL_STATE_CONNECT)
	LinkConnecting = "connecting"
	LinkHandshake  = "handshake"
	LinkSync       = "sync"
	LinkConnected  = "connected"
)

// linkStatus is what INFO and ROLE show about the upstream link.
type linkStatus struct {
	mu         sync.Mutex
	state      string
	addr       string
	since      time.Time // when state last changed
	lastErr    string
	lastReason LinkDownReason // why the link last went down
	syncTotal  int64          // bytes of the snapshot being received, -1 while unknown
	syncStart  time.Time
	syncRead   atomic.Int64
	lastIO     atomic.Int64 // unix nanoseconds of the last byte read
	acked      atomic.Int64 // last offset ACKed to the master
	compressed atomic.Bool  // the current link is compressed
}

func (u *linkStatus) set(state, addr string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.state != state {
		u.since = time.Now()
	}
	u.state, u.addr = state, addr
}

func (u *linkStatus) get() (state, addr string, since time.Time, lastErr string, syncTotal int64, syncStart time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.state, u.addr, u.since, u.lastErr, u.syncTotal, u.syncStart
}

// Errors that decide how the upstream loop retries.
var (
	errTryLater = errors.New("upstream asked to retry later")
	errAuth     = errors.New("upstream authentication failed")
	// errLocalWrite: the relay could not store what the master sent (a
	// full disk). Reconnecting at once would only fail again.
	errLocalWrite     = errors.New("append to log")
	errPSYNCRefused   = errors.New("PSYNC refused")
	errStreamProtocol = errors.New("malformed stream from master")
	errMasterClosed   = errors.New("master closed the connection")
)

// LinkDownReason says why the upstream link went down. The same value
// appears in the log line, the metric label and INFO.
type LinkDownReason string

const (
	linkDownConnect      LinkDownReason = "connect_failed"   // no TCP (or TLS) connection
	linkDownHandshake    LinkDownReason = "handshake_failed" // PING, REPLCONF or the PSYNC reply failed
	linkDownAuth         LinkDownReason = "auth_failed"
	linkDownNotReady     LinkDownReason = "master_not_ready" // -LOADING, -NOMASTERLINK
	linkDownRefused      LinkDownReason = "psync_refused"
	linkDownSync         LinkDownReason = "sync_failed" // the snapshot transfer broke, or the snapshot was rejected
	linkDownGuard        LinkDownReason = "guard_tripped"
	linkDownSourceDown   LinkDownReason = "snapshot_source_down"
	linkDownTimeout      LinkDownReason = "timeout" // repl-timeout without a byte
	linkDownMasterClosed LinkDownReason = "master_closed"
	linkDownProtocol     LinkDownReason = "protocol_error" // the stream did not parse; the next sync is a full one
	linkDownLocalWrite   LinkDownReason = "local_write_error"
	linkDownIO           LinkDownReason = "io_error"
	linkDownRepointed    LinkDownReason = "repointed" // REPLICAOF or Sentinel named another master
)

// LinkDownReasons lists every LinkDownReason, for metrics.
func LinkDownReasons() []LinkDownReason {
	return []LinkDownReason{linkDownConnect, linkDownHandshake, linkDownAuth, linkDownNotReady, linkDownRefused,
		linkDownSync, linkDownGuard, linkDownSourceDown, linkDownTimeout, linkDownMasterClosed, linkDownProtocol,
		linkDownLocalWrite, linkDownIO, linkDownRepointed}
}

// linkDownReason classifies the error that ended a connection in phase (the
// link state it was in).
func linkDownReason(err error, phase string) LinkDownReason {
	var ne net.Error
	switch {
	case errors.Is(err, errAuth):
		return linkDownAuth
	case errors.Is(err, errTryLater):
		return linkDownNotReady
	case errors.Is(err, errLocalWrite):
		return linkDownLocalWrite
	case errors.Is(err, errGuardTripped):
		return linkDownGuard
	case errors.Is(err, errSourceDown):
		return linkDownSourceDown
	case errors.Is(err, errStreamProtocol):
		return linkDownProtocol
	case errors.Is(err, errPSYNCRefused):
		return linkDownRefused
	case errors.As(err, &ne) && ne.Timeout():
		return linkDownTimeout
	case errors.Is(err, errMasterClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return linkDownMasterClosed
	case phase == LinkConnecting:
		return linkDownConnect
	case phase == LinkHandshake:
		return linkDownHandshake
	case phase == LinkSync:
		return linkDownSync
	}
	return linkDownIO
}

// masterAddr returns the upstream address and a channel closed when it changes.
func (u *upstreamLink) masterAddr() (string, <-chan struct{}) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.master, u.masterCh
}

// setMaster re-points the upstream link (REPLICAOF).
func (u *upstreamLink) setMaster(addr string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.master == addr {
		return
	}
	u.master = addr
	close(u.masterCh)
	u.masterCh = make(chan struct{})
}

// run keeps a link to the master until ctx ends: connect, handshake,
// PSYNC, stream; on failure retry with backoff, partial resync first. port
// is announced as the relay's listening port unless AnnouncePort is set.
func (u *upstreamLink) run(ctx context.Context, port int) {
	u.port = port
	if u.cfg.fixed.AnnouncePort > 0 {
		u.port = u.cfg.fixed.AnnouncePort
	}
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		addr, moved := u.masterAddr()
		if addr == "" {
			u.status.set(LinkNone, "")
			select {
			case <-moved:
			case <-ctx.Done():
			}
			continue
		}
		select {
		case <-u.hist.guardHold():
		default:
			u.status.set(LinkNone, addr)
			select {
			case <-u.hist.guardHold():
			case <-moved:
				u.hist.discardHeld()
			case <-ctx.Done():
			}
			continue
		}
		linkCtx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-moved:
				cancel()
			case <-linkCtx.Done():
			}
		}()
		err := u.connect(linkCtx, addr)
		cancel()
		phase, _, _, _, _, _ := u.status.get()
		u.cutPartialTail() // before INFO shows the link down, so its offset never goes back
		u.status.set(LinkConnect, addr)
		if ctx.Err() != nil {
			return
		}
		reason := linkDownReason(err, phase)
		select {
		case <-moved:
			reason = linkDownRepointed
		default:
		}
		u.stats.linkDowns[reason].Add(1)
		u.status.mu.Lock()
		u.status.lastErr, u.status.lastReason = fmt.Sprint(err), reason
		u.status.mu.Unlock()
		if reason == linkDownRepointed {
			u.logger.Info("upstream re-pointed", "upstream", addr, "reason", reason)
			backoff = 0
			continue
		}
		switch {
		case errors.Is(err, errLocalWrite):
			backoff = min(max(2*backoff, time.Second), 5*time.Second)
		case u.streamed, errors.Is(err, errGuardTripped):
			backoff = 0
		case backoff == 0:
			backoff = 250 * time.Millisecond
		default:
			backoff = min(2*backoff, 5*time.Second)
		}
		level := u.logger.Warn
		if errors.Is(err, errAuth) || errors.Is(err, errLocalWrite) {
			level = u.logger.Error
		}
		level("upstream link down", "upstream", addr, "reason", reason, "err", err, "retry_in", backoff)
		if backoff > 0 {
			select {
			case <-time.After(backoff):
			case <-moved:
			case <-ctx.Done():
			}
		}
	}
}

// upstreamLink is the relay as a replica: the connection to its master
// (handshake, PSYNC, the stream appended to the history's log, ACKs), the
// refresh connection, and Sentinel following. It is the history's only
// writer.
//
// mu is a leaf lock, as is cmdMu.
type upstreamLink struct {
	cfg    *liveConfig
	hist   *history
	logger *slog.Logger
	stats  *counters

	mu       sync.Mutex
	master   string        // upstream address; guarded by mu
	masterCh chan struct{} // closed and replaced when master changes; guarded by mu
	source   sourceStats   // guarded by mu

	status          linkStatus
	downstreamAcked chan struct{} // buffered(1): a replica ACKed more (downstream ACK policies)

	cmdMu    sync.Mutex
	commands map[string]int64 // relayed commands by lower-case name, as last published; guarded by cmdMu

	// Owned by the run goroutine, kept across reconnects.
	port      int                // REPLCONF listening-port
	forceFull bool               // next PSYNC must be "? -1" (after a protocol error)
	framer    *replstream.Framer // follows the command stream; valid for framerLog
	resume    replstream.ResumePoint
	framerLog *replstream.Log
	streamed  bool // the last connection reached the streaming phase
	counts    commandCounts
}

func newUpstreamLink(cfg *liveConfig, hist *history, stats *counters, logger *slog.Logger) *upstreamLink {
	u := &upstreamLink{
		cfg: cfg, hist: hist, stats: stats, logger: logger,
		master: cfg.fixed.MasterAddr, masterCh: make(chan struct{}),
		downstreamAcked: make(chan struct{}, 1),
	}
	u.status.set(LinkConnect, "")
	u.status.syncTotal = -1
	return u
}

// upstreamConn is one connection to an upstream (the master, or a snapshot source).
type upstreamConn struct {
	nc      net.Conn
	br      *bufio.Reader
	dec     *zstd.Decoder // set on a compressed link; br then reads through it
	wmu     sync.Mutex
	timeout func() time.Duration // repl-timeout
	stop    func() bool
}

// dial connects to an upstream; the connection closes when ctx ends.
func (u *upstreamLink) dial(ctx context.Context, addr string, status *linkStatus) (*upstreamConn, error) {
	d := net.Dialer{Timeout: handshakeTimeout}
	var nc net.Conn
	var err error
	if tc := u.cfg.get().UpstreamTLS; tc != nil {
		td := tls.Dialer{NetDialer: &d, Config: tc}
		nc, err = td.DialContext(ctx, "tcp", addr)
	} else {
		nc, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	c := &upstreamConn{nc: nc, timeout: u.cfg.timeout, br: bufio.NewReaderSize(&activityReader{nc: nc, timeout: u.cfg.timeout, status: status}, 64<<10)}
	c.stop = context.AfterFunc(ctx, func() { nc.Close() })
	return c, nil
}

func (c *upstreamConn) close() {
	c.stop()
	c.nc.Close()
	if c.dec != nil {
		c.dec.Close()
	}
}

// decompress reads everything after the PSYNC reply through a zstd
// decoder, with bounded memory: the upstream is not trusted.
func (c *upstreamConn) decompress(counts *linkBytes) error {
	dec, err := zstd.NewReader(countingReader{r: c.br, n: &counts.wire},
		zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20), zstd.WithDecoderMaxMemory(256<<20))
	if err != nil {
		return fmt.Errorf("start decompression: %w", err)
	}
	c.dec = dec
	c.br = bufio.NewReaderSize(countingReader{r: dec, n: &counts.stream}, 64<<10)
	return nil
}

func (c *upstreamConn) write(p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(c.timeout()))
	_, err := c.nc.Write(p)
	return err
}

// readLine reads a reply line, allowing timeout for it.
func (c *upstreamConn) readLine(timeout time.Duration) ([]byte, error) {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	return replstream.ReadLine(c.br, 1<<16)
}

// activityReader refreshes the read deadline before every read, so the link
// fails after ReplTimeout of silence, and records the time of the last byte.
type activityReader struct {
	nc          net.Conn
	timeout     func() time.Duration
	status      *linkStatus
	deadlineSet time.Time
}

func (a *activityReader) Read(p []byte) (int, error) {
	// Moving the deadline costs a timer update; under load, doing it once
	// per eighth of the timeout is enough to keep it at least 7/8 away.
	timeout := a.timeout()
	if now := time.Now(); now.Sub(a.deadlineSet) > timeout/8 {
		a.nc.SetReadDeadline(now.Add(timeout))
		a.deadlineSet = now
	}
	n, err := a.nc.Read(p)
	if n > 0 {
		a.status.lastIO.Store(time.Now().UnixNano())
	}
	return n, err
}

// handshakeTimeout bounds each reply during the handshake, as Redis's
// CONFIG_REPL_SYNCIO_TIMEOUT does.
const handshakeTimeout = 5 * time.Second

// connect runs one connection to the master at addr: an optional first
// snapshot from the snapshot source, the handshake, PSYNC, then a full
// sync or the stream.
func (u *upstreamLink) connect(ctx context.Context, addr string) (err error) {
	u.streamed = false
	// Without a history, the first snapshot comes from the snapshot source
	// when there is one (source.go); it becomes the history only if the
	// master continues after it.
	var fromSource *snapshot
	src := u.cfg.get().SnapshotSource
	if _, _, ok := u.hist.position(); src != "" && (!ok || u.forceFull) {
		u.status.set(LinkSync, addr)
		s, err := u.snapshotFromSource(ctx, src)
		switch {
		case err == nil:
			fromSource = s
		case ctx.Err() != nil:
			return ctx.Err()
		case !u.cfg.get().SnapshotSourceFallback:
			return fmt.Errorf("%w: %s: %v", errSourceDown, src, err)
		default:
			u.sourceFallback(fmt.Sprintf("snapshot source %s: %v", src, err))
		}
	}
	defer func() {
		if fromSource != nil {
			u.hist.abortFullSync(fromSource, fmt.Errorf("not continued by the master: %v", err))
		}
	}()
	u.status.set(LinkConnecting, addr)
	c, err := u.dial(ctx, addr, &u.status)
	if err != nil {
		return err
	}
	defer c.close()

	u.status.set(LinkHandshake, addr)
	capas := []string{"REPLCONF", "capa", "eof", "capa", "psync2"}
	replconfs := [][]string{{"REPLCONF", "listening-port", strconv.Itoa(u.port)}, capas}
	level, compress, _ := compressionLevel(u.cfg.get().UpstreamCompression)
	if compress {
		// A relay upstream may answer with a compressed link; a stock
		// master ignores the capability and refuses the level option,
		// which a handshake takes as a stock replica does.
		replconfs[1] = append(capas, "capa", capaZstd)
		replconfs = append(replconfs, []string{"REPLCONF", zstdLevelOption, levelName(level)})
	}
	if _, err := u.handshake(c, replconfs...); err != nil {
		return err
	}
	id, next, ok := u.hist.position()
	psync := []string{"PSYNC", "?", "-1"}
	switch {
	case fromSource != nil:
		psync = []string{"PSYNC", fromSource.meta.ReplID, strconv.FormatInt(fromSource.meta.Offset+1, 10)}
	case ok && !u.forceFull:
		psync = []string{"PSYNC", id.ReplID, strconv.FormatInt(next, 10)}
	}
	if err := c.write(appendCommand(nil, psync...)); err != nil {
		return fmt.Errorf("send PSYNC: %w", err)
	}
	line, err := c.readReply()
	if err != nil {
		return fmt.Errorf("read PSYNC reply: %w", err)
	}
	fields := strings.Fields(string(line))
	if n := len(fields); compress && n >= 2 && (fields[0] == "+FULLRESYNC" || fields[0] == "+CONTINUE") && fields[n-1] == compressionWord {
		fields = fields[:n-1]
		if err := c.decompress(&u.stats.zIn); err != nil {
			return err
		}
	}
	u.status.compressed.Store(c.dec != nil)
	switch {
	case len(fields) > 0 && fields[0] == "+CONTINUE" && fromSource != nil:
		s := fromSource
		fromSource = nil
		if len(fields) == 2 && !replstream.ValidReplID(fields[1]) {
			u.hist.abortFullSync(s, errors.New("bad CONTINUE reply"))
			return fmt.Errorf("bad CONTINUE reply %q", truncateText(line, 100))
		}
		if _, err := u.hist.commitFullSync(s); err != nil {
			if !errors.Is(err, errGuardTripped) {
				u.hist.abortFullSync(s, err)
			}
			return err
		}
		if len(fields) == 2 && !strings.EqualFold(fields[1], s.meta.ReplID) {
			if err := u.hist.shiftReplID(fields[1]); err != nil {
				return err
			}
		}
		u.forceFull = false
		u.stats.forksAvoided.Add(1)
		u.stats.upstreamPartials.Add(1)
		u.noteSnapshotFrom(src)
		u.logger.Info("master continued after the snapshot source's snapshot: no fork on the master", "upstream", addr, "source", src, "next", s.meta.Offset+1)
		return u.stream(ctx, c, addr, nil)
	case len(fields) > 0 && fields[0] == "+FULLRESYNC":
		if fromSource != nil {
			u.hist.abortFullSync(fromSource, errors.New("the master answered FULLRESYNC"))
			u.sourceFallback(fmt.Sprintf("the master answered FULLRESYNC to PSYNC %s %d: its backlog no longer holds the snapshot source's offset, or the source follows another history", fromSource.meta.ReplID, fromSource.meta.Offset+1))
			fromSource = nil
		}
		if len(fields) != 3 || !replstream.ValidReplID(fields[1]) {
			return fmt.Errorf("bad FULLRESYNC reply %q", truncateText(line, 100))
		}
		off, err := strconv.ParseInt(fields[2], 10, 64)
		if err != nil || off < 0 {
			return fmt.Errorf("bad FULLRESYNC offset %q", fields[2])
		}
		return u.fullSync(ctx, c, addr, fields[1], off)
	case len(fields) > 0 && fields[0] == "+CONTINUE":
		if !ok || u.forceFull {
			return fmt.Errorf("unexpected CONTINUE to PSYNC ? -1")
		}
		if len(fields) == 2 && fields[1] != id.ReplID {
			if !replstream.ValidReplID(fields[1]) {
				return fmt.Errorf("bad CONTINUE reply %q", truncateText(line, 100))
			}
			u.logger.Info("master replication ID changed", "upstream", addr, "replid", fields[1], "replid2", id.ReplID, "offset", next-1)
			if err := u.hist.shiftReplID(fields[1]); err != nil {
				return err
			}
		}
		u.stats.upstreamPartials.Add(1)
		u.logger.Info("partial resync with upstream", "upstream", addr, "next", next)
		return u.stream(ctx, c, addr, nil)
	case len(line) > 0 && line[0] == '-':
		if strings.HasPrefix(string(line), "-NOMASTERLINK") || strings.HasPrefix(string(line), "-LOADING") {
			return fmt.Errorf("%w: %s", errTryLater, line)
		}
		if strings.HasPrefix(string(line), "-NOAUTH") || strings.HasPrefix(string(line), "-NOPERM") {
			return fmt.Errorf("%w: PSYNC answered %s", errAuth, line)
		}
		return fmt.Errorf("%w: %s", errPSYNCRefused, truncateText(line, 200))
	}
	return fmt.Errorf("%w: unexpected reply %q", errPSYNCRefused, truncateText(line, 100))
}

// handshake sends PING, AUTH and the given REPLCONF commands as a stock
// replica does, and returns the replies to the REPLCONFs (errors to them are
// not fatal, as for a stock replica).
func (u *upstreamLink) handshake(c *upstreamConn, replconfs ...[]string) ([][]byte, error) {
	if err := c.write(appendCommand(nil, "PING")); err != nil {
		return nil, fmt.Errorf("send PING: %w", err)
	}
	line, err := c.readLine(handshakeTimeout)
	if err != nil {
		return nil, fmt.Errorf("read PING reply: %w", err)
	}
	if len(line) > 0 && line[0] == '-' && !isAuthError(line) {
		return nil, fmt.Errorf("PING answered %s", truncateText(line, 200))
	}
	var batch []byte
	cfg := u.cfg.get()
	auth := cfg.MasterAuth != ""
	if auth {
		if cfg.MasterUser != "" {
			batch = appendCommand(batch, "AUTH", cfg.MasterUser, cfg.MasterAuth)
		} else {
			batch = appendCommand(batch, "AUTH", cfg.MasterAuth)
		}
	}
	for _, cmd := range replconfs {
		batch = appendCommand(batch, cmd...)
	}
	if err := c.write(batch); err != nil {
		return nil, fmt.Errorf("send handshake: %w", err)
	}
	if auth {
		line, err := c.readLine(handshakeTimeout)
		if err != nil {
			return nil, fmt.Errorf("read AUTH reply: %w", err)
		}
		if len(line) == 0 || line[0] != '+' {
			return nil, fmt.Errorf("%w: AUTH answered %s", errAuth, truncateText(line, 200))
		}
	}
	replies := make([][]byte, len(replconfs))
	for i := range replconfs {
		line, err := c.readLine(handshakeTimeout)
		if err != nil {
			return nil, fmt.Errorf("read handshake reply: %w", err)
		}
		if isAuthError(line) {
			return nil, fmt.Errorf("%w: master requires a password (set masterauth)", errAuth)
		}
		replies[i] = line
	}
	return replies, nil
}

func isAuthError(line []byte) bool {
	s := string(line)
	return strings.HasPrefix(s, "-NOAUTH") || strings.HasPrefix(s, "-NOPERM") || strings.HasPrefix(s, "-ERR operation not permitted")
}

// readReply reads the reply to PSYNC, skipping newline keepalives (each one
// refreshes the timeout).
func (c *upstreamConn) readReply() ([]byte, error) {
	for {
		line, err := c.readLine(c.timeout())
		if err != nil {
			return nil, err
		}
		if len(line) > 0 {
			return line, nil
		}
	}
}

// fullSync receives the snapshot announced by +FULLRESYNC replid offset,
// makes it the relay's history, then streams.
func (u *upstreamLink) fullSync(ctx context.Context, c *upstreamConn, addr, replid string, offset int64) error {
	u.status.set(LinkSync, addr)
	u.logger.Info("full resync from upstream", "upstream", addr, "replid", replid, "offset", offset)
	s, err := u.hist.beginFullSync(replid, offset)
	if err != nil {
		return err
	}
	p, err := c.readPayloadHeader()
	if err != nil {
		u.hist.abortFullSync(s, err)
		return err
	}
	if p.Mark == nil {
		s.setSize(p.Size)
	}
	u.status.mu.Lock()
	u.status.syncTotal, u.status.syncStart = p.Size, time.Now()
	u.status.mu.Unlock()
	u.status.syncRead.Store(0)
	start := time.Now()
	pw := &progressWriter{w: s, n: &u.status.syncRead, also: &u.stats.bytesFromUpstream, total: p.Size, logger: u.logger.With("upstream", addr), what: "receiving snapshot"}
	n, err := replstream.CopyPayload(pw, c.br, p)
	if err != nil {
		err = fmt.Errorf("receive snapshot after %d bytes: %w", n, err)
		u.hist.abortFullSync(s, err)
		return err
	}
	err = keepAliveWhile(c, func() error {
		_, err := u.hist.commitFullSync(s)
		return err
	})
	if err != nil {
		if errors.Is(err, errGuardTripped) {
			return err
		}
		u.hist.abortFullSync(s, err)
		u.forceFull = true
		return err
	}
	u.stats.upstreamFullSyncs.Add(1)
	u.noteSnapshotFrom("master")
	u.forceFull = false
	u.logger.Info("snapshot received", "upstream", addr, "replid", replid, "offset", offset, "bytes", n, "elapsed", time.Since(start).Round(time.Millisecond))
	var ackNow []byte
	if p.Mark != nil {
		// A diskless master starts the stream on an ACK; send one at once.
		ackNow = appendCommand(nil, "REPLCONF", "ACK", strconv.FormatInt(offset, 10))
	}
	return u.stream(ctx, c, addr, ackNow)
}

// keepAliveWhile runs commit (fsync of the snapshot, checks that may wait
// for the parser) while sending the master a newline every second, as a
// Redis replica does while it loads a snapshot
// (replicationSendNewlineToMaster): the master counts it as a sign of life
// and does not drop a replica whose commit outlasts repl-timeout.
func keepAliveWhile(c *upstreamConn, commit func() error) error {
	done := make(chan error, 1)
	go func() { done <- commit() }()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-t.C:
			c.write([]byte("\n")) // a broken link shows up on the next read
		}
	}
}

// progressWriter counts bytes written through it and logs the progress of
// a long transfer every progressEvery: bytes done and total, rate and ETA.
type progressWriter struct {
	w      io.Writer
	n      *atomic.Int64
	also   *atomic.Int64 // optional second counter
	total  int64         // -1 when unknown (EOF-framed transfer)
	logger *slog.Logger
	what   string
	start  time.Time
	last   time.Time
}

const progressEvery = 5 * time.Second

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.count(n)
	return n, err
}

// count records n more bytes, and logs the progress when it is time.
func (p *progressWriter) count(n int) {
	done := p.n.Add(int64(n))
	if p.also != nil {
		p.also.Add(int64(n))
	}
	if now := time.Now(); now.Sub(p.last) >= progressEvery {
		if p.last.IsZero() {
			p.start, p.last = now, now
			return
		}
		p.last = now
		rate := float64(done) / now.Sub(p.start).Seconds()
		args := []any{"bytes", done, "rate_mb_s", fmt.Sprintf("%.1f", rate/1e6)}
		if p.total > 0 && rate > 0 {
			eta := time.Duration(float64(p.total-done) / rate * float64(time.Second))
			args = append(args, "total", p.total, "percent", fmt.Sprintf("%.1f", 100*float64(done)/float64(p.total)), "eta", eta.Round(time.Second))
		}
		p.logger.Info(p.what, args...)
	}
}

// readPayloadHeader reads the $<len> or $EOF:<mark> line, skipping
// keepalives.
func (c *upstreamConn) readPayloadHeader() (replstream.Payload, error) {
	for {
		line, err := c.readLine(c.timeout())
		if err != nil {
			return replstream.Payload{}, fmt.Errorf("read transfer preamble: %w", err)
		}
		p, keepalive, err := replstream.ParsePayloadLine(line)
		if err != nil || !keepalive {
			return p, err
		}
	}
}

// stream appends the command stream to the log until the link fails. It
// ACKs every second, and at once on REPLCONF GETACK.
func (u *upstreamLink) stream(ctx context.Context, c *upstreamConn, addr string, ackNow []byte) error {
	log := u.hist.currentLog()
	_, next := log.Range()
	if u.framer == nil || u.framerLog != log || u.framer.Next() != next {
		// The log always ends on a resume point here: a full sync starts
		// after its snapshot, and cutPartialTail runs after every link.
		u.framer = replstream.NewFramer(next, u.cfg.fixed.Limits)
		u.resume = replstream.NewResumePoint(next)
		u.framerLog = log
	}
	u.status.set(LinkConnected, addr)
	u.streamed = true
	if ackNow != nil {
		if err := c.write(ackNow); err != nil {
			return fmt.Errorf("send ACK: %w", err)
		}
	}

	ackReq := make(chan struct{}, 1)
	ackErr := make(chan error, 1)
	ackCtx, stopAcks := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ackErr <- u.ackLoop(ackCtx, c, log, ackReq)
	}()
	defer func() {
		stopAcks()
		wg.Wait()
	}()

	buf := make([]byte, 256<<10)
	getack := false
	onCmd := func(cmd *replstream.Command) {
		u.hist.tripwire(cmd, u.resume.At())
		u.resume.Add(cmd)
		u.counts.add(cmd.Name)
		if cmd.IsGetAck() {
			getack = true
		}
	}
	defer u.counts.publish(u)
	for {
		n, err := c.br.Read(buf)
		if n > 0 {
			valid, ferr := u.framer.Feed(buf[:n], onCmd)
			if aerr := log.Append(buf[:valid], u.resume.At() == u.framer.Next()); aerr != nil {
				return fmt.Errorf("%w: %w", errLocalWrite, aerr)
			}
			u.stats.bytesFromUpstream.Add(int64(valid))
			u.counts.maybePublish(u, c.br.Buffered() == 0)
			if ferr != nil {
				u.stats.protocolErrors.Add(1)
				u.forceFull = true
				u.framer = nil
				return fmt.Errorf("%w, will full resync: %w", errStreamProtocol, ferr)
			}
			if getack {
				getack = false
				select {
				case ackReq <- struct{}{}:
				default:
				}
			}
		}
		if err != nil {
			select {
			case aerr := <-ackErr:
				if aerr != nil {
					return aerr
				}
			default:
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return errMasterClosed
			}
			return fmt.Errorf("read stream: %w", err)
		}
	}
}

// cutPartialTail drops what the log holds after its last resume point once
// the link is gone: the part of a command, or of a MULTI/EXEC block, that the
// master did not finish sending. A stock replica drops it too and resumes
// from its applied offset (replicationCacheMaster keeps only
// master->reploff), which is also where a promoted replica's history
// branches (its second_repl_offset), so the next PSYNC can continue on any
// of them. Replicas that already received some of the cut bytes are
// disconnected by their cursors and come back from a resume point.
func (u *upstreamLink) cutPartialTail() {
	log := u.hist.currentLog()
	if log == nil {
		return
	}
	cut, err := log.CutToResumePoint()
	switch {
	case errors.Is(err, replstream.ErrClosed):
	case err != nil:
		u.logger.Error("cannot cut the partial command at the end of the log; the next sync will be a full one", "err", err)
		u.forceFull = true
	case cut > 0:
		u.stats.tailCuts.Add(1)
		_, next := log.Range()
		u.logger.Info("dropped an unfinished command from the end of the log", "bytes", cut, "next", next)
	}
}

// ackLoop sends REPLCONF ACK every second, on request (GETACK), and with a
// downstream ACK policy whenever downstream replicas acknowledge more. The
// offset is what the policy allows, never more than the relay has fsynced.
func (u *upstreamLink) ackLoop(ctx context.Context, c *upstreamConn, log *replstream.Log, req <-chan struct{}) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	sent := int64(-1)
	for {
		periodic := false
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			periodic = true
		case <-req:
		case <-u.downstreamAcked:
			if pol := u.cfg.get().AckPolicy; pol.Kind == "" || pol.Kind == "received" {
				continue
			}
		}
		synced, err := log.Sync()
		if err != nil {
			c.nc.Close()
			return fmt.Errorf("sync log: %w", err)
		}
		off := u.ackOffset(synced - 1)
		if off == sent && !periodic {
			continue // nothing new to tell; the 1 s ACK keeps the link alive
		}
		if err := c.write(appendCommand(nil, "REPLCONF", "ACK", strconv.FormatInt(off, 10))); err != nil {
			return nil // the reader sees the broken connection
		}
		sent = off
		u.status.acked.Store(off)
	}
}

// fillStatus fills in the upstream link's part of a Status.
func (u *upstreamLink) fillStatus(st *Status) {
	u.mu.Lock()
	st.MasterAddr = u.master
	st.SnapshotFrom, st.LastFallback = u.source.lastFrom, u.source.lastFallback
	u.mu.Unlock()
	st.LinkState, _, st.LinkSince, st.LastError, st.SyncTotal, st.SyncStart = u.status.get()
	st.SyncRead = u.status.syncRead.Load()
	u.status.mu.Lock()
	st.LastDownReason = u.status.lastReason
	u.status.mu.Unlock()
	if t := u.status.lastIO.Load(); t > 0 {
		st.LastIO = time.Unix(0, t)
	}
	st.AckedUpstream = u.status.acked.Load()
	st.UpstreamCompressed = u.status.compressed.Load()
	u.cmdMu.Lock()
	st.Commands = make(map[string]int64, len(u.commands))
	for name, n := range u.commands {
		st.Commands[name] = n
	}
	u.cmdMu.Unlock()
}
