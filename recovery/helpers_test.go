package recovery

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redisproc"
	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/proxy"
)

// testRelay is a relay run in this process through proxy's API, for its
// data dir.
type testRelay struct {
	*proxy.Relay
	t      testing.TB
	cfg    proxy.Config
	port   int
	cancel context.CancelFunc
	done   chan error
	client *redis.Client
}

// startRelay runs a relay of master with a data dir of its own.
func startRelay(t testing.TB, master string, tweak ...func(*proxy.Config)) *testRelay {
	t.Helper()
	cfg := proxy.Config{
		MasterAddr:  master,
		DataDir:     t.TempDir(),
		ReplTimeout: 10 * time.Second,
		Logger:      slog.New(slog.NewTextHandler(t.Output(), nil)),
	}
	for _, f := range tweak {
		f(&cfg)
	}
	tr := &testRelay{t: t, cfg: cfg}
	tr.start("127.0.0.1:0")
	t.Cleanup(tr.Stop)
	return tr
}

func (tr *testRelay) start(addr string) {
	tr.t.Helper()
	relay, err := proxy.New(tr.cfg)
	if err != nil {
		tr.t.Fatalf("start relay: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		relay.Close()
		tr.t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr.Relay, tr.port, tr.cancel, tr.done = relay, ln.Addr().(*net.TCPAddr).Port, cancel, make(chan error, 1)
	go func() { tr.done <- relay.Run(ctx, ln) }()
}

// Stop shuts the relay down; its data dir stays. Safe to call twice.
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
	tr.start(tr.Addr())
}

func (tr *testRelay) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(tr.port)) }

func (tr *testRelay) HostPort() (string, string) { return "127.0.0.1", strconv.Itoa(tr.port) }

func (tr *testRelay) Client() *redis.Client {
	if tr.client == nil {
		tr.client = redis.NewClient(&redis.Options{Addr: tr.Addr(), Protocol: 2, DisableIdentity: true})
	}
	return tr.client
}

// InfoInt is an integer field of the relay's INFO.
func (tr *testRelay) InfoInt(t testing.TB, field string) int64 {
	t.Helper()
	text, err := tr.Client().Info(t.Context(), "everything").Result()
	if err != nil {
		t.Fatalf("relay INFO: %v", err)
	}
	n, err := strconv.ParseInt(redisproc.ParseInfo(text)[field], 10, 64)
	if err != nil {
		t.Fatalf("relay INFO %s: %v", field, err)
	}
	return n
}

// onDisk waits until the relay's data dir holds the master's whole
// stream: the relay ACKs an offset to its master only once its log (and
// the log's time index) is synced through it. The relay is the master's
// only replica.
func onDisk(t testing.TB, master *redistest.Server, relay *testRelay) {
	t.Helper()
	redistest.Eventually(t, 20*time.Second, func() error {
		info := master.Info(t, "replication")
		want := info["master_repl_offset"]
		for part := range strings.SplitSeq(info["slave0"], ",") {
			if v, ok := strings.CutPrefix(part, "offset="); ok && v == want {
				return nil
			}
		}
		return fmt.Errorf("master at %s, its replica: %s", want, info["slave0"])
	})
}

// writeKeys writes n keys of several types with replicated commands.
func writeKeys(t testing.TB, s *redistest.Server, round, n int) {
	t.Helper()
	pipe := s.Client().Pipeline()
	for i := range n {
		k := fmt.Sprintf("r%d:%d", round, i)
		pipe.Set(t.Context(), k+":s", i, 0)
		pipe.RPush(t.Context(), k+":list", "a", i)
		pipe.HSet(t.Context(), k+":hash", "f", i)
		pipe.ZAdd(t.Context(), k+":zset", redis.Z{Score: float64(i), Member: "m"})
		if i%10 == 0 {
			pipe.Set(t.Context(), k+":ttl", i, time.Hour)
		}
	}
	if _, err := pipe.Exec(t.Context()); err != nil {
		t.Fatalf("write keys: %v", err)
	}
}
