package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

func streamParams(o *options) []param {
	ps := []param{{"value", o.streamValue}, {"pipeline", o.pipeline}, {"writers", o.writers}, {"seconds", int(o.streamDuration.Seconds())}}
	if o.streamLeaves != 2 {
		ps = append(ps, param{"leaves", o.streamLeaves})
	}
	return ps
}

// setCommandBytes is the size of "SET <key> <value>" in the replication
// stream, as RESP.
func setCommandBytes(keyLen, valueLen int) int {
	bulk := func(n int) int { return 1 + len(strconv.Itoa(n)) + 2 + n + 2 }
	return len("*3\r\n") + bulk(3) + bulk(keyLen) + bulk(valueLen)
}

// streamKey is the key a writer sets; fixed width so every SET has the same
// size in the stream.
func streamKey(i int) string { return fmt.Sprintf("k:%010d", i) }

// payload returns a deterministic value of n bytes.
func payload(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return string(b)
}

// writeLoad runs pipelined SET writers against c until ctx ends, and
// returns the number of commands acknowledged.
func writeLoad(ctx context.Context, c *redis.Client, writers, pipeline, keyspace, valueSize int) (int64, error) {
	val := payload(valueSize)
	var ops atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for ctx.Err() == nil {
				pipe := c.Pipeline()
				for range pipeline {
					pipe.Set(ctx, streamKey(rng.IntN(keyspace)), val, 0)
				}
				if _, err := pipe.Exec(ctx); err != nil {
					if ctx.Err() == nil {
						errs[w] = err
					}
					return
				}
				ops.Add(int64(pipeline))
			}
		}()
	}
	wg.Wait()
	return ops.Load(), errors.Join(errs...)
}

var errProbeTimeout = errors.New("probe not seen on the leaf")

// prober measures propagation latency: SET a key holding a timestamp on the
// master, then GET it from a leaf in a tight loop until it appears.
type prober struct {
	master, leaf *redis.Client
	base         time.Time
	seq          atomic.Int64
	timeout      time.Duration
}

func newProber(master, leaf *proc) *prober {
	return &prober{master: newClient(master.addr(), 1), leaf: newClient(leaf.addr(), 1), base: time.Now(), timeout: 5 * time.Second}
}

func (p *prober) close() {
	p.master.Close()
	p.leaf.Close()
}

// once runs one probe and returns its latency. Commands run under ctx; the
// GET loop also stops when stop ends (without failing the probe's
// connection, as a deadline on ctx would).
func (p *prober) once(ctx, stop context.Context) (time.Duration, error) {
	key := "probe:" + strconv.FormatInt(p.seq.Add(1), 10)
	sent := int64(time.Since(p.base))
	val := strconv.FormatInt(sent, 10)
	if err := p.master.Set(ctx, key, val, 0).Err(); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(p.timeout)
	for time.Now().Before(deadline) && stop.Err() == nil {
		got, err := p.leaf.Get(ctx, key).Result()
		if err == nil && got == val {
			return time.Duration(int64(time.Since(p.base)) - sent), nil
		}
		if err != nil && !errors.Is(err, redis.Nil) {
			return 0, err
		}
	}
	if err := stop.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%w: %s after %v", errProbeTimeout, key, p.timeout)
}

// run probes until stop ends or count probes are done (count <= 0: no
// limit), pausing interval between probes.
func (p *prober) run(ctx, stop context.Context, count int, interval time.Duration) (lat []time.Duration, timeouts int, err error) {
	for i := 0; (count <= 0 || i < count) && stop.Err() == nil; i++ {
		d, err := p.once(ctx, stop)
		switch {
		case err == nil:
			lat = append(lat, d)
		case stop.Err() != nil:
			return lat, timeouts, nil
		case errors.Is(err, errProbeTimeout):
			timeouts++
		default:
			return lat, timeouts, err
		}
		select {
		case <-time.After(interval):
		case <-stop.Done():
		}
	}
	return lat, timeouts, nil
}

func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return -1
	}
	i := int(q*float64(len(sorted)-1) + 0.5)
	return sorted[min(i, len(sorted)-1)]
}

func durationsMSRaw(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = math.Round(float64(d)/float64(time.Microsecond)) / 1000
	}
	return out
}

func durationsMS(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	sort.Float64s(out)
	return out
}

