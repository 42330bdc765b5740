package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redisproc"
	"github.com/redis-relay/redis-relay/proxy/settings"
)

// The ingest scenario: a burst of writes on a master with Redis's default
// replica output-buffer limits, a stock replica P on the master as the
// control, and beside it the node under test (intermediate redis-server,
// the floor program, or the relay). It asks whether the node keeps up with
// the master as well as a stock replica does, whether the master cuts its
// link, and what the node's CPU costs per MiB of stream.

// ingestLoad is one parameter set of the ingest scenario.
type ingestLoad struct {
	value    int // bytes per SET value
	pipeline int // requests in flight per client
	clients  int // writer connections; 0: -ingest-clients
}

// parseIngestLoads reads "400000/1,256/32,400000/1/1": value size, pipeline
// depth (default 1) and, optionally, writer connections.
func parseIngestLoads(s string) ([]ingestLoad, error) {
	var out []ingestLoad
	for _, f := range splitList(s) {
		parts := strings.Split(f, "/")
		if len(parts) > 3 {
			return nil, fmt.Errorf("bad load %q: value/pipeline[/clients]", f)
		}
		value, err := settings.ParseSize(parts[0])
		if err != nil || value < 1 || value > 64*mib {
			return nil, fmt.Errorf("bad value size in %q", f)
		}
		ld := ingestLoad{value: int(value), pipeline: 1}
		if len(parts) > 1 {
			if ld.pipeline, err = strconv.Atoi(parts[1]); err != nil || ld.pipeline < 1 || ld.pipeline > 1000 {
				return nil, fmt.Errorf("bad pipeline in %q", f)
			}
		}
		if len(parts) > 2 {
			if ld.clients, err = strconv.Atoi(parts[2]); err != nil || ld.clients < 1 || ld.clients > 64 {
				return nil, fmt.Errorf("bad clients in %q", f)
			}
		}
		out = append(out, ld)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

// clientsOf is the number of writer connections of ld.
func (o *options) clientsOf(ld ingestLoad) int {
	if ld.clients > 0 {
		return ld.clients
	}
	return o.ingestClients
}

func ingestParams(o *options, ld ingestLoad) []param {
	ps := []param{{"value", ld.value}, {"pipeline", ld.pipeline}, {"clients", o.clientsOf(ld)}, {"keys", o.ingestKeys}, {"seconds", int(o.ingestDuration.Seconds())}}
	if o.ingestRate > 0 {
		ps = append(ps, param{"rate_mb_s", o.ingestRate / mib})
	}
	return ps
}

// lagStats accumulates lag samples in bytes.
type lagStats struct {
	n        int
	sum, max float64
}

func (s *lagStats) add(v float64) {
	v = max(v, 0)
	s.n++
	s.sum += v
	s.max = max(s.max, v)
}

func (s *lagStats) mean() float64 {
	if s.n == 0 {
		return 0
	}
	return s.sum / float64(s.n)
}

// syncRequests counts, per replica address ("127.0.0.1:<listening-port>"),
// the lines "Replica <addr> asks for synchronization" in a master's log
// (Redis logs one for every PSYNC or SYNC, full or partial), and the
// clients the master closed for overcoming output buffer limits. Redis 7.0
// has no INFO counter of the latter (client_output_buffer_limit_disconnections
// arrived in 7.2), and neither counter says which replica it was.
func syncRequests(logPath string) (asks map[string]int, oblClosed int, err error) {
	f, err := os.Open(logPath)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	asks = map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if _, rest, ok := strings.Cut(line, " Replica "); ok {
			if addr, _, ok := strings.Cut(rest, " asks for synchronization"); ok {
				asks[addr]++
			}
		}
		if strings.Contains(line, "scheduled to be closed ASAP for overcoming of output buffer limits") {
			oblClosed++
		}
	}
	return asks, oblClosed, sc.Err()
}

// startFloor runs the floor program (bench/floor) as a replica of master.
func (e *env) startFloor(ctx context.Context, master string, ringBytes int64, fsync bool) (*proc, error) {
	return e.start(ctx, "floor", "floor", func(dir string) redisproc.Options {
		return redisproc.Options{Bin: e.floorBin, Argv: func(port int) []string {
			args := []string{"-replicaof", master, "-port", strconv.Itoa(port), "-dir", dir,
				"-ring", strconv.FormatInt(ringBytes, 10)}
			if fsync {
				args = append(args, "-fsync")
			}
			return args
		}}
	})
}

// startIngestLoad starts the write burst against master and returns a
// function that stops it and reports its error. It runs redis-benchmark
// when o.ingestWriter says so (the default when the binary is on PATH),
// else go-redis writers of the same shape.
func (o *options) startIngestLoad(ctx context.Context, e *env, master *proc, ld ingestLoad) (stop func() error, err error) {
	loadCtx, cancel := context.WithCancel(ctx)
	if o.ingestWriter == "redis-benchmark" && o.ingestRate == 0 {
		logPath := filepath.Join(e.root, fmt.Sprintf("redis-benchmark-%d.log", time.Now().UnixNano()))
		out, err := os.Create(logPath)
		if err != nil {
			cancel()
			return nil, err
		}
		cmd := exec.Command(e.benchmarkBin, "-h", "127.0.0.1", "-p", strconv.Itoa(master.port),
			"-t", "set", "-d", strconv.Itoa(ld.value), "-c", strconv.Itoa(o.clientsOf(ld)),
			"-r", strconv.Itoa(o.ingestKeys), "-P", strconv.Itoa(ld.pipeline), "-n", "2000000000", "-q")
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			out.Close()
			cancel()
			return nil, fmt.Errorf("start redis-benchmark: %w", err)
		}
		out.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		stopKill := context.AfterFunc(loadCtx, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
		return func() error {
			early := false
			select {
			case <-done:
				early = true
			default:
			}
			cancel()
			stopKill()
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			if early {
				b, _ := os.ReadFile(logPath)
				return fmt.Errorf("redis-benchmark ended before the window did: %s", strings.TrimSpace(string(b)))
			}
			<-done
			return nil
		}, nil
	}
	wc := newClient(master.addr(), o.clientsOf(ld)+2)
	done := make(chan error, 1)
	go func() {
		if o.ingestRate > 0 {
			done <- pacedLoad(loadCtx, wc, o.clientsOf(ld), o.ingestKeys, ld.value, o.ingestRate)
			return
		}
		_, err := writeLoad(loadCtx, wc, o.clientsOf(ld), ld.pipeline, o.ingestKeys, ld.value)
		done <- err
	}()
	return func() error {
		cancel()
		err := <-done
		wc.Close()
		return err
	}, nil
}

// ingestOnce measures one configuration under one burst, and returns the
// lag samples with the metrics.
func (o *options) ingestOnce(ctx context.Context, e *env, kind string, ld ingestLoad) (map[string]float64, *lagTrace, error) {

	masterArgs := []string{"--repl-diskless-sync-delay", strconv.Itoa(o.disklessDelay), "--repl-backlog-size", o.ingestBacklog}
	master, err := e.startRedis(ctx, "master", masterArgs...)
	if err != nil {
		return nil, nil, err
	}
	defer master.stop()
	pRep, err := e.startRedis(ctx, "replica-p", "--replicaof", "127.0.0.1", strconv.Itoa(master.port))
	if err != nil {
		return nil, nil, err
	}
	defer pRep.stop()
	var node *proc
	switch kind {
	case cfgIntermediate:
		node, err = e.startRedis(ctx, "intermediate", "--replicaof", "127.0.0.1", strconv.Itoa(master.port))
	case cfgFloor:
		node, err = e.startFloor(ctx, master.addr(), o.ringBytes, o.floorFsync)
	case cfgRelay:
		node, err = e.startRelay(ctx, "relay", master.addr(), o.ringBytes)
	default:
		err = fmt.Errorf("unknown ingest configuration %q", kind)
	}
	if err != nil {
		return nil, nil, err
	}
	defer node.stop()
	if _, err := waitInSync(ctx, master, []*proc{pRep, node}, o.syncTimeout); err != nil {
		return nil, nil, err
	}
	before, err := readStats(ctx, master)
	if err != nil {
		return nil, nil, err
	}
	offsets := func() (mOff, nOff, pOff int64, err error) {
		if mOff, err = replOffset(ctx, master); err != nil {
			return
		}
		if _, nOff, err = replicaState(ctx, node); err != nil {
			return
		}
		_, pOff, err = replicaState(ctx, pRep)
		return
	}
	cpu0n, cpu0p := node.cpuSeconds(), pRep.cpuSeconds()
	m0, n0, p0, err := offsets()
	if err != nil {
		return nil, nil, err
	}
	t0 := time.Now()
	stopLoad, err := o.startIngestLoad(ctx, e, master, ld)
	if err != nil {
		return nil, nil, err
	}
	var nodeLag, pLag lagStats
	trace := &lagTrace{}
	tick := time.NewTicker(o.ingestInterval)
	end := time.NewTimer(o.ingestDuration)
	var sampleErr error
sampling:
	for {
		select {
		case <-ctx.Done():
			stopLoad()
			tick.Stop()
			return nil, nil, ctx.Err()
		case <-end.C:
			break sampling
		case <-tick.C:
		}
		mOff, nOff, pOff, err := offsets()
		if err != nil {
			sampleErr = err
			break
		}
		nodeLag.add(float64(mOff - nOff))
		pLag.add(float64(mOff - pOff))
		trace.add(time.Since(t0).Seconds(), float64(mOff-nOff)/mib, float64(mOff-pOff)/mib)
	}
	tick.Stop()
	loadErr := stopLoad()
	t1 := time.Now()
	m1, _, _, err := offsets()
	if err != nil {
		return nil, nil, err
	}
	if sampleErr != nil {
		return nil, nil, fmt.Errorf("lag sampling: %w", sampleErr)
	}
	if loadErr != nil {
		return nil, nil, fmt.Errorf("write load: %w", loadErr)
	}
	// CPU and bytes run until each node holds the whole burst.
	caught, err := waitInSync(ctx, master, []*proc{pRep, node}, o.syncTimeout)
	if err != nil {
		return nil, nil, fmt.Errorf("catch-up after the burst: %w", err)
	}
	cpu1n, cpu1p := node.cpuSeconds(), pRep.cpuSeconds()
	_, n2, p2, err := offsets()
	if err != nil {
		return nil, nil, err
	}
	after, err := readStats(ctx, master)
	if err != nil {
		return nil, nil, err
	}
	asks, obl, err := syncRequests(filepath.Join(master.dir, "redis.log"))
	if err != nil {
		return nil, nil, fmt.Errorf("master log: %w", err)
	}

	if os.Getenv("BENCH_DEBUG") != "" {
		e.logf("%s: master log sync requests %v (node %s, P %s), %d closed for output buffer limits", kind, asks, node.addr(), pRep.addr(), obl)
	}
	mm := map[string]float64{}
	mm["node_lag_mean_mb"] = nodeLag.mean() / mib
	mm["node_lag_max_mb"] = nodeLag.max / mib
	mm["p_lag_mean_mb"] = pLag.mean() / mib
	mm["p_lag_max_mb"] = pLag.max / mib
	if pLag.mean() > 0 {
		mm["lag_vs_p_x"] = nodeLag.mean() / pLag.mean()
	}
	// Every sync request after the first is the link coming back.
	mm["node_cuts"] = float64(max(asks[node.addr()]-1, 0))
	mm["p_cuts"] = float64(max(asks[pRep.addr()]-1, 0))
	mm["master_obl_closed"] = float64(obl)
	d := after.sub(before)
	mm["master_sync_full"] = float64(d.syncFull)
	mm["master_sync_partial_ok"] = float64(d.syncPartialOK)
	stream := float64(m1 - m0)
	secs := t1.Sub(t0).Seconds()
	mm["stream_mb"] = stream / mib
	mm["master_mb_s"] = stream / secs / mib
	keyLen := len(streamKey(0))
	if o.ingestWriter == "redis-benchmark" && o.ingestRate == 0 {
		keyLen = len("key:000000000000") // -r: key:__rand_int__, 12 digits
	}
	mm["ops_k"] = stream / float64(setCommandBytes(keyLen, ld.value)) / 1e3
	mm["drain_s"] = caught.Sub(t1).Seconds()
	// CPU per MiB only for a node the master never cut: after a full
	// resync its offset jumps over stream it never read (a snapshot stands
	// for it), so the quotient would flatter it.
	if nb := float64(n2 - n0); nb > 0 && mm["node_cuts"] == 0 {
		mm["node_cpu_ms_per_mb"] = 1000 * (cpu1n - cpu0n) / (nb / mib)
	}
	if pb := float64(p2 - p0); pb > 0 && mm["p_cuts"] == 0 {
		mm["p_cpu_ms_per_mb"] = 1000 * (cpu1p - cpu0p) / (pb / mib)
	}
	mm["node_cpu_pct"] = 100 * (cpu1n - cpu0n) / caught.Sub(t0).Seconds()
	mm["node_peak_rss_mb"] = float64(node.peakRSS()) / mib
	return mm, trace, nil
}

// pacedLoad runs writers SETs of valueSize bytes until ctx ends, together
// at most rate bytes of values per second: a burst the disk can take, for
// CPU figures of nodes that would otherwise be cut.
func pacedLoad(ctx context.Context, c *redis.Client, writers, keyspace, valueSize int, rate int64) error {
	val := payload(valueSize)
	every := time.Duration(float64(time.Second) * float64(valueSize) * float64(writers) / float64(rate))
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := time.Now()
			for i := w; ctx.Err() == nil; i += writers {
				if err := c.Set(ctx, streamKey(i%keyspace), val, 0).Err(); err != nil {
					if ctx.Err() == nil {
						errs[w] = err
					}
					return
				}
				next = next.Add(every)
				if d := time.Until(next); d > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(d):
					}
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
