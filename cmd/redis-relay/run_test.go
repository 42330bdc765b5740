package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

func relayClient(t *testing.T, addr, password string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr: addr, Password: password, Protocol: 2, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRunWithConfigFile runs `redis-relay run --config` in-process in front
// of a real master: the relay links up, serves metrics, logs the ignored
// directive, and CONFIG REWRITE edits the file it was started from.
func TestRunWithConfigFile(t *testing.T) {
	master := redistest.Start(t)
	master.Do(t, "SET", "k", "v")
	host, mport := master.HostPort()
	port, metricsPort := redistest.FreePort(t), redistest.FreePort(t)
	conf := writeTemp(t, "relay.conf", fmt.Sprintf(`# relay under test
replicaof %s %s
port %d
dir %q
metrics-addr 127.0.0.1:%d

# Redis's, kept for compatibility
repl-ping-replica-period 5
repl-timeout 60
`, host, mport, port, t.TempDir(), metricsPort))

	ctx, cancel := context.WithCancel(context.Background())
	app := newApp()
	var stdout, stderr syncBuffer
	app.Writer, app.ErrWriter = &stdout, &stderr
	done := make(chan error, 1)
	go func() {
		done <- app.RunContext(ctx, []string{"redis-relay", "run", "--config", conf, "--segment-size", "1mb", "--repl-timeout", "33"})
	}()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			return fmt.Errorf("run did not return 30 s after its context ended")
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("relay log:\n%s", stderr.String())
		}
	})

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	client := relayClient(t, addr, "")
	redistest.Eventually(t, 20*time.Second, func() error {
		info, err := client.Info(context.Background(), "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return fmt.Errorf("link not up yet:\n%s", info)
		}
		return nil
	})

	redistest.Eventually(t, 10*time.Second, func() error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if !strings.Contains(string(body), "redis_relay_upstream_link_up 1") {
			return fmt.Errorf("metrics do not show the link up")
		}
		return nil
	})

	log := stderr.String()
	if !strings.Contains(log, "directive accepted but ignored") || !strings.Contains(log, "directive=repl-ping-replica-period") {
		t.Errorf("no log line for the ignored directive:\n%s", log)
	}
	if strings.Contains(log, "directive=repl-diskless-sync-delay") {
		t.Errorf("a directive left at its default was reported as ignored:\n%s", log)
	}

	// CONFIG REWRITE persists the running settings, so the flag that
	// overrides the file's repl-timeout ends up in the file. (CONFIG SET
	// would do as well, but it currently races in proxy with readers of
	// Config.DataDir.)
	if err := client.Do(context.Background(), "CONFIG", "REWRITE").Err(); err != nil {
		t.Fatalf("CONFIG REWRITE: %v", err)
	}
	text := readFile(t, conf)
	for _, want := range []string{"# relay under test\n", "# Redis's, kept for compatibility\n", "\nrepl-timeout 33\n", fmt.Sprintf("\nport %d\n", port), "\nrepl-ping-replica-period 5\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("rewritten file lacks %q:\n%s", want, text)
		}
	}
	s := defaultSettings()
	if err := parseConfig(conf, []byte(text), &s); err != nil {
		t.Fatalf("rewritten file does not load: %v\n%s", err, text)
	}
	if s.ReplTimeout != 33*time.Second {
		t.Errorf("repl-timeout after rewrite = %v", s.ReplTimeout)
	}

	if err := stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
}

func TestRunStartupErrors(t *testing.T) {
	busy := redistest.Start(t) // a port that is taken
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"listen", []string{"--bind", "127.0.0.1", "--port", fmt.Sprint(busy.Port)}, "address already in use"},
		{"metrics listen", []string{"--port", fmt.Sprint(redistest.FreePort(t)), "--metrics-addr", busy.Addr()}, "listen for metrics"},
		{"no listener", []string{"--port", "0"}, "nowhere to listen"},
		{"tls without a certificate", []string{"--port", fmt.Sprint(redistest.FreePort(t)), "--tls-port", fmt.Sprint(redistest.FreePort(t))}, "tls-port needs tls-cert-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"run", "--dir", t.TempDir(), "--log-level", "error"}, tt.args...)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			_, _, err := runApp(ctx, args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}
