package proxy

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/proxy/admin"
)

// infoText runs INFO with args on the relay and returns the raw reply.
func infoText(t testing.TB, relay *testRelay, args ...any) string {
	t.Helper()
	text, err := relay.Client().Do(t.Context(), append([]any{"INFO"}, args...)...).Text()
	if err != nil {
		t.Fatalf("INFO %v: %v", args, err)
	}
	return text
}

// infoHeaders lists the "# Section" headers of an INFO reply, in order.
func infoHeaders(text string) []string {
	var out []string
	for _, line := range strings.Split(text, "\r\n") {
		if h, ok := strings.CutPrefix(line, "# "); ok {
			out = append(out, h)
		}
	}
	return out
}

func TestInfoSections(t *testing.T) {
	_, relay := syncedRelay(t)
	dflt := []string{"Server", "Clients", "Memory", "Persistence", "Stats", "Replication", "CPU", "Keyspace", "Relay"}
	all := []string{"Server", "Clients", "Memory", "Persistence", "Stats", "Replication", "CPU", "Commandstats", "Keyspace", "Relay"}
	for _, tt := range []struct {
		name string
		args []any
		want []string
	}{
		{"none", nil, dflt},
		{"all", []any{"all"}, all},
		{"everything", []any{"everything"}, all},
		{"default", []any{"default"}, dflt},
		{"default and one more", []any{"default", "commandstats"}, all},
		{"one", []any{"replication"}, []string{"Replication"}},
		{"two in Redis's order", []any{"replication", "SERVER"}, []string{"Server", "Replication"}},
		{"repeated", []any{"cpu", "cpu", "memory"}, []string{"Memory", "CPU"}},
		{"unknown ones skipped", []any{"keyspace", "stats", "nosuch"}, []string{"Stats", "Keyspace"}},
		{"only unknown", []any{"nosuch"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := infoHeaders(infoText(t, relay, tt.args...))
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("INFO %v sections = %q, want %q", tt.args, got, tt.want)
			}
		})
	}
}

// The fields redis_exporter maps to its memory and CPU metrics are there,
// numeric, and plausible for a running process.
func TestInfoMemoryAndCPU(t *testing.T) {
	_, relay := syncedRelay(t)
	f := redistest.ParseInfo(infoText(t, relay, "memory", "cpu"))
	num := func(k string) float64 {
		t.Helper()
		v, err := strconv.ParseFloat(f[k], 64)
		if err != nil {
			t.Fatalf("%s = %q: %v", k, f[k], err)
		}
		return v
	}
	used, rss, peak := num("used_memory"), num("used_memory_rss"), num("used_memory_peak")
	if used < 1<<20 || used > 1<<30 {
		t.Errorf("used_memory = %v, want a Go process's worth", used)
	}
	if rss <= 0 || peak < used {
		t.Errorf("used_memory_rss %v, used_memory_peak %v, used_memory %v", rss, peak, used)
	}
	if num("used_memory_dataset") != 0 || num("used_memory_overhead") != used {
		t.Errorf("a relay holds no dataset: dataset %s, overhead %s", f["used_memory_dataset"], f["used_memory_overhead"])
	}
	if num("relay_memory_go_runtime")+num("relay_memory_ring") != used {
		t.Errorf("used_memory %v is not the Go runtime's %s plus the ring's %s", used, f["relay_memory_go_runtime"], f["relay_memory_ring"])
	}
	for _, k := range []string{"allocator_allocated", "allocator_active", "allocator_resident", "maxmemory", "used_cpu_sys_children", "used_cpu_user_children"} {
		num(k)
	}
	// In a Go process the gap between RSS and memory in use is the
	// collector's headroom, not fragmentation: the ratio is left out
	// rather than fire a Redis fragmentation alert.
	if v, ok := f["mem_fragmentation_ratio"]; ok {
		t.Errorf("mem_fragmentation_ratio:%s is reported", v)
	}
	if !strings.HasSuffix(f["used_memory_human"], "M") || f["maxmemory_policy"] != "noeviction" {
		t.Errorf("used_memory_human %q, maxmemory_policy %q", f["used_memory_human"], f["maxmemory_policy"])
	}
	// CPU time only grows, and a relay that has synced has used some.
	user, sys := num("used_cpu_user"), num("used_cpu_sys")
	if user+sys <= 0 {
		t.Errorf("used_cpu_user %v, used_cpu_sys %v", user, sys)
	}
	redistest.Eventually(t, 10*time.Second, func() error {
		infoText(t, relay, "everything") // some work
		g := redistest.ParseInfo(infoText(t, relay, "cpu"))
		u, _ := strconv.ParseFloat(g["used_cpu_user"], 64)
		s, _ := strconv.ParseFloat(g["used_cpu_sys"], 64)
		if u < user || s < sys || u+s == user+sys {
			return fmt.Errorf("cpu %v+%v, was %v+%v", u, s, user, sys)
		}
		return nil
	})
}

