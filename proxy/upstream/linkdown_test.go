package upstream

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

// TestLinkDownReasonOf: the reason is read from what ended the connection,
// then from the phase it was in.
func TestLinkDownReasonOf(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	for _, tt := range []struct {
		err   error
		phase string
		want  LinkDownReason
	}{
		{fmt.Errorf("read stream: %w", reset), LinkConnected, LinkDownMasterClosed},
		{fmt.Errorf("read stream: %w", io.EOF), LinkConnected, LinkDownMasterClosed},
		{errMasterClosed, LinkConnected, LinkDownMasterClosed},
		{fmt.Errorf("%w: master requires a password", errAuth), LinkHandshake, LinkDownAuth},
		{fmt.Errorf("%w: -LOADING", errTryLater), LinkHandshake, LinkDownNotReady},
		{fmt.Errorf("%w: -ERR no", errPSYNCRefused), LinkHandshake, LinkDownRefused},
		{fmt.Errorf("%w, will full resync: bad", errStreamProtocol), LinkConnected, LinkDownProtocol},
		{fmt.Errorf("%w: no space", errLocalWrite), LinkConnected, LinkDownLocalWrite},
		{fmt.Errorf("connect: %w", errors.New("refused")), LinkConnecting, LinkDownConnect},
		{errors.New("send PING: broken"), LinkHandshake, LinkDownHandshake},
		{errors.New("receive snapshot after 10 bytes: bad"), LinkSync, LinkDownSync},
		{os.ErrDeadlineExceeded, LinkConnected, LinkDownTimeout},
	} {
		if got := linkDownReason(tt.err, tt.phase); got != tt.want {
			t.Errorf("linkDownReason(%v, %s) = %s, want %s", tt.err, tt.phase, got, tt.want)
		}
	}
}
