// Command bench measures redis-relay against the two alternatives users
// weigh it against, on the same workload in one run:
//
//   - direct: every replica attached to the master;
//   - intermediate: replicas chained behind an intermediate redis-server;
//   - relay: replicas behind redis-relay.
//
// The stream scenario also takes chain (master -> relay -> relay -> leaves)
// and chain-zstd (the same with a zstd-compressed link between the two
// relays), for what a compressed relay-to-relay hop adds.
//
// It starts its own redis-server processes and relay on free loopback ports
// in temporary directories, and removes them on every exit path. Scenarios:
// fanout (N replicas syncing a dataset at once, or one after another),
// stream (throughput, lag and propagation latency under a write load),
// resync (a replica cut off while more than Redis's 1 MB backlog is
// written) and ingest (a burst of large writes with the node under test
// beside a stock replica: lag, cuts by the master, CPU per MiB against the
// floor program in bench/floor) and scale (100 replicas attaching at once to
// a 20 MiB dataset: master cost, time against 100 direct replicas, the
// middle node's memory per replica). Each configuration runs -runs times;
// tables show medians and same-run ratios, followed by the design targets
// and one JSON line per result. -plots DIR draws the lag over time under
// the heaviest ingest burst and the full-sync time against N as SVG files.
//
//	go run ./bench -plots docs  # the default run (make compare), 25-30 minutes on 2 cores
//	go run ./bench -quick       # about a minute and a half
package main

import (
	"context"
	"debug/buildinfo"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redisproc"
	"github.com/redis-relay/redis-relay/proxy/settings"
)

// options are the benchmark's settings, from flags.
type options struct {
	scenarios []string
	configs   []string
	runs      int

	datasets  []int64 // fanout dataset sizes, bytes of values
	valueSize int64
	ns        []int // replicas attaching at once
	staggerN  int   // replicas attaching one by one; 0: skip

	streamDuration time.Duration
	warmup         time.Duration
	streamValue    int
	streamLeaves   int
	pipeline       int
	writers        int
	keyspace       int
	probes         int
	probeInterval  time.Duration
	lagInterval    time.Duration
	settle         time.Duration

	resyncDataset int64
	resyncWrites  []int64

	ringBytes     int64
	disklessDelay int
	backlog       string
	syncTimeout   time.Duration
	maxMemory     int64

	ingestLoads    []ingestLoad
	ingestConfigs  []string
	ingestClients  int
	ingestKeys     int
	ingestDuration time.Duration
	ingestInterval time.Duration
	ingestBacklog  string
	ingestWriter   string // "redis-benchmark" or "go"
	ingestRate     int64  // bytes of values per second; 0: as fast as the writers go
	floorFsync     bool

	scaleN       int
	scaleDataset int64

	relayBin    string
	oldRelayBin string
	floorBin    string
	relayArgs   []string
	profileDir  string
	jsonPath    string
	plotDir     string

	mu       sync.Mutex
	rdbSizes map[int64]int64
}

var scenarioTitles = map[string]string{
	"fanout": "fanout: N replicas sync a dataset from scratch (time until all in sync; master cost; peak RSS)",
	"stream": "stream: 2 leaf replicas under a pipelined SET load",
	"resync": "resync: a leaf cut off while more than the 1 MB default backlog is written, then reconnected",
	"ingest": "ingest: a write burst; the node under test and a stock replica P side by side on the master (lag, cuts by the master, CPU per MiB)",
	"scale":  "scale: many replicas attach at once to a small dataset (master cost, time until all in sync, the middle node's memory and CPU per replica)",
}

func main() {
	os.Exit(mainExit(os.Args[1:], os.Stdout, os.Stderr))
}

