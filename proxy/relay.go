package proxy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis-relay/redis-relay/replstream"
)

// Config is what the daemon needs to run. Zero values take the defaults
// noted on each field.
type Config struct {
	MasterAddr string // host:port of the upstream; empty: wait for REPLICAOF
	MasterUser string // ACL user for AUTH upstream (masteruser)
	MasterAuth string // password for AUTH upstream (masterauth)

	DataDir      string // snapshot, log segments and state; required
	AnnouncePort int    // REPLCONF listening-port sent upstream; default: the listener's port
	RequirePass  string // password downstream clients must AUTH with; empty: none
	RequireUser  string // user name accepted with RequirePass (besides "default")

	RingSize    int           // bytes of the in-memory backlog ring; default 1 MiB
	SegmentSize int64         // log segment size; default 64 MiB
	ReplTimeout time.Duration // repl-timeout, both directions; default 60 s
	WaitAhead   time.Duration // how long a replica ahead of the relay may wait (with keepalives) for the upstream to resend what it lacks; default 60 s
	MaxClients  int           // downstream connections; default 10000
	// CommandTimeout bounds how long a client may take to send one command
	// once it has started (slow-loris clients); default 10 s.
	CommandTimeout time.Duration
	// IdleTimeout closes a client (not a replica, not a subscriber) silent
	// for this long between commands, as Redis's timeout; 0: never.
	IdleTimeout time.Duration
	// ProtectedMode refuses clients from outside loopback with -DENIED
	// while RequirePass is empty, as Redis's protected-mode yes.
	ProtectedMode bool

	// Snapshot refresh (see refresh.go) and log retention beyond the snapshot.
	RefreshRatio    float64       // refresh when the log since the snapshot exceeds this many times its size; default 1, negative: never
	RefreshMinBytes int64         // but never for less log than this; default 1 GiB (a fork per refresh is not free), negative: no minimum
	RefreshMaxAge   time.Duration // refresh a snapshot older than this; 0: no age limit
	RetainBytes     int64         // keep at least this many bytes of log before the head, even older than the snapshot
	RetainAge       time.Duration // keep log segments written within this long, even older than the snapshot

	AckPolicy AckPolicy // what the relay ACKs upstream (see ack.go); default received

	// Following Sentinel (see sentinel.go): the master of MasterName as the
	// Sentinels at these addresses know it.
	Sentinels        []string
	MasterName       string
	SentinelUser     string // ACL user for the Sentinels; empty: default
	SentinelPassword string
	SentinelTLS      *tls.Config // connect to the Sentinels with TLS; nil: plain TCP

	// The empty-master guard (see guard.go): on by default.
	DisableGuard      bool
	GuardMinKeysRatio float64 // also trip when a new history has fewer than this fraction of the current keys; 0: only when empty

	// SnapshotSource, when set, is a server (a stock replica of the
	// master, or another relay) that the first snapshot and every refresh
	// are taken from instead of the master (see source.go); with
	// SnapshotSourceFallback the master is asked when it is down.
	SnapshotSource         string
	SnapshotSourceFallback bool

	// Compressed relay-to-relay links (compress.go): UpstreamCompression
	// asks an upstream relay for one (no, yes, fastest, default, better,
	// best); NoServeCompression refuses them to relays below.
	UpstreamCompression string
	NoServeCompression  bool

	// Paced full syncs (pacing.go): bytes per second for all full syncs
	// together and for each, and how many run at once; 0: no limit.
	FullSyncBandwidth        int64
	FullSyncReplicaBandwidth int64
	FullSyncMaxConcurrent    int

	// HoldOnCommands names commands (FLUSHALL, FLUSHDB, ...) that stop the
	// stream to replicas just before them until released (see
	// tripwire.go). Empty: off.
	HoldOnCommands []string
	Limits         replstream.Limits

	Logger *slog.Logger

	// UpstreamTLS, when set, makes the relay connect to its master with TLS
	// (as a replica with tls-replication yes). Downstream TLS is a TLS
	// listener passed to Run.
	UpstreamTLS *tls.Config

	// Rewrite, when set, persists the runtime settings (CONFIG REWRITE):
	// directive name to value as written in a config file.
	Rewrite func(settings map[string]string) error

	// Process holds the settings the run command applies around the
	// relay (listeners, TLS files, logging); CONFIG GET reports them.
	Process ProcessConfig

	// crashPoint, when set, is called at the named steps of a history
	// change (see Relay.at); fault tests stop or slow the relay there.
	crashPoint func(point string)
}

