package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
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
	o, err := parseFlags([]string{
		"-scenarios", "fanout,stream", "-configs", "relay", "-runs", "1",
		"-dataset", "4mb", "-value-size", "1kb", "-n", "2", "-stagger-n", "2",
		"-stream-duration", "2s", "-warmup", "500ms", "-settle", "100ms",
		"-probes", "20", "-writers", "2", "-pipeline", "8", "-keyspace", "1000",
		"-sync-timeout", "60s",
	}, t.Output())
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

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"123": 123, "1kb": 1024, "200mb": 200 << 20, "1gb": 1 << 30, "64M": 64 << 20, "5b": 5} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "mb", "-1", "1tb", "x"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) succeeded", in)
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
