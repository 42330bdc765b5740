package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRelayFanoutAndStream runs the fanout and stream scenarios on tiny
// sizes for the relay configuration only. It checks correctness, not
// speed: every replica ends with the master's DEBUG DIGEST, and two
// replicas attaching at once cost the master one full sync.
func TestRelayFanoutAndStream(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not found: apt-get install -y redis-server")
	}
	o, rs, out := runQuick(t,
		"-scenarios", "fanout,stream", "-configs", "relay", "-runs", "1",
		"-dataset", "4mb", "-value-size", "1kb", "-n", "2", "-stagger-n", "2",
		"-stream-duration", "2s", "-warmup", "500ms", "-settle", "100ms",
		"-probes", "20", "-writers", "2", "-pipeline", "8", "-keyspace", "1000",
		"-sync-timeout", "60s",
	)

	value := func(scenario string, params []param, metric string) float64 {
		t.Helper()
		r := rs.get(scenario, params, metric)
		if r == nil {
			t.Fatalf("no %s %s [%s] in the results:\n%s", scenario, metric, paramsKey(params), out.String())
		}
		v, ok := r.vals[cfgRelay][1]
		if !ok {
			t.Fatalf("no relay value for %s %s [%s]", scenario, metric, paramsKey(params))
		}
		return v
	}
	atOnce := fanoutParams(4*mib, 2, "at_once")
	staggered := fanoutParams(4*mib, 2, "staggered")
	if got := value("fanout", atOnce, "master_sync_full"); got != 1 {
		t.Errorf("fanout N=2 at once: master sync_full delta = %v, want 1", got)
	}
	if got := value("fanout", staggered, "master_sync_full"); got != 1 {
		t.Errorf("fanout N=2 staggered: master sync_full delta = %v, want 1", got)
	}
	for _, p := range [][]param{atOnce, staggered} {
		if got := value("fanout", p, "served_full"); got != 2 {
			t.Errorf("fanout [%s]: the relay served %v full syncs to 2 replicas, want 2", paramsKey(p), got)
		}
		if got := value("fanout", p, "relay_replica_disconnects"); got != 0 {
			t.Errorf("fanout [%s]: %v replica sessions of the relay ended during the sync", paramsKey(p), got)
		}
	}
	for _, c := range []struct {
		scenario string
		params   []param
	}{{"fanout", atOnce}, {"fanout", staggered}, {"stream", streamParams(o)}} {
		if got := value(c.scenario, c.params, "digest_ok"); got != 1 {
			t.Errorf("%s [%s]: DEBUG DIGEST differs between master and replicas", c.scenario, paramsKey(c.params))
		}
	}
	if got := value("stream", streamParams(o), "leaf_mb_s"); got <= 0 {
		t.Errorf("stream: leaf throughput %v MB/s, want > 0", got)
	}

	// The report ends with one JSON line per result.
	_, js, ok := strings.Cut(out.String(), "### JSON\n")
	if !ok {
		t.Fatalf("no JSON section in the report:\n%s", out.String())
	}
	lines := strings.Split(strings.TrimSpace(js), "\n")
	if len(lines) < 10 {
		t.Fatalf("only %d JSON lines", len(lines))
	}
	for _, l := range lines {
		var j jsonLine
		if err := json.Unmarshal([]byte(l), &j); err != nil || j.Scenario == "" || j.Metric == "" || j.Config == "" {
			t.Fatalf("bad JSON line %q: %v", l, err)
		}
	}
}

