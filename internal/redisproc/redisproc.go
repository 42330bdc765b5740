package redisproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

const (
	// DefaultReadyTimeout bounds the wait for a fresh process to answer.
	DefaultReadyTimeout = 10 * time.Second
	// startAttempts is how many ports Start tries when it picks the port.
	startAttempts = 5
)

// ErrPortInUse marks a start that failed because another process holds
// the port.
var ErrPortInUse = errors.New("port already in use")

// Binary is the redis-server executable: $REDIS_SERVER, or else
// "redis-server", looked up on PATH.
func Binary() (string, error) {
	name := os.Getenv("REDIS_SERVER")
	if name == "" {
		name = "redis-server"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("redis-server not found (look up %q: %w); install it (apt-get install -y redis-server) or name it in $REDIS_SERVER", name, err)
	}
	return path, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. It
// never returns 6379, so a developer's own Redis is left alone.
func FreePort() (int, error) {
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("probe a free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if err := ln.Close(); err != nil {
			return 0, fmt.Errorf("close the probe listener: %w", err)
		}
		if port != 6379 {
			return port, nil
		}
	}
}

// Options describe one redis-server to start.
type Options struct {
	Bin  string   // the executable; default Binary()
	Dir  string   // working directory (--dir); must exist
	Host string   // the addresses it binds (redis-server's bind); default 127.0.0.1
	Port int      // 0: a free port, picked again if another process takes it first
	Args []string // appended after the defaults, so they can override them

	// Argv, when set, builds the whole command line after Bin for the
	// port in place of the redis-server defaults and Args: for Sentinel
	// (a config file) or another program that answers PING and INFO.
	Argv func(port int) []string

	LogPath  string // --logfile; default Dir/redis.log
	OutPath  string // stdout and stderr are appended here; default Dir/redis.stdout
	Password string // for the readiness check of a server started with --requirepass

	ReadyTimeout time.Duration // default DefaultReadyTimeout
	// Prepare, when set, adjusts the command before it starts (for
	// example a parent-death signal).
	Prepare func(*exec.Cmd)
}

// Proc is one running process started by Start.
type Proc struct {
	Host    string // what it binds
	Port    int
	Dir     string
	LogPath string
	OutPath string

	cmd       *exec.Cmd
	done      chan struct{} // closed once the process is reaped
	err       error         // its exit status, set before done is closed
	logOffset int64         // size of the log when this process began
}

