package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
)

// Configurations compared, in column order.
const (
	cfgDirect       = "direct"
	cfgIntermediate = "intermediate"
	cfgRelay        = "relay"
	cfgFloor        = "floor" // the floor program, ingest only
	// A relay following a relay (master -> relay -> relay -> leaves), stream
	// only: the link between the two relays plain, or zstd-compressed
	// (--upstream-compression yes on the second relay).
	cfgChain     = "chain"
	cfgChainZstd = "chain-zstd"
	// The relay run from another binary (-old-relay-bin), beside relay, so
	// that a speed claim is a same-run ratio relay/old.
	cfgOld = "old"
)

var (
	allConfigs    = []string{cfgDirect, cfgIntermediate, cfgRelay}
	chainConfigs  = []string{cfgChain, cfgChainZstd}
	ingestConfigs = []string{cfgIntermediate, cfgFloor, cfgRelay}
)

// columns are a scenario's configurations and same-run ratios, in table
// order. The ingest scenario has no direct column (its stock replica P sits
// beside every node under test and has metrics of its own) and compares the
// relay with the floor program.
func columns(scenario string) (configs []string, ratios [][2]string) {
	if scenario == "ingest" {
		return ingestConfigs, [][2]string{{cfgRelay, cfgFloor}, {cfgRelay, cfgIntermediate}}
	}
	return allConfigs, [][2]string{{cfgRelay, cfgDirect}, {cfgRelay, cfgIntermediate}}
}

// withExtra adds to a scenario's columns the old and chain configurations
// that have results in rows, and the same-run ratios relay/old and
// chain-zstd/chain when both sides do.
func withExtra(configs []string, ratios [][2]string, rows []*row) ([]string, [][2]string) {
	has := map[string]bool{}
	for _, r := range rows {
		for _, c := range append([]string{cfgOld}, chainConfigs...) {
			if len(r.vals[c]) > 0 {
				has[c] = true
			}
		}
	}
	if len(has) == 0 {
		return configs, ratios
	}
	configs = append([]string(nil), configs...)
	ratios = append([][2]string(nil), ratios...)
	if has[cfgOld] {
		configs = append(configs, cfgOld)
		ratios = append(ratios, [2]string{cfgRelay, cfgOld})
	}
	for _, c := range chainConfigs {
		if has[c] {
			configs = append(configs, c)
		}
	}
	if has[cfgChain] && has[cfgChainZstd] {
		ratios = append(append([][2]string(nil), ratios...), [2]string{cfgChainZstd, cfgChain})
	}
	return configs, ratios
}

// param is one scenario parameter, kept in the order it was given.
type param struct {
	Key   string
	Value any
}

func paramsKey(ps []param) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%v", p.Key, p.Value)
	}
	return b.String()
}

// row is one metric of one scenario with one set of parameters: a value per
// configuration per run.
type row struct {
	scenario string
	params   []param
	metric   string
	vals     map[string]map[int]float64 // config -> run -> value
}

// results collects every measurement of a benchmark run.
type results struct {
	mu    sync.Mutex
	rows  []*row
	index map[string]*row
	fails []string
	// traces are the lag samples of ingest measurements, for -plots.
	traces map[traceKey]*lagTrace
}

func newResults() *results {
	return &results{index: map[string]*row{}, traces: map[traceKey]*lagTrace{}}
}

func (rs *results) addTrace(k traceKey, tr *lagTrace) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.traces[k] = tr
}

// trace returns the lag samples of one ingest measurement, or nil.
func (rs *results) trace(k traceKey) *lagTrace {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.traces[k]
}

func (rs *results) add(scenario string, params []param, metric, config string, run int, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	key := scenario + "\x00" + paramsKey(params) + "\x00" + metric
	r := rs.index[key]
	if r == nil {
		r = &row{scenario: scenario, params: params, metric: metric, vals: map[string]map[int]float64{}}
		rs.index[key] = r
		rs.rows = append(rs.rows, r)
	}
	if r.vals[config] == nil {
		r.vals[config] = map[int]float64{}
	}
	r.vals[config][run] = v
}

func (rs *results) fail(msg string) {
	rs.mu.Lock()
	rs.fails = append(rs.fails, msg)
	rs.mu.Unlock()
}

// get returns the row for scenario/params/metric, or nil.
func (rs *results) get(scenario string, params []param, metric string) *row {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.index[scenario+"\x00"+paramsKey(params)+"\x00"+metric]
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// runs returns the values of config, in run order.
func (r *row) runs(config string) []float64 {
	m := r.vals[config]
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	out := make([]float64, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

func (r *row) median(config string) float64 { return median(r.runs(config)) }

// ratio is the median over runs of a/b, each pair taken from the same run.
func (r *row) ratio(a, b string) float64 {
	var rs []float64
	for run, va := range r.vals[a] {
		if vb, ok := r.vals[b][run]; ok && vb != 0 {
			rs = append(rs, va/vb)
		}
	}
	return median(rs)
}

func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v == math.Trunc(v) && math.Abs(v) < 1e9:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case math.Abs(v) >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

func fmtRatio(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "x"
}

// writeTables prints one table per scenario: the median of each
// configuration and the same-run ratios relay/direct and relay/intermediate.
func (rs *results) writeTables(w io.Writer, scenarios []string, titles map[string]string) {
	for _, sc := range scenarios {
		var rows []*row
		for _, r := range rs.rows {
			if r.scenario == sc {
				rows = append(rows, r)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n### %s\n", titles[sc])
		configs, ratios := columns(sc)
		configs, ratios = withExtra(configs, ratios, rows)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
		head := []string{"params", "metric"}
		head = append(head, configs...)
		for _, r := range ratios {
			head = append(head, r[0]+"/"+strings.TrimSuffix(r[1], "ediate"))
		}
		fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
		for _, r := range rows {
			cells := []string{paramsKey(r.params), r.metric}
			for _, c := range configs {
				cells = append(cells, fmtNum(r.median(c)))
			}
			for _, q := range ratios {
				cells = append(cells, fmtRatio(r.ratio(q[0], q[1])))
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
		}
		tw.Flush()
	}
}

// jsonLine is one result: the median of a configuration (or a same-run
// ratio, config "relay/direct") with the values of every run.
type jsonLine struct {
	Scenario string         `json:"scenario"`
	Config   string         `json:"config"`
	Params   map[string]any `json:"params"`
	Metric   string         `json:"metric"`
	Value    float64        `json:"value"`
	Runs     []float64      `json:"runs,omitempty"`
}

func (rs *results) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	for _, r := range rs.rows {
		params := map[string]any{}
		for _, p := range r.params {
			params[p.Key] = p.Value
		}
		emit := func(config string, v float64, runs []float64) error {
			if math.IsNaN(v) {
				return nil
			}
			return enc.Encode(jsonLine{Scenario: r.scenario, Config: config, Params: params, Metric: r.metric, Value: round(v), Runs: runs})
		}
		configs, ratios := columns(r.scenario)
		configs, ratios = withExtra(configs, ratios, []*row{r})
		for _, c := range configs {
			runs := r.runs(c)
			for i := range runs {
				runs[i] = round(runs[i])
			}
			if err := emit(c, r.median(c), runs); err != nil {
				return err
			}
		}
		for _, q := range ratios {
			if err := emit(q[0]+"/"+q[1], r.ratio(q[0], q[1]), nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func round(v float64) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	// Six significant digits.
	p := math.Pow(10, 5-math.Floor(math.Log10(math.Abs(v))))
	return math.Round(v*p) / p
}
