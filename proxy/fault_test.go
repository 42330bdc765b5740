package proxy

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/proxy/downstream"
	"github.com/redis-relay/redis-relay/proxy/history"
)

// Fault tests: crashes, broken files, a hostile network and hostile peers.
// The longest ones are named TestFaultSlow*, so -run can select or skip them.

func TestFaultRelayKilledUnderLoad(t *testing.T) {
	t.Parallel()
	// The master's backlog must hold what it writes while the relay is down
	// (the default 1 MB does not, under this load on a slow machine).
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	populate(t, master, 0, 20000)
	relay := startRelayProcess(t, master.Addr())
	reps := []*redistest.Server{replicaOf(t, relay.HostPort), replicaOf(t, relay.HostPort)}
	inSync(t, 20*time.Second, master, reps...)
	load := startLoad(t, master)
	for range 2 {
		time.Sleep(time.Second)
		relay.Restart() // SIGKILL, then a new process on the same data dir
	}
	time.Sleep(time.Second)
	load.Stop(t)
	inSync(t, 30*time.Second, master, reps...)
	if n := master.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("master sync_full = %d, want 1", n)
	}
	if n := master.InfoInt(t, "sync_partial_ok"); n < 2 {
		t.Errorf("master sync_partial_ok = %d, want >= 2", n)
	}
	if n := relay.InfoInt(t, "sync_full"); n != 0 {
		t.Errorf("restarted relay served %d full syncs, want 0", n)
	}
}

func TestFaultRelayKilledDuringUpstreamFullSync(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t, "--repl-diskless-sync", "no")
	populate(t, master, 0, 200000)
	link := redistest.NewFaultProxy(t, master.Addr())
	link.SetRate(4 << 20) // the snapshot takes a few seconds to arrive
	relay := startRelayProcess(t, link.Addr())
	redistest.Eventually(t, 20*time.Second, func() error {
		if relay.InfoInt(t, "master_sync_in_progress") != 1 || relay.InfoInt(t, "master_sync_read_bytes") < 1<<20 {
			return fmt.Errorf("relay not in the middle of its full sync")
		}
		return nil
	})
	relay.Kill()
	if _, err := os.Stat(filepath.Join(relay.dir, history.StateFile)); err == nil {
		t.Fatalf("state.json written before the first snapshot was complete")
	}
	link.SetRate(0)
	relay.start()
	replica := replicaOf(t, relay.HostPort)
	inSync(t, 30*time.Second, master, replica)
	rdbs, _ := filepath.Glob(filepath.Join(relay.dir, "snapshot-*.rdb"))
	if len(rdbs) != 1 {
		t.Errorf("data dir holds %d snapshots, want 1: %v", len(rdbs), rdbs)
	}
}

func TestFaultRelayKilledDuringDownstreamFullSync(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	populate(t, master, 0, 200000)
	relay := startRelayProcess(t, master.Addr())
	redistest.Eventually(t, 30*time.Second, func() error {
		if relay.InfoInt(t, "snapshot_bytes") == 0 || relay.InfoInt(t, "master_sync_in_progress") != 0 {
			return fmt.Errorf("relay has not got its own snapshot yet")
		}
		return nil
	})
	link := redistest.NewFaultProxy(t, relay.Addr())
	link.SetRate(4 << 20)
	replica := replicaOf(t, link.HostPort)
	redistest.Eventually(t, 20*time.Second, func() error {
		if replica.Info(t, "replication")["master_sync_in_progress"] != "1" {
			return fmt.Errorf("replica not receiving its snapshot yet")
		}
		return nil
	})
	time.Sleep(time.Second)
	relay.Restart()
	link.SetRate(0)
	inSync(t, 30*time.Second, master, replica)
	if n := master.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("master sync_full = %d, want 1", n)
	}
}

func TestFaultMasterRestartWithPersistence(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 5000)
	relay := startRelay(t, master.Addr())
	reps := []*redistest.Server{replicaOf(t, relay.HostPort), replicaOf(t, relay.HostPort)}
	inSync(t, 20*time.Second, master, reps...)
	writeKeys(t, master, 1, 500)
	waitOffsets(t, master, relay, reps...)
	master.Do(t, "SAVE") // the RDB keeps repl-id and repl-offset
	master.Kill()
	master.Restart(t)
	writeKeys(t, master, 2, 500)
	inSync(t, 30*time.Second, master, reps...)
	if n := master.InfoInt(t, "sync_full"); n != 0 {
		t.Errorf("restarted master served %d full syncs, want 0 (PSYNC through replid2)", n)
	}
	if n := relay.InfoInt(t, "sync_full"); n != 2 {
		t.Errorf("relay served %d full syncs, want 2 (the first ones only)", n)
	}
}

