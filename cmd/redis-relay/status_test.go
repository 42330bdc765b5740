package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/proxy"
)

// relayWithReplica starts a master with some keys, a relay in front of it
// and one redis-server replica behind the relay, and waits until the
// replica is online and caught up.
func relayWithReplica(t *testing.T, cfg proxy.Config) (*redistest.Server, *testRelay, *redistest.Server) {
	t.Helper()
	master := redistest.Start(t)
	master.Do(t, "DEBUG", "POPULATE", "1000")
	cfg.MasterAddr = master.Addr()
	relay := startRelay(t, cfg)
	replicaArgs := []string{"--replicaof", "127.0.0.1", strings.Split(relay.addr, ":")[1]}
	if cfg.RequirePass != "" {
		replicaArgs = append(replicaArgs, "--masterauth", cfg.RequirePass)
	}
	replica := redistest.Start(t, replicaArgs...)
	master.Do(t, "SET", "after", "sync")
	redistest.Eventually(t, 30*time.Second, func() error {
		reps := relay.Replicas()
		head := relay.Status().MasterOffset()
		if len(reps) != 1 || reps[0].State != "online" || head <= 0 || reps[0].AckOffset != head {
			return fmt.Errorf("replicas %+v, relay offset %d", reps, head)
		}
		return redistest.SameDigest(master, replica)
	})
	return master, relay, replica
}

func TestStatusAgainstRelay(t *testing.T) {
	master, relay, replica := relayWithReplica(t, proxy.Config{})
	out, _, err := runApp(t.Context(), "status", "--addr", relay.addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"relay      " + relay.addr + " (redis-relay " + proxy.Version,
		"upstream   " + master.Addr() + ", link up (connected), last io ",
		"guard      ok (0 trips so far)",
		"1000 keys",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	// The replica row: its listening port, online, its ACK, and the lag
	// from the relay's offset on the "offset" line. A replica ACKs once a
	// second, so the lag need not be zero.
	var head, ack, lag int64 = -1, -1, -1
	var state string
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "offset ") {
			fmt.Sscan(strings.TrimPrefix(line, "offset "), &head)
		}
		if strings.HasPrefix(line, replica.Addr()+" ") {
			fmt.Sscan(strings.TrimPrefix(line, replica.Addr()), &state, &ack, &lag)
		}
	}
	if head <= 0 || state != "online" || ack <= 0 || lag != head-ack {
		t.Fatalf("relay offset %d, replica %s state %q ack %d lag %d:\n%s", head, replica.Addr(), state, ack, lag, out)
	}
}

func TestStatusPassword(t *testing.T) {
	_, relay, _ := relayWithReplica(t, proxy.Config{RequirePass: "s3cret"})
	_, _, err := runApp(t.Context(), "status", "--addr", relay.addr)
	if err == nil || !strings.Contains(err.Error(), "requires a password: use --password") {
		t.Fatalf("without a password: %v", err)
	}
	_, _, err = runApp(t.Context(), "status", "--addr", relay.addr, "--password", "wrong")
	if err == nil || !strings.Contains(err.Error(), "rejected the password") {
		t.Fatalf("with a wrong password: %v", err)
	}
	t.Setenv("REDIS_RELAY_PASSWORD", "s3cret")
	out, _, err := runApp(t.Context(), "status", "--addr", relay.addr)
	if err != nil || !strings.Contains(out, "online") {
		t.Fatalf("with the password from the environment: %v\n%s", err, out)
	}
}

func TestStatusUnreachable(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	_, _, err := runApp(t.Context(), "status", "--addr", addr)
	if err == nil || !strings.HasPrefix(err.Error(), "cannot reach the relay at "+addr) {
		t.Fatalf("error = %v, want one saying the relay cannot be reached", err)
	}
}

