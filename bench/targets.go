package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// target is one design figure with what this run measured.
type target struct {
	name     string
	measured string
	verdict  string // "met", "NOT MET", or why there is no verdict
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT MET"
}

// rowsOf returns the rows of scenario with the given metric.
func (rs *results) rowsOf(scenario, metric string) []*row {
	var out []*row
	for _, r := range rs.rows {
		if r.scenario == scenario && r.metric == metric {
			out = append(out, r)
		}
	}
	return out
}

func paramVal(r *row, key string) any {
	for _, p := range r.params {
		if p.Key == key {
			return p.Value
		}
	}
	return nil
}

// fanoutLabel names a fanout row briefly: "200MB N=4" or "200MB N=4 staggered".
func fanoutLabel(r *row) string {
	s := fmt.Sprintf("%vMB N=%v", paramVal(r, "dataset_mb"), paramVal(r, "n"))
	if paramVal(r, "mode") == "staggered" {
		s += " staggered"
	}
	return s
}

// ingestLabel names an ingest row briefly: "400000 B x1".
func ingestLabel(r *row) string {
	return fmt.Sprintf("%v B values, pipeline %v", paramVal(r, "value"), paramVal(r, "pipeline"))
}

// diffMedian is the median over runs of a-b, each pair from the same run.
func (r *row) diffMedian(a, b string) float64 {
	var ds []float64
	for run, va := range r.vals[a] {
		if vb, ok := r.vals[b][run]; ok {
			ds = append(ds, va-vb)
		}
	}
	return median(ds)
}

