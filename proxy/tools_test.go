package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// The tools operators point at a Redis replica, pointed at the relay: what
// they show must be true of the relay.

// relayWithKeys starts a master holding n keys in db0 and a relay in
// front of it, and waits until the relay's INFO keyspace shows the
// snapshot's keys.
func relayWithKeys(t *testing.T, n int, tweak ...func(*Config)) (*redistest.Server, *testRelay) {
	t.Helper()
	master := redistest.Start(t)
	master.Do(t, "DEBUG", "POPULATE", n)
	relay := startRelay(t, master.Addr(), tweak...)
	want := fmt.Sprintf("keys=%d,", n)
	redistest.Eventually(t, 30*time.Second, func() error {
		if v := redistest.ParseInfo(infoText(t, relay, "keyspace"))["db0"]; !strings.HasPrefix(v, want) {
			return fmt.Errorf("db0:%s, want %s...", v, want)
		}
		return nil
	})
	return master, relay
}

// redis-cli --stat reads keys, memory, clients and requests from INFO. On
// the relay, keys are the newest snapshot's and requests the commands
// relayed and sent to it, which grow under write load.
func TestRedisCliStat(t *testing.T) {
	master, relay := relayWithKeys(t, 1000)
	load := startLoad(t, master)
	defer load.Stop(t)
	host, port := relay.HostPort()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	args := []string{"redis-cli", "-h", host, "-p", port, "--stat", "-i", "0.2"}
	if _, err := exec.LookPath("stdbuf"); err == nil {
		// Line by line: into a pipe, redis-cli's output is block-buffered.
		args = append([]string{"stdbuf", "-oL"}, args...)
	}
	cli := exec.CommandContext(ctx, args[0], args[1:]...)
	out, err := cli.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Start(); err != nil {
		t.Fatalf("redis-cli: %v", err)
	}
	defer cli.Wait()
	defer cancel()
	// A data line: keys mem clients blocked requests (+delta) connections.
	var lines [][]string
	sc := bufio.NewScanner(out)
	for len(lines) < 5 && sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 7 && strings.Trim(f[0], "0123456789") == "" {
			lines = append(lines, f)
		}
	}
	if len(lines) < 5 {
		t.Fatalf("redis-cli --stat printed %d data lines: %v", len(lines), sc.Err())
	}
	grew := false
	for _, f := range lines {
		keys, _ := strconv.Atoi(f[0])
		clients, _ := strconv.Atoi(f[2])
		requests, err := strconv.ParseInt(f[4], 10, 64)
		delta, derr := strconv.ParseInt(strings.Trim(f[5], "(+)"), 10, 64)
		if keys != 1000 || clients < 1 || err != nil || requests <= 0 || derr != nil || delta < 0 {
			t.Errorf("redis-cli --stat line %q: want 1000 keys (the snapshot's), a client, requests counted", strings.Join(f, " "))
		}
		grew = grew || delta > 0
	}
	if !grew {
		t.Errorf("requests did not grow under write load: %v", lines)
	}
	f := redistest.ParseInfo(infoText(t, relay, "stats"))
	if ops, _ := strconv.Atoi(f["instantaneous_ops_per_sec"]); ops <= 0 || f["instantaneous_input_kbps"] == "0.00" {
		t.Errorf("under write load: instantaneous_ops_per_sec %s, instantaneous_input_kbps %s", f["instantaneous_ops_per_sec"], f["instantaneous_input_kbps"])
	}
}

