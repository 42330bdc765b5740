package downstream

import (
	"errors"
	"testing"

	"github.com/redis-relay/redis-relay/proxy/history"
)

// TestSessionReaderEnds: the session maps each way the history ends a
// reader to its own close reason.
func TestSessionReaderEnds(t *testing.T) {
	for why, want := range map[history.ReaderEnd]CloseReason{history.EndReplIDChanged: ReasonReplIDChanged, history.EndFellBehind: ReasonFellBehind} {
		var got error
		s := &session{cancel: func(cause error) { got = cause }}
		s.EndReader(why)
		var ce *closeError
		if !errors.As(got, &ce) || ce.reason != want {
			t.Errorf("EndReader(%d) ended the session with %v, want %s", why, got, want)
		}
	}
}