func TestCheckRefusesTooMuchMemory(t *testing.T) {
	o, err := parseFlags([]string{"-scenarios", "fanout", "-dataset", "1gb", "-n", "32"}, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	if err := o.check(); err == nil || !strings.Contains(err.Error(), "memory") {
		t.Errorf("check() = %v, want a refusal about memory", err)
	}
	o, err = parseFlags([]string{"-scenarios", "fanout", "-dataset", "200mb", "-n", "1,4,8,32"}, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	if err := o.check(); err != nil {
		t.Errorf("200mb with N=32 refused: %v", err)
	}
}

func TestSetCommandBytes(t *testing.T) {
	// *3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n
	if got, want := setCommandBytes(3, 5), len("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"); got != want {
		t.Errorf("setCommandBytes(3, 5) = %d, want %d", got, want)
	}
}

func TestParseIngestLoads(t *testing.T) {
	got, err := parseIngestLoads("400000/1, 256/32,1kb,400000/1/2")
	if err != nil {
		t.Fatal(err)
	}
	want := []ingestLoad{{400000, 1, 0}, {256, 32, 0}, {1024, 1, 0}, {400000, 1, 2}}
	if len(got) != len(want) {
		t.Fatalf("parseIngestLoads = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("load %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, in := range []string{"", "0/1", "256/0", "x/1", "256/x", "128mb/1", "256/1/0", "256/1/1/1"} {
		if _, err := parseIngestLoads(in); err == nil {
			t.Errorf("parseIngestLoads(%q) succeeded", in)
		}
	}
}

// TestSyncRequests reads lines of a Redis 7.0 master log: every sync
// request per replica address, and the clients closed for their output
// buffers.
func TestSyncRequests(t *testing.T) {
	log := `10154:M 29 Nov 2026 14:22:47.132 * Replica 127.0.0.1:47002 asks for synchronization
10154:M 29 Nov 2026 14:22:47.132 * Full resync requested by replica 127.0.0.1:47002
10154:M 29 Nov 2026 14:22:47.140 * Replica 127.0.0.1:47003 asks for synchronization
10154:M 29 Nov 2026 14:22:49.302 # Client id=3 addr=127.0.0.1:60086 laddr=127.0.0.1:47001 fd=7 name= age=2 idle=0 flags=S db=0 cmd=psync user=default redir=-1 resp=2 scheduled to be closed ASAP for overcoming of output buffer limits.
10154:M 29 Nov 2026 14:22:49.302 # Connection with replica 127.0.0.1:47002 lost.
10154:M 29 Nov 2026 14:22:49.479 * Replica 127.0.0.1:47002 asks for synchronization
10154:M 29 Nov 2026 14:22:49.479 * Unable to partial resync with replica 127.0.0.1:47002 for lack of backlog (Replica request was: 1155080438).
`
	path := filepath.Join(t.TempDir(), "redis.log")
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	asks, obl, err := syncRequests(path)
	if err != nil {
		t.Fatal(err)
	}
	if asks["127.0.0.1:47002"] != 2 || asks["127.0.0.1:47003"] != 1 || len(asks) != 2 {
		t.Errorf("asks = %v, want 2 for :47002 and 1 for :47003", asks)
	}
	if obl != 1 {
		t.Errorf("closed for output buffer limits = %d, want 1", obl)
	}
}

func TestLagStats(t *testing.T) {
	var s lagStats
	if s.mean() != 0 {
		t.Errorf("mean of no samples = %v, want 0", s.mean())
	}
	for _, v := range []float64{10, -5, 20} { // a negative lag (a node read after the master moved) counts as 0
		s.add(v)
	}
	if s.mean() != 10 || s.max != 20 {
		t.Errorf("mean %v max %v, want 10 and 20", s.mean(), s.max)
	}
}

func TestColumns(t *testing.T) {
	configs, ratios := columns("ingest")
	if strings.Join(configs, ",") != "intermediate,floor,relay" || ratios[0] != [2]string{cfgRelay, cfgFloor} {
		t.Errorf("ingest columns %v %v", configs, ratios)
	}
	configs, ratios = columns("stream")
	if strings.Join(configs, ",") != "direct,intermediate,relay" || ratios[0] != [2]string{cfgRelay, cfgDirect} {
		t.Errorf("stream columns %v %v", configs, ratios)
	}
}

// TestIngestFloorAndRelay runs a small ingest burst against the floor
// program and the relay: both follow the master without a cut and report
// an offset the benchmark can read.
func TestIngestFloorAndRelay(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not found: apt-get install -y redis-server")
	}
	o, rs, out := runQuick(t,
		"-scenarios", "ingest", "-ingest-configs", "floor,relay", "-runs", "1",
		"-ingest-loads", "4kb/4", "-ingest-clients", "2", "-ingest-keys", "100",
		"-ingest-duration", "1s", "-ingest-writer", "go", "-ingest-backlog", "16mb",
		"-sync-timeout", "60s",
	)
	params := ingestParams(o, o.ingestLoads[0])
	for _, c := range []string{cfgFloor, cfgRelay} {
		get := func(metric string) float64 {
			t.Helper()
			r := rs.get("ingest", params, metric)
			if r == nil {
				t.Fatalf("no ingest %s [%s]:\n%s", metric, paramsKey(params), out.String())
			}
			v, ok := r.vals[c][1]
			if !ok {
				t.Fatalf("no %s value for %s", c, metric)
			}
			return v
		}
		if v := get("node_cuts"); v != 0 {
			t.Errorf("%s: cut %v times by the master under a 1 s burst of 4 KB SETs", c, v)
		}
		if v := get("stream_mb"); v <= 0 {
			t.Errorf("%s: stream %v MiB, want > 0", c, v)
		}
		// Present for a node that was not cut; CPU time is counted in
		// 10 ms ticks, so a short burst may read 0.
		if v := get("node_cpu_ms_per_mb"); v < 0 {
			t.Errorf("%s: CPU per MiB %v, want >= 0", c, v)
		}
	}
}

func TestChainColumnsAndCheck(t *testing.T) {
	r := &row{scenario: "stream", vals: map[string]map[int]float64{cfgChain: {1: 1}, cfgChainZstd: {1: 2}}}
	configs, ratios := columns("stream")
	configs, ratios = withExtra(configs, ratios, nil)
	if len(configs) != 3 {
		t.Fatalf("no chain rows: columns %v", configs)
	}
	configs, ratios = withExtra(configs, ratios, []*row{r})
	if strings.Join(configs, ",") != "direct,intermediate,relay,chain,chain-zstd" || ratios[len(ratios)-1] != [2]string{cfgChainZstd, cfgChain} {
		t.Errorf("stream columns with chain rows: %v %v", configs, ratios)
	}
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"-scenarios", "stream", "-configs", "chain,chain-zstd"}, true},
		{[]string{"-scenarios", "fanout,stream", "-configs", "relay,chain"}, true},
		{[]string{"-scenarios", "fanout", "-configs", "chain"}, false},
		{[]string{"-scenarios", "stream", "-configs", "chain-lz4"}, false},
	} {
		o, err := parseFlags(tc.args, t.Output())
		if err != nil {
			t.Fatal(err)
		}
		if err := o.check(); (err == nil) != tc.ok {
			t.Errorf("%v: check() = %v, want ok %v", tc.args, err, tc.ok)
		}
	}
}

