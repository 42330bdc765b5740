package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/internal/resp"
)

// rawConn speaks RESP by hand to the relay, as a replica would.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (c *rawConn) send(args ...string) {
	c.t.Helper()
	if _, err := c.nc.Write(resp.AppendCommand(nil, args...)); err != nil {
		c.t.Fatalf("send %v: %v", args, err)
	}
}

func (c *rawConn) line() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	s, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read line: %v", err)
	}
	return strings.TrimSuffix(s, "\r\n")
}

// expect sends a command and checks the one-line reply.
func (c *rawConn) expect(want string, args ...string) {
	c.t.Helper()
	c.send(args...)
	if got := c.line(); got != want {
		c.t.Fatalf("%v: got %q, want %q", args, got, want)
	}
}

func (c *rawConn) read(n int) []byte {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c.br, b); err != nil {
		c.t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// syncedRelay returns a master and a relay that has completed its first
// sync.
func syncedRelay(t *testing.T, tweak ...func(*Config)) (*redistest.Server, *testRelay) {
	master := redistest.Start(t)
	master.Do(t, "SET", "k", "v")
	relay := startRelay(t, master.Addr(), tweak...)
	redistest.Eventually(t, 10*time.Second, func() error {
		if s := relay.Status(); s.LinkState != LinkConnected {
			return fmt.Errorf("relay link %s", s.LinkState)
		}
		return nil
	})
	return master, relay
}

func TestSizedPayloadWithoutCapaEOF(t *testing.T) {
	master, relay := syncedRelay(t)
	c := dialRaw(t, relay.Addr())
	c.expect("+PONG", "PING")
	c.expect("+OK", "REPLCONF", "listening-port", "1234")
	c.expect("+OK", "REPLCONF", "capa", "psync2")
	c.send("PSYNC", "?", "-1")
	st := relay.Status()
	want := fmt.Sprintf("+FULLRESYNC %s %d", st.Identity.ReplID, st.Snapshot.Offset)
	if got := c.line(); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	hdr := c.line()
	if hdr != fmt.Sprintf("$%d", st.Snapshot.Size) {
		t.Fatalf("payload header %q, want $%d", hdr, st.Snapshot.Size)
	}
	rdb := c.read(int(st.Snapshot.Size))
	if !bytes.HasPrefix(rdb, []byte("REDIS")) {
		t.Fatalf("payload does not start with an RDB magic: %q", rdb[:9])
	}
	// The stream follows at once, from offset+1: a write to the master
	// arrives as its RESP command, preceded by SELECT.
	master.Do(t, "SET", "after", "sync")
	var got []byte
	for !bytes.Contains(got, []byte("after")) {
		got = append(got, c.read(1)...)
	}
	if !bytes.HasPrefix(got, []byte("*")) {
		t.Fatalf("stream does not start with a command: %q", got)
	}
}

func TestPSYNCDecisions(t *testing.T) {
	master, relay := syncedRelay(t)
	for i := range 20 {
		master.Do(t, "SET", fmt.Sprint("key", i), i)
	}
	redistest.Eventually(t, 10*time.Second, func() error {
		if got, want := relay.Status().MasterOffset(), master.InfoInt(t, "master_repl_offset"); got != want {
			return fmt.Errorf("relay at %d, master at %d", got, want)
		}
		return nil
	})
	st := relay.Status()
	id, next := st.Identity.ReplID, st.Log.Next

	handshake := func(capas ...string) *rawConn {
		c := dialRaw(t, relay.Addr())
		args := []string{"REPLCONF"}
		for _, capa := range capas {
			args = append(args, "capa", capa)
		}
		if len(capas) > 0 {
			c.expect("+OK", args...)
		}
		return c
	}
	t.Run("at next", func(t *testing.T) {
		c := handshake("eof", "psync2")
		c.expect("+CONTINUE "+id, "PSYNC", id, strconv.FormatInt(next, 10))
	})
	t.Run("mid log, bytes from that offset", func(t *testing.T) {
		c := handshake("eof", "psync2")
		c.expect("+CONTINUE "+id, "PSYNC", strings.ToUpper(id), strconv.FormatInt(next-37, 10))
		tail := c.read(37)
		cur, err := relay.hist.CurrentLog().Cursor(next - 37)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, 37)
		if _, err := io.ReadFull(readerFunc(func(p []byte) (int, error) { return cur.Read(t.Context(), p) }), want); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(tail, want) {
			t.Fatalf("got %q, want %q", tail, want)
		}
	})
	t.Run("without psync2", func(t *testing.T) {
		c := handshake("eof")
		c.expect("+CONTINUE", "PSYNC", id, strconv.FormatInt(next, 10))
	})
	t.Run("unknown replid", func(t *testing.T) {
		c := handshake("eof", "psync2")
		c.send("PSYNC", strings.Repeat("f", 40), "100")
		if got := c.line(); !strings.HasPrefix(got, "+FULLRESYNC "+id+" ") {
			t.Fatalf("got %q, want a full resync", got)
		}
	})
	t.Run("before the log", func(t *testing.T) {
		c := handshake("eof", "psync2")
		c.send("PSYNC", id, strconv.FormatInt(st.Log.First-1, 10))
		if got := c.line(); !strings.HasPrefix(got, "+FULLRESYNC ") {
			t.Fatalf("got %q, want a full resync", got)
		}
	})
	t.Run("bad offset", func(t *testing.T) {
		c := handshake()
		c.expect("-ERR value is not an integer or out of range", "PSYNC", id, "12x")
	})
	t.Run("odd REPLCONF", func(t *testing.T) {
		c := handshake()
		c.expect("-ERR syntax error", "REPLCONF", "capa")
		c.expect("+OK", "REPLCONF", "capa", "whatever")
		c.expect("-ERR Unrecognized REPLCONF option: nope", "REPLCONF", "nope", "1")
	})
	if n := relay.InfoInt(t, "sync_partial_ok"); n != 3 {
		t.Errorf("sync_partial_ok = %d, want 3", n)
	}
	if n := relay.InfoInt(t, "sync_partial_err"); n != 2 {
		t.Errorf("sync_partial_err = %d, want 2", n)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestReplicaAheadWaitsForRelay(t *testing.T) {
	master := redistest.Start(t)
	link := redistest.NewFaultProxy(t, master.Addr())
	relay := startRelay(t, link.Addr())
	replica := replicaOf(t, master.HostPort)
	inSync(t, 10*time.Second, master, replica)
	redistest.Eventually(t, 10*time.Second, func() error {
		if relay.Status().LinkState != LinkConnected {
			return fmt.Errorf("relay not connected")
		}
		return nil
	})
	// The relay stops hearing from the master while the replica, attached
	// to the master directly, moves ahead.
	link.SetBlackHole(true)
	writeKeys(t, master, 0, 200)
	inSync(t, 10*time.Second, master, replica)
	h, p := relay.HostPort()
	replica.Do(t, "REPLICAOF", h, p)
	time.Sleep(500 * time.Millisecond) // the replica is now waiting in PSYNC
	link.SetBlackHole(false)
	inSync(t, 20*time.Second, master, replica)
	redistest.Eventually(t, 10*time.Second, func() error {
		if s := replica.Info(t, "replication")["master_link_status"]; s != "up" {
			return fmt.Errorf("replica link %s", s)
		}
		return nil
	})
	if n := relay.InfoInt(t, "sync_partial_ok"); n != 1 {
		t.Errorf("relay sync_partial_ok = %d, want 1", n)
	}
	if n := relay.InfoInt(t, "sync_full"); n != 0 {
		t.Errorf("relay sync_full = %d, want 0", n)
	}
}

func TestSilentMasterDetected(t *testing.T) {
	master := redistest.Start(t)
	link := redistest.NewFaultProxy(t, master.Addr())
	relay := startRelay(t, link.Addr(), func(c *Config) { c.ReplTimeout = 2 * time.Second })
	replica := replicaOf(t, relay.HostPort)
	inSync(t, 10*time.Second, master, replica)
	link.SetBlackHole(true)
	redistest.Eventually(t, 10*time.Second, func() error {
		if link.Accepted() < 2 {
			return fmt.Errorf("relay has not reconnected")
		}
		return nil
	})
	link.SetBlackHole(false)
	writeKeys(t, master, 0, 100)
	inSync(t, 20*time.Second, master, replica)
	if n := master.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("master sync_full = %d, want 1", n)
	}
}

func TestAuthBothWays(t *testing.T) {
	master := redistest.Start(t, "--requirepass", "m-secret")
	relay := startRelay(t, master.Addr(), func(c *Config) {
		c.MasterAuth = "m-secret"
		c.RequirePass = "r-secret"
	})
	c := dialRaw(t, relay.Addr())
	c.expect("-NOAUTH Authentication required.", "PSYNC", "?", "-1")
	c.expect("-NOAUTH Authentication required.", "INFO")
	c.expect("-WRONGPASS invalid username-password pair or user is disabled.", "AUTH", "nope")
	c.expect("+OK", "AUTH", "r-secret")
	replica := replicaOf(t, relay.HostPort, "--masterauth", "r-secret")
	inSync(t, 10*time.Second, master, replica)

	// A relay without the master's password says so and retries.
	bad := startRelay(t, master.Addr())
	redistest.Eventually(t, 10*time.Second, func() error {
		if e := bad.Status().LastError; !strings.Contains(e, "authentication") {
			return fmt.Errorf("last error %q", e)
		}
		return nil
	})
}

func TestBadClientInput(t *testing.T) {
	_, relay := syncedRelay(t)
	for _, tc := range []struct {
		name, input, want string
	}{
		{"huge bulk", "*1\r\n$4294967296\r\n", "-ERR Protocol error: bulk length 4294967296 over the limit"},
		{"huge array", "*1000000\r\n", "-ERR Protocol error: multibulk length 1000000 over the limit"},
		{"not a bulk", "*1\r\n:12\r\n", "-ERR Protocol error: expected '$'"},
		{"data command", "FLUSHALL\r\n", "-ERR this is redis-relay, a replication relay holding no data: 'FLUSHALL' is not served here; read from the master at "},
		{"bad length", "*x\r\n", "-ERR Protocol error: invalid multibulk length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, relay.Addr())
			if _, err := c.nc.Write([]byte(tc.input)); err != nil {
				t.Fatal(err)
			}
			if got := c.line(); !strings.HasPrefix(got, tc.want) {
				t.Fatalf("got %q, want prefix %q", got, tc.want)
			}
		})
	}
	// The relay still serves.
	c := dialRaw(t, relay.Addr())
	c.expect("+PONG", "PING")
}

