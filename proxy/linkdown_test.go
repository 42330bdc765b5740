package proxy

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// TestLinkDownReasons: an operator reads why the upstream link went down
// in INFO, with the same words the log and the metric use.
func TestLinkDownReasons(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 100)
	relay := startRelay(t, master.Addr())
	redistest.Eventually(t, 20*time.Second, func() error {
		if s := relay.InfoField(t, "master_link_status"); s != "up" {
			return fmt.Errorf("master_link_status %s", s)
		}
		return nil
	})

	// The master drops the relay's connection.
	master.Do(t, "CLIENT", "KILL", "TYPE", "replica")
	redistest.Eventually(t, 20*time.Second, func() error {
		if st := relay.Status(); st.LastDownReason != linkDownMasterClosed {
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

	// The master starts asking for a password the relay does not have.
	master.Do(t, "CONFIG", "SET", "requirepass", "s3cret")
	master.Do(t, "CLIENT", "KILL", "TYPE", "replica")
	redistest.Eventually(t, 20*time.Second, func() error {
		if st := relay.Status(); st.LastDownReason != linkDownAuth {
			return fmt.Errorf("last link-down reason %q", st.LastDownReason)
		}
		return nil
	})
	if r := relay.InfoField(t, "upstream_link_down_reason"); r != "auth_failed" {
		t.Fatalf("upstream_link_down_reason:%s", r)
	}
	if n := relay.Status().LinkDowns[linkDownAuth]; n < 1 {
		t.Fatalf("LinkDowns[auth_failed] = %d", n)
	}
}