// redis_version is the master's, from its snapshot; the relay's own version
// is a separate field. Before the first snapshot: a fixed fallback, marked.
func TestInfoRedisVersion(t *testing.T) {
	master := redistest.Start(t)
	masterVersion := master.Info(t, "server")["redis_version"]
	relay := startRelay(t, "") // no master yet
	f := redistest.ParseInfo(infoText(t, relay, "server"))
	if f["redis_version"] != admin.DefaultRedisVersion || f["relay_redis_version_source"] != "default" || f["relay_version"] != Version {
		t.Fatalf("before any snapshot: %v", f)
	}
	master.Do(t, "SET", "k", "v")
	h, p := master.HostPort()
	if err := relay.Client().Do(t.Context(), "REPLICAOF", h, p).Err(); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 20*time.Second, func() error {
		f = redistest.ParseInfo(infoText(t, relay, "server"))
		if f["redis_version"] != masterVersion || f["relay_redis_version_source"] != "snapshot" {
			return fmt.Errorf("redis_version %q (%s), master's %q", f["redis_version"], f["relay_redis_version_source"], masterVersion)
		}
		return nil
	})
	if f["relay_version"] != Version {
		t.Errorf("relay_version = %q, want %q", f["relay_version"], Version)
	}
	// A restarted relay knows the version from its stored snapshot before
	// it reaches any master.
	relay.Client().Do(t.Context(), "REPLICAOF", "127.0.0.1", strconv.Itoa(redistest.FreePort(t)))
	relay.Restart()
	if v := relay.InfoField(t, "redis_version"); v != masterVersion {
		t.Errorf("after a restart redis_version = %q, want %q", v, masterVersion)
	}
}

func TestAuxVersionRejectsOddBytes(t *testing.T) {
	for in, want := range map[string]string{
		"7.2.4": "7.2.4", "255.255.255": "255.255.255", "8.0.0-rc1": "8.0.0-rc1",
		"7.0\r\nrole:master": "", "7:0": "", strings.Repeat("9", 40): "",
	} {
		if got := auxVersion(map[string]string{"redis-ver": in}); got != want {
			t.Errorf("auxVersion(%q) = %q, want %q", in, got, want)
		}
	}
	if got := auxVersion(map[string]string{"valkey-ver": "8.1.0"}); got != "8.1.0" {
		t.Errorf("valkey-ver alone: %q", got)
	}
}

