package downstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis-relay/redis-relay/proxy/history"
	"github.com/redis-relay/redis-relay/replstream"
)

// Snapshots for tools. REPLCONF rdb-only 1 asks for a snapshot and no
// stream. A relay below asks for it with PSYNC, learns the snapshot's
// offset from +FULLRESYNC and continues from there: any snapshot serves
// it. A client that asks with SYNC (redis-cli --rdb) is told no offset and
// keeps only the file, so what it gets must be the data now: the relay
// gives it a snapshot at or past the offset the relay had when it asked,
// one no older than rdb-only-max-age, or one with nothing but heartbeats
// after it. Otherwise
// it refreshes the snapshot first (one fork of the master, or of
// snapshot-source; the tool waits about as long as redis-cli --rdb against
// the master takes) and serves the new one as it arrives, or, when no
// refresh can be had, refuses with an error that gives the snapshot's age
// and how far behind it is. A relay below that refreshes for such a tool
// says so (wire.RDBCurrentOption) and is served the same way.

// heartbeatScan bounds the log read to find that nothing but heartbeats
// follows a snapshot; more log than that counts as writes.
const heartbeatScan = 1 << 20

// toolSnapshot makes sure the full sync that follows gives a tool the
// current data: it returns nil when the snapshot SyncSource will pick is
// current enough, after a refresh if one was needed, and a refusal (an
// error line already sent) when none can be had.
func (s *session) toolSnapshot(ctx context.Context) error {
	srv := s.srv
	maxAge := srv.cfg.Get().RDBOnlyMaxAge
	want := int64(-1) // the relay's offset when the tool asked
	var ended <-chan struct{}
	var result func() error
	deadline := time.Now().Add(srv.cfg.Timeout())
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		changed := srv.hist.Changes()
		st, current, pending := srv.hist.Status()
		snap := current
		if pending != nil && !st.HoldActive {
			snap = pending // what SyncSource picks
		}
		if snap == nil {
			return nil // the first full sync is taken after the tool asked
		}
		if want < 0 {
			want = st.Log.Next - 1
		}
		if st.SyncPending {
			// A full sync or refresh in progress holds up the one asked
			// for; repl-timeout counts from its end.
			deadline = time.Now().Add(srv.cfg.Timeout())
		}
		meta := snap.Meta()
		if meta.Offset >= want || time.Since(meta.Created) <= maxAge || (snap == current && heartbeatsOnly(srv.hist.CurrentLog(), meta.Offset)) {
			return nil
		}
		if ended == nil {
			if why := srv.up.RefreshBlocked(); why != "" && !st.SyncPending {
				return s.refuseStale(st, meta, maxAge, errors.New(why))
			}
			ended, result = srv.up.AskRefresh()
			s.logger.Info("refreshing the snapshot for a tool's rdb-only", "offset", meta.Offset, "next", st.Log.Next, "age", time.Since(meta.Created).Round(time.Second))
		}
		select {
		case <-changed:
		case <-ended:
			err := result()
			if err == nil {
				// The new snapshot is in, and still behind: its source
				// (snapshot-source) lags the master.
				st, current, _ = srv.hist.Status()
				if meta = current.Meta(); meta.Offset < want {
					err = fmt.Errorf("the refreshed snapshot is at offset %d, behind the %d the relay had when asked", meta.Offset, want)
				}
			}
			if err != nil {
				return s.refuseStale(st, meta, maxAge, err)
			}
		case <-t.C:
			if time.Now().After(deadline) {
				return s.refuseStale(st, meta, maxAge, fmt.Errorf("no refresh started within repl-timeout (%s)", srv.cfg.Timeout()))
			}
			if err := s.keepalive(); err != nil {
				return err
			}
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// refuseStale refuses a tool's rdb-only with the snapshot's age and lag.
func (s *session) refuseStale(st history.Status, meta history.Snapshot, maxAge time.Duration, why error) error {
	s.logger.Warn("rdb-only refused: the snapshot is not current", "offset", meta.Offset, "next", st.Log.Next, "err", why)
	return s.refuse(fmt.Sprintf("ERR the relay's snapshot is %s old (offset %d, %d bytes of stream behind the relay's offset %d; rdb-only-max-age is %s) and could not be refreshed: %v. For the current data run this against the master or a replica; the relay's own history is read with redis-relay rdb inspect and redis-relay recover",
		time.Since(meta.Created).Round(time.Second), meta.Offset, max(st.Log.Next-1-meta.Offset, 0), st.Log.Next-1, maxAge, why))
}

// heartbeatsOnly reports whether the log after offset holds nothing but
// the commands a master sends without a write (PING, REPLCONF GETACK,
// SELECT), and at most heartbeatScan bytes of them.
func heartbeatsOnly(log *replstream.Log, offset int64) bool {
	if log == nil {
		return false
	}
	_, next := log.Range()
	if next-(offset+1) > heartbeatScan {
		return false
	}
	writes := false
	end, err := log.Frame(offset+1, next, func(c *replstream.Command) {
		switch {
		case bytes.EqualFold(c.Name, []byte("ping")), bytes.EqualFold(c.Name, []byte("replconf")), bytes.EqualFold(c.Name, []byte("select")):
		default:
			writes = true
		}
	})
	return err == nil && end == next && !writes
}
