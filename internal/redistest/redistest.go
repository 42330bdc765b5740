// Package redistest runs real redis-server processes for integration tests
// and offers a small fault-injecting TCP proxy to put between them.
//
// Every process and goroutine started by this package is tied to the test
// that created it and is stopped by a t.Cleanup hook.
package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

const (
	// readyTimeout bounds how long we wait for a fresh process to answer PING.
	readyTimeout = 10 * time.Second
	// startAttempts is how many times a start is retried after losing a port race.
	startAttempts = 5
	// commandTimeout bounds every command issued by the helpers.
	commandTimeout = 10 * time.Second
	// logTailLines is how many log lines are shown when a test fails.
	logTailLines = 40
)

// errPortInUse marks a start that failed because the port was taken by
// someone else between probing it and redis-server binding it.
var errPortInUse = errors.New("port already in use")

// Server is one running redis-server process.
//
// Host, Port, Dir and LogPath stay fixed for the life of the Server, across
// Kill and Restart.
type Server struct {
	Host    string // always "127.0.0.1"
	Port    int    // TCP port the server listens on
	Dir     string // working directory (--dir), a per-test temporary directory
	LogPath string // redis log file (--logfile)

	bin      string   // path of the redis-server binary
	extra    []string // caller-supplied arguments, appended after the defaults
	sentinel []string // for a Sentinel: the lines of its config file

	mu     sync.Mutex
	proc   *process      // current (or last) process; nil before the first launch
	client *redis.Client // lazily created by Client
}

// process is one run of redis-server. err is written before done is closed,
// so it may be read by anyone who has observed done closed.
type process struct {
	cmd       *exec.Cmd
	done      chan struct{}
	err       error
	logOffset int64 // size of the log file when this run began
}

// exited reports whether the process has been reaped.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Start runs redis-server on a free loopback port and waits until it answers
// PING. The binary is taken from $REDIS_SERVER, or else "redis-server" on
// PATH. The server gets its own temporary directory, no persistence, a log
// file, the DEBUG command enabled for local clients and no delay before a
// diskless full sync (--repl-diskless-sync-delay 0); args are appended after
// those defaults so they can override them.
//
// The process is killed, and the test's log is given the tail of the redis
// log if the test failed, when the test finishes.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	return start(t, args, nil)
}

// StartSentinel runs redis-server in Sentinel mode on a free loopback port,
// with a config file made of the given lines (for example
// "sentinel monitor mymaster 127.0.0.1 7000 2") after port, bind, dir and
// logfile.
func StartSentinel(t testing.TB, lines ...string) *Server {
	t.Helper()
	return start(t, nil, append([]string{}, lines...))
}

func start(t testing.TB, args, sentinel []string) *Server {
	t.Helper()
	bin, err := findBinary()
	if err != nil {
		t.Logf("redistest: %v", err)
		t.Fatalf("redis-server not found: apt-get install -y redis-server")
	}
	dir := t.TempDir()
	s := &Server{
		Host:     "127.0.0.1",
		Dir:      dir,
		LogPath:  filepath.Join(dir, "redis.log"),
		bin:      bin,
		extra:    append([]string(nil), args...),
		sentinel: sentinel,
	}
	// Registered after TempDir, so it runs before the directory is removed.
	t.Cleanup(func() { s.cleanup(t) })

	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		s.Port = FreePort(t)
		lastErr = s.run()
		if lastErr == nil {
			return s
		}
		if !errors.Is(lastErr, errPortInUse) {
			break
		}
		t.Logf("redistest: port %d was taken, retrying: %v", s.Port, lastErr)
	}
	t.Fatalf("redistest: start redis-server: %v\n%s", lastErr, s.logTail())
	return nil
}

// findBinary locates the redis-server executable.
func findBinary() (string, error) {
	name := os.Getenv("REDIS_SERVER")
	if name == "" {
		name = "redis-server"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("look up %q: %w", name, err)
	}
	return path, nil
}

// argv returns the full command line, defaults first and extra arguments last.
func (s *Server) argv() []string {
	if s.sentinel != nil {
		// Sentinel insists on a config file it can rewrite.
		conf := filepath.Join(s.Dir, "sentinel.conf")
		lines := append([]string{
			fmt.Sprintf("port %d", s.Port), "bind " + s.Host, "dir " + s.Dir,
			"logfile " + s.LogPath, "daemonize no",
		}, s.sentinel...)
		os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
		return []string{conf, "--sentinel"}
	}
	args := []string{
		"--port", strconv.Itoa(s.Port),
		"--bind", s.Host,
		"--dir", s.Dir,
		"--save", "",
		"--appendonly", "no",
		"--logfile", s.LogPath,
		"--daemonize", "no",
		// Redis 7 waits 5 s before a diskless full sync by default, hoping
		// more replicas join; tests want the sync now.
		"--repl-diskless-sync-delay", "0",
	}
	args = append(args, DebugCommandArgs(s.bin)...)
	return append(args, s.extra...)
}

