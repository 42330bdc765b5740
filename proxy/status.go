package proxy

import (
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis-relay/redis-relay/proxy/acl"
	"github.com/redis-relay/redis-relay/proxy/history"
	"github.com/redis-relay/redis-relay/proxy/upstream"
	"github.com/redis-relay/redis-relay/rdbparse"
	"github.com/redis-relay/redis-relay/replstream"
)

// Version is the relay's release, set at build time.
var Version = "0.1.0-dev"

// The upstream link's states, as Redis names them in ROLE.
const (
	LinkNone       = upstream.LinkNone
	LinkConnect    = upstream.LinkConnect
	LinkConnecting = upstream.LinkConnecting
	LinkHandshake  = upstream.LinkHandshake
	LinkSync       = upstream.LinkSync
	LinkConnected  = upstream.LinkConnected
)

// LinkDownReason says why the upstream link went down (see package
// upstream); the same value is in the log line, the metric label and INFO.
type LinkDownReason = upstream.LinkDownReason

// ClusterShard is the Redis Cluster shard a relay follows (package
// upstream): its slot ranges, its master's node ID, its node count.
type ClusterShard = upstream.ClusterShard

// LinkDownReasons lists every LinkDownReason, for metrics.
func LinkDownReasons() []LinkDownReason { return upstream.LinkDownReasons() }

// LinkStates are the upstream link's states, as ROLE names them.
func LinkStates() []string {
	return []string{LinkNone, LinkConnect, LinkConnecting, LinkHandshake, LinkSync, LinkConnected}
}

// ReplicaStates are a downstream session's states, as INFO names them.
func ReplicaStates() []string { return []string{stateWaitBgsave, stateSendBulk, stateOnline} }

// ReplicaInfo describes one downstream replica session.
type ReplicaInfo struct {
	Addr      string // remote address
	IP        string // announced or peer IP
	Port      int    // REPLCONF listening-port
	State     string // wait_bgsave, send_bulk, online
	AckOffset int64
	AckAge    time.Duration // since the last ACK (0 while not online)
	Since     time.Time
	BulkSent  int64 // during a full sync: snapshot bytes sent so far
	BulkTotal int64 // during a full sync: the snapshot's size; -1 while unknown (online: all that was sent)
}

// Replicas lists the downstream replica sessions, sorted by address.
func (r *Relay) Replicas() []ReplicaInfo {
	var list []ReplicaInfo
	r.srv.eachSession(func(s *session) {
		ip := s.c.announceIP
		if ip == "" {
			ip, _, _ = net.SplitHostPort(s.c.addr)
		}
		ri := ReplicaInfo{Addr: s.c.addr, IP: ip, Port: s.c.listeningPort, State: s.state.Load().(string), AckOffset: s.ack.Load(), Since: s.started,
			BulkSent: s.bulkSent.Load(), BulkTotal: s.bulkTotal.Load()}
		if ri.State == stateOnline {
			ri.AckAge = time.Since(time.Unix(0, s.ackTime.Load()))
			if ri.BulkTotal < 0 {
				// The snapshot was still arriving when its transfer
				// began; an online replica has been sent all of it.
				ri.BulkTotal = ri.BulkSent
			}
		}
		list = append(list, ri)
	})
	sort.Slice(list, func(i, j int) bool { return list[i].Addr < list[j].Addr })
	return list
}

// Snapshot describes an RDB file in the data dir (history.Snapshot).
type Snapshot = history.Snapshot