func (c *Config) setDefaults() {
	if c.RingSize <= 0 {
		c.RingSize = 1 << 20
	}
	if c.SegmentSize <= 0 {
		c.SegmentSize = 64 << 20
	}
	if c.ReplTimeout <= 0 {
		c.ReplTimeout = 60 * time.Second
	}
	if c.WaitAhead <= 0 {
		c.WaitAhead = 60 * time.Second
	}
	if c.RefreshRatio == 0 {
		c.RefreshRatio = 1
	}
	if c.RefreshMinBytes == 0 {
		c.RefreshMinBytes = 1 << 30
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = 10 * time.Second
	}
	if c.MaxClients <= 0 {
		c.MaxClients = 10000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Relay owns the replication history the relay serves: its identity, the
// newest accepted snapshot, and the log of bytes after it. The upstream link
// is its only writer; downstream sessions read it.
//
// Locks, in the order they nest: stateMu, then mu, then a snapshot's or the
// log's own. cfgMu, clientsMu, psMu and cmdMu are leaves.
type Relay struct {
	cfgMu  sync.RWMutex
	cfg    Config       // guarded by cfgMu: read it through conf(); CONFIG SET replaces it
	fixed  Config       // a copy taken at New, for the fields that never change (DataDir, RingSize, SegmentSize, Limits, AnnouncePort)
	replTO atomic.Int64 // cfg.ReplTimeout, for the hot path
	logger *slog.Logger
	lock   *os.File // flock on the data dir

	// stateMu makes every change of the history's identity, snapshot or
	// log one step: compute the new state.json under mu, write it, then
	// apply it under mu. Held across the file write, never across network
	// I/O. Only its holder changes id, snap and log.
	stateMu sync.Mutex
	// fsyncFile makes a file durable (tests wrap it to observe or slow it).
	fsyncFile func(*os.File) error

	mu   sync.Mutex
	id   replstream.Identity // guarded by mu; ReplID empty before the first sync
	snap *snapshot           // newest accepted snapshot; guarded by mu
	// older snapshots of the same history and log, newest first, kept
	// while the log still holds the stream after them (recovery to a
	// point starts from the newest one before it); guarded by mu
	older    []Snapshot
	log      *replstream.Log                 // log of the current history, snap.log; guarded by mu
	pending  *snapshot                       // being received from upstream; guarded by mu
	hold     *holdState                      // the command tripwire holds replicas before hold.At; guarded by mu
	holdSet  atomic.Pointer[map[string]bool] // HoldOnCommands as a set, for the upstream link
	holding  atomic.Bool                     // hold != nil, for sessions' fast path
	changed  chan struct{}                   // closed and replaced when id, snap or pending change; guarded by mu
	sessions map[*session]struct{}
	master   string // upstream address; guarded by mu
	masterCh chan struct{}

	upstream upstreamStatus
	stats    counters
	bg       sync.WaitGroup // background work: snapshot parsers
	guard    guardState     // guarded by mu
	source   sourceStats    // guarded by mu
	syncPace pacer          // the full-sync-bandwidth-limit shared by every full sync
	slots    syncSlots      // full syncs running and queued (full-sync-max-concurrent)

	clientsMu    sync.Mutex
	clients      map[*client]struct{} // every downstream connection; guarded by clientsMu
	nextClientID atomic.Int64
	shutdown     context.CancelFunc // ends Run (SHUTDOWN); set by Run

	downstreamAcked chan struct{} // buffered(1): a replica ACKed more

	psMu     sync.Mutex
	channels map[string]map[*client]struct{} // pub/sub subscribers; guarded by psMu (as is client.subs)

	cmdMu    sync.Mutex
	commands map[string]int64 // relayed commands by lower-case name, published by the upstream link; guarded by cmdMu
}

// counters are monotonic and read without locks.
type counters struct {
	fullSyncsServed    atomic.Int64
	partialSyncsServed atomic.Int64
	partialSyncsErr    atomic.Int64
	upstreamFullSyncs  atomic.Int64
	upstreamPartials   atomic.Int64
	bytesFromUpstream  atomic.Int64
	bytesToReplicas    atomic.Int64
	disconnects        map[CloseReason]*atomic.Int64 // keys fixed at start
	connections        atomic.Int64
	rejectedConns      atomic.Int64
	protocolErrors     atomic.Int64
	snapshotsRejected  atomic.Int64
	parseErrors        atomic.Int64
	guardTrips         atomic.Int64
	forksAvoided       atomic.Int64 // snapshots taken from the snapshot source, the master continuing after them
	zIn, zOut          linkBytes    // compressed links: from the upstream, to replicas
	pacedBytes         atomic.Int64 // snapshot bytes sent under a full-sync bandwidth limit
	paceWait           atomic.Int64 // nanoseconds full syncs waited for the bandwidth limits
	sourceFallbacks    atomic.Int64
	holdTrips          atomic.Int64
	refreshes          atomic.Int64
	refreshFailures    atomic.Int64
	tailCuts           atomic.Int64 // unfinished commands dropped after a link loss
}

// diskState is state.json: which files in the data dir form the history.
type diskState struct {
	Identity replstream.Identity `json:"identity"`
	Snapshot Snapshot            `json:"snapshot"`
	LogDir   string              `json:"log_dir"`
	Older    []Snapshot          `json:"older_snapshots,omitempty"` // newest first
	Hold     *holdState          `json:"hold,omitempty"`            // the command tripwire holds replicas
}

const stateFile = "state.json"

// New opens the data dir and recovers the history kept there, if any.
func New(cfg Config) (*Relay, error) {
	cfg.setDefaults()
	if cfg.DataDir == "" {
		return nil, errors.New("data dir is required")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(cfg.DataDir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("data dir %s is in use by another process: %w", cfg.DataDir, err)
	}
	r := &Relay{
		cfg: cfg, logger: cfg.Logger, lock: lock,
		changed: make(chan struct{}), sessions: make(map[*session]struct{}), clients: make(map[*client]struct{}),
		downstreamAcked: make(chan struct{}, 1),
		channels:        make(map[string]map[*client]struct{}),
		master:          cfg.MasterAddr, masterCh: make(chan struct{}),
		fsyncFile: (*os.File).Sync,
	}
	r.fixed = cfg
	r.replTO.Store(int64(cfg.ReplTimeout))
	holdSet := holdCommands(cfg.HoldOnCommands)
	r.holdSet.Store(&holdSet)
	r.stats.disconnects = make(map[CloseReason]*atomic.Int64, len(closeReasons))
	for _, reason := range closeReasons {
		r.stats.disconnects[reason] = new(atomic.Int64)
	}
	r.upstream.set(linkDown, "")
	r.upstream.syncTotal = -1
	if err := r.recover(); err != nil {
		lock.Close()
		return nil, err
	}
	return r, nil
}

// conf returns the current configuration.
func (r *Relay) conf() Config {
	r.cfgMu.RLock()
	defer r.cfgMu.RUnlock()
	return r.cfg
}

// at marks a step where a crash must leave the data dir consistent:
// "commit" (a snapshot fully received, before its checks and fsync),
// "refresh-commit" (a refreshed snapshot checked, before the swap),
// "state-written" (state.json names a new snapshot or log, before the old
// files go) and "shift-written" (state.json holds a new replid).
func (r *Relay) at(point string) {
	if f := r.fixed.crashPoint; f != nil {
		f(point)
	}
}

// timeout is repl-timeout.
func (r *Relay) timeout() time.Duration { return time.Duration(r.replTO.Load()) }

func (r *Relay) path(name string) string { return filepath.Join(r.fixed.DataDir, name) }

func (r *Relay) logOptions() replstream.LogOptions {
	return replstream.LogOptions{RingSize: r.fixed.RingSize, SegmentSize: r.fixed.SegmentSize, Limits: r.fixed.Limits}
}

// recover loads state.json and the files it names. Anything it cannot trust
// is discarded with a log line; the relay then full-syncs from upstream.
func (r *Relay) recover() error {
	raw, err := os.ReadFile(r.path(stateFile))
	if errors.Is(err, os.ErrNotExist) {
		r.removeStrays("")
		return nil
	}
	if err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	var st diskState
	if err := json.Unmarshal(raw, &st); err != nil || st.Snapshot.File == "" || !replstream.ValidReplID(st.Identity.ReplID) {
		r.logger.Warn("state file unreadable, starting without history", "path", r.path(stateFile), "err", err)
		r.removeStrays("")
		return nil
	}
	snapPath := r.path(st.Snapshot.File)
	fi, err := os.Stat(snapPath)
	if err != nil || fi.Size() != st.Snapshot.Size {
		r.logger.Warn("snapshot missing or of the wrong size, starting without history", "path", snapPath, "want", st.Snapshot.Size, "err", err)
		r.removeStrays("")
		return nil
	}
	if err := r.verifySnapshotFile(snapPath, st.Snapshot.ReplID, st.Snapshot.Offset); err != nil {
		r.logger.Warn("snapshot rejected, starting without history", "path", snapPath, "err", err)
		r.removeStrays("")
		return nil
	}
	start := st.Snapshot.Offset + 1
	logDir := st.LogDir
	log, repaired, err := replstream.OpenLog(r.path(logDir), r.logOptions())
	if err == nil {
		if first, next := log.Range(); first > start || next < start {
			err = fmt.Errorf("log holds [%d, %d), snapshot needs %d", first, next, start)
			log.Close()
		}
	}
	if err != nil {
		r.logger.Warn("log unusable, keeping the snapshot and starting a new log after it", "path", r.path(logDir), "err", err)
		logDir = newLogDirName()
		if log, err = replstream.CreateLog(r.path(logDir), start, r.logOptions()); err != nil {
			return err
		}
		st.LogDir = logDir
		r.stateMu.Lock()
		err := r.writeState(st)
		r.stateMu.Unlock()
		if err != nil {
			return err
		}
	} else if repaired != "" {
		r.logger.Warn("log repaired", "path", r.path(logDir), "what", repaired)
	}
	r.id = st.Identity
	r.hold = st.Hold
	r.holding.Store(st.Hold != nil)
	r.snap = completeSnapshot(st.Snapshot, snapPath)
	r.snap.log = log
	r.log = log
	keep := []string{st.Snapshot.File}
	for _, o := range st.Older {
		if fi, err := os.Stat(r.path(o.File)); err == nil && fi.Size() == o.Size {
			r.older = append(r.older, o)
			keep = append(keep, o.File)
		}
	}
	r.removeStrays(logDir, keep...)
	first, next := log.Range()
	r.logger.Info("history recovered", "replid", r.id.ReplID, "snapshot_offset", st.Snapshot.Offset, "first", first, "next", next)
	// A crash between a refresh and its trim leaves segments older than
	// the snapshot that retention does not keep.
	if err := r.trimLog(); err != nil {
		r.logger.Warn("trim log after recovery", "err", err)
	}
	return nil
}

// removeStrays deletes snapshot files and log dirs other than the ones named.
func (r *Relay) removeStrays(keepLog string, keepSnaps ...string) {
	ents, _ := os.ReadDir(r.fixed.DataDir)
	for _, e := range ents {
		name := e.Name()
		if name == keepLog || slices.Contains(keepSnaps, name) || slices.Contains(keepSnaps, strings.TrimSuffix(name, ".json")) {
			continue
		}
		if strings.HasPrefix(name, "snapshot-") || strings.HasPrefix(name, "log-") || strings.HasPrefix(name, stateFile+".tmp") {
			if err := os.RemoveAll(r.path(name)); err != nil {
				r.logger.Warn("remove stale file", "path", r.path(name), "err", err)
			}
		}
	}
}

// writeState replaces state.json with st: a temporary file, fsynced, renamed
// over it, and the directory fsynced. Caller holds stateMu.
func (r *Relay) writeState(st diskState) error {
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(r.fixed.DataDir, stateFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	tmp := f.Name()
	if _, err := f.Write(raw); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write state: %w", err)
	}
	if err := r.fsyncFile(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("sync state: %w", err)
	}
	f.Close()
	if err := os.Rename(tmp, r.path(stateFile)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename state: %w", err)
	}
	return syncDirectory(r.fixed.DataDir)
}

func syncDirectory(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func newLogDirName() string { return "log-" + replstream.RandomHex40()[:12] }

func logDirName(l *replstream.Log) string { return filepath.Base(l.Dir()) }

// broadcast wakes everyone waiting for a change. Caller holds mu.
func (r *Relay) broadcast() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// Close releases the data dir. Call it after Run has returned.
func (r *Relay) Close() error {
	r.bg.Wait()
	r.mu.Lock()
	log := r.log
	r.mu.Unlock()
	var err error
	if log != nil {
		_, serr := log.Sync()
		err = errors.Join(serr, log.Close())
	}
	return errors.Join(err, r.lock.Close())
}

// Run runs the upstream link and serves downstream connections on the
// listeners (plain TCP, or TLS from tls.NewListener) until ctx ends. The
// first listener's port is announced upstream unless AnnouncePort is set.
func (r *Relay) Run(ctx context.Context, lns ...net.Listener) error {
	if len(lns) == 0 {
		return errors.New("no listener")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.mu.Lock()
	r.shutdown = cancel
	r.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		r.followSentinels(ctx)
	}()
	go func() {
		defer wg.Done()
		r.runUpstream(ctx, listenerPort(lns[0]))
	}()
	go func() {
		defer wg.Done()
		r.refreshLoop(ctx)
	}()
	errs := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { errs <- r.serve(ctx, ln) }()
	}
	var err error
	for range lns {
		if e := <-errs; e != nil && err == nil {
			err = e
			cancel()
		}
	}
	cancel()
	wg.Wait()
	return err
}
