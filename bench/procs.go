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
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/redis-relay/redis-relay/internal/redisproc"
)

// env owns every process and directory the benchmark creates. Everything it
// starts lives in a process group of its own under root, and killAll (run
// on every exit path) kills each group and removes root.
type env struct {
	root     string // temporary directory holding every data dir
	redisBin string
	relayBin string
	// oldRelayBin is the relay of the old configuration (-old-relay-bin),
	// run as it is, never through the profiling wrapper.
	oldRelayBin string
	// relayProfDir, when set, runs the relay through the profiling wrapper
	// and collects one CPU profile per relay process there.
	relayProfDir string
	relayArgs    []string // appended to "redis-relay run"
	floorBin     string   // the floor program (bench/floor)
	benchmarkBin string   // redis-benchmark, when the ingest load uses it
	logf         func(format string, args ...any)

	mu     sync.Mutex
	procs  map[*proc]struct{}
	ports  map[int]bool // ports handed out in this run, never reused
	closed bool
	seq    int
}

func newEnv(redisBin, relayBin string, logf func(string, ...any)) (*env, error) {
	removeStale()
	root, err := os.MkdirTemp("", "relay-bench-")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(root, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	return &env{root: root, redisBin: redisBin, relayBin: relayBin, logf: logf, procs: map[*proc]struct{}{}, ports: map[int]bool{}}, nil
}

// ownerFile in a benchmark's temporary directory holds the benchmark's pid.
const ownerFile = "owner.pid"

// removeStale deletes the temporary directories of benchmarks that were
// killed outright (SIGKILL leaves no chance to clean up; their children die
// with them through Pdeathsig). Directories of live benchmarks are kept.
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "relay-bench-*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue // not ours, or still being set up
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// killAll kills every process still running and removes the temporary
// directory. It is safe to call more than once and from a signal handler
// goroutine.
func (e *env) killAll() {
	e.mu.Lock()
	e.closed = true
	list := make([]*proc, 0, len(e.procs))
	for p := range e.procs {
		list = append(list, p)
	}
	e.mu.Unlock()
	for _, p := range list {
		p.stop()
	}
	os.RemoveAll(e.root)
}

// freePort returns a loopback port nobody listens on now, never 6379 and
// never one handed out before in this run.
func (e *env) freePort() (int, error) {
	for range 50 {
		port, err := redisproc.FreePort()
		if err != nil {
			return 0, err
		}
		e.mu.Lock()
		used := e.ports[port]
		e.ports[port] = true
		e.mu.Unlock()
		if !used {
			return port, nil
		}
	}
	return 0, errors.New("no free loopback port")
}

// proc is one child process: a redis-server or a relay.
type proc struct {
	e    *env
	name string
	kind string // "redis" or "relay"
	port int
	dir  string
	log  string // its stdout and stderr
	rp   *redisproc.Proc
	c    *redis.Client

	stopOnce sync.Once
}

func (p *proc) addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }
func (p *proc) pid() int     { return p.rp.Pid() }

// newClient returns a go-redis client that speaks RESP2 and skips the
// handshakes (HELLO, CLIENT SETINFO, maintenance notifications) that neither
// Redis 7.0 nor the relay needs.
func newClient(addr string, poolSize int) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                  addr,
		Protocol:              2,
		DisableIdentity:       true,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		PoolSize:              poolSize,
		DialTimeout:           2 * time.Second,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
}

// startRedis runs redis-server with the settings every redis-server of the
// benchmark gets (redisproc's, and no RDB compression) and then extra.
func (e *env) startRedis(ctx context.Context, name string, extra ...string) (*proc, error) {
	// DEBUG POPULATE values are mostly zeros; compressed, the RDB is a few
	// percent of the dataset and the transfer measures nothing.
	args := append([]string{"--rdbcompression", "no"}, extra...)
	return e.start(ctx, name, "redis", func(dir string) redisproc.Options {
		return redisproc.Options{Bin: e.redisBin, Args: args}
	})
}

// startRelay runs redis-relay as a replica of master with a 64 MiB-style
// ring of ringBytes; extra follow the common settings (and precede
// -relay-args).
func (e *env) startRelay(ctx context.Context, name, master string, ringBytes int64, extra ...string) (*proc, error) {
	return e.start(ctx, name, "relay", func(dir string) redisproc.Options {
		return redisproc.Options{Bin: e.relayBin, Argv: func(port int) []string {
			return e.relayArgv(name, master, port, dir, ringBytes, extra, e.relayProfDir != "")
		}}
	})
}

// startOldRelay runs the old configuration's relay binary with the same
// settings as startRelay's.
func (e *env) startOldRelay(ctx context.Context, master string, ringBytes int64) (*proc, error) {
	return e.start(ctx, cfgOld, "relay", func(dir string) redisproc.Options {
		return redisproc.Options{Bin: e.oldRelayBin, Argv: func(port int) []string {
			return e.relayArgv(cfgOld, master, port, dir, ringBytes, nil, false)
		}}
	})
}

// relayArgv is the relay's command line after the binary; profiled, the
// profiling wrapper's.
func (e *env) relayArgv(name, master string, port int, dir string, ringBytes int64, extra []string, profiled bool) []string {
	{
		args := []string{"run",
			"--replicaof", master,
			"--bind", "127.0.0.1",
			"--port", strconv.Itoa(port),
			"--dir", filepath.Join(dir, "data"),
			"--repl-backlog-size", strconv.FormatInt(ringBytes, 10),
		}
		args = append(args, extra...)
		if profiled {
			// The wrapper takes the same flags and writes a CPU profile
			// on SIGTERM.
			e.mu.Lock()
			e.seq++
			n := e.seq
			e.mu.Unlock()
			prof := filepath.Join(e.relayProfDir, fmt.Sprintf("%s-%03d.cpu.pprof", name, n))
			return append(append([]string{"--cpuprofile", prof}, args[1:]...), e.relayArgs...)
		}
		return append(args, e.relayArgs...)
	}
}