func mainExit(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	if err := o.check(); err != nil {
		fmt.Fprintln(stderr, "bench: refusing to run:", err)
		return 2
	}
	rs, err := runBench(context.Background(), o, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		if errors.Is(err, errInterrupted) {
			return 130
		}
		return 1
	}
	if len(rs.fails) > 0 {
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		scenarios = fs.String("scenarios", "fanout,stream,resync,ingest,scale", "scenarios to run")
		configs   = fs.String("configs", "direct,intermediate,relay", "configurations to compare (direct, intermediate, relay, old with -old-relay-bin; for the stream scenario also chain, chain-zstd)")
		runs      = fs.Int("runs", 3, "runs of each configuration; tables show medians")
		datasets  = fs.String("dataset", "200mb", "fanout dataset sizes (bytes of values; kb, mb, gb are powers of 1024), comma-separated")
		valueSize = fs.String("value-size", "1kb", "value size of the DEBUG POPULATE datasets")
		ns        = fs.String("n", "1,4,8", "fanout: numbers of replicas attaching at once")
		staggerN  = fs.Int("stagger-n", 4, "fanout: replicas attaching one by one, each once the previous is in sync (0: skip)")
		duration  = fs.Duration("stream-duration", 20*time.Second, "stream: length of the write load")
		warmup    = fs.Duration("warmup", 3*time.Second, "stream: start of the load left out of the measurement")
		sValue    = fs.Int("stream-value", 256, "stream: value size of the SETs")
		sLeaves   = fs.Int("stream-leaves", 2, "stream: replicas behind the node under test")
		pipeline  = fs.Int("pipeline", 32, "stream: pipeline depth of each writer")
		writers   = fs.Int("writers", 4, "stream: concurrent pipelined writers")
		keyspace  = fs.Int("keyspace", 100000, "stream: distinct keys written")
		probes    = fs.Int("probes", 200, "stream: idle latency probes")
		probeIvl  = fs.Duration("probe-interval", 10*time.Millisecond, "stream: pause between latency probes")
		lagIvl    = fs.Duration("lag-interval", 50*time.Millisecond, "stream: leaf lag sampling interval")
		settle    = fs.Duration("settle", time.Second, "stream: pause after the leaves are in sync, before the idle probes")
		rDataset  = fs.String("resync-dataset", "100mb", "resync: dataset size")
		rWrites   = fs.String("resync-writes", "16mb", "resync: stream bytes written while the leaf is away, comma-separated")
		iLoads    = fs.String("ingest-loads", "400000/1,256/32", "ingest: bursts to run, each value-size/pipeline-depth[/writers], comma-separated")
		iConfigs  = fs.String("ingest-configs", "intermediate,floor,relay", "ingest: nodes under test beside the stock replica P (intermediate, floor, relay)")
		iClients  = fs.Int("ingest-clients", 4, "ingest: writer connections")
		iKeys     = fs.Int("ingest-keys", 1000, "ingest: distinct keys written")
		iDuration = fs.Duration("ingest-duration", 8*time.Second, "ingest: length of the burst")
		iInterval = fs.Duration("ingest-interval", 100*time.Millisecond, "ingest: lag sampling interval")
		iBacklog  = fs.String("ingest-backlog", "256mb", "ingest: repl-backlog-size of the master")
		iWriter   = fs.String("ingest-writer", "auto", "ingest: redis-benchmark, go (go-redis writers), or auto (redis-benchmark when on PATH)")
		iRate     = fs.String("ingest-rate", "0", "ingest: pace go-redis writers to this many bytes of values per second (e.g. 200mb; 0: unpaced, redis-benchmark when present)")
		floorSync = fs.Bool("floor-fsync", true, "ingest: the floor program fsyncs its file once a second (the relay's durability)")
		floorBin  = fs.String("floor-bin", "", "floor program binary (default: go build ./bench/floor into the temp dir)")
		scaleN    = fs.Int("scale-n", 100, "scale: replicas attaching at once")
		sDataset  = fs.String("scale-dataset", "20mb", "scale: dataset size")
		ring      = fs.String("ring", "64mb", "relay --repl-backlog-size (its memory ring)")
		delay     = fs.Int("diskless-delay", 0, "repl-diskless-sync-delay of the master and the intermediate (Redis's default is 5)")
		backlog   = fs.String("backlog", "", "repl-backlog-size of the master and the intermediate (empty: Redis's default, 1mb)")
		syncTO    = fs.Duration("sync-timeout", 10*time.Minute, "give up waiting for replicas to sync after this long")
		maxMem    = fs.String("max-memory", "16gb", "refuse fanout settings whose redis-servers would need more memory than this")
		relayBin  = fs.String("relay-bin", "", "redis-relay binary (default: go build ./cmd/redis-relay into the temp dir)")
		oldBin    = fs.String("old-relay-bin", "", "adds configuration old: the relay run from this binary (e.g. a build of an earlier commit), beside relay, with same-run ratios relay/old")
		relayArgs = fs.String("relay-args", "", "extra arguments for \"redis-relay run\", space-separated (for tuning, e.g. \"--refresh-ratio=-1\"; with -relay-cpuprofile only --refresh-ratio)")
		profDir   = fs.String("relay-cpuprofile", "", "run the relay in-process under a CPU profiler (bench/relayprof) and write its profiles into this directory")
		jsonPath  = fs.String("json", "", "also write the JSON lines to this file")
		plotDir   = fs.String("plots", "", "write SVG plots (ingest lag over time, full-sync time against N) into this directory")
		quick     = fs.Bool("quick", false, "smoke run of about a minute: 1 run, 20mb dataset, N=1,4, 6 s of load (explicit flags still win)")
	)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quickDefaults := map[string]string{
			"runs": "1", "dataset": "20mb", "n": "1,4", "stagger-n": "4",
			"stream-duration": "6s", "warmup": "1s", "probes": "50",
			"resync-dataset": "20mb", "resync-writes": "8mb",
			"ingest-duration": "3s", "scale-n": "10",
		}
		for name, v := range quickDefaults {
			if !set[name] {
				if err := fs.Set(name, v); err != nil {
					return nil, err
				}
			}
		}
	}
	o := &options{
		scenarios: splitList(*scenarios), configs: splitList(*configs), runs: *runs,
		staggerN: *staggerN, streamDuration: *duration, warmup: *warmup, streamValue: *sValue, streamLeaves: *sLeaves,
		pipeline: *pipeline, writers: *writers, keyspace: *keyspace, probes: *probes,
		probeInterval: *probeIvl, lagInterval: *lagIvl, settle: *settle, disklessDelay: *delay, backlog: *backlog,
		ingestConfigs: splitList(*iConfigs), ingestClients: *iClients, ingestKeys: *iKeys, ingestDuration: *iDuration,
		ingestInterval: *iInterval, ingestBacklog: *iBacklog, ingestWriter: *iWriter, floorFsync: *floorSync, floorBin: *floorBin,
		syncTimeout: *syncTO, relayBin: *relayBin, oldRelayBin: *oldBin, relayArgs: strings.Fields(*relayArgs), profileDir: *profDir, jsonPath: *jsonPath,
		plotDir: *plotDir, scaleN: *scaleN,
		rdbSizes: map[int64]int64{},
	}
	if o.oldRelayBin != "" && !slices.Contains(o.configs, cfgOld) {
		// Beside relay, so that the two alternate next to each other.
		i := len(o.configs)
		if j := slices.Index(o.configs, cfgRelay); j >= 0 {
			i = j + 1
		}
		o.configs = slices.Insert(o.configs, i, cfgOld)
	}
	var err error
	if o.datasets, err = parseSizes(*datasets); err != nil {
		return nil, fmt.Errorf("-dataset: %w", err)
	}
	if o.valueSize, err = settings.ParseSize(*valueSize); err != nil {
		return nil, fmt.Errorf("-value-size: %w", err)
	}
	if o.ns, err = parseInts(*ns); err != nil {
		return nil, fmt.Errorf("-n: %w", err)
	}
	if o.resyncDataset, err = settings.ParseSize(*rDataset); err != nil {
		return nil, fmt.Errorf("-resync-dataset: %w", err)
	}
	if o.resyncWrites, err = parseSizes(*rWrites); err != nil {
		return nil, fmt.Errorf("-resync-writes: %w", err)
	}
	if o.ingestRate, err = settings.ParseSize(*iRate); err != nil {
		return nil, fmt.Errorf("-ingest-rate: %w", err)
	}
	if o.ingestLoads, err = parseIngestLoads(*iLoads); err != nil {
		return nil, fmt.Errorf("-ingest-loads: %w", err)
	}
	if o.scaleDataset, err = settings.ParseSize(*sDataset); err != nil {
		return nil, fmt.Errorf("-scale-dataset: %w", err)
	}
	if o.ringBytes, err = settings.ParseSize(*ring); err != nil {
		return nil, fmt.Errorf("-ring: %w", err)
	}
	if o.maxMemory, err = settings.ParseSize(*maxMem); err != nil {
		return nil, fmt.Errorf("-max-memory: %w", err)
	}
	return o, nil
}

