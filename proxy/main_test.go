package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// The test binary doubles as a relay process, so that fault tests can kill
// a relay with SIGKILL: with REDIS_RELAY_CHILD_DIR set it runs a relay
// instead of the tests.
func TestMain(m *testing.M) {
	if dir := os.Getenv("REDIS_RELAY_CHILD_DIR"); dir != "" {
		os.Exit(runChildRelay(dir))
	}
	os.Exit(m.Run())
}

func runChildRelay(dir string) int {
	port, _ := strconv.Atoi(os.Getenv("REDIS_RELAY_CHILD_PORT"))
	cfg := Config{
		MasterAddr:  os.Getenv("REDIS_RELAY_CHILD_MASTER"),
		DataDir:     dir,
		RingSize:    testRingSize,
		ReplTimeout: 10 * time.Second,
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}
	if err := childSettings(&cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child relay:", err)
		return 1
	}
	relay, err := New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child relay:", err)
		return 1
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child relay:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	err = relay.Run(ctx, ln)
	relay.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "child relay:", err)
		return 1
	}
	return 0
}

// childSettings applies the optional settings a test passes to a relay
// process in its environment:
//
//	REDIS_RELAY_CHILD_SEGMENT_SIZE   log segment size in bytes
//	REDIS_RELAY_CHILD_REFRESH_RATIO  refresh ratio (negative: never refresh)
//	REDIS_RELAY_CHILD_REFRESH_MIN    refresh minimum log size in bytes
//	REDIS_RELAY_CHILD_REPL_TIMEOUT   repl-timeout in seconds
//	REDIS_RELAY_CHILD_SNAPSHOT_SOURCE  snapshot-source (host:port)
//	REDIS_RELAY_CHILD_CRASH_AT       a step of a history change (see history.at):
//	                                 when the relay reaches it, it writes
//	                                 "CRASHPOINT <step>" to its log and stops
//	                                 there for good, so the test can kill it
//	REDIS_RELAY_CHILD_CRASH_SKIP     let the step pass this many times first
func childSettings(cfg *Config) error {
	if v := os.Getenv("REDIS_RELAY_CHILD_SEGMENT_SIZE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("segment size %q: %w", v, err)
		}
		cfg.SegmentSize = n
	}
	if v := os.Getenv("REDIS_RELAY_CHILD_REFRESH_RATIO"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("refresh ratio %q: %w", v, err)
		}
		cfg.RefreshRatio = f
	}
	if v := os.Getenv("REDIS_RELAY_CHILD_REFRESH_MIN"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("refresh minimum %q: %w", v, err)
		}
		cfg.RefreshMinBytes = n
	}
	if v := os.Getenv("REDIS_RELAY_CHILD_REPL_TIMEOUT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("repl timeout %q: %w", v, err)
		}
		cfg.ReplTimeout = time.Duration(n) * time.Second
	}
	cfg.SnapshotSource = os.Getenv("REDIS_RELAY_CHILD_SNAPSHOT_SOURCE")
	if point := os.Getenv("REDIS_RELAY_CHILD_CRASH_AT"); point != "" {
		var skip atomic.Int64
		if v := os.Getenv("REDIS_RELAY_CHILD_CRASH_SKIP"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return fmt.Errorf("crash skip %q: %w", v, err)
			}
			skip.Store(n)
		}
		cfg.CrashPoint = func(at string) {
			if at != point || skip.Add(-1) >= 0 {
				return
			}
			fmt.Fprintf(os.Stderr, "CRASHPOINT %s\n", at)
			select {} // wait here for the test's SIGKILL
		}
	}
	return nil
}

// crashAt is the environment that stops a relay process at a step of a
// history change (see history.at), after letting it pass skip times.
func crashAt(point string, skip int) []string {
	return []string{"REDIS_RELAY_CHILD_CRASH_AT=" + point, "REDIS_RELAY_CHILD_CRASH_SKIP=" + strconv.Itoa(skip)}
}