// A diskless master announces no size. The relay reports bytes and rate
// all along, and an estimate: the master's used_memory from the RDB header
// on a first sync, the previous snapshot's size on a later one.
func TestInfoUpstreamSyncProgressDiskless(t *testing.T) {
	masterA := redistest.Start(t, "--repl-diskless-sync", "yes")
	populate(t, masterA, 0, 100000)
	linkA := redistest.NewFaultProxy(t, masterA.Addr())
	linkA.SetRate(1 << 20)
	relay := startRelay(t, linkA.Addr())

	var f map[string]string
	redistest.Eventually(t, 20*time.Second, func() error {
		f = redistest.ParseInfo(infoText(t, relay, "replication"))
		if f["master_sync_in_progress"] != "1" || f["master_sync_read_bytes"] == "0" || f["master_sync_rate_bytes_per_sec"] == "0" || f["master_sync_estimate_source"] == "" {
			return fmt.Errorf("not yet in a diskless transfer with an estimate: %v", f)
		}
		return nil
	})
	usedMem := masterA.InfoInt(t, "used_memory")
	read, _ := strconv.ParseInt(f["master_sync_read_bytes"], 10, 64)
	est, _ := strconv.ParseInt(f["master_sync_estimated_total_bytes"], 10, 64)
	if f["master_sync_total_bytes"] != "-1" || f["master_sync_perc"] != "0.00" {
		t.Errorf("Redis's own fields changed meaning: total %s, perc %s", f["master_sync_total_bytes"], f["master_sync_perc"])
	}
	if f["master_sync_estimate_source"] != "master_used_memory" || est < usedMem/2 || est > 2*usedMem || est <= read {
		t.Errorf("first sync estimate %d from %s; master used_memory %d, read %d", est, f["master_sync_estimate_source"], usedMem, read)
	}
	if perc, _ := strconv.ParseFloat(f["master_sync_estimated_perc"], 64); perc <= 0 || perc >= 100 {
		t.Errorf("master_sync_estimated_perc = %s", f["master_sync_estimated_perc"])
	}

	// A replica joining now is fed the snapshot as it arrives: its size
	// is unknown until the transfer ends, then it is all it was sent.
	replica := replicaOf(t, relay.HostPort)
	redistest.Eventually(t, 20*time.Second, func() error {
		line := redistest.ParseInfo(infoText(t, relay, "replication"))["slave0"]
		if !strings.Contains(line, "state=send_bulk") || !strings.HasSuffix(line, ",rdb_size_bytes=-1") {
			return fmt.Errorf("slave0:%s", line)
		}
		return nil
	})
	linkA.SetRate(0)
	inSync(t, 30*time.Second, masterA, replica)
	snapBytes := relay.InfoInt(t, "snapshot_bytes")
	redistest.Eventually(t, 10*time.Second, func() error {
		want := fmt.Sprintf("rdb_sent_bytes=%d,rdb_size_bytes=%d", snapBytes, snapBytes)
		if line := relay.InfoField(t, "slave0"); !strings.Contains(line, "state=online") || !strings.HasSuffix(line, want) {
			return fmt.Errorf("slave0:%s, want %s", line, want)
		}
		return nil
	})

	// A second master with the same dataset: a new history, so a full sync,
	// estimated from the snapshot it replaces.
	masterB := redistest.Start(t, "--repl-diskless-sync", "yes")
	populate(t, masterB, 0, 100000)
	linkB := redistest.NewFaultProxy(t, masterB.Addr())
	linkB.SetRate(1 << 20)
	h, p := linkB.HostPort()
	if err := relay.Client().Do(t.Context(), "REPLICAOF", h, p).Err(); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 20*time.Second, func() error {
		f = redistest.ParseInfo(infoText(t, relay, "replication"))
		if f["master_sync_in_progress"] != "1" || f["master_sync_read_bytes"] == "0" {
			return fmt.Errorf("not yet in the second transfer: %v", f)
		}
		return nil
	})
	if f["master_sync_estimate_source"] != "previous_snapshot" || f["master_sync_estimated_total_bytes"] != strconv.FormatInt(snapBytes, 10) {
		t.Errorf("second sync estimate %s from %s, previous snapshot %d bytes", f["master_sync_estimated_total_bytes"], f["master_sync_estimate_source"], snapBytes)
	}
	linkB.SetRate(0)
}

// A replica receiving its snapshot from the relay shows bytes sent and the
// snapshot's size on its slaveN line, after Redis's five fields, in a form
// that Sentinel's and redis_exporter's parsing reads unchanged.
func TestInfoReplicaSyncProgress(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	populate(t, master, 0, 100000)
	relay := startRelay(t, master.Addr())
	redistest.Eventually(t, 20*time.Second, func() error {
		if relay.Status().LinkState != LinkConnected {
			return fmt.Errorf("relay link %s", relay.Status().LinkState)
		}
		return nil
	})
	snapBytes := relay.InfoInt(t, "snapshot_bytes")
	link := redistest.NewFaultProxy(t, relay.Addr())
	link.SetRate(1 << 20)
	replica := replicaOf(t, link.HostPort)
	_, rport := replica.HostPort()

	var line string
	redistest.Eventually(t, 20*time.Second, func() error {
		line = redistest.ParseInfo(infoText(t, relay, "replication"))["slave0"]
		if !strings.Contains(line, "state=send_bulk") || strings.Contains(line, "rdb_sent_bytes=0,") {
			return fmt.Errorf("slave0:%s", line)
		}
		return nil
	})
	kv, ok := exporterSlaveFields(line)
	if !ok {
		t.Fatalf("redis_exporter would drop slave0:%s", line)
	}
	if kv["port"] != rport || kv["rdb_size_bytes"] != strconv.FormatInt(snapBytes, 10) {
		t.Errorf("slave0:%s; replica port %s, snapshot %d bytes", line, rport, snapBytes)
	}
	// Socket buffers on loopback take megabytes: the relay may have
	// written all of it while the replica is still reading.
	if sent, _ := strconv.ParseInt(kv["rdb_sent_bytes"], 10, 64); sent <= 0 || sent > snapBytes {
		t.Errorf("rdb_sent_bytes = %d of %d", sent, snapBytes)
	}
	if ip, port := sentinelSlaveAddr(line); ip != "127.0.0.1" || port != rport {
		t.Errorf("Sentinel would read %s:%s from slave0:%s", ip, port, line)
	}
	link.SetRate(0)
	inSync(t, 30*time.Second, master, replica)
}

