package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// clientFor returns a go-redis client for addr with a single connection and
// no retries, so connection faults show up as errors instead of being hidden.
func clientFor(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:                  addr,
		Protocol:              2,
		DisableIdentity:       true,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		PoolSize:              1,
		DialTimeout:           time.Second,
		ReadTimeout:           5 * time.Second,
		WriteTimeout:          5 * time.Second,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// ctxTimeout returns a context that is cancelled after d or at test end.
func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestMasterReplicaDigests(t *testing.T) {
	t.Parallel()
	master := Start(t)
	host, port := master.HostPort()
	replica := Start(t, "--replicaof", host, port)

	for i := range 100 {
		master.Do(t, "SET", fmt.Sprintf("key:%d", i), i)
	}
	master.Do(t, "RPUSH", "list", "a", "b", "c")

	Eventually(t, 5*time.Second, func() error { return SameDigest(master, replica) })

	if got := replica.Do(t, "GET", "key:42"); got != "42" {
		t.Fatalf("replica GET key:42 = %v, want 42", got)
	}
	if got := replica.Do(t, "GET", "missing"); got != nil {
		t.Fatalf("GET of a missing key = %v, want nil", got)
	}
	if role := replica.Info(t, "replication")["role"]; role != "slave" {
		t.Fatalf("replica role = %q, want slave", role)
	}
	if n := master.InfoInt(t, "connected_slaves"); n != 1 {
		t.Fatalf("connected_slaves = %d, want 1", n)
	}
	if master.Digest(t) == strings.Repeat("0", 40) {
		t.Fatal("master digest is the empty-dataset digest after writes")
	}

	// A difference must be reported, naming both servers.
	other := Start(t)
	err := SameDigest(master, other)
	if err == nil || !strings.Contains(err.Error(), other.Addr()) {
		t.Fatalf("SameDigest of different datasets = %v, want an error naming %s", err, other.Addr())
	}
}

func TestDefaultsAndExtraArgs(t *testing.T) {
	t.Parallel()
	s := Start(t, "--repl-diskless-sync", "yes", "--save", "900 1")
	if s.Port == 6379 || s.Port == 0 {
		t.Fatalf("unexpected port %d", s.Port)
	}
	if got := s.Do(t, "CONFIG", "GET", "dir").([]any); got[1] != s.Dir {
		t.Fatalf("dir = %v, want %s", got[1], s.Dir)
	}
	if got := s.Do(t, "CONFIG", "GET", "repl-diskless-sync").([]any); got[1] != "yes" {
		t.Fatalf("repl-diskless-sync = %v, want yes", got[1])
	}
	// The extra --save came last and must have won over the default "".
	if got := s.Do(t, "CONFIG", "GET", "save").([]any); got[1] != "900 1" {
		t.Fatalf("save = %q, want %q", got[1], "900 1")
	}
	if s.InfoInt(t, "process_id") != int64(s.Pid()) {
		t.Fatal("INFO process_id does not match Pid")
	}
}

func TestKillRestart(t *testing.T) {
	t.Parallel()
	s := Start(t)
	s.Do(t, "SET", "k", "v")
	oldPid := s.Pid()
	oldAddr := s.Addr()

	s.Kill()
	s.Kill() // must be harmless
	if err := s.Signal(syscall.SIGCONT); err == nil {
		t.Fatal("Signal on a killed server succeeded")
	}
	c := clientFor(t, s.Addr())
	if err := c.Ping(ctxTimeout(t, time.Second)).Err(); err == nil {
		t.Fatal("PING succeeded after Kill")
	}

	s.Restart(t)
	if s.Addr() != oldAddr {
		t.Fatalf("address changed across restart: %s -> %s", oldAddr, s.Addr())
	}
	if s.Pid() == oldPid {
		t.Fatal("pid did not change across restart")
	}
	// The cached client reconnects by itself.
	if got := s.Do(t, "DBSIZE"); got != int64(0) {
		t.Fatalf("DBSIZE after restart = %v, want 0 (no persistence)", got)
	}
	s.Do(t, "SET", "k", "v2")
	if got := s.Do(t, "GET", "k"); got != "v2" {
		t.Fatalf("GET after restart = %v", got)
	}
}

func TestSignalStopCont(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := clientFor(t, s.Addr())
	if err := s.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctxTimeout(t, 200*time.Millisecond)).Err(); err == nil {
		_ = s.Signal(syscall.SIGCONT)
		t.Fatal("PING answered by a stopped server")
	}
	if err := s.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 2*time.Second, func() error {
		return c.Ping(ctxTimeout(t, time.Second)).Err()
	})
}

