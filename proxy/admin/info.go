package admin

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/proxy/downstream"
	"github.com/redis-relay/redis-relay/proxy/status"
	"github.com/redis-relay/redis-relay/proxy/upstream"
	"github.com/redis-relay/redis-relay/replstream"
)

// infoSections are the sections INFO knows, in the order it writes them
// (Redis's order, then the relay's own).
var infoSections = []string{"server", "clients", "memory", "persistence", "stats", "replication", "cpu", "relay"}

// DefaultRedisVersion is what INFO reports as redis_version before the
// relay has seen a snapshot of its master: the oldest Redis whose
// replication protocol (PSYNC2, EOF-marked transfers) the relay speaks.
const DefaultRedisVersion = "7.0.0"

// infoCommand answers INFO [section ...] with one bulk string.
func (a *Admin) infoCommand(out []byte, _ clientInfo, args [][]byte) ([]byte, effect) {
	return resp.AppendBulk(out, a.info(args[1:])), effect{}
}

// info renders INFO [section ...] in Redis's format. Like Redis 7 it takes
// several sections; "", "all", "default" and "everything" name them all,
// an unknown name none.
func (a *Admin) info(args [][]byte) string {
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
	st := a.relay.Status()
	var b strings.Builder
	kv := func(k string, v any) { fmt.Fprintf(&b, "%s:%v\r\n", k, v) }
	bodies := map[string]func(){
		"server": func() {
			version, from := st.MasterVersion, "snapshot"
			if version == "" {
				version, from = DefaultRedisVersion, "default"
			}
			kv("redis_version", version)
			kv("relay_version", a.version)
			kv("relay_redis_version_source", from)
			kv("redis_mode", "relay")
			kv("os", runtime.GOOS+" "+runtime.GOARCH)
			kv("process_id", os.Getpid())
			kv("run_id", a.runID)
			kv("uptime_in_seconds", int(time.Since(a.started).Seconds()))
		},
		"clients": func() {
			kv("connected_clients", a.conns.ClientCount())
			kv("maxclients", a.cfg.Get().MaxClients)
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
		"replication": func() { a.writeReplication(&b, &st) },
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
			kv("upstream_branch_cuts", st.BranchCuts)
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
			kv("snapshot_source_unproven", st.SourceUnproven)
			if st.LastFallback != "" {
				kv("snapshot_source_last_fallback", strconv.Quote(st.LastFallback))
			}
			kv("hold_active", b2i(st.HoldActive))
			if st.HoldActive {
				kv("hold_command", st.HoldCommand)
				kv("hold_offset", st.HoldAt)
				kv("hold_since_seconds", int(time.Since(st.HoldSince).Seconds()))
				if st.HoldSnapshot {
					kv("hold_snapshot_offset", st.HoldSnapshotOffset)
				}
			}
			kv("hold_trips", st.HoldTrips)
			if cs := st.ClusterShard; cs != (upstream.ClusterShard{}) {
				kv("cluster_shard_slots", cs.Slots)
				kv("cluster_shard_master_id", cs.MasterID)
				kv("cluster_shard_nodes", cs.Nodes)
			}
			for _, reason := range downstream.CloseReasons() {
				if n := st.Disconnects[reason]; n > 0 {
					kv("replica_disconnects_"+string(reason), n)
				}
			}
			if st.LastDownReason != "" {
				kv("upstream_link_down_reason", st.LastDownReason)
			}
			for _, reason := range upstream.LinkDownReasons() {
				if n := st.LinkDowns[reason]; n > 0 {
					kv("upstream_link_downs_"+string(reason), n)
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

func (a *Admin) writeReplication(b *strings.Builder, st *status.Status) {
	kv := func(k string, v any) { fmt.Fprintf(b, "%s:%v\r\n", k, v) }
	host, port, _ := net.SplitHostPort(st.MasterAddr)
	up := st.LinkState == upstream.LinkConnected
	kv("role", "slave")
	kv("master_host", host)
	kv("master_port", port)
	kv("master_link_status", map[bool]string{true: "up", false: "down"}[up])
	lastIO := -1
	if !st.LastIO.IsZero() {
		lastIO = int(time.Since(st.LastIO).Seconds())
	}
	kv("master_last_io_seconds_ago", lastIO)
	syncing := st.LinkState == upstream.LinkSync
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
	kv("replica_announced", b2i(a.cfg.Get().ReplicaAnnounced))
	reps := a.relay.Replicas()
	kv("connected_slaves", len(reps))
	for i, rep := range reps {
		lag := 0
		if rep.State == downstream.StateOnline {
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

// roleCommand answers ROLE.
func (a *Admin) roleCommand(out []byte, _ clientInfo, _ [][]byte) ([]byte, effect) {
	return a.appendRole(out), effect{}
}

// appendRole encodes ROLE as a Redis replica answers it.
func (a *Admin) appendRole(out []byte) []byte {
	st := a.relay.Status()
	host, port, _ := net.SplitHostPort(st.MasterAddr)
	p, _ := strconv.ParseInt(port, 10, 64)
	state := st.LinkState
	off := int64(-1)
	if st.HasHistory {
		off = st.MasterOffset()
	}
	out = resp.AppendArray(out, 5)
	out = resp.AppendBulk(out, "slave")
	out = resp.AppendBulk(out, host)
	out = resp.AppendInt(out, p)
	out = resp.AppendBulk(out, state)
	return resp.AppendInt(out, off)
}
