package main

import (
	"context"
	"fmt"
	"time"
)

// The scale scenario: many replicas (100 by default) attach at once to a
// small dataset (20 MiB). It asks what the master pays (full syncs, forks,
// egress), how long until all are in sync against the same number attached
// directly, and what each replica costs the node in the middle in memory
// and CPU. The middle node syncs first, alone, so that its memory before
// the replicas arrive can be read; the reported time includes that sync.

func scaleParams(o *options) []param {
	return []param{{"dataset_mb", o.scaleDataset / mib}, {"n", o.scaleN}}
}

// perReplicaKB is the memory each of n replicas added, in KiB: the growth
// from before to after, over n.
func perReplicaKB(before, after int64, n int) float64 {
	if n <= 0 {
		return 0
	}
	return float64(after-before) / float64(n) / 1024
}

// scaleOnce measures o.scaleN replicas attaching at once through kind.
func (o *options) scaleOnce(ctx context.Context, e *env, kind string) (map[string]float64, error) {
	t := &topo{kind: kind}
	defer t.stop()
	var err error
	if t.master, err = o.startMaster(ctx, e); err != nil {
		return nil, err
	}
	if err := populate(ctx, t.master, o.scaleDataset/o.valueSize, o.valueSize); err != nil {
		return nil, fmt.Errorf("populate: %w", err)
	}
	rdbSize, err := o.rdbSize(ctx, t.master, o.scaleDataset)
	if err != nil {
		return nil, err
	}
	if t.leaves, err = o.startLeaves(ctx, e, o.scaleN); err != nil {
		return nil, err
	}
	before, err := readStats(ctx, t.master)
	if err != nil {
		return nil, err
	}
	cpu0 := t.master.cpuSeconds()
	for _, l := range t.leaves {
		cpu0 += l.cpuSeconds()
	}

	t0 := time.Now()
	var middleSync time.Duration
	var rss0 int64
	var middleCPU0 float64
	if t.middle, err = o.startMiddle(ctx, e, kind, t.master); err != nil {
		return nil, err
	}
	if t.middle != nil {
		t1, err := waitInSync(ctx, t.master, []*proc{t.middle}, o.syncTimeout)
		if err != nil {
			return nil, fmt.Errorf("%s sync: %w", kind, err)
		}
		middleSync = t1.Sub(t0)
		rss0, middleCPU0 = t.middle.rss(), t.middle.cpuSeconds()
	}
	ta := time.Now()
	if err := attachAll(ctx, t.leaves, t.serving()); err != nil {
		return nil, err
	}
	t2, err := waitInSync(ctx, t.master, t.leaves, o.syncTimeout)
	if err != nil {
		return nil, err
	}
	allCPU := t.master.cpuSeconds() - cpu0
	for _, l := range t.leaves {
		allCPU += l.cpuSeconds()
	}
	after, err := readStats(ctx, t.master)
	if err != nil {
		return nil, err
	}
	d := after.sub(before)
	m := map[string]float64{
		"sync_time_s":           middleSync.Seconds() + t2.Sub(ta).Seconds(),
		"attach_sync_s":         t2.Sub(ta).Seconds(),
		"master_sync_full":      float64(d.syncFull),
		"master_forks":          float64(d.forks),
		"master_egress_mb":      float64(d.replOut) / mib,
		"master_egress_per_rdb": float64(d.replOut) / float64(rdbSize),
		"master_peak_rss_mb":    float64(t.master.peakRSS()) / mib,
	}
	if t.middle != nil {
		allCPU += t.middle.cpuSeconds()
		m["middle_sync_s"] = middleSync.Seconds()
		m["middle_cpu_s"] = t.middle.cpuSeconds() - middleCPU0
		rss1 := t.middle.rss()
		m["middle_rss_before_mb"] = float64(rss0) / mib
		m["middle_rss_after_mb"] = float64(rss1) / mib
		m["middle_peak_rss_mb"] = float64(t.middle.peakRSS()) / mib
		m["middle_kb_per_replica"] = perReplicaKB(rss0, rss1, o.scaleN)
		m["middle_peak_kb_per_replica"] = perReplicaKB(rss0, t.middle.peakRSS(), o.scaleN)
	}
	m["cpu_s"] = allCPU
	if err := syncChecks(ctx, t, d.syncFull, m); err != nil {
		return nil, err
	}
	return m, nil
}
