package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// redisCli is the path of redis-cli; the test fails without it.
func redisCli(t *testing.T) string {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatal("redis-cli not found: apt-get install -y redis-tools")
	}
	return cli
}

// TestRedisCliReplicaStartsLive: redis-cli --replica (rdb-filter-only "") against
// the relay prints no error, and the first command it prints is one
// written after it connected, not the log since the relay's snapshot.
func TestRedisCliReplicaStartsLive(t *testing.T) {
	master, relay := syncedRelay(t)
	redistest.Eventually(t, 30*time.Second, func() error { return relayOnline(relay) })
	// Stream after the snapshot: a stale start would print these first.
	for i := range 50 {
		master.Do(t, "SET", fmt.Sprintf("before:%d", i), i)
	}
	caughtUp(t, master, relay)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := startRedisCliReplica(t, ctx, relay)
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("redis-cli --replica ended")
			}
			return l
		case <-ctx.Done():
			t.Fatal("redis-cli --replica printed nothing more")
		}
		return ""
	}
	var printed []string
	for {
		l := next()
		printed = append(printed, l)
		if strings.Contains(strings.ToLower(l), "error") || strings.HasPrefix(l, "-") {
			t.Fatalf("redis-cli --replica printed an error: %q", printed)
		}
		if strings.Contains(l, "Logging commands from master") {
			break
		}
	}
	master.Do(t, "SET", "after", "connect")
	for {
		l := next()
		if strings.EqualFold(l, `"PING"`) || strings.HasPrefix(l, "sending REPLCONF ACK") {
			continue // redis-cli's own ACK, the master's heartbeat
		}
		if l != `"SET","after","connect"` {
			t.Fatalf("first command printed: %s, want the SET written after connecting (all: %q)", l, append(printed, l))
		}
		break
	}
	if n := relay.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("relay sync_full = %d, want 1", n)
	}
}

