package main

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

func resyncParams(o *options, writes int64) []param {
	return []param{{"dataset_mb", o.resyncDataset / mib}, {"written_mb", writes / mib}}
}

// overwrite rewrites populated keys ("key:<i>", i < keys) in order, with
// values of valueSize, until about total bytes of stream have been
// produced. The dataset keeps its size.
func overwrite(ctx context.Context, p *proc, keys, valueSize, total int64) error {
	c := newClient(p.addr(), 1)
	defer c.Close()
	val := payload(int(valueSize))
	const batch = 64
	var done int64
	var i int64
	for done < total {
		pipe := c.Pipeline()
		for range batch {
			key := "key:" + strconv.FormatInt(i%keys, 10)
			pipe.Set(ctx, key, val, 0)
			done += int64(setCommandBytes(len(key), len(val)))
			i++
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// resyncOnce cuts one of two leaves off its serving node, writes `writes`
// bytes of stream to the master meanwhile, reconnects it and measures how it
// comes back: partial or full resync (the serving node's counters), and the
// time until it is in sync again.
//
// The cut is "REPLICAOF 127.0.0.1 <a port nobody listens on>": the leaf
// keeps its replication ID and offset as a cached master, exactly as after
// a network failure, and PSYNCs its old offset when pointed back.
func (o *options) resyncOnce(ctx context.Context, e *env, kind string, writes int64) (map[string]float64, error) {
	keys := o.resyncDataset / o.valueSize
	t, err := o.warmTopo(ctx, e, kind, 2, keys, o.valueSize)
	if err != nil {
		return nil, err
	}
	defer t.stop()
	leaf, other := t.leaves[0], t.leaves[1]
	serving := t.serving()
	dead, err := e.freePort()
	if err != nil {
		return nil, err
	}
	servingBefore, err := readStats(ctx, serving)
	if err != nil {
		return nil, err
	}
	masterBefore, err := readStats(ctx, t.master)
	if err != nil {
		return nil, err
	}
	if err := replicaof(ctx, leaf, "127.0.0.1", strconv.Itoa(dead)); err != nil {
		return nil, err
	}
	if up, _, err := replicaState(ctx, leaf); err != nil || up {
		return nil, fmt.Errorf("leaf still linked after the cut (err %v)", err)
	}
	if err := overwrite(ctx, t.master, keys, o.valueSize, writes); err != nil {
		return nil, fmt.Errorf("writes: %w", err)
	}
	// The other leaf in sync means the serving node has every byte.
	if _, err := waitInSync(ctx, t.master, []*proc{other}, o.syncTimeout); err != nil {
		return nil, err
	}

	t0 := time.Now()
	if err := replicaofProc(ctx, leaf, serving); err != nil {
		return nil, err
	}
	t1, err := waitInSync(ctx, t.master, []*proc{leaf}, o.syncTimeout)
	if err != nil {
		return nil, err
	}
	servingAfter, err := readStats(ctx, serving)
	if err != nil {
		return nil, err
	}
	masterAfter, err := readStats(ctx, t.master)
	if err != nil {
		return nil, err
	}
	sd, md := servingAfter.sub(servingBefore), masterAfter.sub(masterBefore)
	m := map[string]float64{
		"catchup_s":           t1.Sub(t0).Seconds(),
		"served_full":         float64(sd.syncFull),
		"served_partial_ok":   float64(sd.syncPartialOK),
		"partial":             b2f(sd.syncPartialOK > 0 && sd.syncFull == 0),
		"master_sync_full":    float64(md.syncFull),
		"master_egress_mb":    float64(md.replOut) / mib,
		"serving_egress_mb":   float64(sd.replOut) / mib,
		"leaf_peak_rss_mb":    float64(leaf.peakRSS()) / mib,
		"serving_peak_rss_mb": float64(serving.peakRSS()) / mib,
	}
	ok, err := digestsEqual(ctx, t.master, t.leaves...)
	if err != nil {
		return nil, err
	}
	m["digest_ok"] = b2f(ok)
	return m, nil
}
