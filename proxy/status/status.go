package status

import (
	"time"

	"github.com/redis-relay/redis-relay/proxy/acl"
	"github.com/redis-relay/redis-relay/proxy/downstream"
	"github.com/redis-relay/redis-relay/proxy/history"
	"github.com/redis-relay/redis-relay/proxy/upstream"
	"github.com/redis-relay/redis-relay/replstream"
)

// Status is the relay's state for INFO, ROLE and metrics. Each part fills
// in its own fields under its own lock, so the fields of one part agree
// with each other; fields of different parts may be a moment apart.
type Status struct {
	Identity     replstream.Identity
	HasHistory   bool
	Log          replstream.LogStats
	Snapshot     history.Snapshot
	SyncPending  bool // a snapshot is arriving from upstream
	GuardTripped bool // the empty-master guard holds back a snapshot
	GuardReason  string
	GuardSince   time.Time
	// The reach of point-in-time recovery (redis-relay recover): from the
	// oldest snapshot the log still follows to the newest byte held.
	RecoverOldestOffset int64
	RecoverOldestTime   time.Time
	RecoverNewestTime   time.Time // when the newest byte arrived; zero before any
	HoldActive          bool      // the command tripwire holds replicas before HoldAt
	HoldCommand         string    // the command that tripped it
	HoldAt              int64
	HoldSince           time.Time
	HoldSnapshot        bool  // a full sync from upstream is held back with the hold
	HoldSnapshotOffset  int64 // its offset
	LinkState           string
	MasterAddr          string
	LinkSince           time.Time
	LastIO              time.Time
	LastError           string
	SyncTotal           int64
	SyncRead            int64
	SyncStart           time.Time
	AckedUpstream       int64

	FullSyncsServed     int64
	PartialSyncsServed  int64
	PartialSyncsErr     int64
	UpstreamFullSyncs   int64
	UpstreamPartials    int64
	BytesFromUpstream   int64
	BytesToReplicas     int64
	Disconnects         map[downstream.CloseReason]int64  // replica sessions ended, by reason
	LinkDowns           map[upstream.LinkDownReason]int64 // upstream link losses, by reason
	LastDownReason      upstream.LinkDownReason           // why the upstream link last went down; empty before it has
	Commands            map[string]int64                  // commands relayed, by lower-case name (at most maxCommandNames, then "other")
	CommandsRelayed     int64                             // commands in the stream from upstream
	ClientCommands      map[string]downstream.CommandStat // commands clients sent, by lower-case name; only those sent at least once
	NetInputBytes       int64                             // everything read: the stream and snapshots from upstream, requests and ACKs from downstream
	NetOutputBytes      int64                             // everything written downstream: stream, snapshots, replies (the relay's ACKs upstream are left out)
	OpsPerSec           float64                           // commands relayed and from clients, per second over the last 1.6 s
	InputKbps           float64                           // KiB/s of NetInputBytes over the last 1.6 s
	OutputKbps          float64                           // KiB/s of NetOutputBytes
	ReplInputKbps       float64                           // KiB/s of BytesFromUpstream
	ReplOutputKbps      float64                           // KiB/s of BytesToReplicas
	TCPPort             int                               // the port of the relay's first listener; 0 before Run
	ErrorReplies        int64                             // error replies to clients: commands rejected, failed or unknown
	Connections         int64
	RejectedConns       int64
	ProtocolErrors      int64
	ACLDenied           []acl.DeniedCount // commands refused by the ACL, by user and command
	SnapshotsRejected   int64             // snapshots from upstream that failed validation
	SnapshotParseErrors int64             // snapshots accepted whose keys the parser could not count (the Keyspace lines and the empty-master guard go without them)
	GuardTrips          int64
	HoldTrips           int64  // times the command tripwire held replicas
	SnapshotSource      string // snapshot-source; empty: the master
	// Compressed relay links: whether the upstream link is compressed, and
	// bytes of stream and on the wire in each direction.
	FullSyncsRunning    int   // full syncs sending their snapshot now
	FullSyncsQueued     int   // waiting for a slot (full-sync-max-concurrent)
	FullSyncPacedBytes  int64 // snapshot bytes sent under a bandwidth limit
	FullSyncPaceWait    time.Duration
	UpstreamCompressed  bool
	CompressedInStream  int64
	CompressedInWire    int64
	CompressedOutStream int64
	CompressedOutWire   int64
	SnapshotFrom        string // where the newest snapshot came from: "master" or the source; empty before one
	ForksAvoided        int64  // snapshots from the snapshot source that the master continued after
	SourceFallbacks     int64  // times the master's own snapshot was taken instead of the source's
	SourceUnproven      int64  // snapshots from the source refused for want of proof of their history and offset
	LastFallback        string // why, the last time
	Refreshes           int64  // snapshots refreshed over a second connection
	RefreshFailures     int64
	TailCuts            int64 // unfinished commands dropped from the log after the upstream link broke
	BranchCuts          int64 // data-free tails dropped so that a promoted upstream continues (branch.go)
	// ClusterShard is the Redis Cluster shard the relay follows
	// (cluster-seeds); zero when it follows no cluster.
	ClusterShard upstream.ClusterShard

	// MasterVersion is the version of the server that wrote the newest
	// snapshot the relay holds or is receiving (its RDB's redis-ver aux
	// field); "" before the relay has seen one.
	MasterVersion string
	// While a full sync from upstream has an unknown size (SyncTotal -1,
	// the EOF-marked transfer of a diskless master): an estimate of its
	// total, or -1, and where the estimate comes from (EstimateFrom*).
	SyncEstimate       int64
	SyncEstimateSource string
}

// Where an estimate of an upstream snapshot's size comes from, best first:
// the size of the snapshot it replaces (same dataset, same encoding), or
// the used_memory the master recorded in the new snapshot's header (its
// "used-mem" aux field), which overstates an RDB's size but bounds it.
const (
	EstimateFromPrevious = "previous_snapshot"
	EstimateFromUsedMem  = "master_used_memory"
)

// MasterOffset is master_repl_offset as the relay knows it: the last byte
// it holds.
func (st Status) MasterOffset() int64 {
	if !st.HasHistory {
		return 0
	}
	return st.Log.Next - 1
}

// TotalCommands is total_commands_processed: the commands relayed from
// upstream and the commands clients sent the relay, as a stock replica
// counts both the commands it applies from its master and its clients'.
func (st Status) TotalCommands() int64 {
	n := st.CommandsRelayed
	for _, c := range st.ClientCommands {
		n += c.Calls
	}
	return n
}