func TestRoleAndInfo(t *testing.T) {
	master, relay := syncedRelay(t)
	replica := replicaOf(t, relay.HostPort)
	inSync(t, 10*time.Second, master, replica)
	ctx := t.Context()
	role, err := relay.Client().Do(ctx, "ROLE").Slice()
	if err != nil {
		t.Fatal(err)
	}
	h, p := master.HostPort()
	port, _ := strconv.ParseInt(p, 10, 64)
	if len(role) != 5 || role[0] != "slave" || role[1] != h || role[2] != port || role[3] != "connected" {
		t.Fatalf("ROLE = %v", role)
	}
	_, rp := replica.HostPort()
	redistest.Eventually(t, 5*time.Second, func() error {
		line := relay.InfoField(t, "slave0")
		if !strings.Contains(line, "port="+rp) || !strings.Contains(line, "state=online") {
			return fmt.Errorf("slave0:%s", line)
		}
		return nil
	})
	for field, want := range map[string]string{
		"role":               "slave",
		"master_link_status": "up",
		"slave_priority":     "0",
		"connected_slaves":   "1",
		"master_replid":      master.Info(t, "replication")["master_replid"],
	} {
		if got := relay.InfoField(t, field); got != want {
			t.Errorf("INFO %s = %q, want %q", field, got, want)
		}
	}
}