func TestFaultCorruptDataDir(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, dir string)
		partial bool // the relay can still resume partially
	}{
		{"garbage after the last segment's commands", func(t *testing.T, dir string) {
			segs, _ := filepath.Glob(filepath.Join(dir, "log-*", "*.seg"))
			f, err := os.OpenFile(segs[len(segs)-1], os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write([]byte("*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$10\r\nhal"))
			f.Close()
		}, true},
		{"truncated snapshot", func(t *testing.T, dir string) {
			rdbs, _ := filepath.Glob(filepath.Join(dir, "snapshot-*.rdb"))
			if err := os.Truncate(rdbs[0], 100); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"flipped byte in the snapshot", func(t *testing.T, dir string) {
			rdbs, _ := filepath.Glob(filepath.Join(dir, "snapshot-*.rdb"))
			b, _ := os.ReadFile(rdbs[0])
			b[len(b)/2] ^= 0xff
			os.WriteFile(rdbs[0], b, 0o644)
		}, false},
		{"garbage state file", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, history.StateFile), []byte("{not json"), 0o644)
		}, false},
		{"log directory removed", func(t *testing.T, dir string) {
			// The snapshot alone still names a point the master's backlog holds.
			logs, _ := filepath.Glob(filepath.Join(dir, "log-*"))
			os.RemoveAll(logs[0])
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			master := redistest.Start(t)
			populate(t, master, 0, 3000)
			relay := startRelay(t, master.Addr())
			replica := replicaOf(t, relay.HostPort)
			inSync(t, 20*time.Second, master, replica)
			writeKeys(t, master, 1, 300)
			inSync(t, 20*time.Second, master, replica)
			relay.Stop()
			tc.damage(t, relay.cfg.DataDir)
			relay.start(relay.port)
			writeKeys(t, master, 2, 300)
			inSync(t, 30*time.Second, master, replica)
			full := master.InfoInt(t, "sync_full")
			if tc.partial && full != 1 {
				t.Errorf("master sync_full = %d, want 1: the repaired log should resume partially", full)
			}
			if !tc.partial && full != 2 {
				t.Errorf("master sync_full = %d, want 2: damaged history must be replaced by a full sync", full)
			}
		})
	}
}

// TestFaultSnapshotCutMidTransfer resets the master link in the middle of
// the RDB: the half snapshot is discarded and the next full sync succeeds.
func TestFaultSnapshotCutMidTransfer(t *testing.T) {
	master := redistest.Start(t, "--repl-diskless-sync", "no")
	populate(t, master, 0, 50000)
	link := redistest.NewFaultProxy(t, master.Addr())
	link.CutAfter(300 << 10)
	relay := startRelay(t, link.Addr())
	replica := replicaOf(t, relay.HostPort)
	inSync(t, 30*time.Second, master, replica)
	if n := master.InfoInt(t, "sync_full"); n != 2 {
		t.Errorf("master sync_full = %d, want 2 (cut, then complete)", n)
	}
	rdbs, _ := filepath.Glob(filepath.Join(relay.cfg.DataDir, "snapshot-*.rdb"))
	if len(rdbs) != 1 {
		t.Errorf("data dir holds %d snapshots: %v", len(rdbs), rdbs)
	}
}

// TestFaultSlowUpstreamTrickle: a master link slowed to a trickle still
// delivers a consistent stream.
func TestFaultSlowUpstreamTrickle(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 5000)
	link := redistest.NewFaultProxy(t, master.Addr())
	relay := startRelay(t, link.Addr())
	replica := replicaOf(t, relay.HostPort)
	inSync(t, 20*time.Second, master, replica)
	link.SetRate(64 << 10)
	writeKeys(t, master, 1, 2000)
	link.SetRate(0)
	inSync(t, 30*time.Second, master, replica)
}

