package proxy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/proxy/acl"
)

// The users the tests give the relay, as deploy/acl/users.acl writes them.
var (
	replicaUser  = []string{"replica-user", "on", ">replica-pass", "+psync", "+replconf", "+ping"}
	sentinelUser = []string{"sentinel-user", "on", ">sentinel-pass", "&__sentinel__:hello",
		"+multi", "+slaveof", "+replicaof", "+ping", "+exec", "+subscribe", "+config|rewrite", "+role",
		"+publish", "+info", "+client|setname", "+client|kill"}
	operatorUser = []string{"operator", "on", ">operator-pass", "~*", "&*", "+@all"}
)

// userClient is a go-redis client of the relay authenticated as user.
func userClient(t *testing.T, relay *testRelay, user, pass string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: relay.Addr(), Username: user, Password: pass, Protocol: 2, DisableIdentity: true, PoolSize: 1})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestReplicaUser: a stock replica authenticated as the documented
// replica user (+psync +replconf +ping, masteruser/masterauth) syncs
// through the relay, and after a relay restart under write load resyncs
// partially. The same user on a client connection is refused every
// command that changes the relay, with Redis's -NOPERM; ACL LOG and the
// metric show each refusal, and the replica stays in sync.
func TestReplicaUser(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 5000)
	relay := startRelay(t, master.Addr(), func(c *Config) {
		c.Users = [][]string{replicaUser, operatorUser, {"default", "off"}}
	})
	replica := replicaOf(t, relay.HostPort, "--masteruser", "replica-user", "--masterauth", "replica-pass")
	inSync(t, 30*time.Second, master, replica)
	if n := relay.Status().FullSyncsServed; n != 1 {
		t.Fatalf("relay served %d full syncs, want 1", n)
	}

	ctx := t.Context()
	repl := userClient(t, relay, "replica-user", "replica-pass")
	if err := repl.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING as the replica user: %v", err)
	}
	for _, c := range []struct {
		args   []any
		object string
	}{
		{[]any{"CONFIG", "SET", "snapshot-source", "10.9.9.9:6379"}, "config|set"},
		{[]any{"REPLICAOF", "10.9.9.9", "6379"}, "replicaof"},
		{[]any{"CLIENT", "KILL", "TYPE", "replica"}, "client|kill"},
		{[]any{"SHUTDOWN", "NOSAVE"}, "shutdown"},
		{[]any{"RELAY", "GUARD", "RELEASE"}, "relay"},
		{[]any{"ACL", "SETUSER", "replica-user", "+@all"}, "acl|setuser"},
	} {
		err := repl.Do(ctx, c.args...).Err()
		want := "NOPERM this user has no permissions to run the '" + c.object + "' command"
		if err == nil || err.Error() != want {
			t.Errorf("%v as the replica user: %v, want %q", c.args, err, want)
		}
	}
	// redis-cli, as an operator would try it, gets the same answer.
	rh, rp := relay.HostPort()
	out, _ := exec.Command("redis-cli", "-h", rh, "-p", rp, "--user", "replica-user", "--pass", "replica-pass", "--no-auth-warning",
		"CONFIG", "SET", "repl-timeout", "30").CombinedOutput()
	if got := strings.TrimSpace(string(out)); got != "NOPERM this user has no permissions to run the 'config|set' command" {
		t.Errorf("redis-cli CONFIG SET as the replica user: %q", got)
	}
	// Nothing changed: the relay still follows the master, and no one
	// connected as the default user, which is off.
	if got := relay.Status().MasterAddr; got != master.Addr() {
		t.Errorf("relay follows %s after a refused REPLICAOF", got)
	}
	anon := redis.NewClient(&redis.Options{Addr: relay.Addr(), Protocol: 2, DisableIdentity: true})
	defer anon.Close()
	if err := anon.Do(ctx, "INFO").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Errorf("INFO without AUTH while default is off: %v", err)
	}

	op := userClient(t, relay, "operator", "operator-pass")
	log, err := op.Do(ctx, "ACL", "LOG").Slice()
	if err != nil {
		t.Fatal(err)
	}
	var objects []string
	for _, e := range log {
		fields := e.([]any)
		entry := map[string]any{}
		for i := 0; i+1 < len(fields); i += 2 {
			entry[fields[i].(string)] = fields[i+1]
		}
		if entry["username"] != "replica-user" || entry["reason"] != "command" || !strings.Contains(entry["client-info"].(string), "user=replica-user") {
			t.Errorf("ACL LOG entry %v", entry)
		}
		objects = append(objects, entry["object"].(string))
	}
	slices.Sort(objects)
	if want := []string{"acl|setuser", "client|kill", "config|set", "relay", "replicaof", "shutdown"}; !slices.Equal(objects, want) { // the two CONFIG SETs in one entry
		t.Errorf("ACL LOG objects %v, want %v", objects, want)
	}
	if got := relay.Status().ACLDenied; !slices.Contains(got, acl.DeniedCount{User: "replica-user", Command: "config|set", Count: 2}) {
		t.Errorf("denied counts %+v", got)
	}

	// A restart under load: the replica comes back with a partial resync.
	start := relay.Status().MasterOffset()
	load := startLoad(t, master)
	redistest.Eventually(t, 30*time.Second, func() error {
		if off := relay.Status().MasterOffset(); off < start+1<<20 {
			return fmt.Errorf("relay at offset %d, waiting for load", off)
		}
		return nil
	})
	relay.Restart()
	redistest.Eventually(t, 30*time.Second, func() error {
		if n := relay.Status().PartialSyncsServed; n < 1 {
			return fmt.Errorf("no partial resync served yet")
		}
		return nil
	})
	load.Stop(t)
	inSync(t, 30*time.Second, master, replica)
	if n := relay.Status().FullSyncsServed; n != 0 {
		t.Errorf("relay served %d full syncs after the restart, want 0", n)
	}
}