// check validates the settings, and refuses fanout sizes that would not
// fit in memory: every redis-server of a fanout run holds the dataset.
func (o *options) check() error {
	for _, s := range o.scenarios {
		if scenarioTitles[s] == "" {
			return fmt.Errorf("unknown scenario %q (fanout, stream, resync, ingest, scale)", s)
		}
	}
	for _, c := range o.configs {
		if c == cfgOld {
			if o.oldRelayBin == "" {
				return errors.New("configuration old needs -old-relay-bin")
			}
			continue
		}
		if !slices.Contains(allConfigs, c) && !slices.Contains(chainConfigs, c) {
			return fmt.Errorf("unknown configuration %q (direct, intermediate, relay, old; stream only: chain, chain-zstd)", c)
		}
		if isChain(c) && !slices.Contains(o.scenarios, "stream") {
			return fmt.Errorf("configuration %q runs in the stream scenario only", c)
		}
	}
	for _, c := range o.ingestConfigs {
		if !slices.Contains(ingestConfigs, c) {
			return fmt.Errorf("unknown ingest configuration %q (intermediate, floor, relay)", c)
		}
	}
	switch o.ingestWriter {
	case "auto":
		o.ingestWriter = "go"
		if _, err := exec.LookPath("redis-benchmark"); err == nil {
			o.ingestWriter = "redis-benchmark"
		}
	case "go":
	case "redis-benchmark":
		if _, err := exec.LookPath("redis-benchmark"); err != nil {
			return errors.New("-ingest-writer redis-benchmark: not on PATH (apt-get install redis-tools)")
		}
	default:
		return fmt.Errorf("-ingest-writer %q: redis-benchmark, go or auto", o.ingestWriter)
	}
	switch {
	case o.ingestClients < 1 || o.ingestClients > 64 || o.ingestKeys < 1:
		return errors.New("-ingest-clients must be in 1..64, -ingest-keys positive")
	case o.ingestDuration <= 0 || o.ingestDuration > time.Hour || o.ingestInterval <= 0:
		return errors.New("-ingest-duration must be in (0, 1h], -ingest-interval positive")
	case o.runs < 1 || o.runs > 100:
		return errors.New("-runs must be in 1..100")
	case o.valueSize < 1 || o.valueSize > 64*mib:
		return errors.New("-value-size must be in 1..64mb")
	case o.streamValue < 1 || o.pipeline < 1 || o.writers < 1 || o.writers > 64 || o.keyspace < 1:
		return errors.New("-stream-value, -pipeline, -writers (at most 64) and -keyspace must be positive")
	case o.streamLeaves < 1 || o.streamLeaves > 32:
		return errors.New("-stream-leaves must be in 1..32")
	case o.streamDuration <= o.warmup || o.streamDuration > time.Hour:
		return errors.New("-stream-duration must exceed -warmup and be at most 1h")
	case o.probes < 1 || o.probes > 100000 || o.probeInterval <= 0 || o.lagInterval <= 0:
		return errors.New("-probes must be in 1..100000, intervals positive")
	case o.staggerN < 0:
		return errors.New("-stagger-n must not be negative")
	}
	for _, n := range o.ns {
		if n < 1 || n > 100 {
			return fmt.Errorf("-n %d: must be in 1..100", n)
		}
	}
	if slices.Contains(o.scenarios, "fanout") {
		maxN := max(slices.Max(o.ns), o.staggerN)
		for _, d := range o.datasets {
			if d < o.valueSize {
				return fmt.Errorf("-dataset %d is smaller than -value-size", d)
			}
			// The replicas, the master and the intermediate each hold the
			// dataset.
			need := fanoutMemoryEstimate(d, o.valueSize) * int64(maxN+2)
			if need > o.maxMemory {
				return fmt.Errorf("fanout with N=%d and a %s dataset needs about %s of redis-server memory (%d replicas + master + intermediate), over the %s limit (-max-memory); use a smaller -dataset or -n",
					maxN, fmtBytes(d), fmtBytes(need), maxN, fmtBytes(o.maxMemory))
			}
		}
	}
	if o.plotDir != "" {
		if fi, err := os.Stat(o.plotDir); err != nil || !fi.IsDir() {
			return fmt.Errorf("-plots %s: not a directory", o.plotDir)
		}
	}
	if slices.Contains(o.scenarios, "scale") {
		if o.scaleN < 1 || o.scaleN > 500 {
			return fmt.Errorf("-scale-n %d: must be in 1..500", o.scaleN)
		}
		if o.scaleDataset < o.valueSize {
			return errors.New("-scale-dataset is smaller than -value-size")
		}
		if need := fanoutMemoryEstimate(o.scaleDataset, o.valueSize) * int64(o.scaleN+2); need > o.maxMemory {
			return fmt.Errorf("scale with N=%d and a %s dataset needs about %s of redis-server memory, over the %s limit (-max-memory)",
				o.scaleN, fmtBytes(o.scaleDataset), fmtBytes(need), fmtBytes(o.maxMemory))
		}
	}
	if slices.Contains(o.scenarios, "resync") && o.resyncDataset < o.valueSize {
		return errors.New("-resync-dataset is smaller than -value-size")
	}
	return nil
}