// streamOnce measures steady replication under write load through kind,
// with -stream-leaves leaves (two by default): throughput at a leaf, leaf lag, and propagation latency
// idle and under load.
func (o *options) streamOnce(ctx context.Context, e *env, kind string) (map[string]float64, error) {
	t, err := o.warmTopo(ctx, e, kind, o.streamLeaves, 0, 0)
	if err != nil {
		return nil, err
	}
	defer t.stop()
	m := map[string]float64{}
	leaf := t.leaves[0]

	// Idle propagation latency, once the leaves have settled after their
	// full sync.
	select {
	case <-time.After(o.settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	pr := newProber(t.master, leaf)
	defer pr.close()
	idle, idleTimeouts, err := pr.run(ctx, ctx, o.probes, o.probeInterval)
	if err != nil {
		return nil, fmt.Errorf("idle probes: %w", err)
	}
	ms := durationsMS(idle)
	if os.Getenv("BENCH_DEBUG") != "" {
		e.logf("%s idle probe latencies (ms, in order): %v", kind, durationsMSRaw(idle))
	}
	m["lat_idle_p50_ms"] = percentile(ms, 0.50)
	m["lat_idle_p99_ms"] = percentile(ms, 0.99)
	m["lat_idle_max_ms"] = percentile(ms, 1)

	// Write load.
	before, err := readStats(ctx, t.master)
	if err != nil {
		return nil, err
	}
	refreshesBefore := relayRefreshes(ctx, t.middle)
	wc := newClient(t.master.addr(), o.writers+2)
	defer wc.Close()
	loadCtx, stopLoad := context.WithCancel(ctx)
	var loadOps int64
	var loadErr error
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		loadOps, loadErr = writeLoad(loadCtx, wc, o.writers, o.pipeline, o.keyspace, o.streamValue)
	}()
	defer func() {
		// On every return the writers stop before their client closes.
		stopLoad()
		<-loadDone
	}()

	select {
	case <-time.After(o.warmup):
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-loadDone:
		return nil, fmt.Errorf("write load ended early: %v", loadErr)
	}

	// The measured window: offsets and CPU at its ends, lag samples and
	// probes within it.
	type point struct {
		at         time.Time
		mOff, lOff int64
		cpu        map[string]float64
		sys        map[string]sysCounts
	}
	procs := map[string]*proc{"master": t.master, "leaf": leaf}
	if t.middle != nil {
		procs["middle"] = t.middle
	}
	if t.upstream != nil {
		procs["upstream"] = t.upstream
	}
	// The chain's second relay: its inbound link's compression, checked
	// against the configuration, and its byte counters at the window's ends.
	var linkStart linkBytes
	if isChain(kind) {
		if linkStart, err = relayLink(ctx, t.middle, kind == cfgChainZstd); err != nil {
			return nil, err
		}
	}
	mark := func() (point, error) {
		pt := point{cpu: map[string]float64{}, sys: map[string]sysCounts{}}
		for k, p := range procs {
			pt.cpu[k] = p.cpuSeconds()
			pt.sys[k] = p.sysCounts()
		}
		pt.at = time.Now()
		var err error
		if pt.mOff, err = replOffset(ctx, t.master); err != nil {
			return pt, err
		}
		_, pt.lOff, err = replicaState(ctx, leaf)
		return pt, err
	}
	start, err := mark()
	if err != nil {
		return nil, err
	}
	window, stopWindow := context.WithTimeout(ctx, o.streamDuration-o.warmup)
	defer stopWindow()
	var wg sync.WaitGroup
	var lags []float64
	var sampleErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(o.lagInterval)
		defer tick.Stop()
		for {
			select {
			case <-window.Done():
				return
			case <-tick.C:
			}
			mOff, err := replOffset(ctx, t.master)
			if err != nil {
				sampleErr = err
				return
			}
			for _, l := range t.leaves {
				_, off, err := replicaState(ctx, l)
				if err != nil {
					sampleErr = err
					return
				}
				lags = append(lags, float64(max(mOff-off, 0)))
			}
		}
	}()
	var loaded []time.Duration
	var loadTimeouts int
	var probeErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		loaded, loadTimeouts, probeErr = pr.run(ctx, window, 0, o.probeInterval)
	}()
	<-window.Done()
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	end, err := mark()
	if err != nil {
		return nil, err
	}
	stopLoad()
	<-loadDone
	stoppedAt := time.Now()
	if loadErr != nil {
		return nil, fmt.Errorf("write load: %w", loadErr)
	}
	if sampleErr != nil {
		return nil, fmt.Errorf("lag sampling: %w", sampleErr)
	}
	if probeErr != nil {
		return nil, fmt.Errorf("probes under load: %w", probeErr)
	}

	secs := end.at.Sub(start.at).Seconds()
	leafBytes := float64(end.lOff - start.lOff)
	m["leaf_mb_s"] = leafBytes / secs / mib
	m["leaf_kops_s"] = leafBytes / float64(setCommandBytes(len(streamKey(0)), o.streamValue)) / secs / 1e3
	m["master_mb_s"] = float64(end.mOff-start.mOff) / secs / mib
	m["client_kops_s"] = float64(loadOps) / stoppedAt.Sub(start.at.Add(-o.warmup)).Seconds() / 1e3
	sort.Float64s(lags)
	m["lag_p50_kb"] = percentile(lags, 0.50) / 1024
	m["lag_p99_kb"] = percentile(lags, 0.99) / 1024
	m["lag_max_kb"] = percentile(lags, 1) / 1024
	ms = durationsMS(loaded)
	m["lat_load_p50_ms"] = percentile(ms, 0.50)
	m["lat_load_p99_ms"] = percentile(ms, 0.99)
	m["lat_load_max_ms"] = percentile(ms, 1)
	m["probe_timeouts"] = float64(idleTimeouts + loadTimeouts)
	for k := range procs {
		m[k+"_cpu_pct"] = 100 * (end.cpu[k] - start.cpu[k]) / secs
	}
	if t.middle != nil && leafBytes > 0 {
		// CPU the middle node spends per MB it passes on, to each leaf.
		m["middle_cpu_ms_per_mb"] = 1000 * (end.cpu["middle"] - start.cpu["middle"]) / (leafBytes / mib)
	}
	// How the master and the middle node pay for the stream in system
	// calls and context switches: per thousand SETs the master took in the
	// window, and per MiB the middle node passed on.
	if kops := float64(end.mOff-start.mOff) / float64(setCommandBytes(len(streamKey(0)), o.streamValue)) / 1e3; kops > 0 {
		d := end.sys["master"].sub(start.sys["master"])
		m["master_us_per_op"] = 1e3 * (end.cpu["master"] - start.cpu["master"]) / kops
		m["master_writes_per_kop"] = d.writeCalls / kops
		m["master_reads_per_kop"] = d.readCalls / kops
		m["master_cswitch_per_kop"] = (d.voluntary + d.forced) / kops
		// Forced: switched out while it could run, by a thread it woke or
		// any other (nonvoluntary_ctxt_switches).
		m["master_forced_cswitch_per_kop"] = d.forced / kops
		if d.writeCalls > 0 {
			m["master_bytes_per_write"] = d.writeBytes / d.writeCalls
		}
	}
	if t.middle != nil && leafBytes > 0 {
		d := end.sys["middle"].sub(start.sys["middle"])
		mb := leafBytes / mib
		m["middle_reads_per_mb"] = d.readCalls / mb
		m["middle_writes_per_mb"] = d.writeCalls / mb
		m["middle_cswitch_per_mb"] = (d.voluntary + d.forced) / mb
		m["middle_forced_cswitch_per_mb"] = d.forced / mb
		if d.readCalls > 0 {
			m["middle_bytes_per_read"] = d.readBytes / d.readCalls
		}
	}
	if isChain(kind) {
		linkEnd, err := relayLink(ctx, t.middle, kind == cfgChainZstd)
		if err != nil {
			return nil, err
		}
		// Bytes on the wire between the two relays per byte of replication
		// stream they carry, over the window (1 on a plain link).
		m["link_wire_ratio"] = 1
		if kind == cfgChainZstd {
			stream := linkEnd.stream - linkStart.stream
			if stream <= 0 {
				return nil, fmt.Errorf("compressed link: no stream bytes counted in the window (%d -> %d)", linkStart.stream, linkEnd.stream)
			}
			m["link_wire_ratio"] = float64(linkEnd.wire-linkStart.wire) / float64(stream)
			m["link_stream_mb_s"] = float64(stream) / secs / mib
		}
	}

	// Drain: how long the leaves take to catch up once writes stop.
	t1, err := waitInSync(ctx, t.master, t.leaves, o.syncTimeout)
	if err != nil {
		return nil, fmt.Errorf("drain: %w", err)
	}
	m["drain_s"] = t1.Sub(stoppedAt).Seconds()
	after, err := readStats(ctx, t.master)
	if err != nil {
		return nil, err
	}
	// Forks of the master during the load: a relay refreshing its snapshot
	// asks for one each time.
	m["master_forks"] = float64(after.sub(before).forks)
	if isRelay(t.kind) {
		m["relay_refreshes"] = float64(relayRefreshes(ctx, t.middle) - refreshesBefore)
	}
	if t.middle != nil {
		m["middle_peak_rss_mb"] = float64(t.middle.peakRSS()) / mib
	}
	ok, err := digestsEqual(ctx, t.master, t.leaves...)
	if err != nil {
		return nil, err
	}
	m["digest_ok"] = b2f(ok)
	return m, nil
}

// relayRefreshes is the relay's count of snapshot refreshes (INFO relay),
// or 0 for anything else.
func relayRefreshes(ctx context.Context, p *proc) int64 {
	if p == nil || p.kind != "relay" {
		return 0
	}
	m, err := info(ctx, p.c, "relay")
	if err != nil {
		return 0
	}
	return max(infoInt(m, "snapshot_refreshes"), 0)
}

// linkBytes are a relay's counters of its compressed inbound link.
type linkBytes struct{ stream, wire int64 }

// relayLink reads a relay's inbound link counters (INFO relay), and fails
// unless master_link_compression says zstd when compressed is set and none
// otherwise.
func relayLink(ctx context.Context, p *proc, compressed bool) (linkBytes, error) {
	m, err := info(ctx, p.c, "relay")
	if err != nil {
		return linkBytes{}, err
	}
	want := map[bool]string{true: "zstd", false: "none"}[compressed]
	if got := m["master_link_compression"]; got != want {
		return linkBytes{}, fmt.Errorf("%s: master_link_compression:%q, want %q", p.name, got, want)
	}
	return linkBytes{stream: infoInt(m, "compressed_in_stream_bytes"), wire: infoInt(m, "compressed_in_wire_bytes")}, nil
}
