package proxy

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

func TestEmptyMasterGuard(t *testing.T) {
	master := redistest.Start(t) // no persistence: a restart brings it back empty
	populate(t, master, 0, 5000)
	relay := startRelay(t, master.Addr())
	a, b := replicaOf(t, relay.HostPort), replicaOf(t, relay.HostPort)
	inSync(t, 20*time.Second, master, a, b)
	redistest.Eventually(t, 10*time.Second, func() error {
		if k := relay.Status().Snapshot.Keys; k <= 0 {
			return fmt.Errorf("snapshot keys %d not counted yet", k)
		}
		return nil
	})
	digest, size := a.Digest(t), a.Do(t, "DBSIZE")

	master.Kill()
	master.Restart(t)
	redistest.Eventually(t, 20*time.Second, func() error {
		if relay.InfoField(t, "guard_tripped") != "1" {
			return fmt.Errorf("guard not tripped; upstream %s", relay.Status().LastError)
		}
		return nil
	})
	if !strings.Contains(relay.InfoField(t, "guard_reason"), "empty") {
		t.Errorf("guard_reason = %s", relay.InfoField(t, "guard_reason"))
	}
	master.Do(t, "SET", "new-master", "1")
	time.Sleep(2 * time.Second) // replicas must stay on the old data for as long as the guard holds
	for _, r := range []*redistest.Server{a, b} {
		if d := r.Digest(t); d != digest {
			t.Fatalf("replica %s digest changed while the guard held: %s, was %s", r.Addr(), d, digest)
		}
		if n := r.Do(t, "DBSIZE"); n != size {
			t.Fatalf("replica %s DBSIZE %v, was %v", r.Addr(), n, size)
		}
	}

	if err := relay.Client().Do(t.Context(), "RELAY", "GUARD", "RELEASE").Err(); err != nil {
		t.Fatalf("RELAY GUARD RELEASE: %v", err)
	}
	master.Do(t, "SET", "after-release", "1")
	inSync(t, 20*time.Second, master, a, b)
	if n := a.Do(t, "DBSIZE"); n != int64(2) {
		t.Errorf("replica DBSIZE after release = %v, want 2", n)
	}
	if relay.InfoField(t, "guard_tripped") != "0" {
		t.Errorf("guard still tripped after release")
	}
	if err := relay.Client().Do(t.Context(), "RELAY", "GUARD", "RELEASE").Err(); err == nil {
		t.Errorf("a second release succeeded")
	}
}

func TestGuardDisabledFollowsEmptyMaster(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 1000)
	relay := startRelay(t, master.Addr(), func(c *Config) { c.DisableGuard = true })
	a := replicaOf(t, relay.HostPort)
	inSync(t, 20*time.Second, master, a)
	master.Kill()
	master.Restart(t)
	master.Do(t, "SET", "only", "1")
	inSync(t, 20*time.Second, master, a)
}

// TestBadSnapshotsRejected feeds the relay's snapshot store with a real RDB
// that was damaged, or that contradicts its +FULLRESYNC reply.
func TestBadSnapshotsRejected(t *testing.T) {
	_, src := syncedRelay(t)
	st := src.Status()
	good, err := os.ReadFile(src.hist.Path(st.Snapshot.File))
	if err != nil {
		t.Fatal(err)
	}
	id, off := st.Identity.ReplID, st.Snapshot.Offset
	flip := func(i int) []byte {
		b := append([]byte(nil), good...)
		b[i] ^= 0x40
		return b
	}
	for _, tc := range []struct {
		name   string
		replid string
		offset int64
		data   []byte
		want   string
	}{
		{"flipped byte", id, off, flip(len(good) / 2), "checksum mismatch"},
		{"truncated", id, off, good[:len(good)-3], "no EOF opcode"},
		{"not an rdb", id, off, []byte("hello, this is not a snapshot at all"), "bad magic"},
		{"wrong offset", id, off + 5, good, "repl-offset"},
		{"wrong replid", strings.Repeat("a", 40), off, good, "repl-id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			relay := startRelay(t, "") // no upstream: the test plays it
			s, err := relay.hist.BeginFullSync(tc.replid, tc.offset)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Write(tc.data); err != nil {
				t.Fatal(err)
			}
			_, err = relay.hist.CommitFullSync(s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("commit: %v, want an error containing %q", err, tc.want)
			}
			relay.hist.AbortFullSync(s, err)
			if relay.Status().HasHistory {
				t.Fatalf("a rejected snapshot became the relay's history")
			}
			if n := relay.Status().SnapshotsRejected; n != 1 {
				t.Fatalf("snapshots rejected = %d", n)
			}
			if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("rejected snapshot file left behind: %v", err)
			}
		})
	}
	t.Run("good", func(t *testing.T) {
		relay := startRelay(t, "")
		s, _ := relay.hist.BeginFullSync(id, off)
		s.Write(good)
		if _, err := relay.hist.CommitFullSync(s); err != nil {
			t.Fatalf("a good snapshot was rejected: %v", err)
		}
	})
}

func TestSnapshotRefresh(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 20000)
	relay := startRelay(t, master.Addr(), func(c *Config) {
		c.RefreshRatio = 0.5
		c.RefreshMinBytes = 1
		c.SegmentSize = 64 << 10
	})
	first := replicaOf(t, relay.HostPort)
	inSync(t, 20*time.Second, master, first)
	snapSize := relay.Status().Snapshot.Size

	load := startLoad(t, master)
	redistest.Eventually(t, 60*time.Second, func() error {
		if n := relay.Status().Refreshes; n < 2 {
			return fmt.Errorf("%d refreshes so far", n)
		}
		return nil
	})
	load.Stop(t)
	inSync(t, 30*time.Second, master, first)

	// One master full sync for the relay's link, plus one per refresh; none
	// per replica.
	masterSyncsAreRelayRefreshes(t, master, relay)
	st := relay.Status()
	// Disk stays bounded: the log is trimmed to the newest snapshot.
	if st.Log.First > st.Snapshot.Offset+1 {
		t.Errorf("log starts at %d, after the snapshot's offset %d", st.Log.First, st.Snapshot.Offset)
	}
	limit := int64(float64(max(st.Snapshot.Size, snapSize))*0.5) + 4*(64<<10) + 1<<20
	if st.Log.DiskBytes > limit {
		t.Errorf("log holds %d bytes on disk, want at most about %d", st.Log.DiskBytes, limit)
	}
	ents, _ := os.ReadDir(relay.cfg.DataDir)
	var snaps int
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".rdb") {
			snaps++
		}
	}
	if snaps != 1 {
		t.Errorf("%d snapshot files in the data dir, want 1", snaps)
	}

	// A late replica gets the refreshed snapshot and the log after it.
	late := replicaOf(t, relay.HostPort)
	inSync(t, 30*time.Second, master, first, late)
	masterSyncsAreRelayRefreshes(t, master, relay)
}
