package metrics

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/redis-relay/redis-relay/proxy"
)

// Source is what the collector reads at scrape time. *proxy.Relay is one.
type Source interface {
	Status() proxy.Status
	Replicas() []proxy.ReplicaInfo
}

var _ Source = (*proxy.Relay)(nil)

// NewRegistry returns a registry holding the relay's collector, which reads
// src on every scrape, and the Go runtime and process collectors.
func NewRegistry(src Source) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newCollector(src, time.Now),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// family is one metric family the relay defines.
type family struct {
	name   string
	typ    prometheus.ValueType
	labels []string
	desc   *prometheus.Desc
}

// families holds every family in the order they are declared below.
var families []*family

func define(name string, typ prometheus.ValueType, help string, labels ...string) *family {
	f := &family{name: "redis_relay_" + name, typ: typ, labels: labels}
	f.desc = prometheus.NewDesc(f.name, help, labels, nil)
	families = append(families, f)
	return f
}

const (
	gauge   = prometheus.GaugeValue
	counter = prometheus.CounterValue
)

// The families. Help texts are short; docs/metrics.md says more.
var (
	mInfo  = define("info", gauge, "Always 1; labels carry the relay version and the replication ID it serves.", "version", "replid")
	mReady = define("ready", gauge, "1 while the relay can serve replicas (it holds a history and the guard is not holding one back), as /readyz answers; else 0.")

	mLinkUp       = define("upstream_link_up", gauge, "1 while the link to the upstream master is streaming, else 0.")
	mLinkState    = define("upstream_link_state", gauge, "1 for the upstream link's current state, 0 for the others.", "state")
	mMasterOffset = define("master_repl_offset", gauge, "Offset of the last replication stream byte the relay holds (master_repl_offset).")
	mAckedUp      = define("upstream_acked_offset", gauge, "Last offset the relay acknowledged to its upstream with REPLCONF ACK.")
	mLastIO       = define("upstream_last_io_seconds", gauge, "Seconds since the last byte was read from the upstream; absent before the first.")
	mUpFull       = define("upstream_full_syncs_total", counter, "Full resyncs the relay received from its upstream.")
	mUpPartial    = define("upstream_partial_syncs_total", counter, "Partial resyncs (+CONTINUE) the relay obtained from its upstream.")
	mSyncing      = define("upstream_sync_in_progress", gauge, "1 while a snapshot is arriving from the upstream, else 0.")
	mSyncRead     = define("upstream_sync_bytes_received", gauge, "Snapshot bytes received in the current or most recent upstream full sync.")
	mSyncExpected = define("upstream_sync_bytes_expected", gauge, "Announced size of the current or most recent upstream snapshot; absent while unknown (EOF-marked transfer).")
	mSyncEstimate = define("upstream_sync_bytes_estimated", gauge, "While a snapshot of unknown size arrives: an estimate of its size, by where the estimate comes from; absent otherwise.", "source")

	mReplicas      = define("connected_replicas", gauge, "Downstream replica sessions.")
	mReplicaAck    = define("replica_ack_offset", gauge, "Last offset a downstream replica acknowledged.", "replica")
	mReplicaLag    = define("replica_lag_bytes", gauge, "Bytes between master_repl_offset and a replica's acknowledged offset.", "replica")
	mReplicaLagSec = define("replica_lag_seconds", gauge, "Seconds since an online replica's last acknowledgement; 0 while not online.", "replica")
	mReplicaState  = define("replica_state", gauge, "1 for a replica session's current state, 0 for the others.", "replica", "state")
	mReplicaSent   = define("replica_sync_bytes_sent", gauge, "Snapshot bytes sent to a replica in its session's full sync; 0 when the session began with a partial resync.", "replica")
	mReplicaSize   = define("replica_sync_bytes_expected", gauge, "Size of the snapshot a replica's full sync sends; absent while it is still arriving from upstream with its size unknown.", "replica")

	mFullServed     = define("full_syncs_served_total", counter, "Full resyncs served to downstream replicas (INFO sync_full).")
	mPartialServed  = define("partial_syncs_served_total", counter, "Partial resyncs accepted from downstream replicas (INFO sync_partial_ok).")
	mPartialRefused = define("partial_syncs_rejected_total", counter, "Partial resync requests answered with a full resync (INFO sync_partial_err).")
	mDisconnects    = define("replica_disconnects_total", counter, "Downstream replica sessions ended, by reason.", "reason")
	mLinkDowns      = define("upstream_link_downs_total", counter, "Times the upstream link went down, by reason.", "reason")
	mNetIn          = define("net_input_bytes_total", counter, "Replication bytes read from the upstream, snapshots included.")
	mNetOut         = define("net_output_bytes_total", counter, "Replication bytes written to downstream replicas, snapshots included.")
	mCommands       = define("commands_relayed_total", counter, "Commands relayed from the upstream stream, by lower-case name.", "command")
	mConnections    = define("connections_received_total", counter, "Connections accepted on the replica port.")
	mRejected       = define("rejected_connections_total", counter, "Connections refused on the replica port.")
	mProtoErrors    = define("protocol_errors_total", counter, "Malformed requests from downstream clients.")
	mACLDenied      = define("acl_denied_total", counter, "Commands refused with -NOPERM, by ACL user and command (config|set for a subcommand).", "user", "command")

	mLogFirst    = define("log_first_offset", gauge, "Offset of the oldest byte the replication log retains.")
	mLogNext     = define("log_next_offset", gauge, "Offset the next byte appended to the replication log will get (master_repl_offset+1).")
	mLogRetained = define("log_retained_bytes", gauge, "Replication log bytes held, by tier; the ring is a copy of the newest disk bytes.", "tier")
	mLogSegments = define("log_segments", gauge, "Segment files of the replication log.")
	mRingSize    = define("ring_size_bytes", gauge, "Capacity of the in-memory ring (repl-backlog-size).")

	mSnapSize        = define("snapshot_size_bytes", gauge, "Size of the stored RDB snapshot.")
	mSnapOffset      = define("snapshot_offset", gauge, "Replication offset the stored snapshot corresponds to.")
	mSnapAge         = define("snapshot_age_seconds", gauge, "Seconds since the stored snapshot was taken; 0 when there is none.")
	mSnapKeys        = define("snapshot_keys", gauge, "Keys in the stored snapshot; absent when unknown.")
	mSnapRejected    = define("snapshots_rejected_total", counter, "Snapshots received from upstream that failed validation and were discarded.")
	mSnapParseErrors = define("snapshot_parse_errors_total", counter, "Snapshots accepted whose contents the RDB parser could not summarise (key counts are then unknown).")
	mRefreshes       = define("snapshot_refreshes_total", counter, "Snapshots refreshed from upstream over a second connection.")
	mRefreshFailed   = define("snapshot_refresh_failures_total", counter, "Snapshot refreshes that failed.")
	mTailCuts        = define("upstream_tail_cuts_total", counter, "Times the relay dropped an unfinished command or transaction from the end of its log after its upstream link broke.")
	mBranchCuts      = define("upstream_branch_cuts_total", counter, "Times the relay dropped data-free commands (PING, PUBLISH) the old master sent after its new upstream was promoted, so that the new upstream continues instead of a full sync.")
	mGuard           = define("guard_tripped", gauge, "1 while the empty-master guard holds back a snapshot from upstream.")
	mGuardTrips      = define("guard_trips_total", counter, "Times the empty-master guard held back a snapshot from upstream.")
	mReach           = define("recovery_window_seconds", gauge, "How far back redis-relay recover can rebuild the dataset: from the oldest snapshot the log still follows to the newest byte held.")
	mSyncsQueued     = define("full_syncs_queued", gauge, "Full syncs waiting for a slot under full-sync-max-concurrent.")
	mPacedBytes      = define("full_sync_paced_bytes_total", counter, "Snapshot bytes sent to replicas under a full-sync bandwidth limit.")
	mPaceWait        = define("full_sync_pace_wait_seconds_total", counter, "Time full syncs waited for the full-sync bandwidth limits.")
	mCompressed      = define("link_compression_bytes_total", counter, "Bytes through compressed relay-to-relay links, by direction (in: from the upstream relay, out: to relays below) and layer (stream: replication bytes, wire: compressed bytes sent or received).", "direction", "layer")
	mForksAvoided    = define("master_forks_avoided_total", counter, "Snapshots taken from the snapshot source (not the master) that the master continued after: forks the master did not make.")
	mFallbacks       = define("snapshot_source_fallbacks_total", counter, "Times the relay took the master's own snapshot because the snapshot source was down or its snapshot was not on the master's history.")
	mUnproven        = define("snapshot_source_unproven_total", counter, "Snapshots from the snapshot source refused because their repl-id/repl-offset aux fields were missing or did not name the history and offset the source announced.")
	mHold            = define("hold_active", gauge, "1 while the command tripwire (hold-on-commands) holds replicas before a command from upstream.")
	mHoldTrips       = define("hold_trips_total", counter, "Times the command tripwire held replicas.")
	mClusterShard    = define("cluster_shard_info", gauge, "Always 1 while the relay follows a Redis Cluster shard (cluster-seeds); labels carry the shard's slot ranges and its master's node ID.", "shard", "master_id")
	mClusterNodes    = define("cluster_shard_nodes", gauge, "Nodes the cluster lists in the shard the relay follows, its master included; absent when it follows no cluster.")
)

