package proxy

import (
	"crypto/tls"
	"log/slog"
	"sync"
	"sync/atomic"
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
	// The snapshot source's own credentials and TLS: the master's
	// (MasterUser, MasterAuth) are sent to the master only.
	SnapshotSourceUser     string
	SnapshotSourcePassword string
	SnapshotSourceTLS      *tls.Config // nil: plain TCP

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
	// change (see history.at); fault tests stop or slow the relay there.
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

// liveConfig is the configuration as it is now. CONFIG SET replaces it
// whole; every part reads it through get, never keeping a copy across a
// wait.
type liveConfig struct {
	mu     sync.RWMutex
	cfg    Config       // guarded by mu
	fixed  Config       // a copy taken at New, for the fields that never change (DataDir, RingSize, SegmentSize, Limits, AnnouncePort)
	replTO atomic.Int64 // cfg.ReplTimeout, for the hot path
}

func newLiveConfig(cfg Config) *liveConfig {
	l := &liveConfig{cfg: cfg, fixed: cfg}
	l.replTO.Store(int64(cfg.ReplTimeout))
	return l
}

// get returns the current configuration.
func (l *liveConfig) get() Config {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.cfg
}

// update applies change to a copy of the configuration and, when it
// returns nil, makes the copy current. change runs under mu: it must not
// block.
func (l *liveConfig) update(change func(next *Config) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := l.cfg
	if err := change(&next); err != nil {
		return err
	}
	l.cfg = next
	l.replTO.Store(int64(next.ReplTimeout))
	return nil
}

// timeout is repl-timeout.
func (l *liveConfig) timeout() time.Duration { return time.Duration(l.replTO.Load()) }