func TestFaultProxyForwards(t *testing.T) {
	t.Parallel()
	s := Start(t)
	p := NewFaultProxy(t, s.Addr())
	c := clientFor(t, p.Addr())
	ctx := ctxTimeout(t, 5*time.Second)

	if err := c.Set(ctx, "through", "proxy", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(ctx, "through").Result(); err != nil || got != "proxy" {
		t.Fatalf("GET through proxy = %q, %v", got, err)
	}
	if got := s.Do(t, "GET", "through"); got != "proxy" {
		t.Fatalf("direct GET = %v", got)
	}
	if p.Conns() != 1 || p.Accepted() != 1 {
		t.Fatalf("Conns=%d Accepted=%d, want 1 and 1", p.Conns(), p.Accepted())
	}
	if host, port := p.HostPort(); net.JoinHostPort(host, port) != p.Addr() {
		t.Fatalf("HostPort %s %s does not match Addr %s", host, port, p.Addr())
	}
}

func TestFaultProxyCutAll(t *testing.T) {
	t.Parallel()
	s := Start(t)
	p := NewFaultProxy(t, s.Addr())

	// A raw connection shows the cut directly; go-redis would hide it by
	// health-checking pooled connections and silently redialling.
	conn, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(conn)
	fmt.Fprint(conn, "*1\r\n$4\r\nPING\r\n")
	if line, err := r.ReadString('\n'); err != nil || line != "+PONG\r\n" {
		t.Fatalf("PING through proxy = %q, %v", line, err)
	}

	p.CutAll()
	if n := p.Conns(); n != 0 {
		t.Fatalf("Conns after CutAll = %d", n)
	}
	_, err = r.ReadString('\n')
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("read on a cut connection: err=%v, want reset/EOF", err)
	}

	// New connections still work.
	c := clientFor(t, p.Addr())
	if err := c.Ping(ctxTimeout(t, 2*time.Second)).Err(); err != nil {
		t.Fatalf("PING on a new connection: %v", err)
	}
	if got := p.Accepted(); got != 2 {
		t.Fatalf("Accepted = %d, want 2", got)
	}
}

func TestFaultProxyBlackHole(t *testing.T) {
	t.Parallel()
	s := Start(t)
	p := NewFaultProxy(t, s.Addr())
	c := clientFor(t, p.Addr())
	if err := c.Ping(ctxTimeout(t, 2*time.Second)).Err(); err != nil {
		t.Fatal(err)
	}

	p.SetBlackHole(true)
	result := make(chan error, 1)
	go func() { result <- c.Set(context.Background(), "bh", "1", 0).Err() }()

	select {
	case err := <-result:
		t.Fatalf("SET finished during black hole: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if got := s.Do(t, "EXISTS", "bh"); got != int64(0) {
		t.Fatal("SET reached the server during black hole")
	}
	if p.Conns() != 1 {
		t.Fatalf("Conns during black hole = %d, want 1", p.Conns())
	}

	p.SetBlackHole(false)
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("SET after black hole: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("SET still stalled after black hole was turned off")
	}
}

func TestFaultProxyRefuseAndTarget(t *testing.T) {
	t.Parallel()
	a := Start(t)
	b := Start(t)
	a.Do(t, "SET", "who", "a")
	b.Do(t, "SET", "who", "b")
	p := NewFaultProxy(t, a.Addr())
	c := clientFor(t, p.Addr())

	p.SetRefuse(true)
	if err := c.Ping(ctxTimeout(t, 2*time.Second)).Err(); err == nil {
		t.Fatal("PING succeeded while refusing")
	}
	p.SetRefuse(false)

	p.SetTarget(b.Addr())
	if got, err := c.Get(ctxTimeout(t, 2*time.Second), "who").Result(); err != nil || got != "b" {
		t.Fatalf("GET after SetTarget = %q, %v; want b", got, err)
	}
}

// rawGet sends GET key on a fresh connection through addr and returns every
// byte received until the connection ends or the deadline passes.
func rawGet(t *testing.T, addr, key string) ([]byte, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintf(conn, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(key), key); err != nil {
		t.Fatal(err)
	}
	return io.ReadAll(conn)
}

func TestFaultProxyCutAfter(t *testing.T) {
	t.Parallel()
	s := Start(t)
	s.Do(t, "SET", "big", strings.Repeat("x", 1000))
	p := NewFaultProxy(t, s.Addr())

	p.CutAfter(100)
	got, err := rawGet(t, p.Addr(), "big")
	if len(got) > 100 {
		t.Fatalf("received %d bytes, want at most 100", len(got))
	}
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("want the connection reset, got err=%v", err)
	}

	// One shot: the next connection is not cut. Read one full reply.
	conn, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprint(conn, "*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n")
	r := bufio.NewReader(conn)
	header, err := r.ReadString('\n')
	if err != nil || header != "$1000\r\n" {
		t.Fatalf("header = %q, %v", header, err)
	}
	if _, err := io.ReadFull(r, make([]byte, 1002)); err != nil {
		t.Fatalf("second connection was cut: %v", err)
	}
}

