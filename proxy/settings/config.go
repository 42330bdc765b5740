package settings

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/redis-relay/redis-relay/replstream"
)

// Config is what the daemon needs to run. Each field is a setting of the
// table (table.go), named in its comment; the table holds its default. A
// field marked "0: the default" takes its setting's default when a Config
// written in code leaves it at zero (FillDefaults); the config file and
// flags start from Default, where every setting has its default already.
type Config struct {
	MasterAddr string // host:port of the upstream; empty: wait for REPLICAOF
	MasterUser string // ACL user for AUTH upstream (masteruser)
	MasterAuth string // password for AUTH upstream (masterauth)

	DataDir      string // snapshot, log segments and state; required
	AnnouncePort int    // REPLCONF listening-port sent upstream; default: the listener's port
	RequirePass  string // password downstream clients must AUTH with; empty: none
	RequireUser  string // user name accepted with RequirePass (besides "default")
	AnnounceIP   string // REPLCONF ip-address sent upstream (replica-announce-ip); empty: none
	// ReplicaAnnounced is INFO's replica_announced (replica-announced):
	// off, Sentinel leaves the relay out of SENTINEL REPLICAS, so clients
	// that read from replicas never pick it, and still re-points it.
	ReplicaAnnounced bool

	// Users are the ACL users of the config file's user lines, each the
	// line's arguments: the name, then the rules (package proxy/acl).
	// ACLFile, when set, is the ACL file that holds the users instead
	// (aclfile); the two exclude each other, as in Redis. The default user
	// takes RequirePass as its password whenever it is set.
	Users   [][]string
	ACLFile string

	RingSize    int           // repl-backlog-size: bytes of the in-memory backlog ring; 0: the default
	SegmentSize int64         // segment-size: log segment size; 0: the default
	ReplTimeout time.Duration // repl-timeout, both directions; 0: the default
	WaitAhead   time.Duration // how long a replica ahead of the relay may wait (with keepalives) for the upstream to resend what it lacks (wait-ahead); 0: the default
	MaxClients  int           // maxclients: downstream connections; 0: the default
	// CommandTimeout bounds how long a client may take to send one command
	// once it has started (slow-loris clients): command-timeout; 0: the
	// default.
	CommandTimeout time.Duration
	// IdleTimeout closes a client (not a replica, not a subscriber) silent
	// for this long between commands, as Redis's timeout; 0: never.
	IdleTimeout time.Duration
	// ProtectedMode refuses clients from outside loopback with -DENIED
	// while RequirePass is empty, as Redis's protected-mode yes. The config
	// file's default is on; a Config written in code has it off unless set.
	ProtectedMode bool

	// Snapshot refresh (proxy/upstream/refresh.go) and log retention beyond the snapshot.
	RefreshRatio    float64       // refresh when the log since the snapshot exceeds this many times its size (refresh-ratio); 0: the default, negative: never
	RefreshMinBytes int64         // but never for less log than this (refresh-min-size: a fork per refresh is not free); 0: the default, negative: no minimum
	RefreshMaxAge   time.Duration // refresh a snapshot older than this; 0: no age limit
	RDBOnlyMaxAge   time.Duration // the oldest snapshot a tool's rdb-only SYNC is given as is; older ones are refreshed first (rdbonly.go)
	RetainBytes     int64         // keep at least this many bytes of log before the head, even older than the snapshot
	RetainAge       time.Duration // keep log segments written within this long, even older than the snapshot

	AckPolicy AckPolicy // ack-policy: what the relay ACKs upstream; zero: received

	// Following Sentinel (proxy/upstream/sentinel.go): the master of MasterName as the
	// Sentinels at these addresses know it.
	Sentinels        []string
	MasterName       string
	SentinelUser     string // ACL user for the Sentinels; empty: default
	SentinelPassword string
	SentinelTLS      *tls.Config // connect to the Sentinels with TLS; nil: plain TCP

	// Following one shard of a Redis Cluster
	// (proxy/upstream/clusterfollow.go, package proxy/cluster): the master of the shard that serves
	// ClusterShardSlot, as the nodes at ClusterSeeds (and the nodes they
	// name) describe the cluster, asked every ClusterPollInterval and at
	// once when the link to the master drops. The nodes are asked with
	// the master's credentials and TLS. Excludes MasterAddr and Sentinels.
	ClusterSeeds        []string
	ClusterShardSlot    int
	ClusterPollInterval time.Duration // cluster-poll-interval; 0: the default

	// The empty-master guard (proxy/history/guard.go): on by default.
	DisableGuard      bool
	GuardMinKeysRatio float64 // also trip when a new history has fewer than this fraction of the current keys; 0: only when empty

	// SnapshotSource, when set, is a server (a stock replica of the
	// master, or another relay) that the first snapshot and every refresh
	// are taken from instead of the master (proxy/upstream/source.go); with
	// SnapshotSourceFallback the master is asked when it is down.
	SnapshotSource         string
	SnapshotSourceFallback bool
	// The snapshot source's own credentials and TLS: the master's
	// (MasterUser, MasterAuth) are sent to the master only.
	SnapshotSourceUser     string
	SnapshotSourcePassword string
	SnapshotSourceTLS      *tls.Config // nil: plain TCP

	// Compressed relay-to-relay links (proxy/internal/wire): UpstreamCompression
	// asks an upstream relay for one (no, yes, fastest, default, better,
	// best); NoServeCompression refuses them to relays below.
	UpstreamCompression string
	NoServeCompression  bool

	// Paced full syncs (proxy/downstream/pacing.go): bytes per second for all full syncs
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

	// CrashPoint, when set, is called at the named steps of a history
	// change; fault tests stop or slow the relay there. Nil in production.
	CrashPoint func(point string)
}
