package metrics

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/redis-relay/redis-relay/proxy"
	"github.com/redis-relay/redis-relay/proxy/acl"
	"github.com/redis-relay/redis-relay/replstream"
)

// fixedSource is a Source that returns the same values on every scrape. It
// stands in for the relay only to unit-test the mapping from Status to
// metrics; the relay itself is exercised against real redis-server
// processes elsewhere.
type fixedSource struct {
	status   proxy.Status
	replicas []proxy.ReplicaInfo
}

func (s *fixedSource) Status() proxy.Status          { return s.status }
func (s *fixedSource) Replicas() []proxy.ReplicaInfo { return s.replicas }

var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// allReasons is what a running relay reports in Status.Disconnects: every
// reason, counted or not.
var allReasons = []proxy.CloseReason{
	"replica_closed", "write_error", "timeout", "fell_behind", "history_replaced",
	"replid_changed", "snapshot_abandoned", "protocol_error", "shutdown", "rdb_only_done", "killed",
	"stream_cut", "refused",
}

// busyRelay is a relay streaming from its master with three replicas.
func busyRelay() *fixedSource {
	disc := make(map[proxy.CloseReason]int64, len(allReasons))
	for _, r := range allReasons {
		disc[r] = 0
	}
	disc["fell_behind"] = 2
	disc["timeout"] = 1
	downs := make(map[proxy.LinkDownReason]int64)
	for _, r := range proxy.LinkDownReasons() {
		downs[r] = 0
	}
	downs["master_closed"] = 3
	return &fixedSource{
		status: proxy.Status{
			Identity:   replstream.Identity{ReplID: strings.Repeat("a", 40), ReplID2: strings.Repeat("0", 40), SecondOffset: -1},
			HasHistory: true,
			Log: replstream.LogStats{
				First: 1001, Next: 5001, Synced: 5001,
				RingBytes: 1000, RingSize: 1 << 20, DiskBytes: 4000, Segments: 2,
			},
			Snapshot: proxy.Snapshot{
				ReplID: strings.Repeat("a", 40), Offset: 1000, Size: 123456,
				Created: testNow.Add(-90 * time.Second), Keys: 777, Expires: 3,
			},
			RecoverOldestOffset: 1000, RecoverOldestTime: testNow.Add(-90 * time.Second), RecoverNewestTime: testNow.Add(-time.Second),
			LinkState:           "connected",
			MasterAddr:          "10.0.0.5:6379",
			LastIO:              testNow.Add(-1500 * time.Millisecond),
			SyncTotal:           123456,
			SyncRead:            123456,
			SyncEstimate:        120000,
			SyncEstimateSource:  "previous_snapshot",
			AckedUpstream:       4990,
			FullSyncsServed:     3,
			PartialSyncsServed:  5,
			PartialSyncsErr:     1,
			UpstreamFullSyncs:   1,
			UpstreamPartials:    4,
			BytesFromUpstream:   200000,
			BytesToReplicas:     600000,
			Disconnects:         disc,
			LinkDowns:           downs,
			Commands:            map[string]int64{"set": 10, "incr": 4, "ping": 2},
			Connections:         9,
			RejectedConns:       1,
			ProtocolErrors:      2,
			ACLDenied:           []acl.DeniedCount{{User: "replica-user", Command: "config|set", Count: 2}},
			SnapshotsRejected:   1,
			SnapshotParseErrors: 2,
			GuardTrips:          2,
			Refreshes:           6,
			RefreshFailures:     1,
			TailCuts:            3,
			ClusterShard:        proxy.ClusterShard{Slots: "0-5460", MasterID: strings.Repeat("c", 40), Nodes: 2},
		},
		replicas: []proxy.ReplicaInfo{
			{Addr: "10.0.0.7:51000", IP: "10.0.0.7", Port: 6379, State: "online", AckOffset: 5000, AckAge: 250 * time.Millisecond, BulkSent: 123456, BulkTotal: 123456},
			{Addr: "10.0.0.8:51001", IP: "10.0.0.8", Port: 6379, State: "online", AckOffset: 4200, AckAge: 3 * time.Second},
			{Addr: "10.0.0.9:51002", IP: "10.0.0.9", Port: 0, State: "send_bulk", BulkSent: 4096, BulkTotal: -1},
		},
	}
}