// Names returns the name of every metric family the relay's collector
// defines, sorted. The families of the Go runtime, process and promhttp
// collectors registered beside it (go_*, process_*, promhttp_*) are not
// included.
func Names() []string {
	names := make([]string, len(families))
	for i, f := range families {
		names[i] = f.name
	}
	slices.Sort(names)
	return names
}

// linkStates and replicaStates are the values the state labels take.
var (
	linkStates    = proxy.LinkStates()
	replicaStates = proxy.ReplicaStates()
)

// collector turns a Source into metrics on every scrape.
type collector struct {
	src Source
	now func() time.Time
}

func newCollector(src Source, now func() time.Time) *collector {
	return &collector{src: src, now: now}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range families {
		ch <- f.desc
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Status()
	reps := c.src.Replicas()
	now := c.now()
	e := emitter{ch}

	e.emit(mInfo, 1, proxy.Version, st.Identity.ReplID)
	ready, _ := Ready(st)
	e.emit(mReady, boolean(ready))

	// Upstream link.
	state := labelValue(st.LinkState)
	if state == "" {
		state = proxy.LinkNone // before the upstream loop first reports
	}
	e.emit(mLinkUp, boolean(state == proxy.LinkConnected))
	for _, s := range withCurrent(linkStates, state) {
		e.emit(mLinkState, boolean(s == state), s)
	}
	masterOffset := st.MasterOffset()
	e.emit(mMasterOffset, float64(masterOffset))
	e.emit(mAckedUp, float64(st.AckedUpstream))
	if !st.LastIO.IsZero() {
		e.emit(mLastIO, since(now, st.LastIO))
	}
	e.emit(mUpFull, float64(st.UpstreamFullSyncs))
	e.emit(mUpPartial, float64(st.UpstreamPartials))
	e.emit(mSyncing, boolean(state == proxy.LinkSync || st.SyncPending))
	e.emit(mSyncRead, float64(st.SyncRead))
	if st.SyncTotal >= 0 {
		e.emit(mSyncExpected, float64(st.SyncTotal))
	}
	if st.SyncEstimateSource != "" {
		e.emit(mSyncEstimate, float64(st.SyncEstimate), labelValue(st.SyncEstimateSource))
	}

	// Downstream replicas.
	e.emit(mReplicas, float64(len(reps)))
	for i, label := range replicaLabels(reps) {
		r := reps[i]
		e.emit(mReplicaAck, float64(r.AckOffset), label)
		e.emit(mReplicaLag, float64(max(masterOffset-r.AckOffset, 0)), label)
		e.emit(mReplicaLagSec, max(r.AckAge.Seconds(), 0), label)
		e.emit(mReplicaSent, float64(r.BulkSent), label)
		if r.BulkTotal >= 0 {
			e.emit(mReplicaSize, float64(r.BulkTotal), label)
		}
		rs := labelValue(r.State)
		for _, s := range withCurrent(replicaStates, rs) {
			e.emit(mReplicaState, boolean(s == rs), label, s)
		}
	}
	e.emit(mFullServed, float64(st.FullSyncsServed))
	e.emit(mPartialServed, float64(st.PartialSyncsServed))
	e.emit(mPartialRefused, float64(st.PartialSyncsErr))
	for reason, n := range st.Disconnects {
		e.emit(mDisconnects, float64(n), string(reason))
	}
	for reason, n := range st.LinkDowns {
		e.emit(mLinkDowns, float64(n), string(reason))
	}
	e.emit(mNetIn, float64(st.BytesFromUpstream))
	e.emit(mNetOut, float64(st.BytesToReplicas))
	for name, n := range commandCounts(st.Commands) {
		e.emit(mCommands, float64(n), name)
	}
	e.emit(mConnections, float64(st.Connections))
	e.emit(mRejected, float64(st.RejectedConns))
	e.emit(mProtoErrors, float64(st.ProtocolErrors))
	for _, d := range st.ACLDenied {
		e.emit(mACLDenied, float64(d.Count), d.User, d.Command)
	}

	// Log and snapshot. Without a history these are zero, as INFO shows them.
	e.emit(mLogFirst, float64(st.Log.First))
	e.emit(mLogNext, float64(st.Log.Next))
	e.emit(mLogRetained, float64(st.Log.RingBytes), "ring")
	e.emit(mLogRetained, float64(st.Log.DiskBytes), "disk")
	e.emit(mLogSegments, float64(st.Log.Segments))
	e.emit(mRingSize, float64(st.Log.RingSize))
	e.emit(mSnapSize, float64(st.Snapshot.Size))
	e.emit(mSnapOffset, float64(st.Snapshot.Offset))
	age := 0.0
	if st.HasHistory && !st.Snapshot.Created.IsZero() {
		age = since(now, st.Snapshot.Created)
	}
	e.emit(mSnapAge, age)
	if st.HasHistory && st.Snapshot.Keys >= 0 {
		e.emit(mSnapKeys, float64(st.Snapshot.Keys))
	}
	e.emit(mSnapRejected, float64(st.SnapshotsRejected))
	e.emit(mSnapParseErrors, float64(st.SnapshotParseErrors))
	e.emit(mRefreshes, float64(st.Refreshes))
	e.emit(mRefreshFailed, float64(st.RefreshFailures))
	e.emit(mTailCuts, float64(st.TailCuts))
	e.emit(mBranchCuts, float64(st.BranchCuts))
	e.emit(mGuard, boolean(st.GuardTripped))
	e.emit(mGuardTrips, float64(st.GuardTrips))
	if st.HasHistory && !st.RecoverOldestTime.IsZero() && !st.RecoverNewestTime.IsZero() {
		e.emit(mReach, max(0, st.RecoverNewestTime.Sub(st.RecoverOldestTime).Seconds()))
	}
	e.emit(mSyncsQueued, float64(st.FullSyncsQueued))
	e.emit(mPacedBytes, float64(st.FullSyncPacedBytes))
	e.emit(mPaceWait, st.FullSyncPaceWait.Seconds())
	e.emit(mCompressed, float64(st.CompressedInStream), "in", "stream")
	e.emit(mCompressed, float64(st.CompressedInWire), "in", "wire")
	e.emit(mCompressed, float64(st.CompressedOutStream), "out", "stream")
	e.emit(mCompressed, float64(st.CompressedOutWire), "out", "wire")
	e.emit(mForksAvoided, float64(st.ForksAvoided))
	e.emit(mFallbacks, float64(st.SourceFallbacks))
	e.emit(mUnproven, float64(st.SourceUnproven))
	e.emit(mHold, boolean(st.HoldActive))
	e.emit(mHoldTrips, float64(st.HoldTrips))
	if cs := st.ClusterShard; cs != (proxy.ClusterShard{}) {
		e.emit(mClusterShard, 1, cs.Slots, cs.MasterID)
		e.emit(mClusterNodes, float64(cs.Nodes))
	}
}

// emitter sends constant metrics. A value that cannot be a metric (a label
// that is not UTF-8 slipped through) becomes an invalid metric, which the
// registry reports, rather than a panic in the scrape.
type emitter struct{ ch chan<- prometheus.Metric }

func (e emitter) emit(f *family, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(f.desc, f.typ, v, labels...)
	if err != nil {
		m = prometheus.NewInvalidMetric(f.desc, err)
	}
	e.ch <- m
}

func boolean(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// since is the non-negative number of seconds from t to now.
func since(now, t time.Time) float64 {
	return max(now.Sub(t).Seconds(), 0)
}

// withCurrent returns known, plus cur when it is a state known does not
// list, so the current state always has a series.
func withCurrent(known []string, cur string) []string {
	if cur == "" || slices.Contains(known, cur) {
		return known
	}
	return append(slices.Clip(known), cur)
}

// labelValue makes s a valid label value: replicas announce their own IP and
// command names come off the wire, and neither need be UTF-8.
func labelValue(s string) string {
	return strings.ToValidUTF8(s, "\uFFFD")
}

// commandCounts merges names that become equal once made valid UTF-8.
func commandCounts(in map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(in))
	for name, n := range in {
		out[labelValue(name)] += n
	}
	return out
}

// replicaLabels names each replica "ip:port" by the port it listens on (its
// REPLCONF listening-port), or by its connection's address when it announced
// none. Two sessions can claim the same ip:port (a replica reconnecting
// before its old session ended, or two replicas behind one NAT); the later
// ones fall back to their connection address, so no two series collide and
// the scrape never fails on a duplicate.
func replicaLabels(reps []proxy.ReplicaInfo) []string {
	labels := make([]string, len(reps))
	seen := make(map[string]bool, len(reps))
	for i, r := range reps {
		var candidates []string
		if r.IP != "" && r.Port > 0 {
			candidates = append(candidates, net.JoinHostPort(r.IP, strconv.Itoa(r.Port)))
		}
		candidates = append(candidates, r.Addr)
		label := ""
		for _, c := range candidates {
			if c = labelValue(c); !seen[c] {
				label = c
				break
			}
		}
		for n := 2; label == "" || seen[label]; n++ {
			label = labelValue(r.Addr) + "#" + strconv.Itoa(n)
		}
		seen[label] = true
		labels[i] = label
	}
	return labels
}