var errInterrupted = errors.New("interrupted")

// runBench runs the scenarios and prints the report. Every process it
// starts is killed and every directory removed before it returns, also on
// SIGINT/SIGTERM/SIGHUP.
func runBench(parent context.Context, o *options, stdout, stderr io.Writer) (*results, error) {
	var logMu sync.Mutex
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	redisBin, err := redisproc.Binary()
	if err != nil {
		return nil, err
	}
	e, err := newEnv(redisBin, o.relayBin, logf)
	if err != nil {
		return nil, err
	}
	e.relayArgs = o.relayArgs
	e.oldRelayBin = o.oldRelayBin
	e.floorBin = o.floorBin
	if o.ingestWriter == "redis-benchmark" {
		e.benchmarkBin, _ = exec.LookPath("redis-benchmark")
	}
	// go-redis logs failed dials of processes the benchmark just stopped.
	redis.SetLogger(quietLogger{})
	defer e.killAll()
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return nil, err
		}
		e.relayProfDir, _ = filepath.Abs(o.profileDir)
	}

	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	var interrupted atomic.Bool
	go func() {
		select {
		case s := <-sigs:
			interrupted.Store(true)
			logf("%v: stopping and cleaning up", s)
			cancel()
			e.killAll()
			select {
			case <-sigs:
				os.Exit(130)
			case <-time.After(time.Minute):
			}
		case <-ctx.Done():
		}
	}()

	runsIngest := slices.Contains(o.scenarios, "ingest")
	if e.relayBin == "" && (slices.ContainsFunc(o.configs, isRelay) || runsIngest && slices.Contains(o.ingestConfigs, cfgRelay)) {
		pkg := "github.com/redis-relay/redis-relay/cmd/redis-relay"
		if e.relayProfDir != "" {
			pkg = "github.com/redis-relay/redis-relay/bench/relayprof"
		}
		e.relayBin = filepath.Join(e.root, "redis-relay")
		logf("building %s", pkg)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", e.relayBin, pkg)
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("build relay (run from inside the module, or pass -relay-bin): %w", err)
		}
	}
	if e.floorBin == "" && runsIngest && slices.Contains(o.ingestConfigs, cfgFloor) {
		e.floorBin = filepath.Join(e.root, "floor")
		logf("building the floor program")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", e.floorBin, "github.com/redis-relay/redis-relay/bench/floor")
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("build the floor program (run from inside the module, or pass -floor-bin): %w", err)
		}
	}
	mi := machineInfo(redisBin, e.relayBin)
	mi.loadStart = loadAvg()
	started := time.Now()

	rs := newResults()
	record := func(scenario string, params []param, config string, run int, m map[string]float64) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b string) int {
			if d := metricOrder(scenario, a) - metricOrder(scenario, b); d != 0 {
				return d
			}
			return strings.Compare(a, b)
		})
		for _, k := range keys {
			rs.add(scenario, params, k, config, run, m[k])
		}
	}
	measure := func(run int, scenario string, params []param, config string, f func() (map[string]float64, error)) {
		if ctx.Err() != nil {
			return
		}
		t := time.Now()
		load := loadAvg1()
		m, err := f()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			msg := fmt.Sprintf("run %d %s [%s] %s: %v", run, scenario, paramsKey(params), config, err)
			logf("FAILED %s", msg)
			rs.fail(msg)
			return
		}
		m["host_load1"] = load
		record(scenario, params, config, run, m)
		logf("run %d %s [%s] %-12s %s (%.1fs)", run, scenario, paramsKey(params), config, summary(scenario, m), time.Since(t).Seconds())
	}

	for run := 1; run <= o.runs && ctx.Err() == nil; run++ {
		// Each run starts with another configuration, so that none always
		// goes first (or last) on a warming or cooling machine.
		k := (run - 1) % len(o.configs)
		configs := append(append([]string(nil), o.configs[k:]...), o.configs[:k]...)
		// The chain configurations run in the stream scenario only.
		single := slices.DeleteFunc(slices.Clone(configs), isChain)
		for _, sc := range o.scenarios {
			switch sc {
			case "fanout":
				for _, d := range o.datasets {
					type step struct {
						n    int
						mode string
					}
					var steps []step
					for _, n := range o.ns {
						steps = append(steps, step{n, "at_once"})
					}
					if o.staggerN > 0 {
						steps = append(steps, step{o.staggerN, "staggered"})
					}
					for _, s := range steps {
						for _, c := range single {
							measure(run, sc, fanoutParams(d, s.n, s.mode), c, func() (map[string]float64, error) {
								return o.fanoutOnce(ctx, e, c, d, s.n, s.mode)
							})
						}
					}
				}
			case "stream":
				for _, c := range configs {
					measure(run, sc, streamParams(o), c, func() (map[string]float64, error) {
						return o.streamOnce(ctx, e, c)
					})
				}
			case "ingest":
				ic := o.ingestConfigs
				if len(ic) > 0 {
					k := (run - 1) % len(ic)
					ic = append(append([]string(nil), ic[k:]...), ic[:k]...)
				}
				for _, ld := range o.ingestLoads {
					for _, c := range ic {
						params := ingestParams(o, ld)
						measure(run, sc, params, c, func() (map[string]float64, error) {
							m, tr, err := o.ingestOnce(ctx, e, c, ld)
							if tr != nil {
								rs.addTrace(traceKey{paramsKey(params), c, run}, tr)
							}
							return m, err
						})
					}
				}
			case "scale":
				for _, c := range single {
					measure(run, sc, scaleParams(o), c, func() (map[string]float64, error) {
						return o.scaleOnce(ctx, e, c)
					})
				}
			case "resync":
				for _, w := range o.resyncWrites {
					for _, c := range single {
						measure(run, sc, resyncParams(o, w), c, func() (map[string]float64, error) {
							return o.resyncOnce(ctx, e, c, w)
						})
					}
				}
			}
		}
	}
	if ctx.Err() != nil {
		if interrupted.Load() {
			return rs, errInterrupted
		}
		return rs, ctx.Err()
	}
	o.deriveFanout(rs)
	mi.loadEnd = loadAvg()
	mi.elapsed = time.Since(started)

	mi.write(stdout, o)
	rs.writeTables(stdout, o.scenarios, scenarioTitles)
	o.writeTargets(stdout, rs)
	if len(rs.fails) > 0 {
		fmt.Fprintf(stdout, "\n### failures\n")
		for _, f := range rs.fails {
			fmt.Fprintln(stdout, "- "+f)
		}
	}
	if o.plotDir != "" {
		paths, err := o.writePlots(o.plotDir, rs)
		for _, p := range paths {
			logf("wrote %s", p)
		}
		if err != nil {
			return rs, err
		}
	}
	fmt.Fprintf(stdout, "\n### JSON\n")
	if err := rs.writeJSON(stdout); err != nil {
		return rs, err
	}
	if o.jsonPath != "" {
		f, err := os.Create(o.jsonPath)
		if err != nil {
			return rs, err
		}
		err = rs.writeJSON(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return rs, err
		}
	}
	return rs, nil
}

