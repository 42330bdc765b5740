package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/proxy/history"
	"github.com/redis-relay/redis-relay/proxy/internal/wire"
	"github.com/redis-relay/redis-relay/proxy/settings"
	"github.com/redis-relay/redis-relay/replstream"
)

// Link is the relay as a replica: the connection to its master
// (handshake, PSYNC, the stream appended to the history's log, ACKs), the
// refresh connection, and Sentinel following. It is the only appender of
// the history's log.
//
// mu is a leaf lock, as is cmdMu.
type Link struct {
	cfg    *settings.Live
	hist   *history.Store
	logger *slog.Logger
	stats  *counters

	mu       sync.Mutex
	master   string        // upstream address; guarded by mu
	masterCh chan struct{} // closed and replaced when master changes; guarded by mu
	source   sourceStats   // guarded by mu
	asked    refreshAsks   // refreshes asked for by tools (refresh.go); guarded by mu
	shard    ClusterShard  // the cluster shard followed (clusterfollow.go); guarded by mu

	linkLost chan struct{} // buffered(1): the link to the master went down (cluster following asks at once)

	status          linkStatus
	acks            AckSource     // downstream replicas' ACKs, for downstream ACK policies; set before Run
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

// New makes the link for the history hist; Run starts it.
func New(cfg *settings.Live, hist *history.Store, logger *slog.Logger) *Link {
	u := &Link{
		cfg: cfg, hist: hist, stats: newCounters(), logger: logger,
		master: cfg.Fixed().MasterAddr, masterCh: make(chan struct{}),
		asked:           refreshAsks{ended: make(chan struct{}), wake: make(chan struct{}, 1)},
		downstreamAcked: make(chan struct{}, 1),
		linkLost:        make(chan struct{}, 1),
	}
	u.status.set(LinkConnect, "")
	u.status.syncTotal = -1
	return u
}

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

// current is the link's state.
func (u *linkStatus) current() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.state
}

func (u *linkStatus) get() (state, addr string, since time.Time, lastErr string, syncTotal int64, syncStart time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.state, u.addr, u.since, u.lastErr, u.syncTotal, u.syncStart
}

// MasterAddr returns the upstream address and a channel closed when it changes.
func (u *Link) MasterAddr() (string, <-chan struct{}) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.master, u.masterCh
}

// SetMaster re-points the upstream link (REPLICAOF).
func (u *Link) SetMaster(addr string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.master == addr {
		return
	}
	u.master = addr
	close(u.masterCh)
	u.masterCh = make(chan struct{})
}

