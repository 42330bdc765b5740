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
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/proxy/redistest"
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
		ReplTimeout: 10 * time.Second,
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, nil)),
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

// relayProc is a relay running in its own process.
type relayProc struct {
	t      *testing.T
	dir    string
	port   int
	master string
	cmd    *exec.Cmd
	log    *os.File
	client *redis.Client
}

func startRelayProcess(t *testing.T, master string) *relayProc {
	t.Helper()
	p := &relayProc{t: t, dir: t.TempDir(), port: redistest.FreePort(t), master: master}
	p.start()
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

func (p *relayProc) start() {
	p.t.Helper()
	var err error
	if p.log == nil {
		if p.log, err = os.Create(p.dir + ".log"); err != nil {
			p.t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "REDIS_RELAY_CHILD_DIR="+p.dir, "REDIS_RELAY_CHILD_PORT="+strconv.Itoa(p.port), "REDIS_RELAY_CHILD_MASTER="+p.master)
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

func (p *relayProc) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

func (p *relayProc) HostPort() (string, string) { return "127.0.0.1", strconv.Itoa(p.port) }

func (p *relayProc) InfoInt(t *testing.T, field string) int64 {
	t.Helper()
	info, err := p.client.Info(context.Background(), "everything").Result()
	if err != nil {
		t.Fatalf("relay INFO: %v", err)
	}
	v := infoField(info, field)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("relay INFO %s = %q", field, v)
	}
	return n
}

func infoField(info, field string) string {
	for _, line := range strings.Split(info, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == field {
			return v
		}
	}
	return ""
}
