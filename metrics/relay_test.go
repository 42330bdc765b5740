package metrics

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/proxy"
)

// TestMetricsMatchInfo runs a real master, the relay and a replica, then
// scrapes /metrics and checks the figures against the relay's INFO.
func TestMetricsMatchInfo(t *testing.T) {
	master := redistest.Start(t)
	master.Do(t, "SET", "a", "1")
	relay, port := runRelay(t, proxy.Config{MasterAddr: master.Addr(), DataDir: t.TempDir()})
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", port)
	redistest.Eventually(t, 20*time.Second, func() error { return redistest.SameDigest(master, replica) })
	for i := range 100 {
		master.Do(t, "SET", fmt.Sprint("k", i), i)
	}
	redistest.Eventually(t, 20*time.Second, func() error { return redistest.SameDigest(master, replica) })

	cl := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + port, Protocol: 2, DisableIdentity: true})
	defer cl.Close()
	srv := httptest.NewServer(Handler(NewRegistry(relay)))
	defer srv.Close()

	_, rport := replica.HostPort()
	label := `replica="127.0.0.1:` + rport + `"`
	redistest.Eventually(t, 10*time.Second, func() error {
		info, err := cl.Info(t.Context(), "everything").Result()
		if err != nil {
			return err
		}
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		text := string(body)
		for metric, field := range map[string]string{
			"redis_relay_master_repl_offset":             "master_repl_offset",
			"redis_relay_full_syncs_served_total":        "sync_full",
			"redis_relay_partial_syncs_served_total":     "sync_partial_ok",
			"redis_relay_connected_replicas":             "connected_slaves",
			"redis_relay_log_first_offset":               "log_first_offset",
			"redis_relay_snapshot_offset":                "snapshot_offset",
			"redis_relay_snapshot_size_bytes":            "snapshot_bytes",
			"redis_relay_upstream_full_syncs_total":      "upstream_full_syncs",
			"redis_relay_replica_ack_offset{" + label:    "",
			"redis_relay_upstream_link_up":               "",
			"redis_relay_commands_relayed_total{command": "",
		} {
			got, ok := sample(text, metric)
			if !ok {
				return fmt.Errorf("no sample %s in /metrics", metric)
			}
			if field == "" {
				continue
			}
			want, _ := strconv.ParseFloat(redistest.InfoField(info, field), 64)
			if got != want {
				return fmt.Errorf("%s = %v, INFO %s = %v", metric, got, field, want)
			}
		}
		if v, _ := sample(text, "redis_relay_upstream_link_up"); v != 1 {
			return fmt.Errorf("upstream_link_up = %v", v)
		}
		if v, _ := sample(text, "redis_relay_replica_ack_offset{"+label); v != mustFloat(redistest.InfoField(info, "master_repl_offset")) {
			return fmt.Errorf("replica ack offset %v, relay offset %s", v, redistest.InfoField(info, "master_repl_offset"))
		}
		// The replica's full sync came from the relay: bytes sent equal
		// the snapshot's size, in /metrics as on its slave0 line.
		slave := map[string]string{}
		for _, part := range strings.Split(redistest.InfoField(info, "slave0"), ",") {
			if k, v, ok := strings.Cut(part, "="); ok {
				slave[k] = v
			}
		}
		sent, _ := sample(text, "redis_relay_replica_sync_bytes_sent{"+label)
		size, _ := sample(text, "redis_relay_replica_sync_bytes_expected{"+label)
		if sent <= 0 || sent != mustFloat(slave["rdb_sent_bytes"]) || size != mustFloat(slave["rdb_size_bytes"]) || sent != mustFloat(redistest.InfoField(info, "snapshot_bytes")) {
			return fmt.Errorf("replica sync bytes sent %v of %v; slave0 %v; snapshot_bytes %s", sent, size, slave, redistest.InfoField(info, "snapshot_bytes"))
		}
		if v, _ := sample(text, `redis_relay_commands_relayed_total{command="set"}`); v < 100 {
			return fmt.Errorf("set commands relayed = %v, want >= 100", v)
		}
		return nil
	})
}

// sample finds the first exposition line starting with prefix and returns
// its value.
func sample(text, prefix string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

func mustFloat(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	return v
}

// runRelay runs a relay with cfg on a loopback port for the test and
// returns it with the port.
func runRelay(t *testing.T, cfg proxy.Config) (*proxy.Relay, string) {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	relay, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
		relay.Close()
	})
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return relay, port
}
