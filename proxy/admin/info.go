package admin

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"sort"
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
var infoSections = []string{"server", "clients", "memory", "persistence", "stats", "replication", "cpu", "commandstats", "keyspace", "relay"}

// notDefault are the sections that, as in Redis, only INFO all, INFO
// everything or their own name ask for.
var notDefault = map[string]bool{"commandstats": true}

// redisMode is INFO's redis_mode and HELLO's mode. Redis writes
// standalone, sentinel or cluster; dashboards and redis_exporter's
// instance_info label expect one of them, and to its clients the relay is
// a standalone server (relay_version says what it is).
const redisMode = "standalone"

// DefaultRedisVersion is what INFO reports as redis_version before the
// relay has seen a snapshot of its master: the oldest Redis whose
// replication protocol (PSYNC2, EOF-marked transfers) the relay speaks.
const DefaultRedisVersion = "7.0.0"

// infoCommand answers INFO [section ...] with one bulk string (a verbatim
// string in RESP3).
func (a *Admin) infoCommand(out []byte, who clientInfo, args [][]byte) ([]byte, effect) {
	return resp.AppendText(out, a.info(args[1:]), who.RESP3), effect{}
}

// redisVersion is the Redis version the relay reports (INFO redis_version,
// HELLO): its master's, from the newest snapshot's header, or
// DefaultRedisVersion before it has one; from says which.
func (a *Admin) redisVersion() (version, from string) {
	if v := a.relay.Status().MasterVersion; v != "" {
		return v, "snapshot"
	}
	return DefaultRedisVersion, "default"
}

