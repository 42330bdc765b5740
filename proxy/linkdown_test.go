package proxy

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/proxy/upstream"
)

// TestLinkDownReasons: an operator reads why the upstream link went down
// in INFO, with the same words the log and the metric use. The link is cut
// while large values stream through it, and the relay resumes partially, as
// a stock replica does after CLIENT KILL.
func TestLinkDownReasons(t *testing.T) {
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	populate(t, master, 0, 100)
	relay := startRelay(t, master.Addr())
	replica := replicaOf(t, relay.HostPort)
	redistest.Eventually(t, 20*time.Second, func() error {
		if s := relay.InfoField(t, "master_link_status"); s != "up" {
			return fmt.Errorf("master_link_status %s", s)
		}
		return nil
	})

	// The master drops the relay's connection in the middle of a load.
	load := startBigLoad(master, bigLoadOptions{Writers: 2, Rate: 4 << 20, Small: true, Seed: 7})
	time.Sleep(time.Second)
	master.Do(t, "CLIENT", "KILL", "TYPE", "replica")
	redistest.Eventually(t, 20*time.Second, func() error {
		if st := relay.Status(); st.LastDownReason != upstream.LinkDownMasterClosed {
			return fmt.Errorf("last link-down reason %q", st.LastDownReason)
		}
		return nil
	})
	if r := relay.InfoField(t, "upstream_link_down_reason"); r != "master_closed" {
		t.Fatalf("upstream_link_down_reason:%s", r)
	}
	if n := relay.InfoInt(t, "upstream_link_downs_master_closed"); n != 1 {
		t.Fatalf("upstream_link_downs_master_closed:%d", n)
	}
	time.Sleep(time.Second)
	load.Stop(t, false)
	inSync(t, 40*time.Second, master, replica)
	if n := master.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("master sync_full = %d, want 1: the relay resumes partially after the cut", n)
	}

	// The master starts asking for a password the relay does not have.
	master.Do(t, "CONFIG", "SET", "requirepass", "s3cret")
	master.Do(t, "CLIENT", "KILL", "TYPE", "replica")
	redistest.Eventually(t, 20*time.Second, func() error {
		if st := relay.Status(); st.LastDownReason != upstream.LinkDownAuth {
			return fmt.Errorf("last link-down reason %q", st.LastDownReason)
		}
		return nil
	})
	if r := relay.InfoField(t, "upstream_link_down_reason"); r != "auth_failed" {
		t.Fatalf("upstream_link_down_reason:%s", r)
	}
	if n := relay.Status().LinkDowns[upstream.LinkDownAuth]; n < 1 {
		t.Fatalf("LinkDowns[auth_failed] = %d", n)
	}
}