// TestOldColumnsAndFlag: -old-relay-bin puts old beside relay, and the
// tables gain the same-run ratio relay/old.
func TestOldColumnsAndFlag(t *testing.T) {
	o, err := parseFlags([]string{"-configs", "direct,relay,intermediate", "-old-relay-bin", "/bin/true"}, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(o.configs, ","); got != "direct,relay,old,intermediate" {
		t.Errorf("configs %s, want old after relay", got)
	}
	if err := o.check(); err != nil {
		t.Errorf("check: %v", err)
	}
	o, err = parseFlags([]string{"-configs", "relay,old"}, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	if err := o.check(); err == nil {
		t.Error("old without -old-relay-bin: check() = nil, want an error")
	}
	r := &row{scenario: "fanout", vals: map[string]map[int]float64{cfgRelay: {1: 2}, cfgOld: {1: 4}}}
	configs, ratios := withExtra(allConfigs, [][2]string{{cfgRelay, cfgDirect}}, []*row{r})
	if strings.Join(configs, ",") != "direct,intermediate,relay,old" || ratios[len(ratios)-1] != [2]string{cfgRelay, cfgOld} {
		t.Errorf("columns with old rows: %v %v", configs, ratios)
	}
	if v := r.ratio(cfgRelay, cfgOld); v != 0.5 {
		t.Errorf("relay/old = %v, want 0.5", v)
	}
}

// TestStreamChainZstd runs the stream scenario through two relays over a
// compressed link: the leaves end with the master's digest and the link
// carries fewer bytes than the stream.
func TestStreamChainZstd(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not found: apt-get install -y redis-server")
	}
	o, rs, out := runQuick(t,
		"-scenarios", "stream", "-configs", "chain-zstd", "-runs", "1",
		"-stream-duration", "2s", "-warmup", "500ms", "-settle", "100ms",
		"-probes", "20", "-writers", "2", "-pipeline", "8", "-keyspace", "1000",
		"-sync-timeout", "60s",
	)
	get := func(metric string) float64 {
		t.Helper()
		r := rs.get("stream", streamParams(o), metric)
		if r == nil {
			t.Fatalf("no stream %s:\n%s", metric, out.String())
		}
		v, ok := r.vals[cfgChainZstd][1]
		if !ok {
			t.Fatalf("no chain-zstd value for %s", metric)
		}
		return v
	}
	if v := get("digest_ok"); v != 1 {
		t.Errorf("digest_ok %v, want 1", v)
	}
	if v := get("link_wire_ratio"); v <= 0 || v >= 1 {
		t.Errorf("link_wire_ratio %v, want in (0, 1)", v)
	}
	if !strings.Contains(out.String(), "chain-zstd") {
		t.Errorf("no chain-zstd column in the report:\n%s", out.String())
	}
}

// runQuick runs the benchmark with args and fails the test when a
// measurement failed; it returns the options, the results and the printed
// report.
func runQuick(t *testing.T, args ...string) (*options, *results, *bytes.Buffer) {
	t.Helper()
	o, err := parseFlags(args, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	if err := o.check(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rs, err := runBench(t.Context(), o, &out, t.Output())
	if err != nil {
		t.Fatalf("benchmark: %v\n%s", err, out.String())
	}
	if len(rs.fails) > 0 {
		t.Fatalf("measurements failed: %v\n%s", rs.fails, out.String())
	}
	return o, rs, &out
}

// TestPlotsFromFixedSeries draws both plots from fixed results and checks
// that each file is well-formed SVG naming every line.
func TestPlotsFromFixedSeries(t *testing.T) {
	o, err := parseFlags([]string{"-ingest-loads", "400000/1,256/32", "-dataset", "200mb", "-n", "1,4,8"}, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	rs := newResults()
	heavy := ingestParams(o, o.ingestLoads[0])
	for run, means := range map[int][3]float64{1: {5, 700, 2}, 2: {4, 1, 3}, 3: {6, 2, 1}} {
		for i, c := range []string{cfgIntermediate, cfgRelay, cfgFloor} {
			rs.add("ingest", heavy, "node_lag_mean_mb", c, run, means[i])
			tr := &lagTrace{}
			for k := range 80 {
				tr.add(float64(k)/10, means[i]*float64(k%7), float64(k%3))
			}
			rs.addTrace(traceKey{paramsKey(heavy), c, run}, tr)
		}
	}
	for _, c := range allConfigs {
		for i, n := range o.ns {
			rs.add("fanout", fanoutParams(200*mib, n, "at_once"), "sync_time_s", c, 1, float64(3+i*4))
		}
	}
	if got := rs.get("ingest", heavy, "node_lag_mean_mb").medianRun(cfgRelay); got != 3 {
		t.Errorf("median run of the relay's mean lag (700, 1, 2) = %d, want 3", got)
	}

	dir := t.TempDir()
	paths, err := o.writePlots(dir, rs)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 {
		t.Fatalf("wrote %v, want two plots", paths)
	}
	wantNames := map[string][]string{
		plotIngestLag: {"direct: stock replica (run 3)", "stock intermediate (run 1)", "relay (run 3)"},
		plotFullSync:  {"direct", "intermediate", "relay"},
	}
	for name, names := range wantNames {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, want 0644", name, fi.Mode().Perm())
		}
		root, err := xmlRoot(b)
		if err != nil || root != "svg" {
			t.Fatalf("%s: root element %q, %v; want svg", name, root, err)
		}
		for _, n := range names {
			if !bytes.Contains(b, []byte(n)) {
				t.Errorf("%s: no line named %q", name, n)
			}
		}
		if bytes.Contains(b, []byte("floor")) {
			t.Errorf("%s: draws the floor program", name)
		}
	}
	if err := (linePlot{title: "empty"}).save(filepath.Join(dir, "x.svg")); err == nil {
		t.Error("a plot without lines saved without an error")
	}
	if _, err := os.Stat(filepath.Join(dir, "x.svg")); err == nil {
		t.Error("a plot without lines left a file")
	}
}

// xmlRoot returns the name of the document's root element, having read the
// whole document (so malformed XML is an error).
func xmlRoot(b []byte) (string, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	root := ""
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return root, nil
		}
		if err != nil {
			return root, err
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
}

func TestPerReplicaKB(t *testing.T) {
	if got := perReplicaKB(20<<20, 30<<20, 100); got != 102.4 {
		t.Errorf("perReplicaKB(20 MiB, 30 MiB, 100) = %v, want 102.4", got)
	}
	if got := perReplicaKB(1, 2, 0); got != 0 {
		t.Errorf("perReplicaKB with no replicas = %v, want 0", got)
	}
}

// TestScaleRelay attaches a few replicas at once to a small dataset through
// the relay: one master full sync, every replica with the master's digest,
// and the relay's memory read before and after.
func TestScaleRelay(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not found: apt-get install -y redis-server")
	}
	o, rs, out := runQuick(t,
		"-scenarios", "scale", "-configs", "relay", "-runs", "1",
		"-scale-n", "3", "-scale-dataset", "2mb", "-sync-timeout", "60s",
	)
	get := func(metric string) float64 {
		t.Helper()
		r := rs.get("scale", scaleParams(o), metric)
		if r == nil {
			t.Fatalf("no scale %s:\n%s", metric, out.String())
		}
		v, ok := r.vals[cfgRelay][1]
		if !ok {
			t.Fatalf("no relay value for %s", metric)
		}
		return v
	}
	if v := get("master_sync_full"); v != 1 {
		t.Errorf("master sync_full %v, want 1", v)
	}
	if v := get("served_full"); v != 3 {
		t.Errorf("relay served %v full syncs to 3 replicas, want 3", v)
	}
	if v := get("digest_ok"); v != 1 {
		t.Errorf("digest_ok %v, want 1", v)
	}
	if v := get("middle_rss_before_mb"); v <= 0 {
		t.Errorf("relay RSS before the replicas %v MiB, want > 0", v)
	}
	if !strings.Contains(out.String(), "scale: master sync_full 1") {
		t.Errorf("no scale target in the report:\n%s", out.String())
	}
}