// Status is the relay's state for INFO, ROLE and metrics. Each part fills
// in its own fields under its own lock, so the fields of one part agree
// with each other; fields of different parts may be a moment apart.
type Status struct {
	Identity     replstream.Identity
	HasHistory   bool
	Log          replstream.LogStats
	Snapshot     Snapshot
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

	FullSyncsServed    int64
	PartialSyncsServed int64
	PartialSyncsErr    int64
	UpstreamFullSyncs  int64
	UpstreamPartials   int64
	BytesFromUpstream  int64
	BytesToReplicas    int64
	Disconnects        map[CloseReason]int64    // replica sessions ended, by reason
	LinkDowns          map[LinkDownReason]int64 // upstream link losses, by reason
	LastDownReason     LinkDownReason           // why the upstream link last went down; empty before it has
	Commands           map[string]int64         // commands relayed, by lower-case name (at most maxCommandNames, then "other")
	CommandsRelayed    int64                    // commands in the stream from upstream
	ClientCommands     map[string]CommandStat   // commands clients sent, by lower-case name; only those sent at least once
	NetInputBytes      int64                    // everything read: the stream and snapshots from upstream, requests and ACKs from downstream
	NetOutputBytes     int64                    // everything written downstream: stream, snapshots, replies (the relay's ACKs upstream are left out)
	OpsPerSec          float64                  // commands relayed and from clients, per second over the last 1.6 s
	InputKbps          float64                  // KiB/s of NetInputBytes over the last 1.6 s
	OutputKbps         float64                  // KiB/s of NetOutputBytes
	ReplInputKbps      float64                  // KiB/s of BytesFromUpstream
	ReplOutputKbps     float64                  // KiB/s of BytesToReplicas
	TCPPort            int                      // the port of the relay's first listener; 0 before Run
	ErrorReplies       int64                    // error replies to clients: commands rejected, failed or unknown
	Connections        int64
	RejectedConns      int64
	ProtocolErrors     int64
	ACLDenied          []acl.DeniedCount // commands refused by the ACL, by user and command
	SnapshotsRejected  int64             // snapshots from upstream that failed validation
	GuardTrips         int64
	HoldTrips          int64  // times the command tripwire held replicas
	SnapshotSource     string // snapshot-source; empty: the master
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
	ClusterShard ClusterShard

	// MasterVersion is the version of the server that wrote the newest
	// snapshot the relay holds or is receiving (its RDB's redis-ver aux
	// field); "" before the relay has seen one.
	MasterVersion string
	// While a full sync from upstream has an unknown size (SyncTotal -1,
	// the EOF-marked transfer of a diskless master): an estimate of its
	// total, or -1, and where the estimate comes from (estimateFrom*).
	SyncEstimate       int64
	SyncEstimateSource string
}

// Where an estimate of an upstream snapshot's size comes from, best first:
// the size of the snapshot it replaces (same dataset, same encoding), or
// the used_memory the master recorded in the new snapshot's header (its
// "used-mem" aux field), which overstates an RDB's size but bounds it.
const (
	estimateFromPrevious = "previous_snapshot"
	estimateFromUsedMem  = "master_used_memory"
)

// Status reports the relay's state.
func (r *Relay) Status() Status {
	var st Status
	hs, current, pending := r.hist.Status()
	st.Identity, st.HasHistory, st.Log, st.Snapshot = hs.Identity, hs.HasHistory, hs.Log, hs.Snapshot
	st.SyncPending = hs.SyncPending
	st.GuardTripped, st.GuardReason, st.GuardSince = hs.GuardTripped, hs.GuardReason, hs.GuardSince
	st.RecoverOldestOffset, st.RecoverOldestTime, st.RecoverNewestTime = hs.RecoverOldestOffset, hs.RecoverOldestTime, hs.RecoverNewestTime
	st.HoldActive, st.HoldCommand, st.HoldAt, st.HoldSince = hs.HoldActive, hs.HoldCommand, hs.HoldAt, hs.HoldSince
	st.HoldSnapshot, st.HoldSnapshotOffset = hs.HoldSnapshot, hs.HoldSnapshotOffset
	st.SnapshotsRejected, st.GuardTrips, st.HoldTrips = hs.SnapshotsRejected, hs.GuardTrips, hs.HoldTrips
	us := r.up.Status()
	st.MasterAddr, st.SnapshotFrom, st.LastFallback = us.MasterAddr, us.SnapshotFrom, us.LastFallback
	st.LinkState, st.LinkSince, st.LastError = us.LinkState, us.LinkSince, us.LastError
	st.SyncTotal, st.SyncRead, st.SyncStart = us.SyncTotal, us.SyncRead, us.SyncStart
	st.LastDownReason, st.LastIO, st.AckedUpstream = us.LastDownReason, us.LastIO, us.AckedUpstream
	st.UpstreamCompressed, st.Commands = us.UpstreamCompressed, us.Commands
	st.UpstreamFullSyncs, st.UpstreamPartials, st.BytesFromUpstream = us.UpstreamFullSyncs, us.UpstreamPartials, us.BytesFromUpstream
	st.LinkDowns, st.ForksAvoided, st.SourceFallbacks, st.SourceUnproven = us.LinkDowns, us.ForksAvoided, us.SourceFallbacks, us.SourceUnproven
	st.Refreshes, st.RefreshFailures, st.TailCuts, st.BranchCuts = us.Refreshes, us.RefreshFailures, us.TailCuts, us.BranchCuts
	st.CompressedInStream, st.CompressedInWire = us.CompressedInStream, us.CompressedInWire
	st.ClusterShard = us.ClusterShard
	r.srv.fillStatus(&st)
	st.SyncEstimate = -1
	readMasterFacts(&st, current, pending)
	c := r.stats
	st.FullSyncsServed = c.fullSyncsServed.Load()
	st.PartialSyncsServed = c.partialSyncsServed.Load()
	st.PartialSyncsErr = c.partialSyncsErr.Load()
	st.BytesToReplicas = c.bytesToReplicas.Load()
	st.Disconnects = loadCounts(c.disconnects)
	st.Connections = c.connections.Load()
	st.RejectedConns = c.rejectedConns.Load()
	st.ProtocolErrors = c.protocolErrors.Load() + us.ProtocolErrors
	st.ACLDenied = r.acl.DeniedCounts()
	st.FullSyncPacedBytes, st.FullSyncPaceWait = c.pacedBytes.Load(), time.Duration(c.paceWait.Load())
	st.CompressedOutStream, st.CompressedOutWire = c.zOut.Stream.Load(), c.zOut.Wire.Load()
	st.SnapshotSource = r.cfg.Get().SnapshotSource
	st.CommandsRelayed = us.CommandsRelayed
	st.ClientCommands = r.srv.cmdStats.snapshot()
	st.ErrorReplies = r.srv.unknownCommands.Load()
	for _, c := range st.ClientCommands {
		st.ErrorReplies += c.Rejected + c.Failed
	}
	st.NetInputBytes = st.BytesFromUpstream + c.clientBytesIn.Load()
	st.NetOutputBytes = st.BytesToReplicas + c.clientBytesOut.Load()
	st.OpsPerSec = loadFloat(&r.rates.opsPerSec)
	st.InputKbps, st.OutputKbps = loadFloat(&r.rates.inputKbps), loadFloat(&r.rates.outputKbps)
	st.ReplInputKbps, st.ReplOutputKbps = loadFloat(&r.rates.replInKbps), loadFloat(&r.rates.replOutKbps)
	st.TCPPort = int(r.port.Load())
	return st
}