// TestSentinelUser: three Sentinels authenticate to the master, the spare
// and the relay as the Sentinel user Redis's documentation gives (sentinel
// auth-user / auth-pass). They list the relay, fail the master over and
// re-point the relay, which continues with a partial resync; the relay
// refused none of their commands.
func TestSentinelUser(t *testing.T) {
	t.Parallel()
	sentinelOnRedis := append([]string{"--user"}, sentinelUser...)
	master := redistest.Start(t, sentinelOnRedis...)
	populate(t, master, 0, 5000)
	spare := replicaOf(t, master.HostPort, append([]string{"--replica-priority", "100"}, sentinelOnRedis...)...)
	relay := startRelay(t, master.Addr(), func(c *Config) {
		c.Users = [][]string{replicaUser, sentinelUser, operatorUser}
		c.RequirePass = "admin-pass"
	})
	relay.client = userClient(t, relay, "default", "admin-pass")
	down := replicaOf(t, relay.HostPort, "--masteruser", "replica-user", "--masterauth", "replica-pass")
	inSync(t, 30*time.Second, master, spare, down)

	startSentinels(t, master, time.Second, relay, 2, "sentinel auth-user mymaster sentinel-user", "sentinel auth-pass mymaster sentinel-pass")
	fullBefore := relay.Status().FullSyncsServed
	master.Kill()
	waitFollowsPromoted(t, spare, relay)
	writeKeys(t, spare, 0, 500)
	inSync(t, 30*time.Second, spare, down)
	if n := relay.Status().FullSyncsServed; n != fullBefore {
		t.Errorf("relay served %d full syncs after the failover", n-fullBefore)
	}
	if n := spare.InfoInt(t, "sync_full"); n != 0 {
		t.Errorf("promoted replica served %d full syncs: the relay should have continued", n)
	}
	if n := relay.Status().UpstreamPartials; n < 1 {
		t.Errorf("relay made %d partial resyncs upstream, want one to the promoted replica", n)
	}
	if got := relay.Status().ACLDenied; len(got) != 0 {
		t.Errorf("the relay refused Sentinel or the replica: %+v", got)
	}
	list := relay.Client().Do(t.Context(), "CLIENT", "LIST").String()
	if !strings.Contains(list, "user=sentinel-user") {
		t.Errorf("no Sentinel connection as sentinel-user:\n%s", list)
	}
}

// TestRequirePassKeepsDefaultUser: with requirepass alone the default
// user behaves as before: new connections need AUTH, AUTH <password>
// opens every command, and CONFIG SET requirepass applies to the next
// AUTH.
func TestRequirePassKeepsDefaultUser(t *testing.T) {
	relay := startRelay(t, "", func(c *Config) { c.RequirePass = "old" })
	c := dialRaw(t, relay.Addr())
	c.expect("-NOAUTH Authentication required.", "INFO")
	c.expect("+PONG", "PING")
	c.expect("-WRONGPASS invalid username-password pair or user is disabled.", "AUTH", "wrong")
	c.expect("+OK", "AUTH", "old")
	c.expect("+OK", "CONFIG", "SET", "requirepass", "new")
	c.expect("$7", "ACL", "WHOAMI")
	if got := c.line(); got != "default" {
		t.Errorf("ACL WHOAMI = %q", got)
	}
	d := dialRaw(t, relay.Addr())
	d.expect("-WRONGPASS invalid username-password pair or user is disabled.", "AUTH", "old")
	d.expect("+OK", "AUTH", "default", "new")
	d.expect("+OK", "CONFIG", "SET", "requirepass", "")
	e := dialRaw(t, relay.Addr())
	e.expect("-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?", "AUTH", "x")
	e.expect("$7", "ACL", "WHOAMI")
	if got := e.line(); got != "default" {
		t.Errorf("ACL WHOAMI = %q", got)
	}
}