// info renders INFO [section ...] in Redis's format. Like Redis 7 it takes
// several sections; "", "all", "default" and "everything" name them all,
// an unknown name none.
func (a *Admin) info(args [][]byte) string {
	want := make(map[string]bool, len(args))
	version, versionFrom := a.redisVersion()
	all, dflt := false, len(args) == 0
	for _, a := range args {
		switch name := strings.ToLower(string(a)); name {
		case "all", "everything":
			all = true
		case "default":
			dflt = true
		default:
			want[name] = true
		}
	}
	st := a.relay.Status()
	var b strings.Builder
	kv := func(k string, v any) { fmt.Fprintf(&b, "%s:%v\r\n", k, v) }
	bodies := map[string]func(){
		"server": func() {
			kv("redis_version", version)
			kv("relay_version", a.version)
			kv("relay_redis_version_source", versionFrom)
			kv("redis_mode", redisMode)
			kv("os", runtime.GOOS+" "+runtime.GOARCH)
			kv("arch_bits", strconv.IntSize)
			kv("process_id", os.Getpid())
			kv("run_id", a.runID)
			kv("tcp_port", st.TCPPort)
			kv("server_time_usec", time.Now().UnixMicro())
			kv("uptime_in_seconds", int(time.Since(a.started).Seconds()))
			kv("uptime_in_days", int(time.Since(a.started).Hours()/24))
			if exe, err := os.Executable(); err == nil {
				kv("executable", exe)
			}
		},
		"clients": func() {
			kv("connected_clients", a.conns.ClientCount())
			kv("maxclients", a.cfg.Get().MaxClients)
			kv("blocked_clients", 0)
		},
		"memory": func() {
			writeMemory(&b, &st)
			if st.HasHistory {
				kv("mem_replication_backlog", st.Log.RingBytes)
			}
		},
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
			kv("total_connections_received", st.Connections)
			kv("total_commands_processed", st.TotalCommands())
			kv("instantaneous_ops_per_sec", int64(st.OpsPerSec))
			kv("total_net_input_bytes", st.NetInputBytes)
			kv("total_net_output_bytes", st.NetOutputBytes)
			kv("total_net_repl_input_bytes", st.BytesFromUpstream)
			kv("total_net_repl_output_bytes", st.BytesToReplicas)
			kv("instantaneous_input_kbps", fmt.Sprintf("%.2f", st.InputKbps))
			kv("instantaneous_output_kbps", fmt.Sprintf("%.2f", st.OutputKbps))
			kv("instantaneous_input_repl_kbps", fmt.Sprintf("%.2f", st.ReplInputKbps))
			kv("instantaneous_output_repl_kbps", fmt.Sprintf("%.2f", st.ReplOutputKbps))
			kv("rejected_connections", st.RejectedConns)
			kv("pubsub_channels", a.ps.ChannelCount())
			kv("pubsub_patterns", 0) // PSUBSCRIBE is refused
			kv("total_error_replies", st.ErrorReplies)
			kv("sync_full", st.FullSyncsServed)
			kv("sync_partial_ok", st.PartialSyncsServed)
			kv("sync_partial_err", st.PartialSyncsErr)
			kv("relay_commands_relayed", st.CommandsRelayed)
			kv("relay_commands_from_clients", st.TotalCommands()-st.CommandsRelayed)
		},
		"commandstats": func() { writeCommandStats(&b, &st) },
		"keyspace":     func() { writeKeyspace(&b, &st) },
		"replication":  func() { a.writeReplication(&b, &st) },
		"cpu":          func() { writeCPU(&b) },
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
		if !all && !want[name] && (!dflt || notDefault[name]) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		title := strings.ToUpper(name[:1]) + name[1:]
		switch name {
		case "cpu":
			title = "CPU" // as Redis writes it
		case "commandstats":
			title = "Commandstats"
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

// writeCommandStats writes INFO commandstats: one line per command, with
// the relayed and the client-sent calls of a name added together. A
// relayed command is not executed by the relay, so it adds no time; the
// time is what answering a client's command took. The calls by name of
// relayed commands are published at least once a second, so for a moment
// they may trail total_commands_processed.
func writeCommandStats(b *strings.Builder, st *status.Status) {
	all := make(map[string]downstream.CommandStat, len(st.Commands)+len(st.ClientCommands))
	for name, n := range st.Commands {
		all[name] = downstream.CommandStat{Calls: n}
	}
	for name, c := range st.ClientCommands {
		r := all[name]
		all[name] = downstream.CommandStat{Calls: r.Calls + c.Calls, Usec: c.Usec, Rejected: c.Rejected, Failed: c.Failed}
	}
	names := make([]string, 0, len(all))
	for name := range all {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		c := all[name]
		perCall := 0.0
		if c.Calls > 0 {
			perCall = float64(c.Usec) / float64(c.Calls)
		}
		fmt.Fprintf(b, "cmdstat_%s:calls=%d,usec=%d,usec_per_call=%.2f,rejected_calls=%d,failed_calls=%d\r\n",
			infoSafe(name), c.Calls, c.Usec, perCall, c.Rejected, c.Failed)
	}
}

// infoSafe keeps a command name that came off the wire from breaking an
// INFO line: anything but a letter, digit or one of "-_.|" becomes '_'.
func infoSafe(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', strings.ContainsRune("-_.|", r):
			return r
		}
		return '_'
	}, name)
}

// writeKeyspace writes INFO keyspace from the newest snapshot the relay
// holds: the relay keeps no dataset, so the counts are the snapshot's, as
// of its offset, which relay_keyspace_offset gives (and relay_keyspace_age
// its age in seconds). The writes after it are not counted. Without a
// parsed snapshot there are no db lines. avg_ttl is left out: the relay
// does not keep the expiry times, and Redis's 0 would say no key expires.
func writeKeyspace(b *strings.Builder, st *status.Status) {
	kv := func(k string, v any) { fmt.Fprintf(b, "%s:%v\r\n", k, v) }
	if !st.HasHistory || st.Snapshot.Keys < 0 {
		kv("relay_keyspace_source", "none")
		return
	}
	kv("relay_keyspace_source", "snapshot")
	kv("relay_keyspace_offset", st.Snapshot.Offset)
	if !st.Snapshot.Created.IsZero() {
		kv("relay_keyspace_age", int(time.Since(st.Snapshot.Created).Seconds()))
	}
	for _, db := range st.Snapshot.DBs {
		if db.Keys > 0 {
			fmt.Fprintf(b, "db%d:keys=%d,expires=%d\r\n", db.DB, db.Keys, db.Expires)
		}
	}
}