func TestStatusWatch(t *testing.T) {
	relay := startRelay(t, proxy.Config{}) // no master: waiting for REPLICAOF
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	app := newApp()
	var out syncBuffer
	app.Writer, app.ErrWriter = &out, &out
	done := make(chan error, 1)
	go func() {
		done <- app.RunContext(ctx, []string{"redis-relay", "status", "--addr", relay.addr, "--watch", "50ms"})
	}()
	redistest.Eventually(t, 10*time.Second, func() error {
		if n := strings.Count(out.String(), "\x1b[H\x1b[2J"); n < 3 {
			return fmt.Errorf("%d screens drawn", n)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch ended with %v", err)
	}
	if s := out.String(); !strings.Contains(s, "waiting for REPLICAOF") || !strings.Contains(s, "no replicas connected") {
		t.Fatalf("watch output:\n%s", s)
	}
}

func TestParseInfo(t *testing.T) {
	text := "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.5\r\nmaster_port:6379\r\nmaster_link_status:up\r\n" +
		"master_last_io_seconds_ago:1\r\nconnected_slaves:2\r\n" +
		"slave0:ip=10.0.0.7,port=6381,state=online,offset=1000,lag=1\r\n" +
		"slave1:ip=::1,port=6382,state=wait_bgsave,offset=0,lag=0\r\n" +
		"slave_read_only:1\r\nmaster_repl_offset:1200\r\n\r\n# Relay\r\nguard_tripped:1\r\n" +
		"guard_reason:\"new history abc is empty\"\r\nguard_since_seconds:90\r\nrepl_backlog_active:1\r\n" +
		"snapshot_offset:10\r\nsnapshot_bytes:2048\r\nsnapshot_age_seconds:61\r\nsnapshot_keys:-1\r\n"
	in := parseInfo(text)
	if len(in.replicas) != 2 {
		t.Fatalf("replicas %+v", in.replicas)
	}
	if r := in.replicas[1]; r.addr != "[::1]:6382" || r.state != "wait_bgsave" {
		t.Fatalf("second replica %+v", r)
	}
	out := renderStatus("relay:6380", in)
	for _, want := range []string{
		"upstream   10.0.0.5:6379, link up, last io 1 s ago\n", "guard      TRIPPED 1m30s ago: new history abc is empty\n",
		"redis-relay guard release --addr relay:6380\n", "snapshot   offset 10, 2.0 KiB, age 1m1s, ? keys\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	rows := map[string][]string{}
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) >= 6 {
			rows[f[0]] = f
		}
	}
	if f := rows["10.0.0.7:6381"]; f == nil || f[3] != "200" || f[4] != "1" {
		t.Errorf("online replica row %q:\n%s", f, out)
	}
	if f := rows["[::1]:6382"]; f == nil || f[3] != "-" || f[4] != "-" || f[5] != "waiting" {
		t.Errorf("syncing replica row %q:\n%s", f, out)
	}
}

// What status says about transfers: the relay's own from its upstream, with
// or without an announced size, and each replica's in send_bulk.
func TestRenderSyncProgress(t *testing.T) {
	const head = "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.5\r\nmaster_port:6379\r\nmaster_link_status:down\r\nmaster_sync_in_progress:1\r\n"
	for _, tt := range []struct {
		name, fields, want string
	}{
		{"sized", "master_sync_total_bytes:4194304\r\nmaster_sync_read_bytes:1048576\r\nmaster_sync_perc:25.00\r\nmaster_sync_elapsed_seconds:2\r\nmaster_sync_rate_bytes_per_sec:524288\r\n",
			"full sync  25.00% received, 1.0 MiB of 4.0 MiB at 512.0 KiB/s, about 6s left\n"},
		{"diskless, estimated", "master_sync_total_bytes:-1\r\nmaster_sync_read_bytes:1048576\r\nmaster_sync_perc:0.00\r\nmaster_sync_elapsed_seconds:2\r\nmaster_sync_rate_bytes_per_sec:524288\r\n" +
			"master_sync_estimated_total_bytes:2097152\r\nmaster_sync_estimated_perc:50.00\r\nmaster_sync_estimate_source:previous_snapshot\r\n",
			"full sync  1.0 MiB received at 512.0 KiB/s, size not announced (diskless upstream); estimate ~2.0 MiB from the previous snapshot: ~50.00%, about 2s left\n"},
		{"diskless, no estimate", "master_sync_total_bytes:-1\r\nmaster_sync_read_bytes:1048576\r\nmaster_sync_perc:0.00\r\nmaster_sync_elapsed_seconds:2\r\nmaster_sync_rate_bytes_per_sec:524288\r\n",
			"full sync  1.0 MiB received at 512.0 KiB/s, size not announced (diskless upstream)\n"},
		{"not started", "master_sync_total_bytes:-1\r\nmaster_sync_read_bytes:0\r\nmaster_sync_perc:0.00\r\nmaster_sync_elapsed_seconds:0\r\nmaster_sync_rate_bytes_per_sec:0\r\n",
			"full sync  waiting for the upstream to start sending its snapshot\n"},
		{"older relay", "master_sync_total_bytes:-1\r\nmaster_sync_read_bytes:1048576\r\nmaster_sync_perc:0.00\r\n",
			"full sync  1.0 MiB received, size not announced (diskless upstream)\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if out := renderStatus("relay:6380", parseInfo(head+tt.fields)); !strings.Contains(out, tt.want) {
				t.Errorf("status lacks %q:\n%s", tt.want, out)
			}
		})
	}

	for line, want := range map[string]string{
		"ip=10.0.0.7,port=6381,state=send_bulk,offset=0,lag=0,rdb_sent_bytes=1048576,rdb_size_bytes=4194304": "1.0 MiB of 4.0 MiB sent (25.0%)",
		"ip=10.0.0.7,port=6381,state=send_bulk,offset=0,lag=0,rdb_sent_bytes=1048576,rdb_size_bytes=-1":      "1.0 MiB sent, size not known yet",
		"ip=10.0.0.7,port=6381,state=send_bulk,offset=0,lag=0":                                               "-",
		"ip=10.0.0.7,port=6381,state=online,offset=9,lag=0,rdb_sent_bytes=4194304,rdb_size_bytes=4194304":    "-",
	} {
		if got := replicaSync(parseReplicaLine(line)); got != want {
			t.Errorf("%s: %q, want %q", line, got, want)
		}
	}
}