// TestACLFile: the relay loads its users from aclfile; ACL SETUSER, SAVE
// and LOAD round-trip through it; a bad line stops start-up, and ACL LOAD,
// with the file, the line and the reason.
func TestACLFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.acl")
	os.WriteFile(path, []byte("user default on nopass ~* &* +@all\nuser replica-user on >replica-pass +psync +replconf +ping\n"), 0o600)
	relay := startRelay(t, "", func(c *Config) { c.ACLFile = path })
	ctx := t.Context()
	cl := relay.Client()
	if err := cl.Do(ctx, "ACL", "SETUSER", "metrics", "on", ">m", "+info", "+ping").Err(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Do(ctx, "ACL", "SAVE").Err(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "user metrics on #") || strings.Contains(string(data), ">m") {
		t.Errorf("ACL SAVE wrote:\n%s", data)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("ACL SAVE file mode: %v %v", fi.Mode(), err)
	}
	os.WriteFile(path, append(data, "user broken on +nosuch\n"...), 0o600)
	want := fmt.Sprintf("ERR aclfile: %s:4: Error in applying operation '+nosuch': Unknown command or category name in ACL", path)
	if err := cl.Do(ctx, "ACL", "LOAD").Err(); err == nil || err.Error() != want {
		t.Errorf("ACL LOAD of a bad file: %v, want %q", err, want)
	}
	if users, _ := cl.Do(ctx, "ACL", "USERS").StringSlice(); !slices.Equal(users, []string{"default", "metrics", "replica-user"}) {
		t.Errorf("after a failed ACL LOAD the users are %v", users)
	}
	_, err := New(Config{DataDir: t.TempDir(), ACLFile: path})
	if want := fmt.Sprintf("aclfile: %s:4: Error in applying operation '+nosuch': Unknown command or category name in ACL", path); err == nil || err.Error() != want {
		t.Errorf("start-up with a bad ACL file: %v, want %q", err, want)
	}
	os.WriteFile(path, data[:len(data)-1], 0o600) // drop the trailing newline only
	if err := cl.Do(ctx, "ACL", "LOAD").Err(); err != nil {
		t.Errorf("ACL LOAD: %v", err)
	}
}

// TestACLInTransaction: a command refused while MULTI queues discards the
// transaction at EXEC, as in Redis, so a user never runs half of one.
func TestACLInTransaction(t *testing.T) {
	relay := startRelay(t, "", func(c *Config) {
		c.Users = [][]string{{"default", "off"}, {"tx", "on", ">p", "+multi", "+exec", "+ping", "+role"}}
	})
	c := dialRaw(t, relay.Addr())
	c.expect("+OK", "AUTH", "tx", "p")
	c.expect("+OK", "MULTI")
	c.expect("+QUEUED", "PING")
	c.expect("-NOPERM this user has no permissions to run the 'config|set' command", "CONFIG", "SET", "repl-timeout", "30")
	c.expect("-EXECABORT Transaction discarded because of previous errors.", "EXEC")
	c.expect("+OK", "MULTI")
	c.expect("+QUEUED", "PING")
	c.expect("*1", "EXEC")
	if got := c.line(); got != "+PONG" {
		t.Errorf("EXEC ran %q, want +PONG", got)
	}
}

// TestDelUserDropsItsConnections: ACL DELUSER ends the connections of the
// users it removes, replica sessions included, as Redis does; the replica
// then cannot authenticate again.
func TestDelUserDropsItsConnections(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 1000)
	relay := startRelay(t, master.Addr(), func(c *Config) { c.Users = [][]string{replicaUser} })
	replica := replicaOf(t, relay.HostPort, "--masteruser", "replica-user", "--masterauth", "replica-pass")
	inSync(t, 30*time.Second, master, replica)
	if n, err := relay.Client().Do(t.Context(), "ACL", "DELUSER", "replica-user").Int(); err != nil || n != 1 {
		t.Fatalf("ACL DELUSER: %d %v", n, err)
	}
	redistest.Eventually(t, 30*time.Second, func() error {
		if st := replica.Info(t, "replication")["master_link_status"]; st != "down" {
			return fmt.Errorf("replica link %s", st)
		}
		if n := len(relay.Replicas()); n != 0 {
			return fmt.Errorf("relay still lists %d replicas", n)
		}
		return nil
	})
}

// TestClientListWhileAuth: CLIENT LIST (and ACL LOG's client-info) read
// each connection's user while that connection authenticates; under -race
// this shows the user is read safely.
func TestClientListWhileAuth(t *testing.T) {
	relay := startRelay(t, "", func(c *Config) { c.Users = [][]string{operatorUser, {"default", "off"}} })
	op := userClient(t, relay, "operator", "operator-pass")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			c := redis.NewClient(&redis.Options{Addr: relay.Addr(), Username: "operator", Password: "operator-pass", Protocol: 2, DisableIdentity: true, PoolSize: 1})
			c.Ping(t.Context())
			c.Close()
		}
	}()
	for {
		select {
		case <-done:
			list, err := op.Do(t.Context(), "CLIENT", "LIST").Text()
			if err != nil || !strings.Contains(list, "user=operator") {
				t.Errorf("CLIENT LIST: %v\n%s", err, list)
			}
			return
		default:
			if err := op.Do(t.Context(), "CLIENT", "LIST").Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