// go-redis with Protocol 3 sends HELLO 3 (and CLIENT SETINFO) on connect
// and reads RESP3 replies: maps for HELLO and CONFIG GET, verbatim strings
// for INFO and CLIENT LIST.
func TestGoRedisResp3(t *testing.T) {
	master, relay := relayWithKeys(t, 100)
	replica := replicaOf(t, relay.HostPort)
	inSync(t, 30*time.Second, master, replica)
	ctx := t.Context()
	cl := redis.NewClient(&redis.Options{Addr: relay.Addr(), Protocol: 3, ClientName: "tools"})
	defer cl.Close()

	hello, err := cl.Do(ctx, "HELLO", "3").Result()
	m, ok := hello.(map[any]any)
	if err != nil || !ok || m["proto"] != int64(3) || m["server"] != "redis" || m["role"] != "replica" || m["mode"] != "standalone" {
		t.Fatalf("HELLO 3 = %#v, %v; want a RESP3 map", hello, err)
	}
	cfg, err := cl.ConfigGet(ctx, "repl*").Result()
	if _, ok := cfg["repl-backlog-size"]; err != nil || !ok {
		t.Fatalf("CONFIG GET repl* = %v, %v", cfg, err)
	}
	if v, ok := cfg["repl-diskless-sync-delay"]; ok {
		t.Errorf("CONFIG GET shows repl-diskless-sync-delay %s, a setting the relay ignores", v)
	}

	info, err := cl.Info(ctx, "everything").Result()
	if err != nil {
		t.Fatalf("INFO: %v", err)
	}
	f := redistest.ParseInfo(info)
	_, relayPort := relay.HostPort()
	if f["tcp_port"] != relayPort || f["redis_mode"] != "standalone" || f["relay_keyspace_source"] != "snapshot" {
		t.Errorf("tcp_port %q (want %s), redis_mode %q, relay_keyspace_source %q", f["tcp_port"], relayPort, f["redis_mode"], f["relay_keyspace_source"])
	}
	before, _ := strconv.ParseInt(f["total_commands_processed"], 10, 64)
	master.Do(t, "SET", "after", "1")
	redistest.Eventually(t, 30*time.Second, func() error {
		g := redistest.ParseInfo(cl.Info(ctx, "everything").Val())
		n, _ := strconv.ParseInt(g["total_commands_processed"], 10, 64)
		if n <= before || !strings.HasPrefix(g["cmdstat_set"], "calls=1,usec=0,") || !strings.HasPrefix(g["cmdstat_info"], "calls=") {
			return fmt.Errorf("total_commands_processed %d (was %d), cmdstat_set %q, cmdstat_info %q", n, before, g["cmdstat_set"], g["cmdstat_info"])
		}
		return nil
	})

	me, err := cl.ClientInfo(ctx).Result()
	if err != nil || me.Resp != 3 || !strings.HasPrefix(me.LibName, "go-redis") || me.Name != "tools" || me.LastCmd != "client|info" || me.FD <= 0 {
		t.Fatalf("CLIENT INFO = %+v, %v", me, err)
	}
	if dst, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", me.FD)); err == nil && !strings.HasPrefix(dst, "socket:") {
		t.Errorf("fd=%d is %s, not the connection's socket", me.FD, dst)
	}
	list, err := cl.ClientList(ctx).Result()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	var sawReplica bool
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		fields := map[string]string{}
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			fields[k] = v
		}
		for _, k := range []string{"id", "addr", "laddr", "fd", "name", "age", "idle", "flags", "db", "sub", "psub", "ssub", "multi",
			"qbuf", "qbuf-free", "argv-mem", "multi-mem", "obl", "oll", "omem", "tot-mem", "events", "cmd", "user", "redir", "resp", "lib-name", "lib-ver"} {
			if _, ok := fields[k]; !ok {
				t.Errorf("CLIENT LIST line has no %s: %s", k, line)
			}
		}
		if fields["flags"] == "S" {
			sawReplica = true
			if fd, _ := strconv.Atoi(fields["fd"]); fd <= 0 || fields["cmd"] != "psync" {
				t.Errorf("replica line: fd %s, cmd %s: %s", fields["fd"], fields["cmd"], line)
			}
			if _, err := strconv.ParseInt(fields["omem"], 10, 64); err != nil {
				t.Errorf("replica omem=%s", fields["omem"])
			}
		}
	}
	if !sawReplica {
		t.Errorf("CLIENT LIST shows no replica (flags=S):\n%s", list)
	}
	// As in Redis, connected_clients leaves the replicas out.
	clients := strings.Count(list, "\n") - 1
	if n := relay.InfoInt(t, "connected_clients"); n != int64(clients) {
		t.Errorf("connected_clients %d, want %d: the connections that are not replicas", n, clients)
	}
	if only, err := cl.Do(ctx, "CLIENT", "LIST", "TYPE", "replica").Text(); err != nil || strings.Count(only, "\n") != 1 || !strings.Contains(only, " flags=S ") {
		t.Errorf("CLIENT LIST TYPE replica = %q, %v", only, err)
	}
	if mine, err := cl.Do(ctx, "CLIENT", "LIST", "ID", me.ID).Text(); err != nil || !strings.HasPrefix(mine, fmt.Sprintf("id=%d ", me.ID)) || strings.Count(mine, "\n") != 1 {
		t.Errorf("CLIENT LIST ID %d = %q, %v", me.ID, mine, err)
	}

	// Subscriptions and published messages arrive as RESP3 pushes.
	ps := cl.Subscribe(ctx, "news")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatalf("SUBSCRIBE: %v", err)
	}
	if err := cl.Publish(ctx, "news", "hello").Err(); err != nil {
		t.Fatalf("PUBLISH: %v", err)
	}
	if msg, err := ps.ReceiveMessage(ctx); err != nil || msg.Payload != "hello" {
		t.Fatalf("message = %v, %v", msg, err)
	}
	raw := dialRaw(t, relay.Addr())
	raw.expect("%7", "HELLO", "3")
	for raw.line() != "*0" { // the map ends with modules, an empty array
	}
	raw.expect(">3", "SUBSCRIBE", "news")

	if n, err := cl.SlowLogLen(ctx).Result(); err != nil || n != 0 {
		t.Errorf("SLOWLOG LEN = %d, %v", n, err)
	}
	if logs, err := cl.SlowLogGet(ctx, 1).Result(); err != nil || len(logs) != 0 {
		t.Errorf("SLOWLOG GET 1 = %v, %v", logs, err)
	}
}

