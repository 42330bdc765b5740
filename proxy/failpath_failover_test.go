package proxy

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// Failover under a write load of large values: the master is killed while
// it is in the middle of sending its replicas a MULTI/EXEC block of large
// SETs, so that the relay holds part of a transaction (and part of a
// command) the promoted replica never applied. A stock replica is promoted
// with REPLICAOF NO ONE and the relays are pointed at it with REPLICAOF.
// Nothing below the relays may need a full sync, and the promoted replica
// must see only partial resyncs.

// foKillMidTransaction kills the master while it is sending its replicas a
// MULTI/EXEC block of 160 SETs of 400-500 KB (64 MB or more), so that the
// block, and one of its large commands, reaches them only in part. The
// other writers are held meanwhile, and the block is sent once the replica
// and every relay have caught up with the master, so it starts right after
// their offsets. The master is killed once each of them has read more than
// 64 KB and less than 12 MB of the block: what is still in the socket
// buffers (at most 36 MB with Linux's default tcp_rmem and tcp_wmem
// limits) reaches them after the kill, but not the whole block. If one of them gets past 12 MB first, another block is sent;
// after 30 s the master is killed anyway.
func foKillMidTransaction(t *testing.T, master *redistest.Server, load *bigLoad, spare *redistest.Server, relays ...*testRelay) {
	t.Helper()
	load.gate.Lock()
	defer load.gate.Unlock()
	c := loadClient(master)
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	readOffsets := func() []int64 {
		read, err := strconv.ParseInt(spare.Info(t, "replication")["slave_read_repl_offset"], 10, 64)
		if err != nil {
			t.Fatalf("replica %s slave_read_repl_offset: %v", spare.Addr(), err)
		}
		offs := []int64{read}
		for _, r := range relays {
			offs = append(offs, r.InfoInt(t, "master_repl_offset"))
		}
		return offs
	}
	var start int64
	done := make(chan error, 1)
	send := func(round int) {
		redistest.Eventually(t, 60*time.Second, func() error {
			start = master.InfoInt(t, "master_repl_offset")
			for _, off := range readOffsets() {
				if off != start {
					return fmt.Errorf("a replica is at %d, the master at %d", off, start)
				}
			}
			return nil
		})
		rng := rand.New(rand.NewPCG(99, uint64(round)))
		go func() {
			tx := c.TxPipeline()
			for i := range 160 {
				n := 400<<10 + rng.IntN(100<<10)
				off := rng.IntN(len(bigValueSpace) - n)
				tx.Set(ctx, fmt.Sprintf("fo:tx:%d", i), bigValueSpace[off:off+n], 0)
				tx.Incr(ctx, "fo:tx:count")
			}
			_, err := tx.Exec(ctx)
			done <- err
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	round := 0
	send(round)
	for time.Now().Before(deadline) {
		offs := readOffsets()
		inside, passed := true, false
		for i := range offs {
			offs[i] -= start
			inside = inside && offs[i] > 64<<10 && offs[i] < 12<<20
			passed = passed || offs[i] >= 12<<20
		}
		if inside {
			t.Logf("killing the master %v bytes into a transaction (replica, relays; round %d)", offs, round)
			break
		}
		if passed {
			if err := <-done; err != nil {
				t.Fatalf("transaction on the master: %v", err)
			}
			round++
			send(round)
			continue
		}
		time.Sleep(time.Millisecond)
	}
	master.Kill()
}

// foRelayInfo reads the replication fields of a relay once.
func foRelayInfo(t testing.TB, r *testRelay) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	text, err := r.Client().Info(ctx, "everything").Result()
	if err != nil {
		t.Fatalf("relay INFO: %v", err)
	}
	return redistest.ParseInfo(text)
}

// foWaitLinkDown waits until neither the promoted-to-be replica nor the
// relays have a link to the dead master, and logs how far each got: the
// relay's log may end inside a command the replica never applied.
func foWaitLinkDown(t *testing.T, spare *redistest.Server, relays ...*testRelay) {
	t.Helper()
	redistest.Eventually(t, 30*time.Second, func() error {
		if s := spare.Info(t, "replication")["master_link_status"]; s != "down" {
			return fmt.Errorf("replica %s link still %s", spare.Addr(), s)
		}
		for _, r := range relays {
			if s := foRelayInfo(t, r)["master_link_status"]; s != "down" {
				return fmt.Errorf("relay %s link still %s", r.Addr(), s)
			}
		}
		return nil
	})
	si := spare.Info(t, "replication")
	msg := fmt.Sprintf("after the kill: replica applied up to %s, read up to %s", si["slave_repl_offset"], si["slave_read_repl_offset"])
	for _, r := range relays {
		msg += fmt.Sprintf("; relay %s holds up to %s", r.Addr(), foRelayInfo(t, r)["master_repl_offset"])
	}
	t.Log(msg)
}

// foPromote turns a replica into a master, as an operator does by hand.
func foPromote(t *testing.T, s *redistest.Server) {
	t.Helper()
	s.Do(t, "REPLICAOF", "NO", "ONE")
	redistest.Eventually(t, 30*time.Second, func() error {
		if role := s.Info(t, "replication")["role"]; role != "master" {
			return fmt.Errorf("%s is still %s", s.Addr(), role)
		}
		return nil
	})
}

// foRepoint sends REPLICAOF host port to a relay.
func foRepoint(t *testing.T, r *testRelay, to *redistest.Server) {
	t.Helper()
	h, p := to.HostPort()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Client().Do(ctx, "REPLICAOF", h, p).Err(); err != nil {
		t.Fatalf("relay %s REPLICAOF %s %s: %v", r.Addr(), h, p, err)
	}
}

// foWaitRelayLinked waits until a relay streams from the given upstream.
func foWaitRelayLinked(t *testing.T, r *testRelay, host, port string) {
	t.Helper()
	redistest.Eventually(t, 60*time.Second, func() error {
		info := foRelayInfo(t, r)
		if info["master_host"] != host || info["master_port"] != port || info["master_link_status"] != "up" {
			return fmt.Errorf("relay %s follows %s:%s, link %s (last error %s)", r.Addr(),
				info["master_host"], info["master_port"], info["master_link_status"], info["upstream_last_error"])
		}
		return nil
	})
}

// foWaitOffsets waits until every relay and every leaf has the master's
// replid and master_repl_offset.
func foWaitOffsets(t *testing.T, master *redistest.Server, relays []*testRelay, leaves ...*redistest.Server) {
	t.Helper()
	redistest.Eventually(t, 60*time.Second, func() error {
		mi := master.Info(t, "replication")
		want, id := mi["master_repl_offset"], mi["master_replid"]
		for _, r := range relays {
			info := foRelayInfo(t, r)
			if info["master_replid"] != id || info["master_repl_offset"] != want {
				return fmt.Errorf("relay %s at %s/%s, master %s/%s", r.Addr(), info["master_replid"], info["master_repl_offset"], id, want)
			}
		}
		for _, l := range leaves {
			li := l.Info(t, "replication")
			if li["master_replid"] != id || li["slave_repl_offset"] != want || li["master_repl_offset"] != want {
				return fmt.Errorf("replica %s at %s/%s, master %s/%s", l.Addr(), li["master_replid"], li["slave_repl_offset"], id, want)
			}
		}
		return nil
	})
}

// foWaitReplID waits until relays and replicas have the given replid and
// their link to their master is up.
func foWaitReplID(t *testing.T, id string, relays []*testRelay, leaves ...*redistest.Server) {
	t.Helper()
	redistest.Eventually(t, 60*time.Second, func() error {
		for _, r := range relays {
			info := foRelayInfo(t, r)
			if info["master_replid"] != id || info["master_link_status"] != "up" {
				return fmt.Errorf("relay %s has replid %s, link %s; want %s", r.Addr(), info["master_replid"], info["master_link_status"], id)
			}
		}
		for _, l := range leaves {
			info := l.Info(t, "replication")
			if info["master_replid"] != id || info["master_link_status"] != "up" {
				return fmt.Errorf("replica %s has replid %s, link %s; want %s", l.Addr(), info["master_replid"], info["master_link_status"], id)
			}
		}
		return nil
	})
}

// foWaitLinkUp waits until a stock replica's link to its master is up.
func foWaitLinkUp(t *testing.T, s *redistest.Server) {
	t.Helper()
	redistest.Eventually(t, 60*time.Second, func() error {
		info := s.Info(t, "replication")
		if info["master_link_status"] != "up" || info["master_sync_in_progress"] != "0" {
			return fmt.Errorf("replica %s link %s, sync in progress %s", s.Addr(), info["master_link_status"], info["master_sync_in_progress"])
		}
		return nil
	})
}

// foCheckLateReplica attaches a new replica to the relay after the failover
// and breaks its link once: it must come back with a partial resync, because
// the full sync it got first named the new master's history.
func foCheckLateReplica(t *testing.T, primary *redistest.Server, relay *testRelay, others ...*redistest.Server) {
	fullBefore := relay.InfoInt(t, "sync_full")
	late := replicaOf(t, relay.HostPort)
	inSync(t, 60*time.Second, primary, append(others, late)...)
	foWaitLinkUp(t, late)
	if got, want := late.Info(t, "replication")["master_replid"], primary.Info(t, "replication")["master_replid"]; got != want {
		t.Errorf("new replica was given replid %s, the master's is %s", got, want)
	}
	writeKeys(t, primary, 5, 300)
	inSync(t, 60*time.Second, primary, append(others, late)...)

	syncsBefore := relay.InfoInt(t, "sync_full") + relay.InfoInt(t, "sync_partial_ok")
	partialBefore := relay.InfoInt(t, "sync_partial_ok")
	late.Do(t, "CLIENT", "KILL", "TYPE", "master")
	redistest.Eventually(t, 60*time.Second, func() error {
		if n := relay.InfoInt(t, "sync_full") + relay.InfoInt(t, "sync_partial_ok"); n <= syncsBefore {
			return fmt.Errorf("relay has not served the replica's reconnect yet")
		}
		return nil
	})
	foWaitLinkUp(t, late)
	writeKeys(t, primary, 6, 100)
	inSync(t, 60*time.Second, primary, append(others, late)...)

	if n := relay.InfoInt(t, "sync_full"); n != fullBefore+1 {
		t.Errorf("relay sync_full went from %d to %d, want +1 (the new replica's first sync only)", fullBefore, n)
	}
	if n := relay.InfoInt(t, "sync_partial_ok"); n <= partialBefore {
		t.Errorf("relay sync_partial_ok stayed at %d: the new replica's reconnect was not a partial resync", n)
	}
	if n := late.InfoInt(t, "sync_full"); n != 0 {
		t.Errorf("new replica served %d full syncs", n)
	}
}

func TestFailoverUnderLoadNoFullSync(t *testing.T) {
	t.Parallel()
	backlog := []string{"--repl-backlog-size", "256mb"}
	master := redistest.Start(t, backlog...)
	populate(t, master, 0, 5000)
	spare := replicaOf(t, master.HostPort, backlog...)
	relay := startRelay(t, master.Addr())
	leaf := replicaOf(t, relay.HostPort)
	inSync(t, 60*time.Second, master, spare, leaf)
	foWaitLinkUp(t, leaf)
	relayFull := relay.InfoInt(t, "sync_full")
	relayUpFull := relay.InfoInt(t, "upstream_full_syncs")

	load := startBigLoad(master, bigLoadOptions{Writers: 2, Pause: 20 * time.Millisecond, Seed: 1})
	time.Sleep(2 * time.Second) // let the load fill the stream
	foKillMidTransaction(t, master, load, spare, relay)
	t.Logf("%d batches written to the old master", load.Stop(t, true))
	foWaitLinkDown(t, spare, relay)

	foPromote(t, spare)
	foRepoint(t, relay, spare)
	load = startBigLoad(spare, bigLoadOptions{Writers: 2, Pause: 20 * time.Millisecond, Seed: 2})
	time.Sleep(3 * time.Second)
	t.Logf("%d batches written to the new master", load.Stop(t, false))
	sh, sp := spare.HostPort()
	foWaitRelayLinked(t, relay, sh, sp)
	inSync(t, 60*time.Second, spare, leaf)
	foWaitOffsets(t, spare, []*testRelay{relay}, leaf)

	if n := spare.InfoInt(t, "sync_full"); n != 0 {
		t.Errorf("promoted replica served %d full syncs, want 0: the relay should have resumed partially", n)
	}
	if n := spare.InfoInt(t, "sync_partial_ok"); n < 1 {
		t.Errorf("promoted replica sync_partial_ok = %d, want >= 1", n)
	}
	if n := relay.InfoInt(t, "upstream_full_syncs"); n != relayUpFull {
		t.Errorf("relay full-synced %d times from its upstream after the failover", n-relayUpFull)
	}
	if n := relay.InfoInt(t, "sync_full"); n != relayFull {
		t.Errorf("relay sync_full went from %d to %d: its replica had to full-sync after the failover", relayFull, n)
	}
	if got, want := leaf.Info(t, "replication")["master_replid"], spare.Info(t, "replication")["master_replid"]; got != want {
		t.Errorf("replica behind the relay has replid %s, new master %s", got, want)
	}

	foCheckLateReplica(t, spare, relay, leaf)
}

// TestFailoverUnderLoadStockIntermediate is the reference for
// TestFailoverUnderLoadNoFullSync: the same failover with a stock
// redis-server in the relay's place. Redis resumes partially here (its
// offset is that of the last whole command outside MULTI), and so must
// the relay.
func TestFailoverUnderLoadStockIntermediate(t *testing.T) {
	t.Parallel()
	backlog := []string{"--repl-backlog-size", "256mb"}
	master := redistest.Start(t, backlog...)
	populate(t, master, 0, 5000)
	spare := replicaOf(t, master.HostPort, backlog...)
	mid := replicaOf(t, master.HostPort, backlog...)
	leaf := replicaOf(t, mid.HostPort)
	inSync(t, 60*time.Second, master, spare, mid, leaf)
	midFull := mid.InfoInt(t, "sync_full")

	load := startBigLoad(master, bigLoadOptions{Writers: 2, Pause: 20 * time.Millisecond, Seed: 1})
	time.Sleep(2 * time.Second)
	foKillMidTransaction(t, master, load, spare)
	load.Stop(t, true)
	foWaitLinkDown(t, spare)

	foPromote(t, spare)
	sh, sp := spare.HostPort()
	mid.Do(t, "REPLICAOF", sh, sp)
	load = startBigLoad(spare, bigLoadOptions{Writers: 2, Pause: 20 * time.Millisecond, Seed: 2})
	time.Sleep(3 * time.Second)
	load.Stop(t, false)
	inSync(t, 60*time.Second, spare, mid, leaf)
	if n := spare.InfoInt(t, "sync_full"); n != 0 {
		t.Errorf("promoted replica served %d full syncs to the stock intermediate", n)
	}
	if n := mid.InfoInt(t, "sync_full"); n != midFull {
		t.Errorf("the stock intermediate served %d full syncs after the failover", n-midFull)
	}
}

// TestFailoverLateReplicaResumesPartially: a replica that first attaches to
// the relay after a failover gets the relay's snapshot, which predates the
// failover; the full sync must still name the new master's history, so that
// the replica's next reconnect is a partial resync.
func TestFailoverLateReplicaResumesPartially(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 5000)
	spare := replicaOf(t, master.HostPort)
	relay := startRelay(t, master.Addr())
	leaf := replicaOf(t, relay.HostPort)
	writeKeys(t, master, 1, 500)
	inSync(t, 60*time.Second, master, spare, leaf)
	foWaitOffsets(t, master, []*testRelay{relay}, spare, leaf)
	relayFull := relay.InfoInt(t, "sync_full")

	master.Kill()
	foWaitLinkDown(t, spare, relay)
	foPromote(t, spare)
	foRepoint(t, relay, spare)
	sh, sp := spare.HostPort()
	foWaitRelayLinked(t, relay, sh, sp)
	writeKeys(t, spare, 2, 500)
	inSync(t, 60*time.Second, spare, leaf)
	foWaitOffsets(t, spare, []*testRelay{relay}, leaf)
	if n := relay.InfoInt(t, "sync_full"); n != relayFull {
		t.Errorf("relay sync_full went from %d to %d during the failover", relayFull, n)
	}
	if n := spare.InfoInt(t, "sync_full"); n != 0 {
		t.Errorf("promoted replica served %d full syncs, want 0", n)
	}

	foCheckLateReplica(t, spare, relay, leaf)
}

