package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
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

// TestLinkDownReasonOf: the reason is read from what ended the connection,
// then from the phase it was in.
func TestLinkDownReasonOf(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	for _, tt := range []struct {
		err   error
		phase string
		want  LinkDownReason
	}{
		{fmt.Errorf("read stream: %w", reset), LinkConnected, linkDownMasterClosed},
		{fmt.Errorf("read stream: %w", io.EOF), LinkConnected, linkDownMasterClosed},
		{errMasterClosed, LinkConnected, linkDownMasterClosed},
		{fmt.Errorf("%w: master requires a password", errAuth), LinkHandshake, linkDownAuth},
		{fmt.Errorf("%w: -LOADING", errTryLater), LinkHandshake, linkDownNotReady},
		{fmt.Errorf("%w: -ERR no", errPSYNCRefused), LinkHandshake, linkDownRefused},
		{fmt.Errorf("%w, will full resync: bad", errStreamProtocol), LinkConnected, linkDownProtocol},
		{fmt.Errorf("%w: no space", errLocalWrite), LinkConnected, linkDownLocalWrite},
		{fmt.Errorf("connect: %w", errors.New("refused")), LinkConnecting, linkDownConnect},
		{errors.New("send PING: broken"), LinkHandshake, linkDownHandshake},
		{errors.New("receive snapshot after 10 bytes: bad"), LinkSync, linkDownSync},
		{os.ErrDeadlineExceeded, LinkConnected, linkDownTimeout},
	} {
		if got := linkDownReason(tt.err, tt.phase); got != tt.want {
			t.Errorf("linkDownReason(%v, %s) = %s, want %s", tt.err, tt.phase, got, tt.want)
		}
	}
}