// Run keeps a link to the master until ctx ends: connect, handshake,
// PSYNC, stream; on failure retry with backoff, partial resync first. port
// is announced as the relay's listening port unless AnnouncePort is set.
func (u *Link) Run(ctx context.Context, port int) {
	u.port = port
	if u.cfg.Fixed().AnnouncePort > 0 {
		u.port = u.cfg.Fixed().AnnouncePort
	}
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		addr, moved := u.MasterAddr()
		if addr == "" {
			u.status.set(LinkNone, "")
			select {
			case <-moved:
			case <-ctx.Done():
			}
			continue
		}
		select {
		case <-u.hist.GuardHold():
		default:
			u.status.set(LinkNone, addr)
			select {
			case <-u.hist.GuardHold():
			case <-moved:
				u.hist.DiscardHeld()
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
		select {
		case u.linkLost <- struct{}{}:
		default:
		}
		phase := u.status.current()
		u.cutPartialTail() // before INFO shows the link down, so its offset never goes back
		u.status.set(LinkConnect, addr)
		if ctx.Err() != nil {
			return
		}
		reason := linkDownReason(err, phase)
		select {
		case <-moved:
			reason = LinkDownRepointed
		default:
		}
		u.stats.linkDowns[reason].Add(1)
		u.status.mu.Lock()
		u.status.lastErr, u.status.lastReason = fmt.Sprint(err), reason
		u.status.mu.Unlock()
		if reason == LinkDownRepointed {
			u.logger.Info("upstream re-pointed", "upstream", addr, "reason", reason)
			backoff = 0
			continue
		}
		switch {
		case errors.Is(err, errLocalWrite):
			backoff = min(max(2*backoff, time.Second), 5*time.Second)
		case u.streamed, errors.Is(err, history.ErrGuardTripped):
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

// connect runs one connection to the master at addr: an optional first
// snapshot from the snapshot source, the handshake, PSYNC, then a full
// sync or the stream.
func (u *Link) connect(ctx context.Context, addr string) (err error) {
	u.streamed = false
	// Without a history, the first snapshot comes from the snapshot source
	// when there is one (source.go); it becomes the history only if the
	// master continues after it.
	var fromSource *history.SnapshotFile
	src := u.cfg.Get().SnapshotSource
	if _, _, ok := u.hist.Position(); src != "" && (!ok || u.forceFull) {
		// A snapshot from the source (a fork there, a whole transfer) is
		// thrown away unless the master takes the PSYNC after it: first
		// make sure the master answers and accepts the handshake.
		u.status.set(LinkConnecting, addr)
		if err := u.probeMaster(ctx, addr); err != nil {
			return fmt.Errorf("master not ready, no snapshot asked of the source: %w", err)
		}
		u.status.set(LinkSync, addr)
		s, err := u.snapshotFromSource(ctx, sourcePeer(u.cfg.Get()))
		switch {
		case err == nil:
			fromSource = s
		case ctx.Err() != nil:
			return ctx.Err()
		case !u.cfg.Get().SnapshotSourceFallback:
			return fmt.Errorf("%w: %s: %v", errSourceDown, src, err)
		default:
			u.sourceFallback(fmt.Sprintf("snapshot source %s: %v", src, err))
		}
	}
	defer func() {
		if fromSource != nil {
			u.hist.AbortFullSync(fromSource, fmt.Errorf("not continued by the master: %v", err))
		}
	}()
	u.status.set(LinkConnecting, addr)
	c, err := u.dial(ctx, masterPeer(u.cfg.Get(), addr), &u.status)
	if err != nil {
		return err
	}
	defer c.close()

	u.status.set(LinkHandshake, addr)
	capas := []string{"REPLCONF", "capa", "eof", "capa", "psync2"}
	level, compress, _ := settings.CompressionLevel(u.cfg.Get().UpstreamCompression)
	if compress {
		// A relay upstream may answer with a compressed link; a stock
		// master ignores the capability and refuses the level option,
		// which a handshake takes as a stock replica does.
		capas = append(capas, "capa", wire.CapaZstd)
	}
	// As a stock replica: the port, the address when one is announced
	// (replica-announce-ip; the master lists it, and Sentinel reads it
	// there), then the capabilities.
	replconfs := [][]string{{"REPLCONF", "listening-port", strconv.Itoa(u.port)}}
	if ip := u.cfg.Get().AnnounceIP; ip != "" {
		replconfs = append(replconfs, []string{"REPLCONF", "ip-address", ip})
	}
	replconfs = append(replconfs, capas)
	if compress {
		replconfs = append(replconfs, []string{"REPLCONF", wire.ZstdLevelOption, wire.LevelName(level)})
	}
	if _, err := u.handshake(c, replconfs...); err != nil {
		return err
	}
	id, next, ok := u.hist.Position()
	if ok && !u.forceFull && fromSource == nil {
		if next, err = u.alignToBranch(c, addr, id.ReplID, next); err != nil {
			return err
		}
	}
	psync := []string{"PSYNC", "?", "-1"}
	switch {
	case fromSource != nil:
		psync = []string{"PSYNC", fromSource.Meta().ReplID, strconv.FormatInt(fromSource.Meta().Offset+1, 10)}
	case ok && !u.forceFull:
		psync = []string{"PSYNC", id.ReplID, strconv.FormatInt(next, 10)}
	}
	if err := c.write(resp.AppendCommand(nil, psync...)); err != nil {
		return fmt.Errorf("send PSYNC: %w", err)
	}
	line, err := c.readReply()
	if err != nil {
		return fmt.Errorf("read PSYNC reply: %w", err)
	}
	fields := strings.Fields(string(line))
	if n := len(fields); compress && n >= 2 && (fields[0] == "+FULLRESYNC" || fields[0] == "+CONTINUE") && fields[n-1] == wire.CompressionWord {
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
			u.hist.AbortFullSync(s, errors.New("bad CONTINUE reply"))
			return fmt.Errorf("bad CONTINUE reply %q", resp.Excerpt(line, 100))
		}
		if _, err := u.hist.CommitFullSync(s); err != nil {
			if !errors.Is(err, history.ErrGuardTripped) {
				u.hist.AbortFullSync(s, err)
			}
			return err
		}
		if len(fields) == 2 && !strings.EqualFold(fields[1], s.Meta().ReplID) {
			if err := u.hist.ShiftReplID(fields[1]); err != nil {
				return err
			}
		}
		u.forceFull = false
		u.stats.forksAvoided.Add(1)
		u.stats.upstreamPartials.Add(1)
		u.noteSnapshotFrom(src)
		u.logger.Info("master continued after the snapshot source's snapshot: no fork on the master", "upstream", addr, "source", src, "next", s.Meta().Offset+1)
		return u.stream(ctx, c, addr, nil)
	case len(fields) > 0 && fields[0] == "+FULLRESYNC":
		if fromSource != nil {
			u.hist.AbortFullSync(fromSource, errors.New("the master answered FULLRESYNC"))
			u.sourceFallback(fmt.Sprintf("the master answered FULLRESYNC to PSYNC %s %d: its backlog no longer holds the snapshot source's offset, or the source follows another history", fromSource.Meta().ReplID, fromSource.Meta().Offset+1))
			fromSource = nil
		}
		if len(fields) != 3 || !replstream.ValidReplID(fields[1]) {
			return fmt.Errorf("bad FULLRESYNC reply %q", resp.Excerpt(line, 100))
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
				return fmt.Errorf("bad CONTINUE reply %q", resp.Excerpt(line, 100))
			}
			u.logger.Info("master replication ID changed", "upstream", addr, "replid", fields[1], "replid2", id.ReplID, "offset", next-1)
			if err := u.hist.ShiftReplID(fields[1]); err != nil {
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
		return fmt.Errorf("%w: %s", errPSYNCRefused, resp.Excerpt(line, 200))
	}
	return fmt.Errorf("%w: unexpected reply %q", errPSYNCRefused, resp.Excerpt(line, 100))
}

// probeMaster dials the master and runs the handshake (PING, AUTH,
// REPLCONF), then hangs up: a master that is down, refuses the
// credentials or is loading fails here, with the error the link would
// have met.
func (u *Link) probeMaster(ctx context.Context, addr string) error {
	c, err := u.dial(ctx, masterPeer(u.cfg.Get(), addr), &u.status)
	if err != nil {
		return err
	}
	defer c.close()
	u.status.set(LinkHandshake, addr)
	_, err = u.handshake(c, []string{"REPLCONF", "capa", "eof", "capa", "psync2"})
	return err
}

// fullSync receives the snapshot announced by +FULLRESYNC replid offset,
// makes it the relay's history, then streams.
func (u *Link) fullSync(ctx context.Context, c *upstreamConn, addr, replid string, offset int64) error {
	u.status.set(LinkSync, addr)
	u.logger.Info("full resync from upstream", "upstream", addr, "replid", replid, "offset", offset)
	s, err := u.hist.BeginFullSync(replid, offset)
	if err != nil {
		return err
	}
	p, err := c.readPayloadHeader()
	if err != nil {
		u.hist.AbortFullSync(s, err)
		return err
	}
	if p.Mark == nil {
		s.SetSize(p.Size)
	}
	u.status.mu.Lock()
	u.status.syncTotal, u.status.syncStart = p.Size, time.Now()
	u.status.mu.Unlock()
	u.status.syncRead.Store(0)
	start := time.Now()
	pw := &wire.ProgressWriter{W: s, N: &u.status.syncRead, Also: &u.stats.bytesFromUpstream, Total: p.Size, Logger: u.logger.With("upstream", addr), What: "receiving snapshot"}
	n, err := replstream.CopyPayload(pw, c.br, p)
	if err != nil {
		err = fmt.Errorf("receive snapshot after %d bytes: %w", n, err)
		u.hist.AbortFullSync(s, err)
		return err
	}
	err = keepAliveWhile(c, func() error {
		_, err := u.hist.CommitFullSync(s)
		return err
	})
	if err != nil {
		if errors.Is(err, history.ErrGuardTripped) {
			return err
		}
		u.hist.AbortFullSync(s, err)
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
		ackNow = resp.AppendCommand(nil, "REPLCONF", "ACK", strconv.FormatInt(offset, 10))
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

// Status is the upstream link's part of the relay's status.
type Status struct {
	MasterAddr         string // replicaof: where the link connects
	SnapshotFrom       string // where the newest snapshot came from: "master" or the source; empty before one
	LastFallback       string // why the master's own snapshot was last taken instead of the source's
	LinkState          string // one of the Link* states
	LinkSince          time.Time
	LastError          string
	SyncTotal          int64 // bytes of the snapshot being received, -1 while unknown
	SyncRead           int64
	SyncStart          time.Time
	LastDownReason     LinkDownReason // why the link last went down; empty before it has
	LastIO             time.Time      // the last byte read; zero before any
	AckedUpstream      int64
	UpstreamCompressed bool
	Commands           map[string]int64 // commands relayed, by lower-case name
	CommandsRelayed    int64            // every command relayed; Commands may trail it by a second

	UpstreamFullSyncs  int64
	UpstreamPartials   int64
	BytesFromUpstream  int64
	LinkDowns          map[LinkDownReason]int64
	ProtocolErrors     int64 // malformed replies from upstream
	ForksAvoided       int64
	SourceFallbacks    int64
	SourceUnproven     int64 // source snapshots refused: repl-id/repl-offset missing or not as announced
	Refreshes          int64
	RefreshFailures    int64
	TailCuts           int64
	BranchCuts         int64
	ClusterShard       ClusterShard // the cluster shard followed; zero without cluster-seeds
	CompressedInStream int64
	CompressedInWire   int64
}

// Status reports the upstream link's state.
func (u *Link) Status() Status {
	var st Status
	u.mu.Lock()
	st.MasterAddr = u.master
	st.SnapshotFrom, st.LastFallback = u.source.lastFrom, u.source.lastFallback
	st.ClusterShard = u.shard
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
	c := u.stats
	st.UpstreamFullSyncs = c.upstreamFullSyncs.Load()
	st.UpstreamPartials = c.upstreamPartials.Load()
	st.BytesFromUpstream = c.bytesFromUpstream.Load()
	st.CommandsRelayed = c.commandsRelayed.Load()
	st.LinkDowns = make(map[LinkDownReason]int64, len(c.linkDowns))
	for k, n := range c.linkDowns {
		st.LinkDowns[k] = n.Load()
	}
	st.ProtocolErrors = c.protocolErrors.Load()
	st.ForksAvoided = c.forksAvoided.Load()
	st.SourceFallbacks = c.sourceFallbacks.Load()
	st.SourceUnproven = c.sourceUnproven.Load()
	st.Refreshes = c.refreshes.Load()
	st.RefreshFailures = c.refreshFailures.Load()
	st.TailCuts = c.tailCuts.Load()
	st.BranchCuts = c.branchCuts.Load()
	st.CompressedInStream, st.CompressedInWire = c.zIn.Stream.Load(), c.zIn.Wire.Load()
	return st
}

// counters are the upstream link's monotonic counts, read without locks.
type counters struct {
	upstreamFullSyncs atomic.Int64
	upstreamPartials  atomic.Int64
	bytesFromUpstream atomic.Int64
	linkDowns         map[LinkDownReason]*atomic.Int64 // keys fixed at start
	protocolErrors    atomic.Int64
	forksAvoided      atomic.Int64 // snapshots taken from the snapshot source, the master continuing after them
	sourceFallbacks   atomic.Int64
	sourceUnproven    atomic.Int64 // source snapshots refused: repl-id/repl-offset missing or not as announced
	refreshes         atomic.Int64
	refreshFailures   atomic.Int64
	tailCuts          atomic.Int64   // unfinished commands dropped after a link loss
	branchCuts        atomic.Int64   // data-free tails dropped to continue on a promoted replica
	zIn               wire.LinkBytes // the compressed link from the upstream
	commandsRelayed   atomic.Int64   // commands in the stream, counted as they are appended
}

// Relayed reads two of Status's counters without a lock, for sampling
// rates: the commands relayed and the bytes read from upstream.
func (u *Link) Relayed() (commands, bytes int64) {
	return u.stats.commandsRelayed.Load(), u.stats.bytesFromUpstream.Load()
}

func newCounters() *counters {
	c := &counters{linkDowns: make(map[LinkDownReason]*atomic.Int64)}
	for _, r := range LinkDownReasons() {
		c.linkDowns[r] = new(atomic.Int64)
	}
	return c
}