// TestFailoverChainedRelaysUnderLoad: relay R2 follows relay R1, which
// follows the master. After the master is killed under load and a replica
// is promoted, R1 is pointed at it and then restarted while the new master
// still takes writes. Every level ends with the new master's data, replid
// and offset, and only partial resyncs happened anywhere.
func TestFailoverChainedRelaysUnderLoad(t *testing.T) {
	t.Parallel()
	backlog := []string{"--repl-backlog-size", "256mb"}
	master := redistest.Start(t, backlog...)
	populate(t, master, 0, 5000)
	spare := replicaOf(t, master.HostPort, backlog...)
	r1 := startRelay(t, master.Addr())
	r2 := startRelay(t, r1.Addr())
	leaf1 := replicaOf(t, r1.HostPort)
	leaf2 := replicaOf(t, r2.HostPort)
	inSync(t, 60*time.Second, master, spare, leaf1, leaf2)
	foWaitLinkUp(t, leaf1)
	foWaitLinkUp(t, leaf2)
	r1Full, r2Full := r1.InfoInt(t, "sync_full"), r2.InfoInt(t, "sync_full")

	load := startBigLoad(master, bigLoadOptions{Writers: 2, Pause: 20 * time.Millisecond, Seed: 3})
	time.Sleep(2 * time.Second) // let the load fill the stream
	foKillMidTransaction(t, master, load, spare, r1)
	t.Logf("%d batches written to the old master", load.Stop(t, true))
	foWaitLinkDown(t, spare, r1)

	foPromote(t, spare)
	foRepoint(t, r1, spare)
	load = startBigLoad(spare, bigLoadOptions{Writers: 2, Pause: 20 * time.Millisecond, Seed: 4})
	sh, sp := spare.HostPort()
	foWaitRelayLinked(t, r1, sh, sp)
	foWaitReplID(t, spare.Info(t, "replication")["master_replid"], []*testRelay{r2}, leaf1)
	time.Sleep(time.Second) // the load goes on through both relays
	if n := r1.InfoInt(t, "sync_full"); n != r1Full {
		t.Errorf("relay R1 sync_full went from %d to %d after the failover", r1Full, n)
	}

	// Same port, same data dir; the load goes on. Like a Redis replica, a
	// restarted relay starts from its configured master, so it is pointed
	// at the new one again (as Sentinel or an operator would).
	r1.Restart()
	foRepoint(t, r1, spare)
	time.Sleep(2 * time.Second)
	t.Logf("%d batches written to the new master", load.Stop(t, false))

	foWaitRelayLinked(t, r1, sh, sp)
	inSync(t, 60*time.Second, spare, leaf1, leaf2)
	foWaitOffsets(t, spare, []*testRelay{r1, r2}, leaf1, leaf2)

	if n := spare.InfoInt(t, "sync_full"); n != 0 {
		t.Errorf("promoted replica served %d full syncs, want 0", n)
	}
	if n := spare.InfoInt(t, "sync_partial_ok"); n < 1 {
		t.Errorf("promoted replica sync_partial_ok = %d, want >= 1", n)
	}
	if n := r1.InfoInt(t, "sync_full"); n != 0 {
		t.Errorf("restarted relay R1 served %d full syncs, want 0", n)
	}
	if n := r1.InfoInt(t, "upstream_full_syncs"); n != 0 {
		t.Errorf("restarted relay R1 full-synced %d times from the new master, want 0", n)
	}
	if n := r2.InfoInt(t, "sync_full"); n != r2Full {
		t.Errorf("relay R2 sync_full went from %d to %d after the failover", r2Full, n)
	}
	if n := r2.InfoInt(t, "upstream_full_syncs"); n != 1 {
		t.Errorf("relay R2 full-synced %d times from R1, want 1 (its first sync only)", n)
	}
}