// quietLogger drops go-redis's internal log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// deriveFanout adds, for each fanout row of sync times, each
// configuration's time divided by the time one replica takes to sync
// directly with the same dataset in the same run: the 1.2x target.
func (o *options) deriveFanout(rs *results) {
	for _, d := range o.datasets {
		base := rs.get("fanout", fanoutParams(d, 1, "at_once"), "sync_time_s")
		if base == nil {
			continue
		}
		for _, r := range append([]*row(nil), rs.rows...) {
			if r.scenario != "fanout" || r.metric != "sync_time_s" || r.params[0].Value != d/mib {
				continue
			}
			for config, runs := range r.vals {
				for run, v := range runs {
					if b, ok := base.vals[cfgDirect][run]; ok && b > 0 {
						rs.add("fanout", r.params, "sync_vs_direct1_x", config, run, v/b)
					}
				}
			}
		}
	}
	// Keep each scenario's rows, and within it each parameter set's, together.
	scOrder, psOrder := map[string]int{}, map[string]int{}
	for i, r := range rs.rows {
		if _, ok := scOrder[r.scenario]; !ok {
			scOrder[r.scenario] = i
		}
		if k := r.scenario + " " + paramsKey(r.params); psOrder[k] == 0 {
			psOrder[k] = i + 1
		}
	}
	slices.SortStableFunc(rs.rows, func(a, b *row) int {
		if d := scOrder[a.scenario] - scOrder[b.scenario]; d != 0 {
			return d
		}
		if d := psOrder[a.scenario+" "+paramsKey(a.params)] - psOrder[b.scenario+" "+paramsKey(b.params)]; d != 0 {
			return d
		}
		return metricOrder(a.scenario, a.metric) - metricOrder(b.scenario, b.metric)
	})
}