// Start runs redis-server with no persistence, its log in LogPath, DEBUG
// enabled for local clients (the flag its version wants, see
// DebugCommandArgs) and then o.Args, and returns once the server
// answering on the port is this process: PING, then INFO server's
// process_id. Nothing else is sent to the port before that. A port given
// in o.Port that is taken is an error wrapping ErrPortInUse; a port Start
// picked that another process took is picked again. On failure the
// process is killed and the error ends with the tail of its log.
func Start(ctx context.Context, o Options) (*Proc, error) {
	if o.Bin == "" {
		bin, err := Binary()
		if err != nil {
			return nil, err
		}
		o.Bin = bin
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.LogPath == "" {
		o.LogPath = filepath.Join(o.Dir, "redis.log")
	}
	if o.OutPath == "" {
		o.OutPath = filepath.Join(o.Dir, "redis.stdout")
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if o.Port > 0 {
		addr := net.JoinHostPort(ConnectHost(o.Host), strconv.Itoa(o.Port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("port %d: %w (%v); nothing was sent to it", o.Port, ErrPortInUse, err)
		}
		ln.Close()
		return startOn(ctx, o, o.Port)
	}
	var err error
	for range startAttempts {
		port, perr := FreePort()
		if perr != nil {
			return nil, perr
		}
		var p *Proc
		if p, err = startOn(ctx, o, port); err == nil || !errors.Is(err, ErrPortInUse) {
			return p, err
		}
	}
	return nil, err
}

// startOn launches one process on port and waits until it is ready.
func startOn(ctx context.Context, o Options, port int) (*Proc, error) {
	p, err := launch(o, port)
	if err != nil {
		return nil, err
	}
	if err := p.waitReady(ctx, o.Password, o.ReadyTimeout); err != nil {
		p.Kill()
		return nil, fmt.Errorf("%s on port %d: %w\n%s", filepath.Base(o.Bin), port, err, p.LogTail(20))
	}
	return p, nil
}

// argv is the command line after the binary.
func argv(o Options, port int) []string {
	if o.Argv != nil {
		return o.Argv(port)
	}
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", o.Host,
		"--dir", o.Dir,
		"--save", "",
		"--appendonly", "no",
		"--logfile", o.LogPath,
		"--daemonize", "no",
	}
	args = append(args, DebugCommandArgs(o.Bin)...)
	return append(args, o.Args...)
}

func launch(o Options, port int) (*Proc, error) {
	// Anything written before the log file is opened (a bad option, for
	// one) goes to stdout or stderr, so keep that too.
	out, err := os.OpenFile(o.OutPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", o.OutPath, err)
	}
	defer out.Close()
	p := &Proc{Host: o.Host, Port: port, Dir: o.Dir, LogPath: o.LogPath, OutPath: o.OutPath, done: make(chan struct{})}
	if fi, err := os.Stat(o.LogPath); err == nil {
		p.logOffset = fi.Size()
	}
	p.cmd = exec.Command(o.Bin, argv(o, port)...)
	p.cmd.Dir = o.Dir
	p.cmd.Stdout, p.cmd.Stderr = out, out
	ownProcessGroup(p.cmd)
	if o.Prepare != nil {
		o.Prepare(p.cmd)
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", o.Bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// waitReady polls until the process answers PING on its port and INFO
// reports its pid.
func (p *Proc) waitReady(ctx context.Context, password string, timeout time.Duration) error {
	c := redis.NewClient(&redis.Options{
		Addr:            p.Addr(),
		Password:        password,
		Protocol:        2,
		DisableIdentity: true,
		MaxRetries:      -1,
		PoolSize:        1,
		DialTimeout:     250 * time.Millisecond,
		ReadTimeout:     500 * time.Millisecond,
		WriteTimeout:    500 * time.Millisecond,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
	defer c.Close()
	deadline := time.Now().Add(timeout)
	for {
		if p.Exited() {
			return p.exitError()
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		last := checkPid(cctx, c, p.Pid())
		cancel()
		switch {
		case last == nil:
			return nil
		case errors.Is(last, ErrPortInUse):
			return last
		case ctx.Err() != nil:
			return ctx.Err()
		case time.Now().After(deadline):
			return fmt.Errorf("no answer on %s within %v: %w", p.Addr(), timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkPid pings the server and confirms it runs with the given pid.
func checkPid(ctx context.Context, c *redis.Client, pid int) error {
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	text, err := c.Info(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("info server: %w", err)
	}
	if got := ParseInfo(text)["process_id"]; got != strconv.Itoa(pid) {
		return fmt.Errorf("answered by process %q, not %d: %w by another server; nothing but PING and INFO was sent to it", got, pid, ErrPortInUse)
	}
	return nil
}

// exitError explains why a process ended before it became ready.
func (p *Proc) exitError() error {
	if strings.Contains(p.logSince(p.logOffset), "Address already in use") {
		return fmt.Errorf("exited at start (%v): %w", p.err, ErrPortInUse)
	}
	if p.err == nil {
		return errors.New("exited at start with status 0")
	}
	return fmt.Errorf("exited at start: %w", p.err)
}

// logSince is the part of the log written after offset.
func (p *Proc) logSince(offset int64) string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil || int64(len(data)) < offset {
		return ""
	}
	return string(data[offset:])
}

// Addr is the address to reach the server at: its port on the first
// address it binds (loopback for a wildcard).
func (p *Proc) Addr() string {
	return net.JoinHostPort(ConnectHost(p.Host), strconv.Itoa(p.Port))
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit and returns its exit status.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error {
	if p.Exited() {
		return errors.New("the process is not running")
	}
	return p.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL to the process and anything it forked (a BGSAVE or
// diskless sync child) and waits for it to exit. On a process that has
// exited it does nothing.
func (p *Proc) Kill() {
	if p.Exited() {
		return
	}
	killProcess(p.cmd)
	<-p.done
}

// Stop asks the process to end (SIGTERM), kills it if it has not within
// grace, and waits for it to exit.
func (p *Proc) Stop(grace time.Duration) {
	if p.Signal(terminate) == nil {
		select {
		case <-p.done:
			return
		case <-time.After(grace):
		}
	}
	p.Kill()
}

// LogTail returns the last n lines of the log and of the captured stdout
// and stderr, ready to print.
func (p *Proc) LogTail(n int) string {
	var b strings.Builder
	for _, path := range []string{p.LogPath, p.OutPath} {
		data, err := os.ReadFile(path)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "--- last %d lines of %s ---\n%s\n", len(lines), path, strings.Join(lines, "\n"))
	}
	if b.Len() == 0 {
		return "(its log is empty)"
	}
	return b.String()
}

// ConnectHost is the address to reach a server that binds bind: the first
// of its addresses, loopback for a wildcard.
func ConnectHost(bind string) string {
	host, _, _ := strings.Cut(strings.TrimSpace(bind), " ")
	host = strings.TrimPrefix(host, "-")
	switch host {
	case "", "*", "0.0.0.0":
		return "127.0.0.1"
	case "::", "::*", "*::":
		return "::1"
	}
	return host
}