// relayProc is a relay running in its own process.
type relayProc struct {
	t       *testing.T
	dir     string
	port    int
	master  string
	env     []string // REDIS_RELAY_CHILD_* settings for every run
	cmd     *exec.Cmd
	log     *os.File
	logFrom int64 // size of the log file when the current run started
	client  *redis.Client
}

// startRelayProcess runs a relay process in front of master with a fresh
// data dir. env holds optional REDIS_RELAY_CHILD_* settings (see
// childSettings); a crash point among them (crashAt) applies to this first
// run only, the settings to every run.
func startRelayProcess(t *testing.T, master string, env ...string) *relayProc {
	t.Helper()
	return startRelayProcessIn(t, t.TempDir(), master, env...)
}

// startRelayProcessIn is startRelayProcess with a data dir of the test's
// choosing. Its log file is dir + ".log".
func startRelayProcessIn(t *testing.T, dir, master string, env ...string) *relayProc {
	t.Helper()
	p := &relayProc{t: t, dir: dir, port: redistest.FreePort(t), master: master}
	var once []string
	for _, kv := range env {
		if strings.HasPrefix(kv, "REDIS_RELAY_CHILD_CRASH_") {
			once = append(once, kv)
		} else {
			p.env = append(p.env, kv)
		}
	}
	p.start(once...)
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			if b, err := os.ReadFile(p.log.Name()); err == nil {
				t.Logf("relay process log:\n%s", tail(string(b), 4000))
			}
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// start runs a new relay process on the data dir, with the settings and,
// for this run only, extra (for example a crash point).
func (p *relayProc) start(extra ...string) {
	p.t.Helper()
	var err error
	if p.log == nil {
		if p.log, err = os.Create(p.dir + ".log"); err != nil {
			p.t.Fatal(err)
		}
	}
	if fi, err := p.log.Stat(); err == nil {
		p.logFrom = fi.Size()
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "REDIS_RELAY_CHILD_DIR="+p.dir, "REDIS_RELAY_CHILD_PORT="+strconv.Itoa(p.port), "REDIS_RELAY_CHILD_MASTER="+p.master)
	cmd.Env = append(append(cmd.Env, p.env...), extra...)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start relay process: %v", err)
	}
	p.cmd = cmd
	p.client = redis.NewClient(&redis.Options{Addr: p.Addr(), Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	redistest.Eventually(p.t, 10*time.Second, func() error { return p.client.Ping(context.Background()).Err() })
}

// Kill ends the process with SIGKILL: nothing is flushed or closed.
func (p *relayProc) Kill() {
	if p.cmd != nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		p.cmd = nil
		p.client.Close()
	}
}

func (p *relayProc) Restart() {
	p.Kill()
	p.start()
}

// RestartWith kills the process and starts a new one with extra settings
// for the new run only.
func (p *relayProc) RestartWith(extra ...string) {
	p.Kill()
	p.start(extra...)
}

// RunLog is what the current run has written to the log file so far.
func (p *relayProc) RunLog() string {
	b, err := os.ReadFile(p.log.Name())
	if err != nil || int64(len(b)) < p.logFrom {
		return ""
	}
	return string(b[p.logFrom:])
}

// WaitCrashPoint waits until the current run has stopped at the crash
// point it was started with.
func (p *relayProc) WaitCrashPoint(t *testing.T, point string, timeout time.Duration) {
	t.Helper()
	redistest.Eventually(t, timeout, func() error {
		if !strings.Contains(p.RunLog(), "CRASHPOINT "+point+"\n") {
			return fmt.Errorf("relay process has not reached %q", point)
		}
		return nil
	})
}

func (p *relayProc) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

func (p *relayProc) HostPort() (string, string) { return "127.0.0.1", strconv.Itoa(p.port) }

func (p *relayProc) InfoInt(t *testing.T, field string) int64 {
	t.Helper()
	info, err := p.client.Info(context.Background(), "everything").Result()
	if err != nil {
		t.Fatalf("relay INFO: %v", err)
	}
	v := redistest.InfoField(info, field)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("relay INFO %s = %q", field, v)
	}
	return n
}