// DebugCommandArgs returns the options that let local clients run DEBUG
// (DEBUG DIGEST, DEBUG POPULATE) on the redis-server at bin: Redis 7 and
// later refuse DEBUG unless started with --enable-debug-command; Redis 6
// always allows it and refuses that option as unknown.
func DebugCommandArgs(bin string) []string {
	if major, err := ServerMajorVersion(bin); err == nil && major < 7 {
		return nil
	}
	return []string{"--enable-debug-command", "local"}
}

var versions sync.Map // binary path -> major version (int)

// ServerMajorVersion runs `bin --version` (once per binary) and returns the
// major version it reports ("Redis server v=6.2.16 ...", Valkey's
// "Valkey server v=8.0.1 ...").
func ServerMajorVersion(bin string) (int, error) {
	if v, ok := versions.Load(bin); ok {
		return v.(int), nil
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("%s --version: %w", bin, err)
	}
	major, err := parseMajorVersion(string(out))
	if err != nil {
		return 0, fmt.Errorf("%s --version: %w", bin, err)
	}
	versions.Store(bin, major)
	return major, nil
}

func parseMajorVersion(out string) (int, error) {
	_, rest, ok := strings.Cut(out, " v=")
	if !ok {
		return 0, fmt.Errorf("no v= in %q", strings.TrimSpace(out))
	}
	major, _, _ := strings.Cut(rest, ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return 0, fmt.Errorf("version in %q: %w", strings.TrimSpace(out), err)
	}
	return n, nil
}

// run launches one process and waits until it is ready. On failure the
// process is killed before returning.
func (s *Server) run() error {
	p, err := s.launch()
	if err != nil {
		return err
	}
	if err := s.waitReady(p, readyTimeout); err != nil {
		s.Kill()
		return err
	}
	return nil
}

// launch starts redis-server in the background and records it as the
// current process.
func (s *Server) launch() (*process, error) {
	// Anything written before the log file is opened (for example a bad
	// configuration) goes to stdout/stderr, so keep that too.
	out, err := os.OpenFile(filepath.Join(s.Dir, "redis.stdout"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open stdout file: %w", err)
	}
	defer out.Close()

	var offset int64
	if fi, err := os.Stat(s.LogPath); err == nil {
		offset = fi.Size()
	}

	cmd := exec.Command(s.bin, s.argv()...)
	cmd.Dir = s.Dir
	cmd.Stdout = out
	cmd.Stderr = out
	ownProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", s.bin, err)
	}

	p := &process{cmd: cmd, done: make(chan struct{}), logOffset: offset}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()

	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	return p, nil
}

// waitReady polls until the process answers PING on its port, and checks
// that the answer really comes from this process and not from a stranger
// that won a race for the port.
func (s *Server) waitReady(p *process, timeout time.Duration) error {
	c := redis.NewClient(s.options(func(o *redis.Options) {
		o.MaxRetries = -1
		o.PoolSize = 1
		o.DialTimeout = 250 * time.Millisecond
		o.ReadTimeout = 500 * time.Millisecond
		o.WriteTimeout = 500 * time.Millisecond
	}))
	defer c.Close()

	deadline := time.Now().Add(timeout)
	var last error
	for {
		if p.exited() {
			return s.exitError(p)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		last = checkIdentity(ctx, c, p.cmd.Process.Pid)
		cancel()
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PING answer on %s within %v: %w", s.Addr(), timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkIdentity pings the server and confirms it runs with the given pid.
func checkIdentity(ctx context.Context, c *redis.Client, pid int) error {
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	text, err := c.Info(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("info server: %w", err)
	}
	got := ParseInfo(text)["process_id"]
	if got != strconv.Itoa(pid) {
		return fmt.Errorf("answered by process %q, want %d: %w", got, pid, errPortInUse)
	}
	return nil
}

// exitError explains why a process ended before it became ready.
func (s *Server) exitError(p *process) error {
	if strings.Contains(s.logSince(p.logOffset), "Address already in use") {
		return fmt.Errorf("redis-server exited early (%v): %w", p.err, errPortInUse)
	}
	if p.err == nil {
		return errors.New("redis-server exited early with status 0")
	}
	return fmt.Errorf("redis-server exited early: %w", p.err)
}

// logSince returns the part of the redis log written after offset.
func (s *Server) logSince(offset int64) string {
	data, err := os.ReadFile(s.LogPath)
	if err != nil || int64(len(data)) < offset {
		return ""
	}
	return string(data[offset:])
}

// logTail returns the last lines of the redis log and of the captured
// stdout/stderr, ready to be printed.
func (s *Server) logTail() string {
	var b strings.Builder
	for _, path := range []string{s.LogPath, filepath.Join(s.Dir, "redis.stdout")} {
		data, err := os.ReadFile(path)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > logTailLines {
			lines = lines[len(lines)-logTailLines:]
		}
		fmt.Fprintf(&b, "--- last %d lines of %s ---\n%s\n", len(lines), path, strings.Join(lines, "\n"))
	}
	if b.Len() == 0 {
		return "(redis log is empty)"
	}
	return b.String()
}

// cleanup closes the cached client, kills the process and, if the test
// failed, shows the end of the redis log.
func (s *Server) cleanup(t testing.TB) {
	s.mu.Lock()
	c := s.client
	s.client = nil
	s.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
	s.Kill()
	if t.Failed() {
		t.Logf("redistest: redis-server on %s:\n%s", s.Addr(), s.logTail())
	}
}

// Addr returns the server address as "127.0.0.1:port".
func (s *Server) Addr() string {
	return fmt.Sprintf("%s:%d", s.Host, s.Port)
}

// HostPort returns host and port as separate strings, the form that
// --replicaof and REPLICAOF expect.
func (s *Server) HostPort() (string, string) {
	return s.Host, strconv.Itoa(s.Port)
}

// options returns go-redis options for this server. The client speaks RESP2
// so that Do returns plain strings, integers and slices, and it skips the
// CLIENT SETINFO / maintenance handshakes that Redis 7.0 does not know.
func (s *Server) options(tweak func(*redis.Options)) *redis.Options {
	o := &redis.Options{
		Addr:                  s.Addr(),
		Protocol:              2,
		DisableIdentity:       true,
		ContextTimeoutEnabled: true,
		DialTimeout:           2 * time.Second,
		ReadTimeout:           5 * time.Second,
		WriteTimeout:          5 * time.Second,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	}
	// A server started with --requirepass gets a client that authenticates.
	for i := 0; i+1 < len(s.extra); i++ {
		if s.extra[i] == "--requirepass" {
			o.Password = s.extra[i+1]
		}
	}
	if tweak != nil {
		tweak(o)
	}
	return o
}

// Client returns a go-redis client for this server. The same client is
// returned on every call; it survives Kill/Restart (it reconnects) and is
// closed when the test ends.
func (s *Server) Client() *redis.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		s.client = redis.NewClient(s.options(nil))
	}
	return s.client
}

// Do runs one command and returns its reply. A nil reply (redis.Nil) is
// returned as nil; any other error fails the test.
func (s *Server) Do(t testing.TB, args ...any) any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	v, err := s.Client().Do(ctx, args...).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		t.Fatalf("redistest: %s: %v: %v", s.Addr(), args, err)
	}
	return v
}

