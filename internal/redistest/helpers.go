package redistest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redisproc"
)

// pollInterval is how often Eventually re-checks its condition.
const pollInterval = 50 * time.Millisecond

// Eventually calls cond every ~50 ms until it returns nil. If timeout passes
// first, the test fails with the last error cond returned.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: condition still false after %v: %v", timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// SameDigest returns nil when every server reports the same DEBUG DIGEST as
// the first one, and otherwise an error listing each server's digest. It
// never fails the test itself, so it can be used inside Eventually.
func SameDigest(servers ...*Server) error {
	if len(servers) < 2 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	digests := make([]string, len(servers))
	for i, s := range servers {
		d, err := s.digest(ctx)
		if err != nil {
			return err
		}
		digests[i] = d
	}
	for _, d := range digests[1:] {
		if d != digests[0] {
			parts := make([]string, len(servers))
			for i, s := range servers {
				parts[i] = fmt.Sprintf("%s=%s", s.Addr(), digests[i])
			}
			return fmt.Errorf("digests differ: %s", strings.Join(parts, ", "))
		}
	}
	return nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago
// (redisproc.FreePort): never 6379.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := redisproc.FreePort()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return port
}