// TestRedisCliReplicaUnderLoad: under a write load with transactions,
// redis-cli --replica starts on a whole command outside any transaction:
// every line it prints is a command, and the first MULTI or EXEC it prints
// is a MULTI.
func TestRedisCliReplicaUnderLoad(t *testing.T) {
	master, relay := syncedRelay(t)
	redistest.Eventually(t, 30*time.Second, func() error { return relayOnline(relay) })
	load := startLoad(t, master)
	defer load.Stop(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := startRedisCliReplica(t, ctx, relay)
	sc := bufio.NewScanner(out)
	synced, commands, seenTx := false, 0, false
	for commands < 2000 && sc.Scan() {
		l := sc.Text()
		switch {
		case !synced:
			synced = strings.Contains(l, "Logging commands from master")
			if strings.Contains(strings.ToLower(l), "error") {
				t.Fatalf("redis-cli --replica printed an error: %q", l)
			}
		case strings.HasPrefix(l, "sending REPLCONF ACK"):
		case !strings.HasPrefix(l, `"`):
			t.Fatalf("after %d commands redis-cli printed %q", commands, l)
		default:
			commands++
			name := strings.ToLower(strings.SplitN(l, ",", 2)[0])
			if !seenTx && (name == `"multi"` || name == `"exec"`) {
				seenTx = true
				if name != `"multi"` {
					t.Fatalf("the first transaction line printed is %s: the stream started inside a transaction", l)
				}
			}
		}
	}
	if commands < 2000 || !seenTx {
		t.Fatalf("redis-cli printed %d commands (transactions seen: %v), err %v", commands, seenTx, sc.Err())
	}
}

// TestRedisCliFunctionsRDB: redis-cli --functions-rdb against the relay
// writes a file whose libraries, loaded into a scratch server, are the
// master's now: those in the relay's snapshot, changed by FUNCTION LOAD,
// LOAD REPLACE, DELETE, RESTORE and FLUSH written after it, among other
// writes.
func TestRedisCliFunctionsRDB(t *testing.T) {
	lib := func(name, ret string) string {
		return fmt.Sprintf("#!lua name=%s\nredis.register_function('%s_f', function() return %s end)", name, name, ret)
	}
	master := redistest.Start(t)
	master.Do(t, "FUNCTION", "LOAD", lib("kept", "1"))
	master.Do(t, "FUNCTION", "LOAD", lib("replaced", "1"))
	master.Do(t, "FUNCTION", "LOAD", lib("deleted", "1"))
	populate(t, master, 0, 1000)
	relay := startRelay(t, master.Addr())
	redistest.Eventually(t, 30*time.Second, func() error { return relayOnline(relay) })

	// A dump from another server, restored on the master.
	other := redistest.Start(t)
	other.Do(t, "FUNCTION", "LOAD", lib("restored", "4"))
	dump := other.Do(t, "FUNCTION", "DUMP").(string)

	// The FUNCTION commands land among other writes.
	load := startLoad(t, master)
	defer load.Stop(t)
	master.Do(t, "FUNCTION", "LOAD", lib("added", "2"))
	master.Do(t, "FUNCTION", "LOAD", "REPLACE", lib("replaced", "3"))
	master.Do(t, "FUNCTION", "DELETE", "deleted")
	master.Do(t, "FUNCTION", "RESTORE", dump)
	master.Do(t, "SET", "k", "v")

	check := func(t *testing.T) {
		caughtUp(t, master, relay)
		dir := t.TempDir()
		h, p := relay.HostPort()
		if msg, err := exec.Command(redisCli(t), "-h", h, "-p", p, "--functions-rdb", filepath.Join(dir, "dump.rdb")).CombinedOutput(); err != nil {
			t.Fatalf("redis-cli --functions-rdb: %v\n%s", err, msg)
		}
		scratch := redistest.Start(t, "--dir", dir, "--dbfilename", "dump.rdb")
		if got, want := libraryCode(t, scratch), libraryCode(t, master); !slices.Equal(got, want) {
			t.Fatalf("libraries from the relay's file:\n%q\nthe master's:\n%q", got, want)
		}
		if n := scratch.Do(t, "DBSIZE"); n != int64(0) {
			t.Errorf("the file holds %v keys, want none", n)
		}
	}
	t.Run("changed", check)
	master.Do(t, "FUNCTION", "FLUSH")
	master.Do(t, "FUNCTION", "LOAD", lib("afterflush", "5"))
	t.Run("flushed", check)
}

// libraryCode lists a server's libraries as "name\ncode", sorted.
func libraryCode(t *testing.T, s *redistest.Server) []string {
	t.Helper()
	libs, err := s.Client().FunctionList(context.Background(), redis.FunctionListQuery{WithCode: true}).Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range libs {
		out = append(out, l.Name+"\n"+l.Code)
	}
	slices.Sort(out)
	return out
}

// TestRDBFilterOnlyReplies: REPLCONF rdb-filter-only answers as Redis 7.0
// does for unknown filters and for a filtered sync without capa eof.
func TestRDBFilterOnlyReplies(t *testing.T) {
	_, relay := syncedRelay(t)
	c := dialRaw(t, relay.Addr())
	c.expect("-ERR Unsupported rdb-filter-only option: keys", "REPLCONF", "rdb-filter-only", "functions keys")
	c.expect("+OK", "REPLCONF", "rdb-filter-only", "")
	c.expect("-ERR Filtered replica requires EOF capability", "SYNC")
	c.expect("-ERR Filtered replica requires EOF capability", "PSYNC", "?", "-1")
}

// startRedisCliReplica runs redis-cli --replica against relay until ctx ends
// (the test waits for it), and returns what it prints, stderr included.
func startRedisCliReplica(t *testing.T, ctx context.Context, relay *testRelay) io.Reader {
	t.Helper()
	h, p := relay.HostPort()
	cmd := exec.CommandContext(ctx, redisCli(t), "-h", h, "-p", p, "--replica")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Wait() })
	return out
}