func TestFaultProxyRate(t *testing.T) {
	t.Parallel()
	s := Start(t)
	s.Do(t, "SET", "big", strings.Repeat("x", 3000))
	p := NewFaultProxy(t, s.Addr())
	c := clientFor(t, p.Addr())
	if err := c.Ping(ctxTimeout(t, 2*time.Second)).Err(); err != nil {
		t.Fatal(err)
	}

	p.SetRate(5000) // 3 KB at 5 KB/s: about 0.6 s
	start := time.Now()
	if v, err := c.Get(ctxTimeout(t, 5*time.Second), "big").Result(); err != nil || len(v) != 3000 {
		t.Fatalf("GET = %d bytes, %v", len(v), err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("rate-limited GET took only %v", d)
	}

	p.SetRate(0)
	start = time.Now()
	if err := c.Get(ctxTimeout(t, 5*time.Second), "big").Err(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Fatalf("unlimited GET took %v", d)
	}
}

func TestReplicationThroughProxy(t *testing.T) {
	t.Parallel()
	master := Start(t)
	p := NewFaultProxy(t, master.Addr())
	host, port := p.HostPort()
	replica := Start(t, "--replicaof", host, port)

	master.Do(t, "SET", "a", "1")
	Eventually(t, 5*time.Second, func() error { return SameDigest(master, replica) })

	p.CutAll()
	master.Do(t, "SET", "b", "2")
	Eventually(t, 5*time.Second, func() error { return SameDigest(master, replica) })
	if p.Accepted() < 2 {
		t.Fatalf("replica did not reconnect: Accepted = %d", p.Accepted())
	}
}

// TestFaultProxyCloseEndsGoroutines checks that Close leaves no goroutine
// behind, even with connections stalled in a black hole.
func TestFaultProxyCloseEndsGoroutines(t *testing.T) {
	// Not parallel: it counts goroutines.
	s := Start(t)
	before := runtime.NumGoroutine()

	p := NewFaultProxy(t, s.Addr())
	p.SetRate(1000)
	var conns []net.Conn
	for range 3 {
		conn, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conns = append(conns, conn)
	}
	Eventually(t, 2*time.Second, func() error {
		if n := p.Conns(); n != len(conns) {
			return fmt.Errorf("Conns = %d", n)
		}
		return nil
	})
	p.SetBlackHole(true)
	for _, conn := range conns {
		fmt.Fprint(conn, "*1\r\n$4\r\nPING\r\n")
	}
	p.Close()
	p.Close() // idempotent

	Eventually(t, 2*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines, had %d before the proxy", n, before)
		}
		return nil
	})
}

// TestPortTakenIsRetryable checks that losing the port to another process is
// recognised, which is what makes Start pick a new port and try again.
// TestCutMidFullSync cuts the replication link part-way through the RDB and
// checks that the replica recovers with a new full sync.
func TestCutMidFullSync(t *testing.T) {
	t.Parallel()
	master := Start(t)
	master.Do(t, "DEBUG", "POPULATE", 20000, "key", 100)
	p := NewFaultProxy(t, master.Addr())
	p.CutAfter(100_000)
	host, port := p.HostPort()
	replica := Start(t, "--replicaof", host, port)

	Eventually(t, 8*time.Second, func() error { return SameDigest(master, replica) })
	if p.Accepted() < 2 {
		t.Fatalf("Accepted = %d, want a reconnect after the cut", p.Accepted())
	}
	if n := master.InfoInt(t, "sync_full"); n < 2 {
		t.Fatalf("sync_full = %d, want at least 2", n)
	}
}

// TestStartSentinel: a Sentinel runs from a config file in its own
// directory, watches the master it is given, and leaves nothing in the
// working directory.
func TestStartSentinel(t *testing.T) {
	master := Start(t)
	h, p := master.HostPort()
	s := StartSentinel(t, fmt.Sprintf("sentinel monitor mymaster %s %s 1", h, p))
	if _, err := os.Stat(filepath.Join(s.Dir, "sentinel.conf")); err != nil {
		t.Errorf("sentinel config: %v", err)
	}
	if _, err := os.Stat("sentinel.conf"); err == nil {
		t.Errorf("a sentinel.conf was written to the working directory")
	}
	got, err := s.Client().Do(t.Context(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster").StringSlice()
	if err != nil || len(got) != 2 || got[1] != p {
		t.Fatalf("SENTINEL GET-MASTER-ADDR-BY-NAME = %v, %v; want port %s", got, err, p)
	}
}

func TestStartCluster(t *testing.T) {
	c := StartCluster(t, 3, 1)
	if len(c.Nodes) != 6 {
		t.Fatalf("%d nodes, want 6", len(c.Nodes))
	}
	ctx := ctxTimeout(t, 30*time.Second)
	for i := range 300 {
		if err := c.Client().Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET through the cluster client: %v", err)
		}
	}
	seen := map[*Server]bool{}
	for _, slot := range []int{0, 8000, 16383} {
		m, rs := c.Shard(t, slot)
		if len(rs) != 1 {
			t.Fatalf("slot %d: master %s has %d replicas, want 1", slot, m.Addr(), len(rs))
		}
		seen[m] = true
		Eventually(t, 30*time.Second, func() error { return SameDigest(m, rs[0]) })
		if n, _ := m.Do(t, "DBSIZE").(int64); n == 0 {
			t.Fatalf("slot %d: master %s holds no keys", slot, m.Addr())
		}
	}
	if len(seen) != 3 {
		t.Fatalf("slots 0, 8000 and 16383 are served by %d masters, want 3", len(seen))
	}
}
