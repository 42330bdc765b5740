package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

const mib = 1 << 20

// fanoutParams names one fanout measurement.
func fanoutParams(dataset int64, n int, mode string) []param {
	return []param{{"dataset_mb", dataset / mib}, {"n", n}, {"mode", mode}}
}

// fanoutOnce measures N replicas syncing a dataset from scratch through
// configuration kind. The clock starts when the middle node is launched
// (already pointed at the master) and, for direct, when the replicas are
// pointed at the master: the intermediate's or relay's own sync is part of
// the time, as it is of the master's full-sync count.
//
// mode "at_once": all replicas are pointed at the serving node together;
// "staggered": one by one, each once the previous one is in sync.
func (o *options) fanoutOnce(ctx context.Context, e *env, kind string, dataset int64, n int, mode string) (map[string]float64, error) {
	t := &topo{kind: kind}
	defer t.stop()
	var err error
	if t.master, err = o.startMaster(ctx, e); err != nil {
		return nil, err
	}
	keys := dataset / o.valueSize
	if err := populate(ctx, t.master, keys, o.valueSize); err != nil {
		return nil, fmt.Errorf("populate: %w", err)
	}
	rdbSize, err := o.rdbSize(ctx, t.master, dataset)
	if err != nil {
		return nil, err
	}
	if t.leaves, err = o.startLeaves(ctx, e, n); err != nil {
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
	if t.middle, err = o.startMiddle(ctx, e, kind, t.master); err != nil {
		return nil, err
	}
	var t1 time.Time
	if mode == "staggered" {
		for _, l := range t.leaves {
			if err := replicaofProc(ctx, l, t.serving()); err != nil {
				return nil, err
			}
			if t1, err = waitInSync(ctx, t.master, []*proc{l}, o.syncTimeout); err != nil {
				return nil, err
			}
		}
	} else {
		if err := attachAll(ctx, t.leaves, t.serving()); err != nil {
			return nil, err
		}
		if t1, err = waitInSync(ctx, t.master, t.leaves, o.syncTimeout); err != nil {
			return nil, err
		}
	}
	elapsed := t1.Sub(t0)
	// CPU used by every process of the configuration during the sync. On
	// this machine, wall time cannot be less than that over the CPU count.
	replicasCPU := 0.0
	for _, l := range t.leaves {
		replicasCPU += l.cpuSeconds()
	}
	allCPU := t.master.cpuSeconds() + replicasCPU - cpu0
	if t.middle != nil {
		allCPU += t.middle.cpuSeconds()
	}

	after, err := readStats(ctx, t.master)
	if err != nil {
		return nil, err
	}
	d := after.sub(before)
	m := map[string]float64{
		"sync_time_s":           elapsed.Seconds(),
		"cpu_s":                 allCPU,
		"cpu_bound_s":           allCPU / float64(runtime.NumCPU()),
		"master_sync_full":      float64(d.syncFull),
		"master_forks":          float64(d.forks),
		"master_egress_mb":      float64(d.replOut) / mib,
		"master_egress_per_rdb": float64(d.replOut) / float64(rdbSize),
		"master_peak_rss_mb":    float64(t.master.peakRSS()) / mib,
		"replica_peak_rss_mb":   float64(t.leaves[0].peakRSS()) / mib,
	}
	if t.middle != nil {
		m["middle_peak_rss_mb"] = float64(t.middle.peakRSS()) / mib
		m["middle_cpu_s"] = t.middle.cpuSeconds()
	}
	if err := syncChecks(ctx, t, d.syncFull, m); err != nil {
		return nil, err
	}
	return m, nil
}

// syncChecks records what every full-sync scenario checks: the full syncs
// the serving node served (N when every replica synced once; more means
// replicas had to start over; masterFull when there is no middle node),
// the relay's replica sessions cut, and whether every leaf's digest
// matches the master's.
func syncChecks(ctx context.Context, t *topo, masterFull int64, m map[string]float64) error {
	served := masterFull
	if t.middle != nil {
		ms, err := readStats(ctx, t.middle)
		if err != nil {
			return err
		}
		served = ms.syncFull
	}
	m["served_full"] = float64(served)
	if isRelay(t.kind) {
		// The relay counts a full sync once it is sent; a session cut
		// before that shows only among its disconnects.
		n, err := relayReplicaDisconnects(ctx, t.middle)
		if err != nil {
			return err
		}
		m["relay_replica_disconnects"] = float64(n)
	}
	ok, err := digestsEqual(ctx, t.master, t.leaves...)
	if err != nil {
		return err
	}
	m["digest_ok"] = b2f(ok)
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// rdbSize returns the size of the RDB of the populated dataset, measured
// once per dataset size with SAVE on the first master that holds it.
func (o *options) rdbSize(ctx context.Context, master *proc, dataset int64) (int64, error) {
	o.mu.Lock()
	size, ok := o.rdbSizes[dataset]
	o.mu.Unlock()
	if ok {
		return size, nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := master.c.Do(cctx, "SAVE").Err(); err != nil {
		return 0, fmt.Errorf("SAVE: %w", err)
	}
	path := filepath.Join(master.dir, "dump.rdb")
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	os.Remove(path)
	o.mu.Lock()
	o.rdbSizes[dataset] = fi.Size()
	o.mu.Unlock()
	return fi.Size(), nil
}

// fanoutMemoryEstimate is the memory a redis-server holding dataset bytes of
// values of valueSize needs, on the generous side: jemalloc rounds a value
// of 1 KiB up to 1280 bytes, and each key costs about 100 bytes more.
func fanoutMemoryEstimate(dataset, valueSize int64) int64 {
	keys := dataset / valueSize
	return keys*(valueSize*5/4+100) + 32*mib
}

// relayReplicaDisconnects sums the relay's replica_disconnects_<reason>
// counters (INFO relay): replica sessions that ended.
func relayReplicaDisconnects(ctx context.Context, p *proc) (int64, error) {
	m, err := info(ctx, p.c, "relay")
	if err != nil {
		return 0, err
	}
	var n int64
	for k := range m {
		if strings.HasPrefix(k, "replica_disconnects_") {
			n += max(infoInt(m, k), 0)
		}
	}
	return n, nil
}
