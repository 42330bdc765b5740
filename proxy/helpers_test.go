package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// testRelay is a Relay serving on a loopback port for one test.
type testRelay struct {
	*Relay
	t      testing.TB
	cfg    Config
	ln     net.Listener
	port   int
	cancel context.CancelFunc
	done   chan error
	client *redis.Client
}

// testRingSize is the memory ring tests run relays with unless they set
// one: far below repl-backlog-size's default, so that a test's load
// reaches the log's disk tier, and wraps the ring, within seconds.
const testRingSize = 1 << 20

// startRelay runs a relay in front of master (host:port) with a fresh data
// dir, unless tweak sets one.
func startRelay(t testing.TB, master string, tweak ...func(*Config)) *testRelay {
	t.Helper()
	cfg := Config{
		MasterAddr:  master,
		DataDir:     t.TempDir(),
		RingSize:    testRingSize,
		ReplTimeout: 10 * time.Second,
		Logger:      slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	for _, f := range tweak {
		f(&cfg)
	}
	tr := &testRelay{t: t, cfg: cfg}
	tr.start(0)
	t.Cleanup(tr.Stop)
	return tr
}

func (tr *testRelay) start(port int) {
	tr.t.Helper()
	relay, err := New(tr.cfg)
	if err != nil {
		tr.t.Fatalf("start relay: %v", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		relay.Close()
		tr.t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr.Relay, tr.ln, tr.port, tr.cancel, tr.done = relay, ln, listenerPort(ln), cancel, make(chan error, 1)
	go func() { tr.done <- relay.Run(ctx, ln) }()
}

// Stop shuts the relay down and releases its data dir. Safe to call twice.
func (tr *testRelay) Stop() {
	if tr.cancel == nil {
		return
	}
	tr.cancel()
	if err := <-tr.done; err != nil {
		tr.t.Errorf("relay run: %v", err)
	}
	tr.Relay.Close()
	tr.cancel = nil
	if tr.client != nil {
		tr.client.Close()
		tr.client = nil
	}
}

// Restart stops the relay and starts a new one on the same port and data dir.
func (tr *testRelay) Restart() {
	tr.Stop()
	tr.start(tr.port)
}

func (tr *testRelay) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(tr.port)) }

func (tr *testRelay) HostPort() (string, string) { return "127.0.0.1", strconv.Itoa(tr.port) }

func (tr *testRelay) Client() *redis.Client {
	if tr.client == nil {
		tr.client = redis.NewClient(&redis.Options{Addr: tr.Addr(), Protocol: 2, DisableIdentity: true})
	}
	return tr.client
}

// InfoField reads one field of the relay's INFO through a real client.
func (tr *testRelay) InfoField(t testing.TB, field string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	text, err := tr.Client().Info(ctx, "everything").Result()
	if err != nil {
		t.Fatalf("relay INFO: %v", err)
	}
	if v, ok := redistest.ParseInfo(text)[field]; ok {
		return v
	}
	t.Fatalf("relay INFO has no field %q", field)
	return ""
}

func (tr *testRelay) InfoInt(t testing.TB, field string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(tr.InfoField(t, field), 10, 64)
	if err != nil {
		t.Fatalf("relay INFO %s: %v", field, err)
	}
	return n
}

// replicaOf starts a redis-server replicating from addr.
func replicaOf(t testing.TB, hostport func() (string, string), args ...string) *redistest.Server {
	t.Helper()
	h, p := hostport()
	return redistest.Start(t, append([]string{"--replicaof", h, p}, args...)...)
}

// populate writes n keys of every type into db before replicas attach:
// strings via DEBUG POPULATE (which is not replicated, so only for a
// dataset that reaches replicas through a snapshot) plus writeKeys.
func populate(t testing.TB, s *redistest.Server, db, n int) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), DB: db})
	defer c.Close()
	if err := c.Do(context.Background(), "DEBUG", "POPULATE", n, fmt.Sprintf("db%d:str", db), 32).Err(); err != nil {
		t.Fatalf("populate: %v", err)
	}
	writeKeys(t, s, db, n/20)
}