// foOutput collects a child process's output safely across goroutines.
type foOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *foOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *foOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// TestRedisCliReplica: `redis-cli --replica` against the relay receives an
// RDB without keys, then prints the commands the master writes afterwards.
func TestRedisCliReplica(t *testing.T) {
	t.Parallel()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli not installed")
	}
	master := redistest.Start(t)
	populate(t, master, 0, 100000) // a snapshot of a few MB, read by redis-cli in small pieces
	relay := startRelay(t, master.Addr())
	leaf := replicaOf(t, relay.HostPort)
	inSync(t, 60*time.Second, master, leaf)
	// Commands after the snapshot, so the relay's log is not empty when
	// redis-cli asks for a sync.
	writeKeys(t, master, 1, 200)
	foWaitOffsets(t, master, []*testRelay{relay}, leaf)

	ctx, cancel := context.WithCancel(context.Background())
	h, p := relay.HostPort()
	cmd := exec.CommandContext(ctx, cli, "-h", h, "-p", p, "--replica")
	out := &foOutput{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start redis-cli: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("redis-cli output:\n%s", tail(out.String(), 4000))
		}
	})

	// Like Redis, the relay streams to redis-cli --replica what is written
	// after its sync.
	redistest.Eventually(t, 30*time.Second, func() error {
		if text := out.String(); !strings.Contains(text, "Logging commands from master") {
			return fmt.Errorf("redis-cli has not synced: %q", tail(text, 300))
		}
		return nil
	})
	var lines []string
	for i := range 5 {
		k, v := fmt.Sprintf("fo:cli:%d", i), fmt.Sprintf("value-%d", i)
		master.Do(t, "SET", k, v)
		lines = append(lines, fmt.Sprintf(`"SET","%s","%s"`, k, v))
	}
	redistest.Eventually(t, 15*time.Second, func() error {
		text := out.String()
		for _, line := range lines {
			if !strings.Contains(text, line) {
				return fmt.Errorf("redis-cli has not printed %s; its output ends with %q", line, tail(text, 300))
			}
		}
		return nil
	})
	if text := out.String(); !strings.Contains(text, "SYNC done") {
		t.Errorf("redis-cli never finished its sync: %q", tail(text, 300))
	}
}
