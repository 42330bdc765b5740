package admin

import (
	"fmt"

	"github.com/redis-relay/redis-relay/internal/resp"
)

// noData answers a command the relay does not serve: every data command
// (GET, SET, SCAN, ...) and any other it does not know. The relay holds
// no dataset, only the master's stream, so the reply says so and names
// the master, for the operator reading a client's log.
//
// The error is a plain -ERR on purpose. Clients pass -ERR up unchanged and
// do not retry it: the answer is final for this server, and a client that
// retried would only ask the relay again. -READONLY would be read as "a
// replica refusing a write": go-redis retries it (and closes the
// connection each time) and a read would fail only after its retries,
// with a misleading message. -MOVED is Redis Cluster's redirect: it needs
// a hash slot, and clients not in cluster mode do not follow it. Keeping
// the relay out of clients' replica lists is replica-announced's job
// (SENTINEL REPLICAS); this message is for what gets through anyway.
func (a *Admin) noData(out []byte, args [][]byte) []byte {
	where := "no master is configured yet"
	if addr, _ := a.up.MasterAddr(); addr != "" {
		where = "read from the master at " + addr + " or one of its replicas"
	}
	return resp.AppendError(out, fmt.Sprintf("ERR this is redis-relay, a replication relay holding no data: '%s' is not served here; %s", resp.Excerpt(args[0], 64), where))
}

// NotServed is noData as the server's handler for every command that is
// neither the server's nor in adminCommands.
func (a *Admin) NotServed(out []byte, _ clientInfo, args [][]byte) ([]byte, effect) {
	return a.noData(out, args), effect{}
}