// start launches a process on a fresh port in a fresh directory and waits
// until it answers as itself (redisproc.Start). A port lost to a race is
// retried with another; a port is never handed out twice in a run.
func (e *env) start(ctx context.Context, name, kind string, options func(dir string) redisproc.Options) (*proc, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		e.mu.Lock()
		closed := e.closed
		e.mu.Unlock()
		if closed || ctx.Err() != nil {
			return nil, errors.Join(errors.New("benchmark stopping"), ctx.Err())
		}
		port, err := e.freePort()
		if err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp(e.root, name+"-")
		if err != nil {
			return nil, err
		}
		o := options(dir)
		o.Dir, o.Port = dir, port
		o.OutPath = filepath.Join(dir, "stdout.log")
		o.ReadyTimeout = 15 * time.Second
		// Killed by the kernel should this process die without cleaning up.
		o.Prepare = func(cmd *exec.Cmd) { cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL }
		rp, err := redisproc.Start(ctx, o)
		if err != nil {
			os.RemoveAll(dir)
			lastErr = fmt.Errorf("%s: %w", name, err)
			if errors.Is(err, redisproc.ErrPortInUse) {
				continue
			}
			return nil, lastErr
		}
		p := &proc{e: e, name: name, kind: kind, port: port, dir: dir, log: o.OutPath, rp: rp, c: newClient(rp.Addr(), 4)}
		e.mu.Lock()
		e.procs[p] = struct{}{}
		e.mu.Unlock()
		return p, nil
	}
	return nil, lastErr
}

// stop kills the process group and removes the directory.
func (p *proc) stop() {
	p.stopOnce.Do(func() {
		if p.c != nil {
			p.c.Close()
		}
		if p.kind == "relay" && p.e.relayProfDir != "" {
			// Let the profiling wrapper write its profile, and keep its log
			// beside it.
			p.rp.Stop(10 * time.Second)
			if b, err := os.ReadFile(p.log); err == nil {
				os.WriteFile(filepath.Join(p.e.relayProfDir, filepath.Base(p.dir)+".log"), b, 0o644)
			}
		}
		p.rp.Kill()
		p.e.mu.Lock()
		delete(p.e.procs, p)
		p.e.mu.Unlock()
		os.RemoveAll(p.dir)
	})
}

// peakRSS is VmHWM from /proc/PID/status, in bytes.
func (p *proc) peakRSS() int64 { return procStatusKB(p.pid(), "VmHWM:") * 1024 }

// rss is VmRSS, in bytes.
func (p *proc) rss() int64 { return procStatusKB(p.pid(), "VmRSS:") * 1024 }

func procStatusKB(pid int, field string) int64 {
	return statusField(fmt.Sprintf("/proc/%d/status", pid), field)
}

// statusField is the first number after field in a /proc status file, or -1.
func statusField(path, field string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, field) {
			fs := strings.Fields(line[len(field):])
			if len(fs) > 0 {
				v, _ := strconv.ParseInt(fs[0], 10, 64)
				return v
			}
		}
	}
	return -1
}

// cpuSeconds is the user+system CPU time the process has used, with that of
// its children it has waited for (a redis-server's fork for a full sync).
func (p *proc) cpuSeconds() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
	if err != nil {
		return -1
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	fs := strings.Fields(s[i+1:])
	// After the command name: state is field 3, utime 14, stime 15,
	// cutime 16, cstime 17.
	if len(fs) < 15 {
		return -1
	}
	var ticks float64
	for _, f := range fs[11:15] {
		v, _ := strconv.ParseFloat(f, 64)
		ticks += v
	}
	return ticks / 100 // USER_HZ is 100 on Linux
}

// sysCounts are a process's system-call and scheduling counters, over all
// its threads: how often it reads and writes (read(2), write(2) and their
// vector forms, which is how Redis and Go move socket bytes) and how often
// it is switched out.
type sysCounts struct {
	readCalls, writeCalls float64 // syscr, syscw in /proc/<pid>/io
	readBytes, writeBytes float64 // rchar, wchar
	voluntary, forced     float64 // context switches of its live threads
}

func (p *proc) sysCounts() sysCounts {
	var c sysCounts
	pid := p.pid()
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ": ")
			if !ok {
				continue
			}
			n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			switch k {
			case "syscr":
				c.readCalls = n
			case "syscw":
				c.writeCalls = n
			case "rchar":
				c.readBytes = n
			case "wchar":
				c.writeBytes = n
			}
		}
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	for _, t := range tasks {
		c.voluntary += float64(max(statusField(t+"/status", "voluntary_ctxt_switches:"), 0))
		c.forced += float64(max(statusField(t+"/status", "nonvoluntary_ctxt_switches:"), 0))
	}
	return c
}

func (c sysCounts) sub(o sysCounts) sysCounts {
	return sysCounts{
		readCalls: c.readCalls - o.readCalls, writeCalls: c.writeCalls - o.writeCalls,
		readBytes: c.readBytes - o.readBytes, writeBytes: c.writeBytes - o.writeBytes,
		voluntary: c.voluntary - o.voluntary, forced: c.forced - o.forced,
	}
}