// Info returns the fields of one INFO section ("replication", "server",
// "all", ...) as a map.
func (s *Server) Info(t testing.TB, section string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	text, err := s.Client().Info(ctx, section).Result()
	if err != nil {
		t.Fatalf("redistest: %s: INFO %s: %v", s.Addr(), section, err)
	}
	return ParseInfo(text)
}

// InfoInt returns an integer INFO field, looked up in INFO everything. The
// test fails if the field is missing or is not an integer.
func (s *Server) InfoInt(t testing.TB, field string) int64 {
	t.Helper()
	raw, ok := s.Info(t, "everything")[field]
	if !ok {
		t.Fatalf("redistest: %s: INFO has no field %q", s.Addr(), field)
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		t.Fatalf("redistest: %s: INFO field %q: %v", s.Addr(), field, err)
	}
	return n
}

// ParseInfo turns an INFO reply ("key:value" lines ending in CRLF, with
// "# Section" headers and blank lines between sections) into a map of its
// fields. A value keeps everything after the first colon, so
// "slave0:ip=127.0.0.1,port=6380,..." maps slave0 to "ip=127.0.0.1,...".
func ParseInfo(text string) map[string]string {
	fields := make(map[string]string)
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = v
		}
	}
	return fields
}

// InfoField returns one field of an INFO reply, or "" when the reply has no
// such field.
func InfoField(text, field string) string {
	return ParseInfo(text)[field]
}

// Digest returns the DEBUG DIGEST of the whole dataset.
func (s *Server) Digest(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	d, err := s.digest(ctx)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return d
}

// digest is Digest without the testing.TB, for use inside Eventually.
func (s *Server) digest(ctx context.Context) (string, error) {
	d, err := s.Client().Do(ctx, "DEBUG", "DIGEST").Text()
	if err != nil {
		return "", fmt.Errorf("%s: DEBUG DIGEST: %w", s.Addr(), err)
	}
	return d, nil
}

// Kill sends SIGKILL to the server (and anything it forked) and waits for it
// to exit. Calling it on a server that is not running does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil || p.exited() {
		return
	}
	killProcess(p.cmd)
	<-p.done
}

// Restart kills the server if it is running and starts it again with the
// same port, directory and arguments, then waits for PING. With the default
// arguments nothing is persisted, so the restarted server starts empty.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	var err error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		if err = s.run(); err == nil {
			return
		}
		if !errors.Is(err, errPortInUse) {
			break
		}
		// The port cannot change here, so give its holder a moment.
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("redistest: restart redis-server on %s: %v\n%s", s.Addr(), err, s.logTail())
}

// Pid returns the process id of the current (or most recent) process, or 0
// if none was started.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// Signal sends sig to the redis-server process, for example syscall.SIGSTOP
// to freeze it and syscall.SIGCONT to let it go on.
func (s *Server) Signal(sig os.Signal) error {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil || p.exited() {
		return errors.New("redistest: redis-server is not running")
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("redistest: signal %v: %w", sig, err)
	}
	return nil
}
