package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/replstream"
)

// A planned failover (SENTINEL FAILOVER, or REPLICAOF NO ONE on a replica
// while its master lives) promotes a replica at the end of what it had
// applied: its history branches there, and it continues PSYNC of the old
// replication ID only up to that offset (INFO's second_repl_offset). The
// old master goes on sending its PINGs, and every Sentinel's PUBLISH to
// __sentinel__:hello, to the replicas it still has until Sentinel
// re-points them. Those replicas then ask for an offset past the branch,
// and Redis answers with a full sync: a fork on the new master, and a full
// sync for every replica behind them.
//
// Before it asks a server to continue, the relay reads that server's
// branch point. When the relay's log runs past it with bytes that change
// no data (PING, PUBLISH, REPLCONF, SELECT), it drops them and asks from
// the branch point: the new master continues. Replicas of the relay that
// received the dropped bytes are disconnected by their cursors; their
// offsets are now past the branch too, so they full-sync from the relay's
// own snapshot (the master is not asked). Anything else in the tail (a
// write the old master took after the promotion) is the old master's
// alone, and the relay takes the full sync as Redis does.

// alignToBranch returns the offset to ask the upstream for: next, or the
// upstream's branch point from replid when the log's bytes past it were
// dropped as harmless. Only a failed INFO exchange is an error (the
// connection is then unusable).
func (u *Link) alignToBranch(c *upstreamConn, addr, replid string, next int64) (int64, error) {
	at, ok, err := branchPoint(c, replid)
	if err != nil || !ok || at >= next {
		return next, err
	}
	cut, err := u.hist.DropTail(at, onlyHarmless)
	if err != nil {
		u.logger.Warn("upstream's history branched before the relay's offset; expect a full sync", "upstream", addr, "branch", at, "next", next, "err", err)
		return next, nil
	}
	u.stats.branchCuts.Add(1)
	u.logger.Info("dropped what the old master sent after the upstream was promoted (no data in it)", "upstream", addr, "branch", at, "bytes", cut)
	return at, nil
}

// harmlessTail lists the commands that may be dropped from the end of the
// log: none of them changes the dataset. SELECT only names the database
// of the commands after it, and a promoted master starts its stream with
// a SELECT of its own.
var harmlessTail = map[string]bool{"ping": true, "publish": true, "replconf": true, "select": true}

// branchPoint asks the upstream, on a connection after the handshake and
// before PSYNC, where its history branched from replid: INFO replication's
// second_repl_offset when its master_replid2 is replid. ok is false when
// it did not branch from replid, or will not say (an ACL without INFO).
func branchPoint(c *upstreamConn, replid string) (at int64, ok bool, err error) {
	if err := c.write(resp.AppendCommand(nil, "INFO", "replication")); err != nil {
		return 0, false, fmt.Errorf("send INFO: %w", err)
	}
	reply, err := c.readBulk(handshakeTimeout, 1<<20)
	if err != nil {
		return 0, false, fmt.Errorf("read INFO reply: %w", err)
	}
	if reply == nil {
		return 0, false, nil // an error reply: the upstream will not say
	}
	var replid2 string
	at = -1
	for line := range bytes.SplitSeq(reply, []byte("\n")) {
		k, v, found := strings.Cut(strings.TrimSpace(string(line)), ":")
		switch {
		case !found:
		case k == "master_replid2":
			replid2 = v
		case k == "second_repl_offset":
			at, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if at <= 0 || !strings.EqualFold(replid2, replid) {
		return 0, false, nil
	}
	return at, true, nil
}

// readBulk reads a bulk string reply of at most max bytes. An error reply
// returns nil and no error; anything else is an error.
func (c *upstreamConn) readBulk(timeout time.Duration, max int) ([]byte, error) {
	line, err := c.readLine(timeout)
	if err != nil {
		return nil, err
	}
	switch {
	case len(line) == 0:
		return nil, errors.New("empty reply")
	case line[0] == '-':
		return nil, nil
	case line[0] != '$':
		return nil, fmt.Errorf("unexpected reply %q", resp.Excerpt(line, 100))
	}
	n, err := strconv.Atoi(string(line[1:]))
	if err != nil || n < 0 || n > max {
		return nil, fmt.Errorf("bad bulk length %q", resp.Excerpt(line, 100))
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(c.br, buf); err != nil {
		return nil, err
	}
	if !bytes.HasSuffix(buf, []byte("\r\n")) {
		return nil, errors.New("bulk reply not terminated by CRLF")
	}
	return buf[:n], nil
}

// onlyHarmless reads the log's bytes [from, to) as commands and checks
// that each one is in harmlessTail and the last one ends at to.
func onlyHarmless(log *replstream.Log, from, to int64) error {
	var bad string
	end, err := log.Frame(from, to, func(cmd *replstream.Command) {
		if name := strings.ToLower(string(cmd.Name)); bad == "" && !harmlessTail[name] {
			bad = name
		}
	})
	switch {
	case err != nil:
		return fmt.Errorf("the tail is not whole commands from the branch point: %w", err)
	case bad != "":
		return fmt.Errorf("the tail holds %s, which changes data", strings.ToUpper(bad))
	case end != to:
		return errors.New("the tail ends inside a command")
	}
	return nil
}
