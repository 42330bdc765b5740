package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// TestReplicaNotAnnounced: with replica-announced at its default (no),
// Sentinel keeps the relay out of SENTINEL REPLICAS, so a client reading
// from replicas through Sentinel (go-redis ReplicaOnly) never lands on
// it, and a Sentinel failover still re-points it, with a partial resync.
// A data command sent to the relay anyway gets an error naming the
// master.
func TestReplicaNotAnnounced(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	populate(t, master, 0, 2000)
	spare := replicaOf(t, master.HostPort, "--replica-priority", "100")
	relay := startRelay(t, master.Addr())
	leaf := replicaOf(t, relay.HostPort)
	inSync(t, 30*time.Second, master, spare, leaf)
	if got := relay.InfoField(t, "replica_announced"); got != "0" {
		t.Fatalf("INFO replica_announced:%s, want 0 by default", got)
	}
	sentinels := startSentinels(t, master, time.Second, relay, 2)
	var addrs []string
	for _, s := range sentinels {
		addrs = append(addrs, s.Addr())
	}

	// The relay's own answer to a read, for whatever reaches it.
	err := relay.Client().Get(t.Context(), "db0:str:1").Err()
	if want := "ERR this is redis-relay, a replication relay holding no data: 'get' is not served here; read from the master at " + master.Addr(); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("GET on the relay: %v, want an error starting %q", err, want)
	}

	// 20 clients (each dials a replica Sentinel lists) read 10 keys each.
	errs := 0
	for c := range 20 {
		cl := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "mymaster", SentinelAddrs: addrs, ReplicaOnly: true, MaxRetries: -1})
		for i := range 10 {
			if err := cl.Get(t.Context(), fmt.Sprintf("db0:str:%d", c*10+i)).Err(); err != nil {
				errs++
				t.Logf("read %d: %v", c*10+i, err)
			}
		}
		cl.Close()
	}
	if errs > 0 {
		t.Errorf("go-redis ReplicaOnly through Sentinel: %d errors in 200 reads, want 0", errs)
	}
	readThroughIoredis(t, addrs)

	// A failover still reaches the hidden relay: it follows the promoted
	// replica and continues where it was.
	upstreamFull := relay.InfoInt(t, "upstream_full_syncs")
	master.Kill()
	waitFollowsPromoted(t, spare, relay)
	writeKeys(t, spare, 0, 200)
	inSync(t, 30*time.Second, spare, leaf)
	if n := relay.InfoInt(t, "upstream_full_syncs"); n != upstreamFull {
		t.Errorf("relay took %d full syncs from the promoted replica, want a partial resync", n-upstreamFull)
	}
	if n := spare.InfoInt(t, "sync_partial_ok"); n < 1 {
		t.Errorf("promoted replica sync_partial_ok = %d, want 1 (the relay's)", n)
	}
	if n := spare.InfoInt(t, "sync_full"); n != 0 {
		t.Errorf("promoted replica served %d full syncs", n)
	}
	if got := relay.InfoField(t, "replica_announced"); got != "0" {
		t.Errorf("after the failover INFO replica_announced:%s", got)
	}
}

// TestReplicaAnnounceIP: replica-announce-ip is sent as REPLCONF
// ip-address, so the master lists the relay under that address, and so
// does Sentinel (replica-announced yes, which lists it at all).
func TestReplicaAnnounceIP(t *testing.T) {
	master := redistest.Start(t)
	relay := startRelay(t, master.Addr(), func(c *Config) {
		c.AnnounceIP = "10.1.2.3"
		c.ReplicaAnnounced = true
	})
	_, rp := relay.HostPort()
	want := "ip=10.1.2.3,port=" + rp + ","
	redistest.Eventually(t, 30*time.Second, func() error {
		if line := master.Info(t, "replication")["slave0"]; !strings.HasPrefix(line, want) {
			return fmt.Errorf("master lists slave0:%s, want %s...", line, want)
		}
		return nil
	})
	if got := relay.InfoField(t, "replica_announced"); got != "1" {
		t.Errorf("INFO replica_announced:%s, want 1", got)
	}
	mh, mp := master.HostPort()
	s := redistest.StartSentinel(t, fmt.Sprintf("sentinel monitor mymaster %s %s 1", mh, mp))
	redistest.Eventually(t, 30*time.Second, func() error {
		reps, err := s.Client().Do(t.Context(), "SENTINEL", "REPLICAS", "mymaster").Slice()
		if err != nil {
			return err
		}
		if text := fmt.Sprint(reps); !strings.Contains(text, "name 10.1.2.3:"+rp+" ip 10.1.2.3 port "+rp) {
			return fmt.Errorf("SENTINEL REPLICAS: %s", text)
		}
		return nil
	})
	// The announced address is only a name: the link itself is up.
	if st := relay.Status().LinkState; st != LinkConnected {
		t.Errorf("relay link %s", st)
	}
}

// ioredisReads is a node script: 20 ioredis clients, each connected
// through Sentinel to a replica (role: 'slave'), read 10 keys each; it
// prints the number of reads and of errors as JSON.
const ioredisReads = `
const Redis = require('ioredis');
const sentinels = process.argv.slice(2).map(a => {
  const i = a.lastIndexOf(':');
  return { host: a.slice(0, i), port: Number(a.slice(i + 1)) };
});
(async () => {
  let reads = 0, errors = 0;
  for (let c = 0; c < 20; c++) {
    const r = new Redis({ sentinels, name: 'mymaster', role: 'slave', maxRetriesPerRequest: 0 });
    for (let i = 0; i < 10; i++) {
      reads++;
      try { await r.get('db0:str:' + (c * 10 + i)); } catch (e) { errors++; console.error(e.message); }
    }
    r.disconnect();
  }
  console.log(JSON.stringify({ reads, errors }));
})();
`

// readThroughIoredis runs ioredisReads against the Sentinels (installing
// ioredis from npm into a temporary directory) and fails the test on any
// error. Without node and npm it skips, saying so.
func readThroughIoredis(t *testing.T, sentinels []string) {
	t.Run("ioredis", func(t *testing.T) {
		node, nerr := exec.LookPath("node")
		npm, merr := exec.LookPath("npm")
		if nerr != nil || merr != nil {
			t.Skip("node and npm are needed to read through ioredis (apt-get install nodejs npm); not found")
		}
		dir := t.TempDir()
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		install := exec.CommandContext(ctx, npm, "install", "--prefix", dir, "--no-audit", "--no-fund", "--silent", "ioredis@5")
		if out, err := install.CombinedOutput(); err != nil {
			t.Fatalf("npm install ioredis: %v\n%s", err, out)
		}
		script := filepath.Join(dir, "reads.js")
		if err := os.WriteFile(script, []byte(ioredisReads), 0o600); err != nil {
			t.Fatal(err)
		}
		run := exec.CommandContext(ctx, node, append([]string{script}, sentinels...)...)
		run.Dir = dir
		var stderr strings.Builder
		run.Stderr = &stderr
		out, err := run.Output()
		if err != nil {
			t.Fatalf("node: %v\n%s", err, stderr.String())
		}
		var got struct{ Reads, Errors int }
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("node printed %q: %v\n%s", out, err, stderr.String())
		}
		if got.Reads != 200 || got.Errors != 0 {
			t.Errorf("ioredis role 'slave' through Sentinel: %d errors in %d reads, want 0 in 200\n%s", got.Errors, got.Reads, stderr.String())
		}
	})
}
