// Package redistest runs real redis-server processes for integration tests
// and offers a small fault-injecting TCP proxy to put between them.
//
// Every process and goroutine started by this package is tied to the test
// that created it and is stopped by a t.Cleanup hook.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/redis-relay/redis-relay/internal/redisproc"
)

const (
	// startAttempts is how many times Restart tries the server's port
	// while another process holds it.
	startAttempts = 5
	// commandTimeout bounds every command issued by the helpers.
	commandTimeout = 10 * time.Second
	// logTailLines is how many log lines are shown when a test fails.
	logTailLines = 40
)

// Server is one running redis-server process.
//
// Host, Port, Dir and LogPath stay fixed for the life of the Server, across
// Kill and Restart.
type Server struct {
	Host    string // always "127.0.0.1"
	Port    int    // TCP port the server listens on
	Dir     string // working directory (--dir), a per-test temporary directory
	LogPath string // redis log file (--logfile)

	opts redisproc.Options // how it is started; Port is set after the first start

	mu     sync.Mutex
	proc   *redisproc.Proc // current (or last) process; nil before the first start
	client *redis.Client   // lazily created by Client
}

// Start runs redis-server on a free loopback port and waits until it answers
// PING (see redisproc.Start). The binary is taken from $REDIS_SERVER, or else
// "redis-server" on PATH. The server gets its own temporary directory, no
// persistence, a log file, the DEBUG command enabled for local clients and
// no delay before a diskless full sync (--repl-diskless-sync-delay 0); args
// are appended after those defaults so they can override them.
//
// The process is killed, and the test's log is given the tail of the redis
// log if the test failed, when the test finishes.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	// Redis 7 waits 5 s before a diskless full sync by default, hoping
	// more replicas join; tests want the sync now.
	return start(t, redisproc.Options{Args: append([]string{"--repl-diskless-sync-delay", "0"}, args...), Password: password(args)})
}

// StartSentinel runs redis-server in Sentinel mode on a free loopback port,
// with a config file made of the given lines (for example
// "sentinel monitor mymaster 127.0.0.1 7000 2") after port, bind, dir and
// logfile.
func StartSentinel(t testing.TB, lines ...string) *Server {
	t.Helper()
	lines = append([]string{}, lines...)
	dir := t.TempDir()
	o := redisproc.Options{Dir: dir, LogPath: filepath.Join(dir, "redis.log")}
	o.Argv = func(port int) []string {
		// Sentinel insists on a config file it can rewrite.
		conf := filepath.Join(o.Dir, "sentinel.conf")
		head := []string{
			fmt.Sprintf("port %d", port), "bind 127.0.0.1", "dir " + o.Dir,
			"logfile " + o.LogPath, "daemonize no",
		}
		os.WriteFile(conf, []byte(strings.Join(append(head, lines...), "\n")+"\n"), 0o644)
		return []string{conf, "--sentinel"}
	}
	return start(t, o)
}

// password is the --requirepass among args, if any.
func password(args []string) string {
	pw := ""
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--requirepass" {
			pw = args[i+1]
		}
	}
	return pw
}

func start(t testing.TB, o redisproc.Options) *Server {
	t.Helper()
	s, err := tryStart(t, o)
	if err != nil {
		t.Fatalf("redistest: start redis-server: %v", err)
	}
	return s
}

// tryStart is start returning its error, for callers that pick the port
// themselves and try another when it is taken (redisproc.ErrPortInUse).
func tryStart(t testing.TB, o redisproc.Options) (*Server, error) {
	t.Helper()
	bin, err := redisproc.Binary()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	o.Bin = bin
	if o.Dir == "" {
		o.Dir = t.TempDir()
		o.LogPath = filepath.Join(o.Dir, "redis.log")
	}
	s := &Server{Host: "127.0.0.1", Dir: o.Dir, LogPath: o.LogPath}
	p, err := redisproc.Start(context.Background(), o)
	if err != nil {
		return nil, err
	}
	// Registered after TempDir, so it runs before the directory is removed.
	t.Cleanup(func() { s.cleanup(t) })
	o.Port = p.Port
	s.Port, s.opts, s.proc = p.Port, o, p
	return s, nil
}

// cleanup closes the cached client, kills the process and, if the test
// failed, shows the end of the redis log.
func (s *Server) cleanup(t testing.TB) {
	s.mu.Lock()
	c, p := s.client, s.proc
	s.client = nil
	s.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
	s.Kill()
	if t.Failed() && p != nil {
		t.Logf("redistest: redis-server on %s:\n%s", s.Addr(), p.LogTail(logTailLines))
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
	o.Password = s.opts.Password
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

// ParseInfo turns an INFO reply into a map of its fields
// (redisproc.ParseInfo).
func ParseInfo(text string) map[string]string { return redisproc.ParseInfo(text) }

// InfoField returns one field of an INFO reply, or "" when the reply has no
// such field.
func InfoField(text, field string) string {
	return redisproc.ParseInfo(text)[field]
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
	if p != nil {
		p.Kill()
	}
}

// Restart kills the server if it is running and starts it again with the
// same port, directory and arguments, then waits for PING. With the default
// arguments nothing is persisted, so the restarted server starts empty.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	var err error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		var p *redisproc.Proc
		if p, err = redisproc.Start(context.Background(), s.opts); err == nil {
			s.mu.Lock()
			s.proc = p
			s.mu.Unlock()
			return
		}
		if !errors.Is(err, redisproc.ErrPortInUse) {
			break
		}
		// The port cannot change here, so give its holder a moment.
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("redistest: restart redis-server on %s: %v", s.Addr(), err)
}

// Pid returns the process id of the current (or most recent) process, or 0
// if none was started.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.Pid()
}

// Signal sends sig to the redis-server process, for example syscall.SIGSTOP
// to freeze it and syscall.SIGCONT to let it go on.
func (s *Server) Signal(sig os.Signal) error {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		return errors.New("redistest: redis-server is not running")
	}
	if err := p.Signal(sig); err != nil {
		return fmt.Errorf("redistest: signal %v: %w", sig, err)
	}
	return nil
}