// TestFaultMalformedMasterStream corrupts the master's stream on the wire:
// the relay drops the link, takes a clean full resync, and its replicas
// never receive the bytes it could not frame.
func TestFaultMalformedMasterStream(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 3000)
	link := redistest.NewFaultProxy(t, master.Addr())
	relay := startRelay(t, link.Addr())
	replica := replicaOf(t, relay.HostPort)
	inSync(t, 20*time.Second, master, replica)

	var once atomic.Bool
	link.SetMangle(func(b []byte) []byte {
		if i := bytes.Index(b, []byte("poison")); i >= 0 && once.CompareAndSwap(false, true) {
			return append(append(append([]byte(nil), b[:i]...), "\r\nGARBAGE\r\n"...), b[i:]...)
		}
		return b
	})
	master.Do(t, "SET", "poison", "1")
	redistest.Eventually(t, 20*time.Second, func() error {
		if n := relay.Status().ProtocolErrors; n < 1 {
			return fmt.Errorf("relay has not seen the bad stream")
		}
		return nil
	})
	link.SetMangle(nil)
	writeKeys(t, master, 1, 300)
	inSync(t, 30*time.Second, master, replica)
	if n := master.InfoInt(t, "sync_full"); n != 2 {
		t.Errorf("master sync_full = %d, want 2: a malformed stream forces one clean full resync", n)
	}
	if log, _ := os.ReadFile(replica.LogPath); bytes.Contains(log, []byte("Protocol error")) {
		t.Errorf("the replica saw a protocol error: the relay forwarded bytes it could not frame")
	}
}

// TestFaultLyingRDBLength: the $<len> of the transfer is wrong on the wire;
// the snapshot fails validation, is never served, and a retry succeeds.
func TestFaultLyingRDBLength(t *testing.T) {
	master := redistest.Start(t, "--repl-diskless-sync", "no")
	populate(t, master, 0, 3000)
	link := redistest.NewFaultProxy(t, master.Addr())
	var once atomic.Bool
	preamble := regexp.MustCompile(`(^|\n)\$([0-9]+)\r\n`)
	link.SetMangle(func(b []byte) []byte {
		m := preamble.FindSubmatchIndex(b)
		if m == nil || !once.CompareAndSwap(false, true) {
			return b
		}
		n, _ := strconv.Atoi(string(b[m[4]:m[5]]))
		out := append([]byte(nil), b[:m[4]]...)
		out = strconv.AppendInt(out, int64(n-10), 10)
		return append(out, b[m[5]:]...)
	})
	relay := startRelay(t, link.Addr())
	replica := replicaOf(t, relay.HostPort)
	inSync(t, 30*time.Second, master, replica)
	if !once.Load() {
		t.Fatal("the length was never rewritten")
	}
	if n := relay.Status().SnapshotsRejected; n < 1 {
		t.Errorf("snapshots rejected = %d, want >= 1", n)
	}
}

// TestFaultSlowStoppedReplica: a replica that stops reading while the master
// writes far more than the relay keeps costs the relay no memory; it is
// dropped when it falls out of the retained log, full-syncs from the relay
// when it comes back, and the other replica is not slowed meanwhile.
func TestFaultSlowStoppedReplica(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 20000)
	relay := startRelay(t, master.Addr(), func(c *Config) {
		c.ReplTimeout = 120 * time.Second // it must fall behind, not time out
		c.RefreshRatio = 0.5
		c.RefreshMinBytes = 8 << 20
		c.SegmentSize = 4 << 20
	})
	stopped, healthy := replicaOf(t, relay.HostPort), replicaOf(t, relay.HostPort)
	inSync(t, 20*time.Second, master, stopped, healthy)
	if err := stopped.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer stopped.Signal(syscall.SIGCONT)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak uint64
	value := strings.Repeat("v", 4096)
	c := master.Client()
	for i := range 200 { // ~200 MB through the relay
		pipe := c.Pipeline()
		for j := range 250 {
			pipe.Set(t.Context(), fmt.Sprintf("big:%d", j), value, 0)
		}
		if _, err := pipe.Exec(t.Context()); err != nil {
			t.Fatal(err)
		}
		if i%20 == 0 {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
		}
	}
	inSync(t, 30*time.Second, master, healthy) // not slowed by the stopped one
	growth := int64(peak) - int64(before.HeapInuse)
	t.Logf("heap in use: %d MiB before, %d MiB peak while 200 MB went through", before.HeapInuse>>20, peak>>20)
	if growth > 64<<20 {
		t.Errorf("relay heap grew by %d MiB with a stopped replica", growth>>20)
	}
	redistest.Eventually(t, 30*time.Second, func() error {
		if n := relay.Status().Disconnects[downstream.ReasonFellBehind]; n < 1 {
			return fmt.Errorf("stopped replica not dropped yet (log first %d)", relay.Status().Log.First)
		}
		return nil
	})
	stopped.Signal(syscall.SIGCONT)
	inSync(t, 60*time.Second, master, stopped, healthy)
	masterSyncsAreRelayRefreshes(t, master, relay)
}