// metricOrder lists metrics in the order tables show them.
func metricOrder(scenario, metric string) int {
	order := map[string][]string{
		"fanout": {
			"sync_time_s", "sync_vs_direct1_x", "cpu_s", "cpu_bound_s", "middle_cpu_s", "master_sync_full", "served_full", "relay_replica_disconnects", "master_forks", "master_egress_mb", "master_egress_per_rdb",
			"master_peak_rss_mb", "middle_peak_rss_mb", "replica_peak_rss_mb",
		},
		"stream": {
			"leaf_mb_s", "leaf_kops_s", "master_mb_s", "client_kops_s", "lag_p50_kb", "lag_p99_kb", "lag_max_kb",
			"lat_idle_p50_ms", "lat_idle_p99_ms", "lat_idle_max_ms", "lat_load_p50_ms", "lat_load_p99_ms", "lat_load_max_ms",
			"link_wire_ratio", "link_stream_mb_s",
			"probe_timeouts", "drain_s", "master_cpu_pct", "upstream_cpu_pct", "middle_cpu_pct", "middle_cpu_ms_per_mb", "leaf_cpu_pct", "master_forks", "relay_refreshes",
			"master_us_per_op", "master_writes_per_kop", "master_reads_per_kop", "master_bytes_per_write", "master_cswitch_per_kop", "master_forced_cswitch_per_kop",
			"middle_reads_per_mb", "middle_bytes_per_read", "middle_writes_per_mb", "middle_cswitch_per_mb", "middle_forced_cswitch_per_mb",
			"middle_peak_rss_mb",
		},
		"ingest": {
			"node_lag_mean_mb", "node_lag_max_mb", "p_lag_mean_mb", "p_lag_max_mb", "lag_vs_p_x", "node_cuts", "p_cuts", "master_obl_closed",
			"master_sync_full", "master_sync_partial_ok", "stream_mb", "master_mb_s", "ops_k", "drain_s", "node_cpu_ms_per_mb", "p_cpu_ms_per_mb",
			"node_cpu_pct", "node_peak_rss_mb",
		},
		"scale": {
			"sync_time_s", "attach_sync_s", "middle_sync_s", "cpu_s", "middle_cpu_s", "master_sync_full", "served_full", "relay_replica_disconnects",
			"master_forks", "master_egress_mb", "master_egress_per_rdb", "master_peak_rss_mb",
			"middle_rss_before_mb", "middle_rss_after_mb", "middle_peak_rss_mb", "middle_kb_per_replica", "middle_peak_kb_per_replica",
		},
		"resync": {
			"catchup_s", "partial", "served_full", "served_partial_ok", "master_sync_full", "master_egress_mb", "serving_egress_mb",
			"serving_peak_rss_mb", "leaf_peak_rss_mb",
		},
	}[scenario]
	order = append(order, "digest_ok", "host_load1")
	if i := slices.Index(order, metric); i >= 0 {
		return i
	}
	return len(order)
}