// TestRedisCliRDB: `redis-cli --rdb` (REPLCONF rdb-only 1 + SYNC) gets the
// relay's snapshot, current with nothing written after it, and the
// connection ends after it.
func TestRedisCliRDB(t *testing.T) {
	_, relay := syncedRelay(t)
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatal("redis-cli not found: apt-get install -y redis-tools")
	}
	out := filepath.Join(t.TempDir(), "dump.rdb")
	h, p := relay.HostPort()
	if msg, err := exec.Command(cli, "-h", h, "-p", p, "--rdb", out).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --rdb: %v\n%s", err, msg)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	st := relay.Status()
	want, err := os.ReadFile(relay.hist.Path(st.Snapshot.File))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("redis-cli got %d bytes, the relay's snapshot has %d", len(got), len(want))
	}
}

// TestLegacySync: a replica speaking SYNC (no PSYNC) gets the payload
// without a +FULLRESYNC line, then the stream.
func TestLegacySync(t *testing.T) {
	master, relay := syncedRelay(t)
	c := dialRaw(t, relay.Addr())
	c.send("SYNC")
	size := relay.Status().Snapshot.Size
	if got := c.line(); got != fmt.Sprintf("$%d", size) {
		t.Fatalf("SYNC answered %q, want $%d", got, size)
	}
	c.read(int(size))
	master.Do(t, "SET", "legacy", "yes")
	var got []byte
	for !bytes.Contains(got, []byte("legacy")) {
		got = append(got, c.read(1)...)
	}
}

func TestACLUsers(t *testing.T) {
	master := redistest.Start(t, "--user", "repl", "on", ">replpass", "+@all", "~*", "&*")
	relay := startRelay(t, master.Addr(), func(c *Config) {
		c.MasterUser, c.MasterAuth = "repl", "replpass"
		c.RequireUser, c.RequirePass = "sub", "subpass"
	})
	c := dialRaw(t, relay.Addr())
	c.expect("-WRONGPASS invalid username-password pair or user is disabled.", "AUTH", "nobody", "subpass")
	c.expect("+OK", "AUTH", "sub", "subpass")
	c.expect("+PONG", "PING")
	replica := replicaOf(t, relay.HostPort, "--masteruser", "sub", "--masterauth", "subpass")
	inSync(t, 20*time.Second, master, replica)
	// The relay's link to the master is authenticated as user repl.
	list := master.Do(t, "CLIENT", "LIST", "TYPE", "replica").(string)
	if !strings.Contains(list, "user=repl") {
		t.Errorf("the relay did not authenticate as repl:\n%s", list)
	}
}