// writeKeys writes n groups of keys of every type (string, list, set, hash,
// sorted set, some streams and expiring keys) into db with replicated
// commands.
func writeKeys(t testing.TB, s *redistest.Server, db, n int) {
	t.Helper()
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), DB: db})
	defer c.Close()
	pipe := c.Pipeline()
	for i := range n {
		pipe.Set(ctx, fmt.Sprintf("db%d:%d:s", db, i), i, 0)
		k := fmt.Sprintf("db%d:%d", db, i)
		pipe.RPush(ctx, k+":list", "a", i, "c")
		pipe.SAdd(ctx, k+":set", i, i+1, "x")
		pipe.HSet(ctx, k+":hash", "f1", i, "f2", "v")
		pipe.ZAdd(ctx, k+":zset", redis.Z{Score: float64(i), Member: "m"}, redis.Z{Score: 1.5, Member: "n"})
		if i%10 == 0 {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: k + ":stream", Values: []any{"f", i}})
			pipe.Set(ctx, k+":ttl", i, time.Hour)
		}
		if i%500 == 499 {
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatalf("write keys: %v", err)
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("write keys: %v", err)
	}
}

// loadGen writes to a master until stopped: pipelined writes of several
// types, MULTI/EXEC blocks, expiring keys and deletes, in two DBs.
type loadGen struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error
	ops    int64
}

func startLoad(t testing.TB, s *redistest.Server) *loadGen {
	ctx, cancel := context.WithCancel(context.Background())
	g := &loadGen{cancel: cancel}
	for w := range 2 {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			c := redis.NewClient(&redis.Options{Addr: s.Addr(), DB: w * 3})
			defer c.Close()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; ctx.Err() == nil; i++ {
				pipe := c.Pipeline()
				for j := range 50 {
					k := fmt.Sprintf("load:%d:%d", w, rng.IntN(2000))
					switch j % 6 {
					case 0:
						pipe.Set(ctx, k, rng.Int64(), 0)
					case 1:
						pipe.Incr(ctx, k+":n")
					case 2:
						pipe.LPush(ctx, k+":l", j)
						pipe.LTrim(ctx, k+":l", 0, 20)
					case 3:
						pipe.HSet(ctx, k+":h", fmt.Sprint(j), i)
					case 4:
						pipe.Set(ctx, k+":exp", i, time.Duration(50+rng.IntN(200))*time.Millisecond)
					case 5:
						pipe.Del(ctx, k)
					}
				}
				if _, err := pipe.Exec(ctx); err != nil && ctx.Err() == nil {
					g.fail(err)
					return
				}
				tx := c.TxPipeline()
				tx.Incr(ctx, "load:tx:a")
				tx.ZAdd(ctx, "load:tx:z", redis.Z{Score: float64(i), Member: fmt.Sprint(i % 100)})
				if _, err := tx.Exec(ctx); err != nil && ctx.Err() == nil {
					g.fail(err)
					return
				}
				g.mu.Lock()
				g.ops += 52
				g.mu.Unlock()
			}
		}()
	}
	return g
}

func (g *loadGen) fail(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err == nil {
		g.err = err
	}
}

// Stop ends the load and fails the test if a write failed.
func (g *loadGen) Stop(t testing.TB) int64 {
	t.Helper()
	g.cancel()
	g.wg.Wait()
	if g.err != nil {
		t.Fatalf("load: %v", g.err)
	}
	return g.ops
}

// inSync waits until every server's digest equals the master's.
func inSync(t testing.TB, timeout time.Duration, master *redistest.Server, replicas ...*redistest.Server) {
	t.Helper()
	all := append([]*redistest.Server{master}, replicas...)
	redistest.Eventually(t, timeout, func() error { return redistest.SameDigest(all...) })
}
