package proxy

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis-relay/redis-relay/rdbparse"
	"github.com/redis-relay/redis-relay/replstream"
)

// Version is the relay's release, set at build time.
var Version = "0.1.0-dev"

// runID identifies this process, as Redis's run_id does.
var runID = replstream.RandomHex40()

var startTime = time.Now()

// LinkStates are the upstream link's states, as ROLE names them.
var LinkStates = []string{linkNone, linkDown, linkConnecting, linkHandshake, linkSync, linkConnected}

// ReplicaStates are a downstream session's states, as INFO names them.
var ReplicaStates = []string{stateWaitBgsave, stateSendBulk, stateOnline}

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
	r.mu.Lock()
	list := make([]ReplicaInfo, 0, len(r.sessions))
	for s := range r.sessions {
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
	}
	r.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].Addr < list[j].Addr })
	return list
}

// Status is a consistent view of the relay for INFO, ROLE and metrics.
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
	Disconnects        map[CloseReason]int64 // replica sessions ended, by reason
	Commands           map[string]int64      // commands relayed, by lower-case name (at most maxCommandNames, then "other")
	Connections        int64
	RejectedConns      int64
	ProtocolErrors     int64
	SnapshotsRejected  int64 // snapshots from upstream that failed validation
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
	LastFallback        string // why, the last time
	Refreshes           int64  // snapshots refreshed over a second connection
	RefreshFailures     int64
	TailCuts            int64 // unfinished commands dropped from the log after the upstream link broke

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
	st.Log.RingSize = int64(r.fixed.RingSize)
	r.mu.Lock()
	st.Identity = r.id
	if r.log != nil {
		st.HasHistory = true
		st.Log = r.log.Stats()
		st.Snapshot = r.snap.metaCopy()
	}
	st.SyncPending = r.pending != nil
	if r.log != nil {
		oldest := r.snap.metaCopy()
		if n := len(r.older); n > 0 {
			oldest = r.older[n-1]
		}
		st.RecoverOldestOffset, st.RecoverOldestTime = oldest.Offset, oldest.Created
		st.RecoverNewestTime = r.log.NewestTime()
	}
	st.SnapshotFrom, st.LastFallback = r.source.lastFrom, r.source.lastFallback
	st.GuardTripped = r.guard.held != nil
	if h := r.hold; h != nil {
		st.HoldActive, st.HoldCommand, st.HoldAt, st.HoldSince = true, h.Command, h.At, h.Since
	}
	st.GuardReason = r.guard.reason
	st.GuardSince = r.guard.since
	st.MasterAddr = r.master
	var current, pending *snapshot
	if r.log != nil {
		current = r.snap
	}
	pending = r.pending
	r.mu.Unlock()
	st.LinkState, _, st.LinkSince, st.LastError, st.SyncTotal, st.SyncStart = r.upstream.get()
	st.SyncRead = r.upstream.syncRead.Load()
	st.SyncEstimate = -1
	readMasterFacts(&st, current, pending)
	if t := r.upstream.lastIO.Load(); t > 0 {
		st.LastIO = time.Unix(0, t)
	}
	st.AckedUpstream = r.upstream.acked.Load()
	c := &r.stats
	st.FullSyncsServed = c.fullSyncsServed.Load()
	st.PartialSyncsServed = c.partialSyncsServed.Load()
	st.PartialSyncsErr = c.partialSyncsErr.Load()
	st.UpstreamFullSyncs = c.upstreamFullSyncs.Load()
	st.UpstreamPartials = c.upstreamPartials.Load()
	st.BytesFromUpstream = c.bytesFromUpstream.Load()
	st.BytesToReplicas = c.bytesToReplicas.Load()
	st.Disconnects = make(map[CloseReason]int64, len(c.disconnects))
	for reason, n := range c.disconnects {
		st.Disconnects[reason] = n.Load()
	}
	r.cmdMu.Lock()
	st.Commands = make(map[string]int64, len(r.commands))
	for name, n := range r.commands {
		st.Commands[name] = n
	}
	r.cmdMu.Unlock()
	st.Connections = c.connections.Load()
	st.RejectedConns = c.rejectedConns.Load()
	st.ProtocolErrors = c.protocolErrors.Load()
	st.SnapshotsRejected = c.snapshotsRejected.Load()
	st.GuardTrips = c.guardTrips.Load()
	st.HoldTrips = c.holdTrips.Load()
	st.ForksAvoided = c.forksAvoided.Load()
	st.UpstreamCompressed = r.upstream.compressed.Load()
	st.FullSyncsRunning, st.FullSyncsQueued = r.slots.counts()
	st.FullSyncPacedBytes, st.FullSyncPaceWait = c.pacedBytes.Load(), time.Duration(c.paceWait.Load())
	st.CompressedInStream, st.CompressedInWire = c.zIn.stream.Load(), c.zIn.wire.Load()
	st.CompressedOutStream, st.CompressedOutWire = c.zOut.stream.Load(), c.zOut.wire.Load()
	st.SourceFallbacks = c.sourceFallbacks.Load()
	st.SnapshotSource = r.conf().SnapshotSource
	st.Refreshes = c.refreshes.Load()
	st.RefreshFailures = c.refreshFailures.Load()
	st.TailCuts = c.tailCuts.Load()
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
func readMasterFacts(st *Status, current, pending *snapshot) {
	var pendingAux map[string]string
	if pending != nil {
		pendingAux = rdbAux(pending.path)
	}
	if v := auxVersion(pendingAux); v != "" {
		st.MasterVersion = v
	} else if current != nil {
		st.MasterVersion = auxVersion(rdbAux(current.path))
	}
	if st.LinkState != linkSync {
		return
	}
	// Until the master's payload header arrives (a disk-based master is
	// still saving), the transfer figures are the previous sync's.
	if pending != nil && st.SyncStart.Before(pending.metaCopy().Created) {
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

// infoSections are the sections INFO knows, in the order it writes them
// (Redis's order, then the relay's own).
var infoSections = []string{"server", "clients", "memory", "persistence", "stats", "replication", "cpu", "relay"}

// defaultRedisVersion is what INFO reports as redis_version before the
// relay has seen a snapshot of its master: the oldest Redis whose
// replication protocol (PSYNC2, EOF-marked transfers) the relay speaks.
const defaultRedisVersion = "7.0.0"

// info renders INFO [section ...] in Redis's format. Like Redis 7 it takes
// several sections; "", "all", "default" and "everything" name them all,
// an unknown name none.
func (r *Relay) info(args [][]byte) string {
	want := make(map[string]bool, len(args))
	all := len(args) == 0
	for _, a := range args {
		switch name := strings.ToLower(string(a)); name {
		case "all", "default", "everything":
			all = true
		default:
			want[name] = true
		}
	}
	st := r.Status()
	var b strings.Builder
	kv := func(k string, v any) { fmt.Fprintf(&b, "%s:%v\r\n", k, v) }
	bodies := map[string]func(){
		"server": func() {
			version, from := st.MasterVersion, "snapshot"
			if version == "" {
				version, from = defaultRedisVersion, "default"
			}
			kv("redis_version", version)
			kv("relay_version", Version)
			kv("relay_redis_version_source", from)
			kv("redis_mode", "relay")
			kv("os", runtime.GOOS+" "+runtime.GOARCH)
			kv("process_id", os.Getpid())
			kv("run_id", runID)
			kv("uptime_in_seconds", int(time.Since(startTime).Seconds()))
		},
		"clients": func() {
			r.clientsMu.Lock()
			n := len(r.clients)
			r.clientsMu.Unlock()
			kv("connected_clients", n)
			kv("maxclients", r.conf().MaxClients)
			kv("blocked_clients", 0)
		},
		"memory": func() { writeMemory(&b, &st) },
		"persistence": func() {
			kv("loading", 0)
			kv("async_loading", 0)
			kv("rdb_changes_since_last_save", max(st.MasterOffset()-st.Snapshot.Offset, 0))
			kv("rdb_bgsave_in_progress", b2i(st.SyncPending))
			saved := int64(0)
			if !st.Snapshot.Created.IsZero() {
				saved = st.Snapshot.Created.Unix()
			}
			kv("rdb_last_save_time", saved)
			kv("rdb_last_bgsave_status", "ok")
			kv("rdb_last_cow_size", 0)
			kv("aof_enabled", 0)
			kv("relay_snapshot_file", st.Snapshot.File)
			kv("relay_snapshot_offset", st.Snapshot.Offset)
			kv("relay_snapshot_bytes", st.Snapshot.Size)
		},
		"stats": func() {
			kv("sync_full", st.FullSyncsServed)
			kv("sync_partial_ok", st.PartialSyncsServed)
			kv("sync_partial_err", st.PartialSyncsErr)
			kv("total_connections_received", st.Connections)
			kv("rejected_connections", st.RejectedConns)
			kv("total_net_repl_input_bytes", st.BytesFromUpstream)
			kv("total_net_repl_output_bytes", st.BytesToReplicas)
		},
		"replication": func() { r.writeReplication(&b, &st) },
		"cpu":         func() { writeCPU(&b) },
		"relay": func() {
			kv("upstream_link_state", st.LinkState)
			kv("upstream_last_error", strconv.Quote(st.LastError))
			kv("upstream_full_syncs", st.UpstreamFullSyncs)
			kv("upstream_partial_syncs", st.UpstreamPartials)
			kv("upstream_acked_offset", st.AckedUpstream)
			kv("log_first_offset", st.Log.First)
			kv("log_next_offset", st.Log.Next)
			kv("log_disk_bytes", st.Log.DiskBytes)
			kv("log_segments", st.Log.Segments)
			kv("ring_bytes", st.Log.RingBytes)
			kv("ring_size", st.Log.RingSize)
			kv("snapshot_offset", st.Snapshot.Offset)
			kv("snapshot_bytes", st.Snapshot.Size)
			if !st.Snapshot.Created.IsZero() {
				kv("snapshot_age_seconds", int(time.Since(st.Snapshot.Created).Seconds()))
			}
			kv("snapshot_keys", st.Snapshot.Keys)
			kv("snapshot_expires", st.Snapshot.Expires)
			kv("snapshot_rdb_version", st.Snapshot.Version)
			kv("snapshot_in_progress", b2i(st.SyncPending))
			kv("snapshots_rejected", st.SnapshotsRejected)
			kv("snapshot_refreshes", st.Refreshes)
			kv("snapshot_refresh_failures", st.RefreshFailures)
			kv("upstream_tail_cuts", st.TailCuts)
			kv("guard_tripped", b2i(st.GuardTripped))
			if st.GuardTripped {
				kv("guard_reason", strconv.Quote(st.GuardReason))
				kv("guard_since_seconds", int(time.Since(st.GuardSince).Seconds()))
			}
			kv("guard_trips", st.GuardTrips)
			kv("recover_oldest_offset", st.RecoverOldestOffset)
			kv("recover_oldest_time", st.RecoverOldestTime.Unix())
			kv("recover_newest_offset", st.MasterOffset())
			if !st.RecoverNewestTime.IsZero() {
				kv("recover_newest_time", st.RecoverNewestTime.Unix())
			}
			kv("full_syncs_running", st.FullSyncsRunning)
			kv("full_syncs_queued", st.FullSyncsQueued)
			kv("full_sync_paced_bytes", st.FullSyncPacedBytes)
			kv("full_sync_pace_wait_seconds", fmt.Sprintf("%.3f", st.FullSyncPaceWait.Seconds()))
			kv("master_link_compression", map[bool]string{true: "zstd", false: "none"}[st.UpstreamCompressed])
			kv("compressed_in_stream_bytes", st.CompressedInStream)
			kv("compressed_in_wire_bytes", st.CompressedInWire)
			kv("compressed_out_stream_bytes", st.CompressedOutStream)
			kv("compressed_out_wire_bytes", st.CompressedOutWire)
			kv("snapshot_source", st.SnapshotSource)
			kv("snapshot_from", st.SnapshotFrom)
			kv("master_forks_avoided", st.ForksAvoided)
			kv("snapshot_source_fallbacks", st.SourceFallbacks)
			if st.LastFallback != "" {
				kv("snapshot_source_last_fallback", strconv.Quote(st.LastFallback))
			}
			kv("hold_active", b2i(st.HoldActive))
			if st.HoldActive {
				kv("hold_command", st.HoldCommand)
				kv("hold_offset", st.HoldAt)
				kv("hold_since_seconds", int(time.Since(st.HoldSince).Seconds()))
			}
			kv("hold_trips", st.HoldTrips)
			for _, reason := range closeReasons {
				if n := st.Disconnects[reason]; n > 0 {
					kv("replica_disconnects_"+string(reason), n)
				}
			}
			kv("protocol_errors", st.ProtocolErrors)
		},
	}
	for _, name := range infoSections {
		if !all && !want[name] {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		title := strings.ToUpper(name[:1]) + name[1:]
		if name == "cpu" {
			title = "CPU" // as Redis writes it
		}
		fmt.Fprintf(&b, "# %s\r\n", title)
		bodies[name]()
	}
	return b.String()
}

// percent is 100*n/total, 0 when total is not positive.
func percent(n, total int64) float64 {
	if total <= 0 {
		return 0
	}
	return 100 * float64(n) / float64(total)
}

func b2i(v bool) int {
	if v {
		return 1
	}
	return 0
}

func (r *Relay) writeReplication(b *strings.Builder, st *Status) {
	kv := func(k string, v any) { fmt.Fprintf(b, "%s:%v\r\n", k, v) }
	host, port, _ := net.SplitHostPort(st.MasterAddr)
	up := st.LinkState == linkConnected
	kv("role", "slave")
	kv("master_host", host)
	kv("master_port", port)
	kv("master_link_status", map[bool]string{true: "up", false: "down"}[up])
	lastIO := -1
	if !st.LastIO.IsZero() {
		lastIO = int(time.Since(st.LastIO).Seconds())
	}
	kv("master_last_io_seconds_ago", lastIO)
	syncing := st.LinkState == linkSync
	kv("master_sync_in_progress", b2i(syncing))
	off := st.MasterOffset()
	kv("slave_read_repl_offset", off)
	kv("slave_repl_offset", off)
	if syncing {
		// Redis's fields first, with Redis's meaning: total -1 and perc 0
		// while a diskless master has not said how much it sends.
		total := max(st.SyncTotal, 0)
		kv("master_sync_total_bytes", st.SyncTotal)
		kv("master_sync_read_bytes", st.SyncRead)
		kv("master_sync_left_bytes", max(total-st.SyncRead, 0))
		kv("master_sync_perc", fmt.Sprintf("%.2f", percent(st.SyncRead, total)))
		kv("master_sync_last_io_seconds_ago", max(lastIO, 0))
		// The relay's: elapsed time and mean rate since the transfer began
		// (0 while the master is still preparing it), and an estimate of
		// the total when the master announced none.
		elapsed := 0.0
		if !st.SyncStart.IsZero() {
			elapsed = time.Since(st.SyncStart).Seconds()
		}
		kv("master_sync_elapsed_seconds", int(elapsed))
		rate := 0.0
		if elapsed > 0 {
			rate = float64(st.SyncRead) / elapsed
		}
		kv("master_sync_rate_bytes_per_sec", int64(rate))
		if st.SyncEstimate >= 0 {
			kv("master_sync_estimated_total_bytes", st.SyncEstimate)
			kv("master_sync_estimated_perc", fmt.Sprintf("%.2f", percent(st.SyncRead, st.SyncEstimate)))
			kv("master_sync_estimate_source", st.SyncEstimateSource)
		}
	}
	if !up {
		down := -1
		if !st.LinkSince.IsZero() {
			down = int(time.Since(st.LinkSince).Seconds())
		}
		kv("master_link_down_since_seconds", down)
	}
	kv("slave_priority", 0)
	kv("slave_read_only", 1)
	kv("replica_announced", 1)
	reps := r.Replicas()
	kv("connected_slaves", len(reps))
	for i, rep := range reps {
		lag := 0
		if rep.State == stateOnline {
			lag = int(rep.AckAge.Seconds())
		}
		// Redis's five fields, then the relay's, appended: Sentinel finds
		// ip= and port= by search and redis_exporter splits on "," and "="
		// and ignores keys it does not know. rdb_sent_bytes and
		// rdb_size_bytes are the snapshot bytes sent to the replica in
		// this session's full sync and that snapshot's size (-1 while it
		// is still arriving from upstream, 0 after a partial resync).
		fmt.Fprintf(b, "slave%d:ip=%s,port=%d,state=%s,offset=%d,lag=%d,rdb_sent_bytes=%d,rdb_size_bytes=%d\r\n",
			i, rep.IP, rep.Port, rep.State, rep.AckOffset, lag, rep.BulkSent, rep.BulkTotal)
	}
	kv("master_failover_state", "no-failover")
	id := st.Identity
	if id.ReplID == "" {
		id = replstream.NewIdentity(replstream.NoReplID)
	}
	kv("master_replid", id.ReplID)
	kv("master_replid2", id.ReplID2)
	kv("master_repl_offset", off)
	kv("second_repl_offset", id.SecondOffset)
	kv("repl_backlog_active", b2i(st.HasHistory))
	kv("repl_backlog_size", st.Log.RingSize)
	kv("repl_backlog_first_byte_offset", st.Log.First)
	kv("repl_backlog_histlen", st.Log.Next-st.Log.First)
}

// appendRole encodes ROLE as a Redis replica answers it.
func (r *Relay) appendRole(out []byte) []byte {
	st := r.Status()
	host, port, _ := net.SplitHostPort(st.MasterAddr)
	p, _ := strconv.ParseInt(port, 10, 64)
	state := st.LinkState
	off := int64(-1)
	if st.HasHistory {
		off = st.MasterOffset()
	}
	out = appendArray(out, 5)
	out = appendBulk(out, "slave")
	out = appendBulk(out, host)
	out = appendInt(out, p)
	out = appendBulk(out, state)
	return appendInt(out, off)
}