func (o *options) targets(rs *results) []target {
	var ts []target
	noData := "no data (scenario or configuration not run)"

	// 1. Master full syncs for N replicas through the relay: 1.
	{
		t := target{name: "master full syncs = 1 for every N (relay), egress about 1x the RDB"}
		var parts []string
		ok, any := true, false
		for _, r := range rs.rowsOf("fanout", "master_sync_full") {
			runs := r.runs(cfgRelay)
			if len(runs) == 0 {
				continue
			}
			any = true
			mx := slices.Max(runs)
			ok = ok && mx == 1 && slices.Min(runs) == 1
			parts = append(parts, fmt.Sprintf("%s: %s (direct %s)", fanoutLabel(r), fmtNum(mx), fmtNum(r.median(cfgDirect))))
		}
		var eg []string
		for _, r := range rs.rowsOf("fanout", "master_egress_per_rdb") {
			if v := r.median(cfgRelay); !math.IsNaN(v) {
				eg = append(eg, fmt.Sprintf("%s: %.2fx", fanoutLabel(r), v))
			}
		}
		t.measured = strings.Join(parts, "; ")
		if len(eg) > 0 {
			t.measured += " | relay master egress / RDB size: " + strings.Join(eg, "; ")
		}
		t.verdict = verdict(ok)
		if !any {
			t.measured, t.verdict = noData, "-"
		}
		ts = append(ts, t)
	}

	// 2. Time until all N are in sync, against one replica syncing directly.
	{
		t := target{name: "time until all N in sync <= 1.2x one replica syncing directly (at once)"}
		var parts []string
		ok, any := true, false
		for _, r := range rs.rowsOf("fanout", "sync_vs_direct1_x") {
			v := r.median(cfgRelay)
			if math.IsNaN(v) {
				continue
			}
			s := fmt.Sprintf("%s: %.2fx (intermediate %s, direct %s)", fanoutLabel(r), v, fmtRatioPlain(r.median(cfgIntermediate)), fmtRatioPlain(r.median(cfgDirect)))
			if paramVal(r, "mode") == "at_once" {
				any = true
				ok = ok && v <= 1.2
			} else {
				s += " [not judged: one after another]"
			}
			parts = append(parts, s)
		}
		t.measured = strings.Join(parts, "; ")
		t.verdict = verdict(ok)
		if !any {
			t.measured, t.verdict = noData, "-"
		}
		ts = append(ts, t)
	}

	// Full sync: all N in sync through the relay no slower than N replicas
	// attached directly, in the same run.
	{
		t := target{name: "full sync: all N in sync <= 1.0x the time of N direct replicas (same run, at once), master sync_full 1"}
		var parts []string
		ok, any := true, false
		for _, r := range rs.rowsOf("fanout", "sync_time_s") {
			if paramVal(r, "mode") != "at_once" {
				continue
			}
			v := r.ratio(cfgRelay, cfgDirect)
			if math.IsNaN(v) {
				continue
			}
			any = true
			ok = ok && v <= 1.0
			sf := "-"
			if f := rs.get("fanout", r.params, "master_sync_full"); f != nil && len(f.runs(cfgRelay)) > 0 {
				sf = fmtNum(slices.Max(f.runs(cfgRelay)))
				ok = ok && slices.Max(f.runs(cfgRelay)) == 1
			}
			parts = append(parts, fmt.Sprintf("%s: relay/direct %.2fx (relay %s s, direct %s s; master sync_full %s)",
				fanoutLabel(r), v, fmtNum(r.median(cfgRelay)), fmtNum(r.median(cfgDirect)), sf))
		}
		t.measured = strings.Join(parts, "; ")
		t.verdict = verdict(ok)
		if !any {
			t.measured, t.verdict = noData, "-"
		}
		ts = append(ts, t)
	}

	// Latency relative to direct: idle p50 and p99 under load.
	for _, lt := range []struct {
		metric, name string
		limit        float64
	}{
		{"lat_idle_p50_ms", "latency: idle p50 <= 1.10x direct", 1.10},
		{"lat_load_p99_ms", "latency: p99 under load <= 1.5x direct", 1.5},
	} {
		t := target{name: lt.name}
		if rows := rs.rowsOf("stream", lt.metric); len(rows) > 0 && !math.IsNaN(rows[0].ratio(cfgRelay, cfgDirect)) {
			r := rows[0]
			v := r.ratio(cfgRelay, cfgDirect)
			t.measured = fmt.Sprintf("relay/direct %.2fx (relay %s ms, direct %s ms; intermediate/direct %s)",
				v, fmtNum(r.median(cfgRelay)), fmtNum(r.median(cfgDirect)), fmtRatioPlain(r.ratio(cfgIntermediate, cfgDirect)))
			t.verdict = verdict(v <= lt.limit)
		} else {
			t.measured, t.verdict = noData, "-"
		}
		ts = append(ts, t)
	}

	// Scale: many replicas at once on a small dataset.
	{
		t := target{name: "scale: master sync_full 1 with many replicas at once; time against as many direct replicas; relay memory per replica"}
		r := rs.get("scale", scaleParams(o), "sync_time_s")
		sf := rs.get("scale", scaleParams(o), "master_sync_full")
		if r == nil || sf == nil || len(sf.runs(cfgRelay)) == 0 {
			t.measured, t.verdict = noData, "-"
		} else {
			get := func(metric string) float64 {
				if x := rs.get("scale", scaleParams(o), metric); x != nil {
					return x.median(cfgRelay)
				}
				return math.NaN()
			}
			mx := slices.Max(sf.runs(cfgRelay))
			t.measured = fmt.Sprintf("N=%d, %s: master sync_full %s (direct %s); all in sync relay %s s, direct %s s, relay/direct %s; relay RSS %s -> %s MiB (peak %s), %s KiB per replica; relay CPU %s s",
				o.scaleN, fmtBytes(o.scaleDataset), fmtNum(mx), fmtNum(sf.median(cfgDirect)),
				fmtNum(r.median(cfgRelay)), fmtNum(r.median(cfgDirect)), fmtRatioPlain(r.ratio(cfgRelay, cfgDirect)),
				fmtNum(get("middle_rss_before_mb")), fmtNum(get("middle_rss_after_mb")), fmtNum(get("middle_peak_rss_mb")),
				fmtNum(get("middle_kb_per_replica")), fmtNum(get("middle_cpu_s")))
			t.verdict = verdict(mx == 1 && slices.Min(sf.runs(cfgRelay)) == 1)
		}
		ts = append(ts, t)
	}

	// 3. Steady-state throughput at a leaf.
	{
		t := target{name: "throughput at a leaf >= 0.95x direct"}
		if rows := rs.rowsOf("stream", "leaf_mb_s"); len(rows) > 0 && !math.IsNaN(rows[0].ratio(cfgRelay, cfgDirect)) {
			r := rows[0]
			v := r.ratio(cfgRelay, cfgDirect)
			t.measured = fmt.Sprintf("relay/direct %.2fx (relay %s MB/s, direct %s MB/s; intermediate/direct %s)",
				v, fmtNum(r.median(cfgRelay)), fmtNum(r.median(cfgDirect)), fmtRatioPlain(r.ratio(cfgIntermediate, cfgDirect)))
			t.verdict = verdict(v >= 0.95)
		} else {
			t.measured, t.verdict = noData, "-"
		}
		ts = append(ts, t)
	}

	// 4. Added p99 propagation latency per hop.
	for _, phase := range []string{"idle", "load"} {
		t := target{name: fmt.Sprintf("added p99 propagation latency per hop < 0.5 ms (%s)", phase)}
		if rows := rs.rowsOf("stream", "lat_"+phase+"_p99_ms"); len(rows) > 0 && !math.IsNaN(rows[0].diffMedian(cfgRelay, cfgDirect)) {
			r := rows[0]
			v := r.diffMedian(cfgRelay, cfgDirect)
			t.measured = fmt.Sprintf("relay - direct p99: %+.3f ms (relay %s ms, direct %s ms; intermediate - direct %+.3f ms)",
				v, fmtNum(r.median(cfgRelay)), fmtNum(r.median(cfgDirect)), r.diffMedian(cfgIntermediate, cfgDirect))
			t.verdict = verdict(v < 0.5)
		} else {
			t.measured, t.verdict = noData, "-"
		}
		ts = append(ts, t)
	}

	// 5. Relay RSS: ring + under 64 MiB, flat in dataset size and N.
	{
		limit := float64(o.ringBytes)/mib + 64
		t := target{name: fmt.Sprintf("relay peak RSS <= ring + 64 MiB (%.0f MiB), flat in dataset size and N", limit)}
		var parts []string
		worst := math.NaN()
		var fanout []float64
		for _, sc := range []string{"fanout", "stream", "scale"} {
			for _, r := range rs.rowsOf(sc, "middle_peak_rss_mb") {
				runs := r.runs(cfgRelay)
				if len(runs) == 0 {
					continue
				}
				mx := slices.Max(runs)
				if math.IsNaN(worst) || mx > worst {
					worst = mx
				}
				label := sc
				if sc == "fanout" {
					label = fanoutLabel(r)
					fanout = append(fanout, r.median(cfgRelay))
				}
				parts = append(parts, fmt.Sprintf("%s: %.0f", label, r.median(cfgRelay)))
			}
		}
		if math.IsNaN(worst) {
			t.measured, t.verdict = noData, "-"
		} else {
			t.measured = fmt.Sprintf("max %.0f MiB over all runs; medians (MiB) %s", worst, strings.Join(parts, "; "))
			if len(fanout) > 1 {
				t.measured += fmt.Sprintf("; fanout spread %.0f MiB (intermediate holds the dataset: see middle_peak_rss_mb)", slices.Max(fanout)-slices.Min(fanout))
			}
			t.verdict = verdict(worst <= limit)
		}
		ts = append(ts, t)
	}

	// Not a design figure but a check: each replica synced once. More full
	// syncs served than replicas means sessions were cut and started over.
	{
		t := target{name: "check: one full sync per replica, no replica session cut (fanout)"}
		var bad []string
		any := false
		for _, r := range rs.rowsOf("fanout", "served_full") {
			n, _ := paramVal(r, "n").(int)
			for _, c := range allConfigs {
				for run, v := range r.vals[c] {
					any = true
					if int(v) != n {
						bad = append(bad, fmt.Sprintf("%s %s run %d: %s full syncs for %d replicas", fanoutLabel(r), c, run, fmtNum(v), n))
					}
				}
			}
		}
		for _, r := range rs.rowsOf("fanout", "relay_replica_disconnects") {
			for run, v := range r.vals[cfgRelay] {
				if v != 0 {
					bad = append(bad, fmt.Sprintf("%s relay run %d: %s replica sessions cut (see the relay's log)", fanoutLabel(r), run, fmtNum(v)))
				}
			}
		}
		slices.Sort(bad)
		switch {
		case !any:
			t.measured, t.verdict = noData, "-"
		case len(bad) == 0:
			t.measured, t.verdict = "N full syncs for N replicas, no relay session cut, in every fanout measurement", "met"
		default:
			t.measured, t.verdict = strings.Join(bad, "; "), "NOT MET"
		}
		ts = append(ts, t)
	}

	// Ingest: the relay keeps up with the master as a stock replica does.
	{
		t := target{name: "ingest: relay mean lag <= 2x the stock replica P's beside it; the master never cuts the relay where it keeps P"}
		var parts []string
		ok, any := true, false
		for _, r := range rs.rowsOf("ingest", "lag_vs_p_x") {
			v := r.median(cfgRelay)
			if math.IsNaN(v) {
				continue
			}
			any = true
			ok = ok && v <= 2
			parts = append(parts, fmt.Sprintf("%s: %s", ingestLabel(r), fmtRatioPlain(v)))
		}
		cuts := rs.rowsOf("ingest", "node_cuts")
		for _, r := range cuts {
			pc := rs.get("ingest", r.params, "p_cuts")
			if pc == nil {
				continue
			}
			for run, v := range r.vals[cfgRelay] {
				any = true
				if pv, found := pc.vals[cfgRelay][run]; found && v > 0 && pv == 0 {
					ok = false
					parts = append(parts, fmt.Sprintf("%s run %d: relay cut %s times, P kept", ingestLabel(r), run, fmtNum(v)))
				}
			}
		}
		if !any {
			t.measured, t.verdict = noData, "-"
		} else {
			t.measured = "median relay/P mean lag " + strings.Join(parts, "; ")
			t.verdict = verdict(ok)
		}
		ts = append(ts, t)
	}

	// Ingest: the relay's CPU per MiB against the floor program's.
	{
		t := target{name: "ingest: relay CPU per MiB <= 1.25x the floor program's (fsync once a second)"}
		var parts []string
		ok, any := true, false
		for _, r := range rs.rowsOf("ingest", "node_cpu_ms_per_mb") {
			v := r.ratio(cfgRelay, cfgFloor)
			if math.IsNaN(v) {
				continue
			}
			any = true
			ok = ok && v <= 1.25
			parts = append(parts, fmt.Sprintf("%s: %s (relay %s, floor %s ms/MiB)", ingestLabel(r), fmtRatioPlain(v), fmtNum(r.median(cfgRelay)), fmtNum(r.median(cfgFloor))))
		}
		if !any {
			t.measured, t.verdict = noData, "-"
		} else {
			t.measured, t.verdict = strings.Join(parts, "; "), verdict(ok)
		}
		ts = append(ts, t)
	}

	ts = append(ts, target{
		name:     "0 downstream full syncs after relay restart or upstream failover",
		measured: "not measured here: proxy/relay_test.go TestRelayRestartResumesBothLinks and proxy/failover_test.go TestSentinelFailover assert it",
		verdict:  "see tests",
	})
	return ts
}

func fmtRatioPlain(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v)
}

func (o *options) writeTargets(w io.Writer, rs *results) {
	fmt.Fprintf(w, "\n### design targets\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "target\tverdict\tmeasured\t")
	for _, t := range o.targets(rs) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", t.name, t.verdict, t.measured)
	}
	tw.Flush()
}
