package main

import (
	"context"
	"log/slog"
	"net"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/proxy"
)

func TestMain(m *testing.M) {
	redis.SetLogger(quietRedisLogger{}) // as main does
	os.Exit(m.Run())
}

// testLogger writes to the test's output, which is shown only when the test
// fails.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// testRelay is a relay run in-process on 127.0.0.1:0 for the length of a
// test.
type testRelay struct {
	*proxy.Relay
	addr string
}

// startRelay runs proxy.New(cfg) on a loopback port; DataDir and Logger
// default to a temp dir and the test's log. It is stopped at cleanup.
func startRelay(t *testing.T, cfg proxy.Config) *testRelay {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	relay, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		relay.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay.Run: %v", err)
		}
		relay.Close()
	})
	return &testRelay{Relay: relay, addr: ln.Addr().String()}
}
