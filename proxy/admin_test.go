package proxy

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

func TestConfigGetSetRewrite(t *testing.T) {
	var mu sync.Mutex
	var rewritten map[string]string
	master, relay := syncedRelay(t, func(c *Config) {
		c.Rewrite = func(s map[string]string) error {
			mu.Lock()
			defer mu.Unlock()
			rewritten = s
			return nil
		}
	})
	ctx := t.Context()
	cl := relay.Client()
	got, err := cl.ConfigGet(ctx, "repl-*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if got["repl-timeout"] != "10" || got["repl-backlog-size"] == "" {
		t.Fatalf("CONFIG GET repl-* = %v", got)
	}
	if err := cl.ConfigSet(ctx, "repl-timeout", "7").Err(); err != nil {
		t.Fatal(err)
	}
	if relay.Relay.cfg.Timeout() != 7*time.Second {
		t.Fatalf("repl-timeout not applied: %v", relay.Relay.cfg.Timeout())
	}
	if err := cl.ConfigSet(ctx, "retain-size", "2mb").Err(); err != nil {
		t.Fatal(err)
	}
	if v := cl.ConfigGet(ctx, "retain-size").Val()["retain-size"]; v != "2097152" {
		t.Fatalf("retain-size = %q", v)
	}
	for _, bad := range [][]string{{"repl-timeout", "abc"}, {"no-such-thing", "1"}, {"dir", "/tmp"}, {"empty-master-guard", "maybe"}} {
		if err := cl.ConfigSet(ctx, bad[0], bad[1]).Err(); err == nil {
			t.Errorf("CONFIG SET %s %s succeeded", bad[0], bad[1])
		}
	}
	if err := cl.ConfigRewrite(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	h, p := master.HostPort()
	if rewritten["repl-timeout"] != "7" || rewritten["replicaof"] != h+" "+p {
		t.Errorf("rewrite got %v", rewritten)
	}
	mu.Unlock()
}

func TestReplicaofSwitchesUpstream(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 3000)
	other := replicaOf(t, master.HostPort) // shares the master's history
	inSync(t, 10*time.Second, master, other)
	relay := startRelay(t, master.Addr())
	replica := replicaOf(t, relay.HostPort)
	inSync(t, 10*time.Second, master, replica)
	ctx := t.Context()
	cl := relay.Client()

	if err := cl.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err == nil || !strings.Contains(err.Error(), "cannot become a master") {
		t.Fatalf("REPLICAOF NO ONE: %v", err)
	}
	mh, mp := master.HostPort()
	if s, _ := cl.Do(ctx, "REPLICAOF", mh, mp).Text(); s != "OK Already connected to specified master" {
		t.Fatalf("REPLICAOF same master: %q", s)
	}
	oh, op := other.HostPort()
	if err := cl.Do(ctx, "REPLICAOF", oh, op).Err(); err != nil {
		t.Fatal(err)
	}
	// The other server shares the history: the relay continues partially.
	redistest.Eventually(t, 10*time.Second, func() error {
		if n := other.InfoInt(t, "sync_partial_ok"); n != 1 {
			return fmt.Errorf("other sync_partial_ok = %d", n)
		}
		return nil
	})
	if n := other.InfoInt(t, "sync_full"); n != 0 {
		t.Errorf("other served %d full syncs", n)
	}
	writeKeys(t, master, 0, 200)
	inSync(t, 10*time.Second, master, other, replica)
	if n := relay.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("relay served %d full syncs, want 1", n)
	}
}

func TestSentinelStyleTransactionAndClients(t *testing.T) {
	_, relay := syncedRelay(t)
	ctx := t.Context()
	cl := relay.Client()
	id, err := cl.ClientID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	other := redis.NewClient(&redis.Options{Addr: relay.Addr(), Protocol: 2, DisableIdentity: true})
	defer other.Close()
	if err := other.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	list, err := cl.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(list, "\n"); n < 2 || !strings.Contains(list, fmt.Sprintf("id=%d ", id)) {
		t.Fatalf("CLIENT LIST:\n%s", list)
	}
	h, p, _ := strings.Cut(relay.Status().MasterAddr, ":")
	// What Sentinel sends to a replica it reconfigures.
	pipe := cl.TxPipeline()
	pipe.Do(ctx, "SLAVEOF", h, p)
	pipe.Do(ctx, "CLIENT", "KILL", "TYPE", "normal")
	pipe.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub")
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		t.Fatalf("transaction: %v", err)
	}
	if n, _ := cmds[1].(*redis.Cmd).Int64(); n < 1 {
		t.Errorf("CLIENT KILL TYPE normal killed %d clients", n)
	}
	// The issuing client survives (SKIPME yes), the other one does not.
	if err := cl.Ping(ctx).Err(); err != nil {
		t.Errorf("own connection killed: %v", err)
	}
}

func TestShutdownCommand(t *testing.T) {
	_, relay := syncedRelay(t)
	relay.Client().Do(t.Context(), "SHUTDOWN", "NOSAVE")
	select {
	case err := <-relay.done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		relay.done <- nil // for Stop
	case <-time.After(10 * time.Second):
		t.Fatal("relay still running after SHUTDOWN")
	}
}

// TestReplicaofChecksAsTheConfigFile: REPLICAOF refuses what a replicaof
// line in the config file refuses (one check for both), keeping Redis's
// own answer to a bad port.
func TestReplicaofChecksAsTheConfigFile(t *testing.T) {
	relay := startRelay(t, "")
	ctx := t.Context()
	cl := relay.Client()
	for _, tt := range []struct{ host, port, want string }{
		{"bad host", "6379", "is not a host name or address"},
		{"127.0.0.1", "0", "Invalid master port"},
		{"127.0.0.1", "65536", "Invalid master port"},
		{"127.0.0.1", "x", "Invalid master port"},
	} {
		err := cl.Do(ctx, "REPLICAOF", tt.host, tt.port).Err()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("REPLICAOF %q %q: %v, want an error with %q", tt.host, tt.port, err, tt.want)
		}
	}
	if addr, _ := relay.up.MasterAddr(); addr != "" {
		t.Errorf("after refused REPLICAOFs the relay follows %q", addr)
	}
}
