package proxy

import (
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis-relay/redis-relay/proxy/downstream"
	"github.com/redis-relay/redis-relay/proxy/history"
	"github.com/redis-relay/redis-relay/proxy/status"
	"github.com/redis-relay/redis-relay/proxy/upstream"
	"github.com/redis-relay/redis-relay/rdbparse"
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
func ReplicaStates() []string { return downstream.ReplicaStates() }

// CloseReason says why a replica session ended (see package downstream);
// the same value is in the log line, the metric label and INFO.
type CloseReason = downstream.CloseReason

// ReplicaInfo describes one downstream replica session
// (downstream.ReplicaInfo).
type ReplicaInfo = downstream.ReplicaInfo

// Replicas lists the downstream replica sessions, sorted by address.
func (r *Relay) Replicas() []ReplicaInfo { return r.srv.Replicas() }

// Snapshot describes an RDB file in the data dir (history.Snapshot).
type Snapshot = history.Snapshot

// Status is the relay's state for INFO, ROLE and metrics (see package
// status).
type Status = status.Status

// Where an estimate of an upstream snapshot's size comes from.
const (
	estimateFromPrevious = status.EstimateFromPrevious
	estimateFromUsedMem  = status.EstimateFromUsedMem
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
	st.SnapshotParseErrors = hs.ParseErrors
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
	ds := r.srv.Status()
	st.FullSyncsRunning, st.FullSyncsQueued = ds.FullSyncsRunning, ds.FullSyncsQueued
	st.ClusterShard = us.ClusterShard
	st.SyncEstimate = -1
	readMasterFacts(&st, current, pending)
	st.FullSyncsServed, st.PartialSyncsServed, st.PartialSyncsErr = ds.FullSyncsServed, ds.PartialSyncsServed, ds.PartialSyncsErr
	st.BytesToReplicas, st.Disconnects = ds.BytesToReplicas, ds.Disconnects
	st.Connections, st.RejectedConns = ds.Connections, ds.RejectedConns
	st.ProtocolErrors = ds.ProtocolErrors + us.ProtocolErrors
	st.FullSyncPacedBytes, st.FullSyncPaceWait = ds.FullSyncPacedBytes, ds.FullSyncPaceWait
	st.CompressedOutStream, st.CompressedOutWire = ds.CompressedOutStream, ds.CompressedOutWire
	st.ACLDenied = r.acl.DeniedCounts()
	st.SnapshotSource = r.cfg.Get().SnapshotSource
	st.CommandsRelayed, st.ClientCommands = us.CommandsRelayed, ds.ClientCommands
	st.ErrorReplies = ds.UnknownCommands
	for _, c := range st.ClientCommands {
		st.ErrorReplies += c.Rejected + c.Failed
	}
	st.NetInputBytes = st.BytesFromUpstream + ds.ClientBytesIn
	st.NetOutputBytes = st.BytesToReplicas + ds.ClientBytesOut
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