// TestRenderLinkDownReason: a relay whose upstream is down says why, in the
// word the metric's reason label uses.
func TestRenderLinkDownReason(t *testing.T) {
	const info = "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.5\r\nmaster_port:6379\r\nmaster_link_status:down\r\n" +
		"master_link_down_since_seconds:3\r\n# Relay\r\nupstream_last_error:\"master requires a password\"\r\nupstream_link_down_reason:auth_failed\r\n"
	want := "last error: auth_failed: master requires a password"
	if out := renderStatus("relay:6380", parseInfo(info)); !strings.Contains(out, want) {
		t.Errorf("status lacks %q:\n%s", want, out)
	}
}

// TestRenderClusterShard: a relay following a cluster shard says which.
func TestRenderClusterShard(t *testing.T) {
	const info = "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.5\r\nmaster_port:6379\r\nmaster_link_status:up\r\n" +
		"# Relay\r\ncluster_shard_slots:0-999,5461-10922\r\ncluster_shard_master_id:abc123\r\ncluster_shard_nodes:2\r\n"
	want := "cluster shard: slots 0-999,5461-10922, master abc123, 2 nodes"
	if out := renderStatus("relay:6380", parseInfo(info)); !strings.Contains(out, want) {
		t.Errorf("status lacks %q:\n%s", want, out)
	}
	if out := renderStatus("relay:6380", parseInfo("# Replication\r\nrole:slave\r\n")); strings.Contains(out, "cluster") {
		t.Errorf("status of a relay following no cluster mentions one:\n%s", out)
	}
}