// summary is the progress line of one measurement.
func summary(scenario string, m map[string]float64) string {
	switch scenario {
	case "fanout":
		return fmt.Sprintf("sync %.2fs master_sync_full %.0f egress %.0fMB digest_ok %.0f", m["sync_time_s"], m["master_sync_full"], m["master_egress_mb"], m["digest_ok"])
	case "stream":
		return fmt.Sprintf("leaf %.1fMB/s lag p99 %.0fKB lat idle p99 %.3fms load p99 %.3fms digest_ok %.0f", m["leaf_mb_s"], m["lag_p99_kb"], m["lat_idle_p99_ms"], m["lat_load_p99_ms"], m["digest_ok"])
	case "ingest":
		return fmt.Sprintf("lag mean %.1fMB max %.0fMB (P %.1f / %.0f) cuts %.0f (P %.0f) stream %.0fMB cpu %.2fms/MB (P %.2f)",
			m["node_lag_mean_mb"], m["node_lag_max_mb"], m["p_lag_mean_mb"], m["p_lag_max_mb"], m["node_cuts"], m["p_cuts"], m["stream_mb"], m["node_cpu_ms_per_mb"], m["p_cpu_ms_per_mb"])
	case "scale":
		return fmt.Sprintf("sync %.2fs master_sync_full %.0f middle rss %.1f -> %.1fMB (%.0fKB per replica) digest_ok %.0f",
			m["sync_time_s"], m["master_sync_full"], m["middle_rss_before_mb"], m["middle_rss_after_mb"], m["middle_kb_per_replica"], m["digest_ok"])
	case "resync":
		return fmt.Sprintf("partial %.0f full %.0f catch-up %.2fs digest_ok %.0f", m["partial"], m["served_full"], m["catchup_s"], m["digest_ok"])
	}
	return ""
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

// parseSizes reads a comma-separated list of sizes, as redis.conf writes
// them (settings.ParseSize).
func parseSizes(s string) ([]int64, error) {
	var out []int64
	for _, f := range splitList(s) {
		n, err := settings.ParseSize(f)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d B", n)
}

// machine describes where the benchmark ran.
type machine struct {
	cpus               int
	memTotal           string
	redisVersion       string
	goVersion          string
	relayBin           string
	relayRev           string
	loadStart, loadEnd string
	elapsed            time.Duration
}

func machineInfo(redisBin, relayBin string) *machine {
	m := &machine{cpus: runtime.NumCPU(), goVersion: runtime.Version(), relayBin: relayBin}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
				m.memTotal = fmtBytes(kb * 1024)
			}
		}
	}
	if out, err := exec.Command(redisBin, "--version").Output(); err == nil {
		m.redisVersion = strings.TrimSpace(string(out))
	}
	m.relayRev = binRevision(relayBin)
	if m.relayRev == "" {
		m.relayRev = gitRevision()
	}
	return m
}

