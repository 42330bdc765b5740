package proxy

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// TestPlannedSentinelFailover: SENTINEL FAILOVER with the old master alive.
// The promoted replica branches at its offset, while the old master goes
// on sending PINGs and the Sentinels' hello messages to the replicas it
// still has, the relay and a stock intermediate among them, until
// Sentinel re-points them. Redis refuses their PSYNC past the branch
// point, so the stock intermediate full-syncs (a fork on the new master),
// and so do the replicas behind it. The relay drops those bytes, which
// change no data, and continues: the new master serves it no full sync.
// The replica behind the relay received them too and full-syncs from the
// relay's own snapshot, with no fork anywhere.
func TestPlannedSentinelFailover(t *testing.T) {
	t.Parallel()
	ping := []string{"--repl-ping-replica-period", "1"}
	master := redistest.Start(t, ping...)
	populate(t, master, 0, 5000)
	spare := replicaOf(t, master.HostPort, append([]string{"--replica-priority", "100"}, ping...)...)
	relay := startRelay(t, master.Addr())
	leaf := replicaOf(t, relay.HostPort)
	mid := replicaOf(t, master.HostPort, append([]string{"--replica-priority", "0"}, ping...)...)
	midLeaf := replicaOf(t, mid.HostPort)

	load := startBigLoad(master, bigLoadOptions{Writers: 2, Pause: 20 * time.Millisecond, Small: true, Seed: 3})
	time.Sleep(2 * time.Second)
	t.Logf("%d batches written before the failover", load.Stop(t, false))
	inSync(t, 60*time.Second, master, spare, leaf, mid, midLeaf)

	sentinels := startSentinels(t, master, 2*time.Second, relay, 3)
	relayFull := relay.InfoInt(t, "sync_full")
	relayUpFull := relay.InfoInt(t, "upstream_full_syncs")
	midFull := mid.InfoInt(t, "sync_full")

	if err := sentinels[0].Client().Do(t.Context(), "SENTINEL", "FAILOVER", "mymaster").Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	waitFollowsPromoted(t, spare, relay)
	_, sp := spare.HostPort()
	redistest.Eventually(t, 60*time.Second, func() error {
		if got := mid.Info(t, "replication")["master_port"]; got != sp {
			return fmt.Errorf("intermediate follows port %s", got)
		}
		return nil
	})
	load = startBigLoad(spare, bigLoadOptions{Writers: 2, Pause: 20 * time.Millisecond, Small: true, Seed: 4})
	time.Sleep(2 * time.Second)
	t.Logf("%d batches written after the failover", load.Stop(t, false))
	inSync(t, 60*time.Second, spare, leaf, mid, midLeaf, master)

	t.Logf("new master served %d full syncs and %d partial resyncs in all", spare.InfoInt(t, "sync_full"), spare.InfoInt(t, "sync_partial_ok"))
	t.Logf("stock intermediate: full syncs it served %d", mid.InfoInt(t, "sync_full")-midFull)
	t.Logf("relay: full syncs from its master %d, full syncs it served %d",
		relay.InfoInt(t, "upstream_full_syncs")-relayUpFull, relay.InfoInt(t, "sync_full")-relayFull)
	if n := relay.InfoInt(t, "upstream_full_syncs"); n != relayUpFull {
		t.Errorf("relay full-synced %d times from the new master after a planned failover", n-relayUpFull)
	}
	if n := relay.InfoInt(t, "sync_full") - relayFull; n > 1 {
		t.Errorf("relay served %d full syncs, want at most 1 (its one replica)", n)
	}
	if got, want := relay.InfoField(t, "master_replid"), spare.Info(t, "replication")["master_replid"]; got != want {
		t.Errorf("relay replid %s, new master %s", got, want)
	}
	foWaitOffsets(t, spare, []*testRelay{relay}, leaf)
}

// TestPromotedBranchTail: the same branch without Sentinel, step by step.
// A replica is promoted while the old master lives; then the old master
// sends its replicas (the relay and a stock intermediate) a few PUBLISHes
// and PINGs, and, in the second case, one write. Re-pointed at the new
// master, the stock intermediate full-syncs in both cases, as Redis
// rules. The relay continues when the tail holds no data (and its replica,
// which received that tail, full-syncs from the relay's snapshot), and
// full-syncs like Redis when it holds a write the new master never saw.
func TestPromotedBranchTail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		write bool
	}{{"pings and publishes", false}, {"a write after the promotion", true}} {
		t.Run(tc.name, func(t *testing.T) {
			master := redistest.Start(t)
			populate(t, master, 0, 3000)
			spare := replicaOf(t, master.HostPort)
			// A replica holding bytes past the branch must not wait for
			// them: wait-ahead is long enough here to tell.
			relay := startRelay(t, master.Addr(), func(c *Config) { c.WaitAhead = 5 * time.Minute })
			leaf := replicaOf(t, relay.HostPort)
			mid := replicaOf(t, master.HostPort)
			load := startBigLoad(master, bigLoadOptions{Writers: 2, Pause: 20 * time.Millisecond, Small: true, Seed: 5})
			time.Sleep(time.Second)
			load.Stop(t, false)
			inSync(t, 60*time.Second, master, spare, leaf, mid)
			foWaitOffsets(t, master, []*testRelay{relay}, spare, leaf, mid)
			relayFull := relay.InfoInt(t, "sync_full")

			foPromote(t, spare)
			for i := range 5 {
				master.Do(t, "PUBLISH", "__sentinel__:hello", fmt.Sprintf("hello %d", i))
			}
			if tc.write {
				master.Do(t, "SET", "written-after-the-promotion", "lost")
			}
			master.Do(t, "PUBLISH", "__sentinel__:hello", "last")
			// The relay and the intermediate hold the tail before they move.
			foWaitOffsets(t, master, []*testRelay{relay}, leaf, mid)

			sh, sp := spare.HostPort()
			mid.Do(t, "REPLICAOF", sh, sp)
			foRepoint(t, relay, spare)
			foWaitRelayLinked(t, relay, sh, sp)
			// Nothing is written to the new master yet.
			foWaitReplID(t, spare.Info(t, "replication")["master_replid"], []*testRelay{relay}, leaf, mid)
			writeKeys(t, spare, 1, 200)
			inSync(t, 60*time.Second, spare, leaf, mid)
			foWaitOffsets(t, spare, []*testRelay{relay}, leaf, mid)

			relayUp := spare.InfoInt(t, "sync_full") - 1 // the intermediate's is the one
			t.Logf("new master served %d full syncs (intermediate and relay), relay served %d, relay branch cuts %s",
				spare.InfoInt(t, "sync_full"), relay.InfoInt(t, "sync_full")-relayFull, relay.InfoField(t, "upstream_branch_cuts"))
			switch {
			case tc.write && relayUp != 1:
				t.Errorf("new master served the relay %d full syncs, want 1: the relay held a write the new master never saw", relayUp)
			case !tc.write && relayUp != 0:
				t.Errorf("new master served the relay %d full syncs, want 0: the relay's tail held no data", relayUp)
			}
			if n := relay.InfoInt(t, "sync_full") - relayFull; n != 1 {
				t.Errorf("relay served %d full syncs, want 1 (its replica held bytes past the branch)", n)
			}
			if got := leaf.Do(t, "EXISTS", "written-after-the-promotion"); fmt.Sprint(got) != "0" {
				t.Errorf("the relay's replica kept the old master's write after the failover")
			}
		})
	}
}
