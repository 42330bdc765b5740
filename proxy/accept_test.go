package proxy

import (
	"bufio"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// shortOfFDs is a listener whose first accepts fail the way they do when
// the process has used up its file descriptors.
type shortOfFDs struct {
	net.Listener
	failures atomic.Int64
}

func (l *shortOfFDs) Accept() (net.Conn, error) {
	if l.failures.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptOutOfFDsKeepsServing: running out of file descriptors is a
// moment to wait, not a reason to stop serving the replicas connected.
func TestAcceptOutOfFDsKeepsServing(t *testing.T) {
	master := redistest.Start(t)
	relay := startRelay(t, master.Addr())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	flaky := &shortOfFDs{Listener: ln}
	flaky.failures.Store(5)
	done := make(chan error, 1)
	go func() { done <- relay.srv.Serve(t.Context(), flaky) }()

	c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no answer after the failed accepts: %v", err)
	}
	if line != "+PONG\r\n" {
		t.Fatalf("PING answered %q", line)
	}
	select {
	case err := <-done:
		t.Fatalf("the accept loop ended: %v", err)
	default:
	}
}