// readMasterFacts fills in what the relay learns about its master from the
// snapshots' headers: the master's version, and during a full sync of
// unknown size an estimate of that size. It reads at most the first few
// hundred bytes of two files, and only while INFO or a scrape asks.
//
// Why the RDB header and not INFO from the master: it costs the master
// nothing (no command, no second connection), it works with a replication
// user whose ACL allows only PSYNC and REPLCONF, and it survives a relay
// restart with no master at all. The cost: after a failover with a partial
// resync, the version is the old snapshot writer's until the next full
// sync or refresh.
func readMasterFacts(st *Status, current, pending *history.SnapshotFile) {
	var pendingAux map[string]string
	if pending != nil {
		pendingAux = rdbAux(pending.Path())
	}
	if v := auxVersion(pendingAux); v != "" {
		st.MasterVersion = v
	} else if current != nil {
		st.MasterVersion = auxVersion(rdbAux(current.Path()))
	}
	if st.LinkState != LinkSync {
		return
	}
	// Until the master's payload header arrives (a disk-based master is
	// still saving), the transfer figures are the previous sync's.
	if pending != nil && st.SyncStart.Before(pending.Meta().Created) {
		st.SyncRead, st.SyncTotal, st.SyncStart = 0, -1, time.Time{}
	}
	if st.SyncTotal >= 0 {
		return
	}
	if st.HasHistory && st.Snapshot.Size > st.SyncRead {
		st.SyncEstimate, st.SyncEstimateSource = st.Snapshot.Size, estimateFromPrevious
		return
	}
	if n, err := strconv.ParseInt(pendingAux["used-mem"], 10, 64); err == nil && n > st.SyncRead {
		st.SyncEstimate, st.SyncEstimateSource = n, estimateFromUsedMem
	}
}

// rdbAux reads the aux fields at the start of the RDB file at path. A file
// still arriving may hold only some of them; those are returned. nil when
// the file cannot be read or is not an RDB.
func rdbAux(path string) map[string]string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	h, _ := rdbparse.ReadHeader(io.LimitReader(f, maxHeaderRead))
	if h == nil {
		return nil
	}
	return h.Aux
}

// maxHeaderRead bounds what rdbAux reads: real headers take a few hundred
// bytes.
const maxHeaderRead = 64 << 10

// auxVersion is the server version an RDB header names: redis-ver, or
// valkey-ver when a Valkey server wrote only that. The header comes off
// the wire, so anything but a plain version string is ignored rather than
// written into INFO.
func auxVersion(aux map[string]string) string {
	v := aux["redis-ver"]
	if v == "" {
		v = aux["valkey-ver"]
	}
	if len(v) > 32 || strings.Trim(v, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-_+") != "" {
		return ""
	}
	return v
}

// MasterOffset is master_repl_offset as the relay knows it: the last byte
// it holds.
func (st Status) MasterOffset() int64 {
	if !st.HasHistory {
		return 0
	}
	return st.Log.Next - 1
}

// loadCounts reads a map of counters by reason.
func loadCounts[K comparable](counts map[K]*atomic.Int64) map[K]int64 {
	out := make(map[K]int64, len(counts))
	for k, n := range counts {
		out[k] = n.Load()
	}
	return out
}