func testRegistry(src Source) *prometheus.Registry {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newCollector(src, func() time.Time { return testNow }))
	return reg
}

func TestExposition(t *testing.T) {
	reg := testRegistry(busyRelay())
	tests := []struct {
		name string
		want string
	}{
		{"upstream", `
# HELP redis_relay_upstream_link_up 1 while the link to the upstream master is streaming, else 0.
# TYPE redis_relay_upstream_link_up gauge
redis_relay_upstream_link_up 1
# HELP redis_relay_upstream_link_state 1 for the upstream link's current state, 0 for the others.
# TYPE redis_relay_upstream_link_state gauge
redis_relay_upstream_link_state{state="connect"} 0
redis_relay_upstream_link_state{state="connected"} 1
redis_relay_upstream_link_state{state="connecting"} 0
redis_relay_upstream_link_state{state="handshake"} 0
redis_relay_upstream_link_state{state="none"} 0
redis_relay_upstream_link_state{state="sync"} 0
# HELP redis_relay_master_repl_offset Offset of the last replication stream byte the relay holds (master_repl_offset).
# TYPE redis_relay_master_repl_offset gauge
redis_relay_master_repl_offset 5000
# HELP redis_relay_upstream_acked_offset Last offset the relay acknowledged to its upstream with REPLCONF ACK.
# TYPE redis_relay_upstream_acked_offset gauge
redis_relay_upstream_acked_offset 4990
# HELP redis_relay_upstream_last_io_seconds Seconds since the last byte was read from the upstream; absent before the first.
# TYPE redis_relay_upstream_last_io_seconds gauge
redis_relay_upstream_last_io_seconds 1.5
# HELP redis_relay_upstream_full_syncs_total Full resyncs the relay received from its upstream.
# TYPE redis_relay_upstream_full_syncs_total counter
redis_relay_upstream_full_syncs_total 1
# HELP redis_relay_upstream_partial_syncs_total Partial resyncs (+CONTINUE) the relay obtained from its upstream.
# TYPE redis_relay_upstream_partial_syncs_total counter
redis_relay_upstream_partial_syncs_total 4
# HELP redis_relay_upstream_sync_in_progress 1 while a snapshot is arriving from the upstream, else 0.
# TYPE redis_relay_upstream_sync_in_progress gauge
redis_relay_upstream_sync_in_progress 0
# HELP redis_relay_upstream_sync_bytes_received Snapshot bytes received in the current or most recent upstream full sync.
# TYPE redis_relay_upstream_sync_bytes_received gauge
redis_relay_upstream_sync_bytes_received 123456
# HELP redis_relay_upstream_sync_bytes_expected Announced size of the current or most recent upstream snapshot; absent while unknown (EOF-marked transfer).
# TYPE redis_relay_upstream_sync_bytes_expected gauge
redis_relay_upstream_sync_bytes_expected 123456
# HELP redis_relay_upstream_sync_bytes_estimated While a snapshot of unknown size arrives: an estimate of its size, by where the estimate comes from; absent otherwise.
# TYPE redis_relay_upstream_sync_bytes_estimated gauge
redis_relay_upstream_sync_bytes_estimated{source="previous_snapshot"} 120000
`},
		{"replicas", `
# HELP redis_relay_connected_replicas Downstream replica sessions.
# TYPE redis_relay_connected_replicas gauge
redis_relay_connected_replicas 3
# HELP redis_relay_replica_ack_offset Last offset a downstream replica acknowledged.
# TYPE redis_relay_replica_ack_offset gauge
redis_relay_replica_ack_offset{replica="10.0.0.7:6379"} 5000
redis_relay_replica_ack_offset{replica="10.0.0.8:6379"} 4200
redis_relay_replica_ack_offset{replica="10.0.0.9:51002"} 0
# HELP redis_relay_replica_lag_bytes Bytes between master_repl_offset and a replica's acknowledged offset.
# TYPE redis_relay_replica_lag_bytes gauge
redis_relay_replica_lag_bytes{replica="10.0.0.7:6379"} 0
redis_relay_replica_lag_bytes{replica="10.0.0.8:6379"} 800
redis_relay_replica_lag_bytes{replica="10.0.0.9:51002"} 5000
# HELP redis_relay_replica_lag_seconds Seconds since an online replica's last acknowledgement; 0 while not online.
# TYPE redis_relay_replica_lag_seconds gauge
redis_relay_replica_lag_seconds{replica="10.0.0.7:6379"} 0.25
redis_relay_replica_lag_seconds{replica="10.0.0.8:6379"} 3
redis_relay_replica_lag_seconds{replica="10.0.0.9:51002"} 0
# HELP redis_relay_replica_state 1 for a replica session's current state, 0 for the others.
# TYPE redis_relay_replica_state gauge
redis_relay_replica_state{replica="10.0.0.7:6379",state="online"} 1
redis_relay_replica_state{replica="10.0.0.7:6379",state="send_bulk"} 0
redis_relay_replica_state{replica="10.0.0.7:6379",state="wait_bgsave"} 0
redis_relay_replica_state{replica="10.0.0.8:6379",state="online"} 1
redis_relay_replica_state{replica="10.0.0.8:6379",state="send_bulk"} 0
redis_relay_replica_state{replica="10.0.0.8:6379",state="wait_bgsave"} 0
redis_relay_replica_state{replica="10.0.0.9:51002",state="online"} 0
redis_relay_replica_state{replica="10.0.0.9:51002",state="send_bulk"} 1
redis_relay_replica_state{replica="10.0.0.9:51002",state="wait_bgsave"} 0
# HELP redis_relay_replica_sync_bytes_sent Snapshot bytes sent to a replica in its session's full sync; 0 when the session began with a partial resync.
# TYPE redis_relay_replica_sync_bytes_sent gauge
redis_relay_replica_sync_bytes_sent{replica="10.0.0.7:6379"} 123456
redis_relay_replica_sync_bytes_sent{replica="10.0.0.8:6379"} 0
redis_relay_replica_sync_bytes_sent{replica="10.0.0.9:51002"} 4096
# HELP redis_relay_replica_sync_bytes_expected Size of the snapshot a replica's full sync sends; absent while it is still arriving from upstream with its size unknown.
# TYPE redis_relay_replica_sync_bytes_expected gauge
redis_relay_replica_sync_bytes_expected{replica="10.0.0.7:6379"} 123456
redis_relay_replica_sync_bytes_expected{replica="10.0.0.8:6379"} 0
`},
		{"served", `
# HELP redis_relay_full_syncs_served_total Full resyncs served to downstream replicas (INFO sync_full).
# TYPE redis_relay_full_syncs_served_total counter
redis_relay_full_syncs_served_total 3
# HELP redis_relay_partial_syncs_served_total Partial resyncs accepted from downstream replicas (INFO sync_partial_ok).
# TYPE redis_relay_partial_syncs_served_total counter
redis_relay_partial_syncs_served_total 5
# HELP redis_relay_partial_syncs_rejected_total Partial resync requests answered with a full resync (INFO sync_partial_err).
# TYPE redis_relay_partial_syncs_rejected_total counter
redis_relay_partial_syncs_rejected_total 1
# HELP redis_relay_replica_disconnects_total Downstream replica sessions ended, by reason.
# TYPE redis_relay_replica_disconnects_total counter
redis_relay_replica_disconnects_total{reason="fell_behind"} 2
redis_relay_replica_disconnects_total{reason="history_replaced"} 0
redis_relay_replica_disconnects_total{reason="killed"} 0
redis_relay_replica_disconnects_total{reason="protocol_error"} 0
redis_relay_replica_disconnects_total{reason="rdb_only_done"} 0
redis_relay_replica_disconnects_total{reason="refused"} 0
redis_relay_replica_disconnects_total{reason="replica_closed"} 0
redis_relay_replica_disconnects_total{reason="replid_changed"} 0
redis_relay_replica_disconnects_total{reason="shutdown"} 0
redis_relay_replica_disconnects_total{reason="snapshot_abandoned"} 0
redis_relay_replica_disconnects_total{reason="stream_cut"} 0
redis_relay_replica_disconnects_total{reason="timeout"} 1
redis_relay_replica_disconnects_total{reason="write_error"} 0
# HELP redis_relay_net_input_bytes_total Replication bytes read from the upstream, snapshots included.
# TYPE redis_relay_net_input_bytes_total counter
redis_relay_net_input_bytes_total 200000
# HELP redis_relay_net_output_bytes_total Replication bytes written to downstream replicas, snapshots included.
# TYPE redis_relay_net_output_bytes_total counter
redis_relay_net_output_bytes_total 600000
# HELP redis_relay_commands_relayed_total Commands relayed from the upstream stream, by lower-case name.
# TYPE redis_relay_commands_relayed_total counter
redis_relay_commands_relayed_total{command="incr"} 4
redis_relay_commands_relayed_total{command="ping"} 2
redis_relay_commands_relayed_total{command="set"} 10
# HELP redis_relay_connections_received_total Connections accepted on the replica port.
# TYPE redis_relay_connections_received_total counter
redis_relay_connections_received_total 9
# HELP redis_relay_rejected_connections_total Connections refused on the replica port.
# TYPE redis_relay_rejected_connections_total counter
redis_relay_rejected_connections_total 1
# HELP redis_relay_protocol_errors_total Malformed requests from downstream clients.
# TYPE redis_relay_protocol_errors_total counter
redis_relay_protocol_errors_total 2
`},
		{"log and snapshot", `
# HELP redis_relay_log_first_offset Offset of the oldest byte the replication log retains.
# TYPE redis_relay_log_first_offset gauge
redis_relay_log_first_offset 1001
# HELP redis_relay_log_next_offset Offset the next byte appended to the replication log will get (master_repl_offset+1).
# TYPE redis_relay_log_next_offset gauge
redis_relay_log_next_offset 5001
# HELP redis_relay_log_retained_bytes Replication log bytes held, by tier; the ring is a copy of the newest disk bytes.
# TYPE redis_relay_log_retained_bytes gauge
redis_relay_log_retained_bytes{tier="disk"} 4000
redis_relay_log_retained_bytes{tier="ring"} 1000
# HELP redis_relay_log_segments Segment files of the replication log.
# TYPE redis_relay_log_segments gauge
redis_relay_log_segments 2
# HELP redis_relay_ring_size_bytes Capacity of the in-memory ring (repl-backlog-size).
# TYPE redis_relay_ring_size_bytes gauge
redis_relay_ring_size_bytes 1.048576e+06
# HELP redis_relay_snapshot_size_bytes Size of the stored RDB snapshot.
# TYPE redis_relay_snapshot_size_bytes gauge
redis_relay_snapshot_size_bytes 123456
# HELP redis_relay_snapshot_offset Replication offset the stored snapshot corresponds to.
# TYPE redis_relay_snapshot_offset gauge
redis_relay_snapshot_offset 1000
# HELP redis_relay_snapshot_age_seconds Seconds since the stored snapshot was taken; 0 when there is none.
# TYPE redis_relay_snapshot_age_seconds gauge
redis_relay_snapshot_age_seconds 90
# HELP redis_relay_snapshot_keys Keys in the stored snapshot; absent when unknown.
# TYPE redis_relay_snapshot_keys gauge
redis_relay_snapshot_keys 777
# HELP redis_relay_snapshots_rejected_total Snapshots received from upstream that failed validation and were discarded.
# TYPE redis_relay_snapshots_rejected_total counter
redis_relay_snapshots_rejected_total 1
# HELP redis_relay_snapshot_parse_errors_total Snapshots accepted whose contents the RDB parser could not summarise (key counts are then unknown).
# TYPE redis_relay_snapshot_parse_errors_total counter
redis_relay_snapshot_parse_errors_total 2
# HELP redis_relay_snapshot_refreshes_total Snapshots refreshed from upstream over a second connection.
# TYPE redis_relay_snapshot_refreshes_total counter
redis_relay_snapshot_refreshes_total 6
# HELP redis_relay_snapshot_refresh_failures_total Snapshot refreshes that failed.
# TYPE redis_relay_snapshot_refresh_failures_total counter
redis_relay_snapshot_refresh_failures_total 1
# HELP redis_relay_upstream_tail_cuts_total Times the relay dropped an unfinished command or transaction from the end of its log after its upstream link broke.
# TYPE redis_relay_upstream_tail_cuts_total counter
redis_relay_upstream_tail_cuts_total 3
# HELP redis_relay_guard_tripped 1 while the empty-master guard holds back a snapshot from upstream.
# TYPE redis_relay_guard_tripped gauge
redis_relay_guard_tripped 0
# HELP redis_relay_guard_trips_total Times the empty-master guard held back a snapshot from upstream.
# TYPE redis_relay_guard_trips_total counter
redis_relay_guard_trips_total 2
# HELP redis_relay_hold_active 1 while the command tripwire (hold-on-commands) holds replicas before a command from upstream.
# TYPE redis_relay_hold_active gauge
redis_relay_hold_active 0
# HELP redis_relay_hold_trips_total Times the command tripwire held replicas.
# TYPE redis_relay_hold_trips_total counter
redis_relay_hold_trips_total 0
# HELP redis_relay_full_syncs_queued Full syncs waiting for a slot under full-sync-max-concurrent.
# TYPE redis_relay_full_syncs_queued gauge
redis_relay_full_syncs_queued 0
# HELP redis_relay_full_sync_paced_bytes_total Snapshot bytes sent to replicas under a full-sync bandwidth limit.
# TYPE redis_relay_full_sync_paced_bytes_total counter
redis_relay_full_sync_paced_bytes_total 0
# HELP redis_relay_full_sync_pace_wait_seconds_total Time full syncs waited for the full-sync bandwidth limits.
# TYPE redis_relay_full_sync_pace_wait_seconds_total counter
redis_relay_full_sync_pace_wait_seconds_total 0
# HELP redis_relay_link_compression_bytes_total Bytes through compressed relay-to-relay links, by direction (in: from the upstream relay, out: to relays below) and layer (stream: replication bytes, wire: compressed bytes sent or received).
# TYPE redis_relay_link_compression_bytes_total counter
redis_relay_link_compression_bytes_total{direction="in",layer="stream"} 0
redis_relay_link_compression_bytes_total{direction="in",layer="wire"} 0
redis_relay_link_compression_bytes_total{direction="out",layer="stream"} 0
redis_relay_link_compression_bytes_total{direction="out",layer="wire"} 0
# HELP redis_relay_master_forks_avoided_total Snapshots taken from the snapshot source (not the master) that the master continued after: forks the master did not make.
# TYPE redis_relay_master_forks_avoided_total counter
redis_relay_master_forks_avoided_total 0
# HELP redis_relay_snapshot_source_fallbacks_total Times the relay took the master's own snapshot because the snapshot source was down or its snapshot was not on the master's history.
# TYPE redis_relay_snapshot_source_fallbacks_total counter
redis_relay_snapshot_source_fallbacks_total 0
# HELP redis_relay_snapshot_source_unproven_total Snapshots from the snapshot source refused because their repl-id/repl-offset aux fields were missing or did not name the history and offset the source announced.
# TYPE redis_relay_snapshot_source_unproven_total counter
redis_relay_snapshot_source_unproven_total 0
# HELP redis_relay_recovery_window_seconds How far back redis-relay recover can rebuild the dataset: from the oldest snapshot the log still follows to the newest byte held.
# TYPE redis_relay_recovery_window_seconds gauge
redis_relay_recovery_window_seconds 89
`},
		{"info", `
# HELP redis_relay_info Always 1; labels carry the relay version and the replication ID it serves.
# TYPE redis_relay_info gauge
redis_relay_info{replid="aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",version="` + proxy.Version + `"} 1
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := testutil.GatherAndCompare(reg, strings.NewReader(tt.want), familiesIn(tt.want)...); err != nil {
				t.Error(err)
			}
		})
	}
}

// familiesIn returns the family names a "# TYPE" line announces in text.
func familiesIn(text string) []string {
	var names []string
	for line := range strings.Lines(text) {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			names = append(names, f[2])
		}
	}
	return names
}

// A relay that has just started: no history, no link yet, no replicas.
func TestFreshRelay(t *testing.T) {
	reg := testRegistry(&fixedSource{status: proxy.Status{SyncTotal: -1, Snapshot: proxy.Snapshot{Keys: -1}}})
	want := `
# HELP redis_relay_upstream_link_up 1 while the link to the upstream master is streaming, else 0.
# TYPE redis_relay_upstream_link_up gauge
redis_relay_upstream_link_up 0
# HELP redis_relay_upstream_link_state 1 for the upstream link's current state, 0 for the others.
# TYPE redis_relay_upstream_link_state gauge
redis_relay_upstream_link_state{state="connect"} 0
redis_relay_upstream_link_state{state="connected"} 0
redis_relay_upstream_link_state{state="connecting"} 0
redis_relay_upstream_link_state{state="handshake"} 0
redis_relay_upstream_link_state{state="none"} 1
redis_relay_upstream_link_state{state="sync"} 0
# HELP redis_relay_master_repl_offset Offset of the last replication stream byte the relay holds (master_repl_offset).
# TYPE redis_relay_master_repl_offset gauge
redis_relay_master_repl_offset 0
# HELP redis_relay_connected_replicas Downstream replica sessions.
# TYPE redis_relay_connected_replicas gauge
redis_relay_connected_replicas 0
# HELP redis_relay_snapshot_age_seconds Seconds since the stored snapshot was taken; 0 when there is none.
# TYPE redis_relay_snapshot_age_seconds gauge
redis_relay_snapshot_age_seconds 0
`
	names := append(familiesIn(want),
		"redis_relay_upstream_last_io_seconds", "redis_relay_upstream_sync_bytes_expected", "redis_relay_snapshot_keys",
		"redis_relay_replica_lag_bytes", "redis_relay_replica_disconnects_total", "redis_relay_commands_relayed_total")
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

func TestSyncInProgress(t *testing.T) {
	for _, tt := range []struct {
		name    string
		st      proxy.Status
		syncing float64
	}{
		{"link in sync", proxy.Status{LinkState: "sync", SyncTotal: -1}, 1},
		{"snapshot pending", proxy.Status{LinkState: "connected", SyncPending: true}, 1},
		{"streaming", proxy.Status{LinkState: "connected"}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg := testRegistry(&fixedSource{status: tt.st})
			if got := gatherValue(t, reg, "redis_relay_upstream_sync_in_progress", nil); got != tt.syncing {
				t.Errorf("sync_in_progress = %v, want %v", got, tt.syncing)
			}
		})
	}
}

// A diskless master announces no size: expected is absent and the estimate
// is there, labelled with its source; once the size is known, the reverse.
func TestUpstreamSyncEstimate(t *testing.T) {
	for _, tt := range []struct {
		name               string
		st                 proxy.Status
		expected, estimate bool
	}{
		{"diskless, estimated", proxy.Status{LinkState: "sync", SyncTotal: -1, SyncRead: 10, SyncEstimate: 5000, SyncEstimateSource: "master_used_memory"}, false, true},
		{"diskless, no estimate", proxy.Status{LinkState: "sync", SyncTotal: -1, SyncRead: 10, SyncEstimate: -1}, false, false},
		{"sized", proxy.Status{LinkState: "sync", SyncTotal: 4000, SyncRead: 10, SyncEstimate: -1}, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mfs, err := testRegistry(&fixedSource{status: tt.st}).Gather()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, mf := range mfs {
				got[mf.GetName()] = true
				if mf.GetName() == "redis_relay_upstream_sync_bytes_estimated" {
					m := mf.GetMetric()[0]
					if m.GetGauge().GetValue() != float64(tt.st.SyncEstimate) || m.GetLabel()[0].GetValue() != tt.st.SyncEstimateSource {
						t.Errorf("estimate %v", m)
					}
				}
			}
			if got["redis_relay_upstream_sync_bytes_expected"] != tt.expected || got["redis_relay_upstream_sync_bytes_estimated"] != tt.estimate {
				t.Errorf("expected exposed %v, estimated exposed %v", got["redis_relay_upstream_sync_bytes_expected"], got["redis_relay_upstream_sync_bytes_estimated"])
			}
		})
	}
}

func TestGuardAndUnknownStates(t *testing.T) {
	src := &fixedSource{
		status: proxy.Status{LinkState: "paused", GuardTripped: true, HasHistory: true, Snapshot: proxy.Snapshot{Keys: -1}},
		replicas: []proxy.ReplicaInfo{
			{Addr: "127.0.0.1:40000", IP: "127.0.0.1", Port: 7000, State: "draining"},
		},
	}
	reg := testRegistry(src)
	if got := gatherValue(t, reg, "redis_relay_guard_tripped", nil); got != 1 {
		t.Errorf("guard_tripped = %v, want 1", got)
	}
	if got := gatherValue(t, reg, "redis_relay_upstream_link_state", map[string]string{"state": "paused"}); got != 1 {
		t.Errorf(`link_state{state="paused"} = %v, want 1`, got)
	}
	if got := gatherValue(t, reg, "redis_relay_replica_state", map[string]string{"replica": "127.0.0.1:7000", "state": "draining"}); got != 1 {
		t.Errorf(`replica_state{state="draining"} = %v, want 1`, got)
	}
	if n, err := testutil.GatherAndCount(reg, "redis_relay_snapshot_keys"); err != nil || n != 0 {
		t.Errorf("snapshot_keys series = %d (%v), want none when keys are unknown", n, err)
	}
}

// Sessions that claim the same ip:port, or carry bytes that are not UTF-8,
// must not break the scrape.
func TestReplicaLabelsStayUnique(t *testing.T) {
	src := &fixedSource{
		status: proxy.Status{HasHistory: true, Log: replstream.LogStats{Next: 101}, Commands: map[string]int64{"se\xfft": 1, "se\xfet": 2}},
		replicas: []proxy.ReplicaInfo{
			{Addr: "10.0.0.1:50000", IP: "10.0.0.1", Port: 6379, State: "online", AckOffset: 100},
			{Addr: "10.0.0.1:50001", IP: "10.0.0.1", Port: 6379, State: "online", AckOffset: 200},
			{Addr: "10.0.0.2:50002", IP: "bad\xffip", Port: 6379, State: "online", AckOffset: 50},
		},
	}
	reg := testRegistry(src)
	want := `
# HELP redis_relay_replica_lag_bytes Bytes between master_repl_offset and a replica's acknowledged offset.
# TYPE redis_relay_replica_lag_bytes gauge
redis_relay_replica_lag_bytes{replica="10.0.0.1:50001"} 0
redis_relay_replica_lag_bytes{replica="10.0.0.1:6379"} 0
redis_relay_replica_lag_bytes{replica="bad<?>ip:6379"} 50
# HELP redis_relay_commands_relayed_total Commands relayed from the upstream stream, by lower-case name.
# TYPE redis_relay_commands_relayed_total counter
redis_relay_commands_relayed_total{command="se<?>t"} 3
`
	want = strings.ReplaceAll(want, "<?>", "\uFFFD")
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), familiesIn(want)...); err != nil {
		t.Error(err)
	}
}

func TestReplicaLabels(t *testing.T) {
	got := replicaLabels([]proxy.ReplicaInfo{
		{Addr: "[::1]:5000", IP: "::1", Port: 6379},
		{Addr: "10.0.0.3:5001", IP: "10.0.0.3"},
		{Addr: "10.0.0.4:6379", IP: "10.0.0.4", Port: 0},
		{Addr: "10.0.0.4:6379", IP: "10.0.0.4", Port: 6379},
		{},
	})
	want := []string{"[::1]:6379", "10.0.0.3:5001", "10.0.0.4:6379", "10.0.0.4:6379#2", "#2"}
	if !slices.Equal(got, want) {
		t.Errorf("replicaLabels = %q, want %q", got, want)
	}
}

// Every family Names lists is exposed by a busy relay, and nothing else
// with the prefix is.
func TestNamesMatchExposition(t *testing.T) {
	mfs, err := testRegistry(busyRelay()).Gather()
	if err != nil {
		t.Fatal(err)
	}
	var exposed []string
	for _, mf := range mfs {
		exposed = append(exposed, mf.GetName())
	}
	if names := Names(); !slices.Equal(exposed, names) {
		t.Errorf("exposed families %q\nNames() %q", exposed, names)
	}
	for _, n := range Names() {
		if !strings.HasPrefix(n, "redis_relay_") {
			t.Errorf("%s lacks the redis_relay_ prefix", n)
		}
	}
}

func TestLint(t *testing.T) {
	for name, src := range map[string]*fixedSource{
		"busy":  busyRelay(),
		"fresh": {},
	} {
		t.Run(name, func(t *testing.T) {
			problems, err := testutil.GatherAndLint(NewRegistry(src))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				t.Errorf("%s: %s", p.Metric, p.Text)
			}
		})
	}
	problems, err := testutil.CollectAndLint(newCollector(busyRelay(), time.Now))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("collector: %s: %s", p.Metric, p.Text)
	}
}

func TestRegistryHasRuntimeCollectors(t *testing.T) {
	mfs, err := NewRegistry(busyRelay()).Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, mf := range mfs {
		have[mf.GetName()] = true
	}
	for _, n := range []string{"go_goroutines", "redis_relay_info"} {
		if !have[n] {
			t.Errorf("registry lacks %s", n)
		}
	}
}

// gatherValue returns the value of the one series of name whose labels
// include match.
func gatherValue(t *testing.T, g prometheus.Gatherer, name string, match map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for k, v := range match {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series %s%v", name, match)
	return 0
}

// docs/metrics.md has a row for every family, and no row for a family that
// does not exist.
func TestDocsListEveryMetric(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "| `redis_relay_"); ok {
			name, _, _ := strings.Cut(rest, "`")
			documented["redis_relay_"+name] = true
		}
	}
	for _, n := range Names() {
		if !documented[n] {
			t.Errorf("docs/metrics.md has no row for %s", n)
		}
		delete(documented, n)
	}
	for n := range documented {
		t.Errorf("docs/metrics.md documents %s, which the collector does not define", n)
	}
}