// Against a real relay: a diskless master's transfer shows bytes, rate and
// the used_memory estimate, the master's version shows once known, and a
// replica in send_bulk shows the bytes it has been sent.
func TestStatusDuringSyncs(t *testing.T) {
	master := redistest.Start(t, "--repl-diskless-sync", "yes")
	if err := master.Client().Do(t.Context(), "DEBUG", "POPULATE", "100000", "k", "32").Err(); err != nil {
		t.Fatal(err)
	}
	link := redistest.NewFaultProxy(t, master.Addr())
	link.SetRate(1 << 20)
	relay := startRelay(t, proxy.Config{MasterAddr: link.Addr()})
	var out string
	redistest.Eventually(t, 20*time.Second, func() error {
		var err error
		out, _, err = runApp(t.Context(), "status", "--addr", relay.addr)
		if err != nil {
			return err
		}
		if !strings.Contains(out, "received at ") || !strings.Contains(out, "estimate ~") {
			return fmt.Errorf("no diskless transfer with an estimate yet:\n%s", out)
		}
		return nil
	})
	t.Logf("during the relay's own sync:\n%s", out)
	if !strings.Contains(out, "size not announced (diskless upstream); estimate ~") || !strings.Contains(out, "from the master's used_memory") {
		t.Errorf("status during the relay's sync:\n%s", out)
	}
	link.SetRate(0)
	redistest.Eventually(t, 30*time.Second, func() error {
		if st := relay.Status(); st.LinkState != "connected" {
			return fmt.Errorf("relay link %s", st.LinkState)
		}
		return nil
	})

	down := redistest.NewFaultProxy(t, relay.addr)
	down.SetRate(1 << 20)
	h, p := down.HostPort()
	replica := redistest.Start(t, "--replicaof", h, p)
	redistest.Eventually(t, 20*time.Second, func() error {
		var err error
		out, _, err = runApp(t.Context(), "status", "--addr", relay.addr)
		if err != nil {
			return err
		}
		if !strings.Contains(out, " send_bulk ") || !strings.Contains(out, " sent (") {
			return fmt.Errorf("no replica in send_bulk with bytes sent yet:\n%s", out)
		}
		return nil
	})
	t.Logf("during a replica's sync:\n%s", out)
	if v := master.Info(t, "server")["redis_version"]; !strings.Contains(out, ", redis "+v+"\n") {
		t.Errorf("status does not name the master's version %s:\n%s", v, out)
	}
	down.SetRate(0)
	redistest.Eventually(t, 30*time.Second, func() error { return redistest.SameDigest(master, replica) })
}

// TestGuardRelease trips the empty-master guard the way it happens in
// production, a master without persistence restarting empty, and releases
// it with `redis-relay guard release`.
func TestGuardRelease(t *testing.T) {
	master, relay, replica := relayWithReplica(t, proxy.Config{})

	_, _, err := runApp(t.Context(), "guard", "release", "--addr", relay.addr)
	if err == nil || !strings.Contains(err.Error(), "the guard is not tripped") {
		t.Fatalf("release with nothing held: %v", err)
	}

	master.Restart(t) // comes back empty, with a new replication ID
	redistest.Eventually(t, 30*time.Second, func() error {
		if !relay.Status().GuardTripped {
			return fmt.Errorf("guard not tripped; link %s", relay.Status().LinkState)
		}
		return nil
	})
	out, _, err := runApp(t.Context(), "status", "--addr", relay.addr)
	if err != nil || !strings.Contains(out, "TRIPPED") {
		t.Fatalf("status while tripped: %v\n%s", err, out)
	}
	if n := replica.Client().DBSize(t.Context()).Val(); n != 1001 {
		t.Fatalf("replica holds %d keys while the guard is tripped, want 1001", n)
	}

	out, _, err = runApp(t.Context(), "guard", "release", "--addr", relay.addr)
	if err != nil || out != "OK\n" {
		t.Fatalf("release: %q, %v", out, err)
	}
	master.Do(t, "SET", "new", "history")
	redistest.Eventually(t, 30*time.Second, func() error { return redistest.SameDigest(master, replica) })
}