// exporterSlaveFields splits a slaveN value as redis_exporter does: parts
// separated by ",", each exactly one "key=value", offset and lag numbers.
// ok is false where redis_exporter would skip the line.
func exporterSlaveFields(v string) (map[string]string, bool) {
	kv := map[string]string{}
	for _, part := range strings.Split(v, ",") {
		x := strings.Split(part, "=")
		if len(x) != 2 {
			return nil, false
		}
		kv[x[0]] = x[1]
	}
	if _, err := strconv.ParseFloat(kv["offset"], 64); err != nil {
		return nil, false
	}
	if _, err := strconv.ParseFloat(kv["lag"], 64); err != nil {
		return nil, false
	}
	return kv, true
}

// sentinelSlaveAddr reads ip and port from a slaveN value as Sentinel does:
// from the first "ip=" and the first "port=" up to the next comma.
func sentinelSlaveAddr(v string) (ip, port string) {
	upTo := func(s string) string { s, _, _ = strings.Cut(s, ","); return s }
	if i := strings.Index(v, "ip="); i >= 0 {
		ip = upTo(v[i+3:])
	}
	if i := strings.Index(v, "port="); i >= 0 {
		port = upTo(v[i+5:])
	}
	return ip, port
}

func TestLatency(t *testing.T) {
	_, relay := syncedRelay(t)
	ctx := t.Context()
	cl := relay.Client()
	for _, args := range [][]any{{"LATENCY", "LATEST"}, {"LATENCY", "HISTOGRAM"}, {"LATENCY", "HISTOGRAM", "set", "get"}, {"LATENCY", "HISTORY", "command"}} {
		v, err := cl.Do(ctx, args...).Slice()
		if err != nil || len(v) != 0 {
			t.Errorf("%v = %v, %v; want an empty array", args, v, err)
		}
	}
	if n, err := cl.Do(ctx, "LATENCY", "RESET").Int(); err != nil || n != 0 {
		t.Errorf("LATENCY RESET = %v, %v", n, err)
	}
	if s, err := cl.Do(ctx, "LATENCY", "DOCTOR").Text(); err != nil || !strings.Contains(s, "relay") {
		t.Errorf("LATENCY DOCTOR = %q, %v", s, err)
	}
	if v, err := cl.Do(ctx, "LATENCY", "HELP").Slice(); err != nil || len(v) < 2 {
		t.Errorf("LATENCY HELP = %v, %v", v, err)
	}
	for args, want := range map[string]string{
		"LATENCY":               "ERR wrong number of arguments for 'latency' command",
		"LATENCY LATEST x":      "ERR wrong number of arguments for 'latency|latest' command",
		"LATENCY HISTORY":       "ERR wrong number of arguments for 'latency|history' command",
		"LATENCY GRAPH command": "ERR No samples available for event 'command'",
		"LATENCY NOSUCH":        "ERR unknown subcommand 'NOSUCH'. Try LATENCY HELP.",
	} {
		var a []any
		for _, s := range strings.Fields(args) {
			a = append(a, s)
		}
		if err := cl.Do(ctx, a...).Err(); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
}

// Status reads the headers of the snapshots it reports on; it runs on every
// INFO, ROLE, scrape and refresh check.
func BenchmarkStatus(b *testing.B) {
	master := redistest.Start(b)
	populate(b, master, 0, 1000)
	relay := startRelay(b, master.Addr())
	redistest.Eventually(b, 20*time.Second, func() error {
		if relay.Status().LinkState != LinkConnected {
			return fmt.Errorf("relay not synced")
		}
		return nil
	})
	b.ReportAllocs()
	for b.Loop() {
		if relay.Status().MasterVersion == "" {
			b.Fatal("no master version")
		}
	}
}

// While a disk-based master is still saving, a new full sync has received
// nothing: INFO must not show the previous transfer's figures.
func TestInfoUpstreamSyncWaitingForMaster(t *testing.T) {
	masterA := redistest.Start(t, "--repl-diskless-sync", "no")
	populate(t, masterA, 0, 20000)
	relay := startRelay(t, masterA.Addr())
	redistest.Eventually(t, 20*time.Second, func() error {
		if st := relay.Status(); st.LinkState != LinkConnected || st.SyncRead == 0 {
			return fmt.Errorf("relay link %s, %d bytes read", st.LinkState, st.SyncRead)
		}
		return nil
	})

	masterB := redistest.Start(t, "--repl-diskless-sync", "no", "--rdb-key-save-delay", "500")
	populate(t, masterB, 0, 20000) // 10 s of saving
	h, p := masterB.HostPort()
	if err := relay.Client().Do(t.Context(), "REPLICAOF", h, p).Err(); err != nil {
		t.Fatal(err)
	}
	var f map[string]string
	redistest.Eventually(t, 20*time.Second, func() error {
		f = redistest.ParseInfo(infoText(t, relay, "replication"))
		if f["master_sync_in_progress"] != "1" || masterB.Info(t, "persistence")["rdb_bgsave_in_progress"] != "1" {
			return fmt.Errorf("relay not yet waiting for master B's save: %v", f)
		}
		return nil
	})
	for k, want := range map[string]string{
		"master_sync_read_bytes": "0", "master_sync_total_bytes": "-1", "master_sync_elapsed_seconds": "0",
		"master_sync_rate_bytes_per_sec": "0", "master_sync_estimate_source": "previous_snapshot", "master_sync_estimated_perc": "0.00",
	} {
		if f[k] != want {
			t.Errorf("%s = %q, want %q", k, f[k], want)
		}
	}
	masterB.Do(t, "CONFIG", "SET", "rdb-key-save-delay", "0") // applies to the next save only
}

// INFO ALL read the way redis_exporter reads it: lines split on "\n" and
// trimmed, "# Section" headers, "key:value" fields. Every field it maps to
// a gauge or counter that the relay reports must parse as a number, or it
// is dropped from the scrape; redis_version and role become labels.
func TestInfoParsesAsRedisExporterDoes(t *testing.T) {
	_, relay := syncedRelay(t)
	replicaOf(t, relay.HostPort)
	redistest.Eventually(t, 20*time.Second, func() error {
		if v := redistest.ParseInfo(infoText(t, relay, "replication"))["slave0"]; !strings.Contains(v, "state=online") {
			return fmt.Errorf("slave0:%s", v)
		}
		return nil
	})
	fields := map[string]string{}
	section := ""
	for _, line := range strings.Split(infoText(t, relay, "ALL"), "\n") {
		line = strings.TrimSpace(line)
		if h, ok := strings.CutPrefix(line, "# "); ok {
			section = h
			continue
		}
		if len(line) < 2 || !strings.Contains(line, ":") {
			continue
		}
		k, v, _ := strings.Cut(line, ":")
		fields[k] = v
		if n, ok := strings.CutPrefix(k, "slave"); ok && section == "Replication" && n != "" && strings.Trim(n, "0123456789") == "" {
			if _, ok := exporterSlaveFields(v); !ok {
				t.Errorf("redis_exporter would drop %s:%s", k, v)
			}
		}
	}
	numeric := []string{
		"uptime_in_seconds", "process_id", "connected_clients", "blocked_clients",
		"used_memory", "used_memory_rss", "used_memory_peak", "used_memory_overhead", "used_memory_dataset",
		"used_memory_lua", "used_memory_scripts", "maxmemory",
		"allocator_allocated", "allocator_active", "allocator_resident",
		"loading", "rdb_changes_since_last_save", "rdb_bgsave_in_progress", "rdb_last_save_time", "rdb_last_cow_size", "aof_enabled",
		"connected_slaves", "repl_backlog_size", "repl_backlog_active", "repl_backlog_first_byte_offset", "repl_backlog_histlen",
		"master_repl_offset", "second_repl_offset", "slave_priority", "sync_full", "sync_partial_ok", "sync_partial_err",
		"total_connections_received", "rejected_connections", "tcp_port",
		"total_commands_processed", "instantaneous_ops_per_sec", "total_net_input_bytes", "total_net_output_bytes",
		"instantaneous_input_kbps", "instantaneous_output_kbps",
		"used_cpu_sys", "used_cpu_user", "used_cpu_sys_children", "used_cpu_user_children",
		"master_last_io_seconds_ago", "master_sync_in_progress", "slave_repl_offset",
	}
	for _, k := range numeric {
		if _, err := strconv.ParseFloat(fields[k], 64); err != nil {
			t.Errorf("%s = %q is not a number", k, fields[k])
		}
	}
	if fields["role"] != "slave" || fields["master_link_status"] != "up" || fields["redis_version"] == "" || fields["rdb_last_bgsave_status"] != "ok" {
		t.Errorf("role %q, master_link_status %q, redis_version %q, rdb_last_bgsave_status %q",
			fields["role"], fields["master_link_status"], fields["redis_version"], fields["rdb_last_bgsave_status"])
	}
}