// binRevision is the commit a Go binary was built from, from its VCS stamp
// ("" when it has none).
func binRevision(bin string) string {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return ""
	}
	rev, modified := "", ""
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" && modified == "true" {
		rev += " (with uncommitted changes)"
	}
	return rev
}

// gitRevision describes the relay's sources from the work tree when the
// binary carries no VCS stamp (-buildvcs=false): HEAD, and whether the
// relay's packages differ from it. Read-only git commands only.
func gitRevision() string {
	out, err := exec.Command("git", "--no-optional-locks", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(out))
	diff := exec.Command("git", "--no-optional-locks", "diff", "--quiet", "HEAD", "--", "proxy", "replstream", "rdbparse", "cmd/redis-relay")
	if err := diff.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 1 {
			rev += " (work tree: proxy/, replstream/, rdbparse/ or cmd/redis-relay/ differ from it)"
		}
	}
	return rev
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// loadAvg1 is the one-minute load average: how busy the shared machine was
// when a measurement started.
func loadAvg1() float64 {
	f := strings.Fields(loadAvg())
	if len(f) == 0 {
		return math.NaN()
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

func (m *machine) write(w io.Writer, o *options) {
	fmt.Fprintf(w, "## redis-relay benchmark\n\n")
	fmt.Fprintf(w, "machine: %d CPUs, %s RAM, load average %s at start, %s at end; %s; %s; took %s\n",
		m.cpus, m.memTotal, m.loadStart, m.loadEnd, m.redisVersion, m.goVersion, m.elapsed.Round(time.Second))
	if m.relayRev != "" {
		fmt.Fprintf(w, "relay built from commit %s\n", m.relayRev)
	}
	if o.oldRelayBin != "" {
		fmt.Fprintf(w, "old: %s, built from commit %s\n", o.oldRelayBin, orDefault(binRevision(o.oldRelayBin), "unknown"))
	}
	fmt.Fprintf(w, "settings: runs=%d configs=%s relay-args=%q; masters and the intermediate: rdbcompression no, repl-diskless-sync yes (default), repl-diskless-sync-delay %d, repl-backlog-size %s; relay ring %s\n",
		o.runs, strings.Join(o.configs, ","), strings.Join(o.relayArgs, " "), o.disklessDelay, orDefault(o.backlog, "1mb (default)"), fmtBytes(o.ringBytes))
	if slices.Contains(o.scenarios, "ingest") {
		rate := "unpaced"
		if o.ingestRate > 0 {
			rate = fmtBytes(o.ingestRate) + "/s of values (go-redis writers)"
		}
		fmt.Fprintf(w, "ingest: configs=%s, master repl-backlog-size %s and default replica output-buffer limits, writer %s, %s, floor fsync once a second %v\n",
			strings.Join(o.ingestConfigs, ","), o.ingestBacklog, o.ingestWriter, rate, o.floorFsync)
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
