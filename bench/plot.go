package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// The pictures -plots writes: lag behind the master over time under the
// heaviest ingest burst, and full-sync time against N.
const (
	plotIngestLag = "bench-ingest-lag.svg"
	plotFullSync  = "bench-fullsync.svg"
)

// series is one line of a plot, its points in the order they were taken.
type series struct {
	name string
	x, y []float64
}

// linePlot is a plot of lines over a shared x axis.
type linePlot struct {
	title, xLabel, yLabel string
	points                bool // mark every point (few points per line)
	lines                 []series
}

// writeSVG draws lp as an SVG of the given size in inches.
func (lp linePlot) writeSVG(w io.Writer, width, height float64) error {
	if len(lp.lines) == 0 {
		return errors.New("plot has no lines")
	}
	p := plot.New()
	p.Title.Text = lp.title
	p.X.Label.Text = lp.xLabel
	p.Y.Label.Text = lp.yLabel
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(8)
	p.Add(plotter.NewGrid())
	// Room above the highest point for the legend.
	top := 0.0
	for _, s := range lp.lines {
		for _, y := range s.y {
			top = max(top, y)
		}
	}
	if top > 0 {
		p.Y.Max = top * (1 + 0.12*float64(len(lp.lines)+1))
	}
	for i, s := range lp.lines {
		if len(s.x) != len(s.y) || len(s.x) == 0 {
			return fmt.Errorf("line %q: %d x and %d y values", s.name, len(s.x), len(s.y))
		}
		xys := make(plotter.XYs, len(s.x))
		for j := range s.x {
			xys[j].X, xys[j].Y = s.x[j], s.y[j]
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return fmt.Errorf("line %q: %w", s.name, err)
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(s.name, l)
		if lp.points {
			sc, err := plotter.NewScatter(xys)
			if err != nil {
				return fmt.Errorf("line %q: %w", s.name, err)
			}
			sc.Color = plotutil.Color(i)
			sc.Shape = plotutil.Shape(i)
			p.Add(sc)
		}
	}
	wt, err := p.WriterTo(vg.Length(width)*vg.Inch, vg.Length(height)*vg.Inch, "svg")
	if err != nil {
		return err
	}
	_, err = wt.WriteTo(w)
	return err
}

// save writes lp as an SVG file at path, through a temporary file so that a
// failed run leaves the previous picture in place.
func (lp linePlot) save(path string) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".plot-*.svg")
	if err != nil {
		return err
	}
	err = lp.writeSVG(f, 7, 4)
	if err == nil {
		err = f.Chmod(0o644) // CreateTemp makes it 0600; the plot is for everyone
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}

// lagTrace is the lag of the node under test and of the stock replica P
// behind the master, sampled over one ingest burst.
type lagTrace struct {
	t, node, p []float64 // seconds since the burst started; MiB behind
}

func (tr *lagTrace) add(t, node, p float64) {
	tr.t = append(tr.t, t)
	tr.node = append(tr.node, max(node, 0))
	tr.p = append(tr.p, max(p, 0))
}

// traceKey names one ingest measurement's trace.
type traceKey struct {
	params string // paramsKey of the ingest load
	config string
	run    int
}

// medianRun returns the run of config whose value of metric is the median
// (the lower of the two middle ones for an even count), or 0.
func (r *row) medianRun(config string) int {
	type rv struct {
		run int
		v   float64
	}
	var vs []rv
	for run, v := range r.vals[config] {
		vs = append(vs, rv{run, v})
	}
	if len(vs) == 0 {
		return 0
	}
	sort.Slice(vs, func(i, j int) bool {
		if vs[i].v != vs[j].v {
			return vs[i].v < vs[j].v
		}
		return vs[i].run < vs[j].run
	})
	return vs[(len(vs)-1)/2].run
}

// ingestLagPlot draws, for the ingest load with the largest values, the lag
// over time of the stock replica on the master (direct), of a stock
// intermediate redis-server and of the relay, each from the run whose mean
// lag was the median of its configuration. P beside the relay stands for
// direct.
func (o *options) ingestLagPlot(rs *results) (linePlot, bool) {
	if len(o.ingestLoads) == 0 {
		return linePlot{}, false
	}
	ld := slices.MaxFunc(o.ingestLoads, func(a, b ingestLoad) int { return a.value - b.value })
	params := ingestParams(o, ld)
	mean := rs.get("ingest", params, "node_lag_mean_mb")
	if mean == nil {
		return linePlot{}, false
	}
	lp := linePlot{
		title:  fmt.Sprintf("Lag behind the master under %d-byte SETs (%d clients, %s)", ld.value, o.clientsOf(ld), o.ingestDuration),
		xLabel: "seconds since the burst started",
		yLabel: "MiB behind the master",
	}
	add := func(name string, run int, y func(*lagTrace) []float64, config string) {
		tr := rs.trace(traceKey{paramsKey(params), config, run})
		if tr == nil || len(tr.t) == 0 {
			return
		}
		lp.lines = append(lp.lines, series{name: fmt.Sprintf("%s (run %d)", name, run), x: tr.t, y: y(tr)})
	}
	node := func(tr *lagTrace) []float64 { return tr.node }
	pLag := func(tr *lagTrace) []float64 { return tr.p }
	if run := mean.medianRun(cfgRelay); run > 0 {
		add("direct: stock replica", run, pLag, cfgRelay)
	} else if run := mean.medianRun(cfgIntermediate); run > 0 {
		add("direct: stock replica", run, pLag, cfgIntermediate)
	}
	if run := mean.medianRun(cfgIntermediate); run > 0 {
		add("stock intermediate", run, node, cfgIntermediate)
	}
	if run := mean.medianRun(cfgRelay); run > 0 {
		add("relay", run, node, cfgRelay)
	}
	return lp, len(lp.lines) > 0
}

// fullSyncPlot draws the median time until all N replicas are in sync
// against N (replicas attached at once), per configuration, for the first
// fanout dataset, with the scale scenario's N when it used the same dataset.
func (o *options) fullSyncPlot(rs *results) (linePlot, bool) {
	if len(o.datasets) == 0 {
		return linePlot{}, false
	}
	d := o.datasets[0]
	lp := linePlot{
		title:  fmt.Sprintf("Full sync of a %s dataset: time until all N replicas are in sync (median)", fmtBytes(d)),
		xLabel: "N replicas attached at once",
		yLabel: "seconds",
		points: true,
	}
	for _, c := range allConfigs {
		var s series
		s.name = c
		for _, n := range o.ns {
			r := rs.get("fanout", fanoutParams(d, n, "at_once"), "sync_time_s")
			if r == nil {
				continue
			}
			if v := r.median(c); !math.IsNaN(v) {
				s.x = append(s.x, float64(n))
				s.y = append(s.y, v)
			}
		}
		if len(s.x) > 0 {
			lp.lines = append(lp.lines, s)
		}
	}
	return lp, len(lp.lines) > 0
}

// writePlots writes the pictures the results allow into dir and returns the
// paths written.
func (o *options) writePlots(dir string, rs *results) ([]string, error) {
	var written []string
	for _, p := range []struct {
		name string
		make func(*results) (linePlot, bool)
	}{{plotIngestLag, o.ingestLagPlot}, {plotFullSync, o.fullSyncPlot}} {
		lp, ok := p.make(rs)
		if !ok {
			continue
		}
		path := filepath.Join(dir, p.name)
		if err := lp.save(path); err != nil {
			return written, err
		}
		written = append(written, path)
	}
	return written, nil
}
