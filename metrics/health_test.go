package metrics

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/proxy"
)

// serveMetrics runs ServeListener for src on a loopback port until the
// test ends and returns its base URL.
func serveMetrics(t *testing.T, src Source) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ServeListener(ctx, ln, NewRegistry(src), src, slog.New(slog.NewTextHandler(t.Output(), nil)))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// TestHealthAgainstRelay follows a real relay through its states: no
// history (not ready), synced (ready), master back empty with the guard
// holding (not ready, still live), guard released (ready).
func TestHealthAgainstRelay(t *testing.T) {
	master := redistest.Start(t)
	master.Do(t, "SET", "k", "v")
	relay, port := runRelay(t, proxy.Config{DataDir: t.TempDir()})
	base := serveMetrics(t, relay)
	cl := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + port, Protocol: 2, DisableIdentity: true})
	defer cl.Close()

	expect := func(path string, code int, bodyHas string) func() error {
		return func() error {
			got, body := httpGet(t, base+path)
			if got != code || !strings.Contains(body, bodyHas) {
				return fmt.Errorf("GET %s = %d %q, want %d with %q", path, got, strings.TrimSpace(body), code, bodyHas)
			}
			return nil
		}
	}
	readyMetric := func(want float64) func() error {
		return func() error {
			_, body := httpGet(t, base+"/metrics")
			if v, ok := sample(body, "redis_relay_ready "); !ok || v != want {
				return fmt.Errorf("redis_relay_ready = %v (found %v), want %v", v, ok, want)
			}
			return nil
		}
	}
	check := func(what string, fs ...func() error) {
		t.Helper()
		for _, f := range fs {
			if err := f(); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
	}

	check("no master yet", expect("/livez", 200, "ok"), expect("/healthz", 200, "ok"),
		expect("/readyz", 503, "no history yet"), readyMetric(0))

	host, port := master.HostPort()
	if err := cl.Do(t.Context(), "REPLICAOF", host, port).Err(); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 20*time.Second, expect("/readyz", 200, "ready"))
	check("synced", readyMetric(1), expect("/livez", 200, "ok"))

	// Without persistence the master comes back empty under a new replid:
	// the guard holds the new history back, and the relay is not ready.
	master.Restart(t)
	redistest.Eventually(t, 30*time.Second, expect("/readyz", 503, "empty-master guard"))
	check("guard holding", readyMetric(0), expect("/livez", 200, "ok"))

	if err := cl.Do(t.Context(), "RELAY", "GUARD", "RELEASE").Err(); err != nil {
		t.Fatalf("RELAY GUARD RELEASE: %v", err)
	}
	redistest.Eventually(t, 20*time.Second, expect("/readyz", 200, "ready"))
	check("guard released", readyMetric(1))
}

// stuckSource never returns its status, as a relay deadlocked on its own
// locks would not.
type stuckSource struct{ release chan struct{} }

func (s stuckSource) Status() proxy.Status          { <-s.release; return proxy.Status{} }
func (s stuckSource) Replicas() []proxy.ReplicaInfo { return nil }

func TestLivenessFailsWhenStatusHangs(t *testing.T) {
	src := stuckSource{release: make(chan struct{})}
	defer close(src.release) // frees the probes' goroutines; registered before the server's cleanup
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	healthHandlers(mux, src)
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()
	code, body := httpGet(t, "http://"+ln.Addr().String()+"/livez")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "not readable") {
		t.Fatalf("/livez with a stuck relay = %d %q, want 503", code, body)
	}
}

// TestEndpointsDocumented keeps docs/metrics.md's endpoint table and the
// server's paths in step, and checks that each path answers.
func TestEndpointsDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "| `/"); ok {
			p, _, _ := strings.Cut(rest, "`")
			documented = append(documented, "/"+p)
		}
	}
	if !slices.Equal(slices.Sorted(slices.Values(documented)), slices.Sorted(slices.Values(endpoints))) {
		t.Errorf("docs/metrics.md documents %v; the server answers %v", documented, endpoints)
	}
	base := serveMetrics(t, busyRelay())
	for _, p := range endpoints {
		if code, body := httpGet(t, base+p); code != http.StatusOK {
			t.Errorf("GET %s = %d %q, want 200 (busyRelay is ready)", p, code, body)
		}
	}
	if code, _ := httpGet(t, base+"/nothing"); code != http.StatusNotFound {
		t.Errorf("GET /nothing = %d, want 404", code)
	}
}