// redis_exporter, built from its module, scrapes the relay under write
// load: the metrics of Redis's own dashboards move.
//
// It scrapes as the shipped metrics user (deploy/acl/users.acl, password
// "change-me-metrics" there), so the user's commands are what redis_exporter sends:
// the relay's ACL LOG stays empty.
func TestRedisExporter(t *testing.T) {
	exporter := buildRedisExporter(t)
	metricsUser := shippedUser(t, "metrics")
	master, relay := relayWithKeys(t, 500, func(c *Config) { c.Users = [][]string{metricsUser} })
	load := startLoad(t, master)
	defer load.Stop(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	web := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(exporter, "--redis.addr", "redis://"+relay.Addr(), "--redis.user", "metrics", "--redis.password", "change-me-metrics", "--web.listen-address", web)
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis_exporter: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	scrape := func() (map[string]float64, error) {
		res, err := http.Get("http://" + web + "/metrics")
		if err != nil {
			return nil, err
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			return nil, err
		}
		m := map[string]float64{}
		for line := range strings.Lines(string(body)) {
			if strings.HasPrefix(line, "#") {
				continue
			}
			i := strings.LastIndexByte(line, ' ')
			if v, err := strconv.ParseFloat(strings.TrimSpace(line[i+1:]), 64); i > 0 && err == nil {
				m[line[:i]] = v
			}
		}
		return m, nil
	}
	var first map[string]float64
	redistest.Eventually(t, 30*time.Second, func() (err error) {
		first, err = scrape()
		if err == nil && first["redis_up"] != 1 {
			err = fmt.Errorf("redis_up %v", first["redis_up"])
		}
		return err
	})
	for name, want := range map[string]float64{`redis_db_keys{db="db0"}`: 500, "redis_slowlog_length": 0, "redis_connected_slaves": 0} {
		if v, ok := first[name]; !ok || v != want {
			t.Errorf("%s = %v (exported: %v), want %v", name, v, ok, want)
		}
	}
	redistest.Eventually(t, 30*time.Second, func() error {
		now, err := scrape()
		if err != nil {
			return err
		}
		for _, name := range []string{"redis_commands_processed_total", "redis_net_input_bytes_total", "redis_net_output_bytes_total", `redis_commands_total{cmd="set"}`} {
			if now[name] <= first[name] {
				return fmt.Errorf("%s %v, was %v", name, now[name], first[name])
			}
		}
		return nil
	})
	if denied, err := relay.Client().Do(t.Context(), "ACL", "LOG").Slice(); err != nil || len(denied) != 0 {
		t.Errorf("ACL LOG after the scrapes: %v %v, want it empty (the metrics user refused a command redis_exporter sends)", denied, err)
	}
}

// shippedUser is the rule list of one user in deploy/acl/users.acl (the
// words after "user").
func shippedUser(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile("../deploy/acl/users.acl")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "user" && f[1] == name {
			return f[1:]
		}
	}
	t.Fatalf("deploy/acl/users.acl has no user %s", name)
	return nil
}

// redisExporterModule is the redis_exporter release the test builds.
const redisExporterModule = "github.com/oliver006/redis_exporter@v1.97.0"

// buildRedisExporter installs redis_exporter from its module into a
// temporary directory, or skips the test when the module cannot be had.
func buildRedisExporter(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("skipping: no go command to build %s: %v", redisExporterModule, err)
	}
	bin := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, goBin, "install", redisExporterModule)
	install.Dir = bin // outside this module: its go.mod is not touched
	install.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := install.CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot build %s (module proxy unreachable?): %v\n%s", redisExporterModule, err, out)
	}
	return filepath.Join(bin, "redis_exporter")
}

// A replica that stops reading: CLIENT LIST's omem is what the relay
// holds for it and has not sent, and it grows with the writes.
func TestClientListReplicaOmem(t *testing.T) {
	master, relay := syncedRelay(t)
	stuck := dialRaw(t, relay.Addr())
	stuck.expect("+OK", "REPLCONF", "listening-port", "1")
	stuck.send("PSYNC", "?", "-1") // and never read the snapshot or the stream
	big := strings.Repeat("x", 1<<20)
	redistest.Eventually(t, 30*time.Second, func() error {
		master.Do(t, "SET", "big", big)
		list := relay.Client().ClientList(t.Context()).Val()
		for line := range strings.Lines(list) {
			if !strings.Contains(line, " flags=S ") {
				continue
			}
			_, rest, _ := strings.Cut(line, " omem=")
			omem, _, _ := strings.Cut(rest, " ")
			if n, _ := strconv.ParseInt(omem, 10, 64); n < 8<<20 {
				return fmt.Errorf("omem=%s", omem)
			}
			return nil
		}
		return fmt.Errorf("no replica in CLIENT LIST:\n%s", list)
	})
}