// TestFaultSlowManyReplicasNoLeak: replicas connect, are all kicked, and
// reconnect; afterwards the relay holds no extra goroutines or files.
func TestFaultSlowManyReplicasNoLeak(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	populate(t, master, 0, 2000)
	relay := startRelay(t, master.Addr())
	c := dialRaw(t, relay.Addr())
	c.expect("+PONG", "PING")
	time.Sleep(200 * time.Millisecond)
	goroutines, fds := runtime.NumGoroutine(), relayFDs(t, relay)

	const n = 30
	var reps []*redistest.Server
	for range n {
		reps = append(reps, replicaOf(t, relay.HostPort))
	}
	inSync(t, 60*time.Second, master, reps...)
	for range 3 {
		if err := relay.Client().Do(t.Context(), "CLIENT", "KILL", "TYPE", "replica").Err(); err != nil {
			t.Fatal(err)
		}
		writeKeys(t, master, 1, 50)
		inSync(t, 30*time.Second, master, reps...)
	}
	if got := relay.Status().Disconnects[downstream.ReasonKilled]; got < 3*n {
		t.Errorf("%d sessions killed, want %d", got, 3*n)
	}
	for _, r := range reps {
		r.Kill()
	}
	relay.Client().Close()
	relay.client = nil
	redistest.Eventually(t, 20*time.Second, func() error {
		g, f := runtime.NumGoroutine(), relayFDs(t, relay)
		if g > goroutines+5 || f > fds+5 {
			return fmt.Errorf("goroutines %d (was %d), open files %d (was %d)", g, goroutines, f, fds)
		}
		return nil
	})
}

// relayFDs counts this process's open files that belong to the relay: its
// sockets (local port = the relay's) and files in its data dir.
func relayFDs(t *testing.T, relay *testRelay) int {
	t.Helper()
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		raw, _ := os.ReadFile(table)
		for _, line := range strings.Split(string(raw), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			_, portHex, _ := strings.Cut(f[1], ":")
			if port, err := strconv.ParseInt(portHex, 16, 32); err == nil && int(port) == relay.port {
				inodes[f[9]] = true
			}
		}
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue
		}
		if strings.HasPrefix(target, relay.cfg.DataDir) {
			n++
		}
		if inode, ok := strings.CutPrefix(target, "socket:["); ok && inodes[strings.TrimSuffix(inode, "]")] {
			n++
		}
	}
	return n
}

// TestFaultHostileClients: slow-loris and oversized requests are cut off in
// bounded time and memory; replicas are unaffected.
func TestFaultHostileClients(t *testing.T) {
	master := redistest.Start(t)
	relay := startRelay(t, master.Addr(), func(c *Config) { c.CommandTimeout = time.Second })
	replica := replicaOf(t, relay.HostPort)
	inSync(t, 10*time.Second, master, replica)

	// Byte at a time, never finishing the command.
	nc, err := net.Dial("tcp", relay.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	start := time.Now()
	closed := false
	for _, b := range []byte("*2\r\n$4\r\nPING\r\n$100\r\nabcdefghij") {
		if _, err := nc.Write([]byte{b}); err != nil {
			closed = true
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !closed {
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Read(make([]byte, 16)); err == nil {
			t.Fatal("slow-loris connection still open")
		}
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("slow-loris connection lasted %v", d)
	}

	// Garbage of all kinds, in parallel with replication.
	for _, junk := range []string{"\x00\x01\x02\xff\r\n", "*2\r\n$-5\r\n", "*9999999999\r\n", "$5\r\nhello\r\n", strings.Repeat("A", 70<<10) + "\r\n"} {
		c := dialRaw(t, relay.Addr())
		c.nc.Write([]byte(junk))
		c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.br.ReadString('\n'); err != nil && !strings.Contains(err.Error(), "reset") && !strings.Contains(err.Error(), "EOF") {
			t.Errorf("%q: %v", junk[:min(len(junk), 16)], err)
		}
	}
	writeKeys(t, master, 0, 200)
	inSync(t, 10*time.Second, master, replica)
}

// masterSyncsAreRelayRefreshes checks that the master served one full sync
// for the relay's link plus one per snapshot refresh, none for replicas. A
// refresh may be under way, so it waits for the two counts to settle.
func masterSyncsAreRelayRefreshes(t *testing.T, master *redistest.Server, relay *testRelay) {
	t.Helper()
	redistest.Eventually(t, 30*time.Second, func() error {
		st := relay.Status()
		if got, want := master.InfoInt(t, "sync_full"), 1+st.Refreshes+st.RefreshFailures; got != want {
			return fmt.Errorf("master sync_full = %d, want 1 + %d refreshes + %d failed ones", got, st.Refreshes, st.RefreshFailures)
		}
		return nil
	})
}
