package proxy

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis-relay/redis-relay/internal/resp"
)

// admin answers the commands an operator, a monitoring tool or Redis
// Sentinel sends to the relay's port: INFO, ROLE, CONFIG, CLIENT,
// REPLICAOF, SHUTDOWN, LATENCY, RELAY, and pub/sub (Sentinel's hello
// channel). It reads the other parts through the Relay and owns only the
// pub/sub subscriptions.
//
// psMu is a leaf lock.
type admin struct {
	r *Relay

	psMu     sync.Mutex
	channels map[string]map[*client]struct{} // pub/sub subscribers; guarded by psMu (as is client.subs)
}

// replicaof re-points the upstream: REPLICAOF host port. The relay keeps
// its history and asks the new upstream for a partial resync.
func (a *admin) replicaof(c *client, args [][]byte) {
	if len(args) != 3 {
		c.wrongArgs(strings.ToLower(string(args[0])))
		return
	}
	host, port := string(args[1]), string(args[2])
	if strings.EqualFold(host, "no") && strings.EqualFold(port, "one") {
		c.out = resp.AppendError(c.out, "ERR a relay cannot become a master: it holds no dataset, only the master's stream. Promote a replica instead, then point the relay at it with REPLICAOF host port")
		return
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		c.out = resp.AppendError(c.out, "ERR Invalid master port")
		return
	}
	addr := net.JoinHostPort(host, port)
	if cur, _ := a.r.up.masterAddr(); cur == addr {
		c.out = resp.AppendSimple(c.out, "OK Already connected to specified master")
		return
	}
	a.r.logger.Info("REPLICAOF: re-pointing upstream", "upstream", addr, "client", c.addr)
	a.r.up.setMaster(addr)
	c.out = resp.AppendSimple(c.out, "OK")
}

// clientCommand implements the CLIENT subcommands tools use.
func (a *admin) clientCommand(c *client, args [][]byte) {
	if len(args) < 2 {
		c.wrongArgs("client")
		return
	}
	switch strings.ToLower(string(args[1])) {
	case "setname":
		if len(args) != 3 {
			c.wrongArgs("client|setname")
			return
		}
		c.name.Store(string(args[2]))
		c.out = resp.AppendSimple(c.out, "OK")
	case "setinfo":
		c.out = resp.AppendSimple(c.out, "OK")
	case "getname":
		if n, _ := c.name.Load().(string); n != "" {
			c.out = resp.AppendBulk(c.out, n)
		} else {
			c.out = resp.AppendNull(c.out)
		}
	case "id":
		c.out = resp.AppendInt(c.out, c.id)
	case "list":
		var b strings.Builder
		for _, o := range a.r.srv.clientList() {
			b.WriteString(describeClient(o))
			b.WriteByte('\n')
		}
		c.out = resp.AppendBulk(c.out, b.String())
	case "info":
		c.out = resp.AppendBulk(c.out, describeClient(c)+"\n")
	case "kill":
		a.clientKill(c, args[2:])
	default:
		c.out = resp.AppendError(c.out, fmt.Sprintf("ERR unknown subcommand '%s'. Try CLIENT LIST, KILL, ID, SETNAME, GETNAME.", resp.Excerpt(args[1], 64)))
	}
}

// describeClient renders one CLIENT LIST line.
func describeClient(c *client) string {
	flags := "N"
	if c.replica.Load() {
		flags = "S"
	}
	name, _ := c.name.Load().(string)
	cmd, _ := c.lastCmd.Load().(string)
	idle := 0
	if at := c.lastAt.Load(); at > 0 {
		idle = int(time.Since(time.Unix(0, at)).Seconds())
	}
	return fmt.Sprintf("id=%d addr=%s laddr=%s fd=-1 name=%s age=%d idle=%d flags=%s db=0 cmd=%s",
		c.id, c.addr, c.nc.LocalAddr(), name, int(time.Since(c.created).Seconds()), idle, flags, cmd)
}

// clientKill handles CLIENT KILL addr and CLIENT KILL <filter> <value> ...
// (ID, ADDR, TYPE normal|replica|slave|master|pubsub, SKIPME yes|no).
func (a *admin) clientKill(c *client, args [][]byte) {
	if len(args) == 1 {
		for _, o := range a.r.srv.clientList() {
			if o.addr == string(args[0]) {
				o.nc.Close()
				c.out = resp.AppendSimple(c.out, "OK")
				return
			}
		}
		c.out = resp.AppendError(c.out, "ERR No such client")
		return
	}
	if len(args) == 0 || len(args)%2 != 0 {
		c.out = resp.AppendError(c.out, "ERR syntax error")
		return
	}
	var id int64 = -1
	addr, typ, skipMe := "", "", true
	for i := 0; i < len(args); i += 2 {
		v := string(args[i+1])
		switch strings.ToLower(string(args[i])) {
		case "id":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				c.out = resp.AppendError(c.out, "ERR client-id should be greater than 0")
				return
			}
			id = n
		case "addr":
			addr = v
		case "type":
			typ = strings.ToLower(v)
			switch typ {
			case "normal", "replica", "slave", "master", "pubsub":
			default:
				c.out = resp.AppendError(c.out, fmt.Sprintf("ERR Unknown client type '%s'", resp.Excerpt(args[i+1], 32)))
				return
			}
		case "skipme":
			on, err := parseYesNo(v)
			if err != nil {
				c.out = resp.AppendError(c.out, "ERR syntax error")
				return
			}
			skipMe = on
		default:
			c.out = resp.AppendError(c.out, "ERR syntax error")
			return
		}
	}
	killed := 0
	for _, o := range a.r.srv.clientList() {
		switch {
		case o == c && skipMe,
			id >= 0 && o.id != id,
			addr != "" && o.addr != addr,
			(typ == "normal") && o.replica.Load(),
			(typ == "replica" || typ == "slave") && !o.replica.Load(),
			typ == "master", typ == "pubsub":
			continue
		}
		if o.replica.Load() {
			a.r.srv.endSessionOf(o)
		}
		o.nc.Close()
		killed++
	}
	c.out = resp.AppendInt(c.out, int64(killed))
}

// shutdown stops the relay (SHUTDOWN [NOSAVE|SAVE|NOW|FORCE]).
func (a *admin) shutdown(c *client, args [][]byte) bool {
	for _, arg := range args[1:] {
		switch strings.ToLower(string(arg)) {
		case "nosave", "save", "now", "force":
		case "abort":
			c.out = resp.AppendError(c.out, "ERR No shutdown in progress.")
			return false
		default:
			c.out = resp.AppendError(c.out, "ERR syntax error")
			return false
		}
	}
	a.r.logger.Warn("SHUTDOWN requested", "client", c.addr)
	a.r.stop()
	return true
}

// latency answers LATENCY as a Redis server with nothing to report does.
// The relay executes no commands and samples no latency events, so every
// list is empty; monitoring tools (redis_exporter asks LATENCY LATEST and
// LATENCY HISTOGRAM on every scrape) get an answer rather than an error.
func (a *admin) latency(c *client, args [][]byte) {
	if len(args) < 2 {
		c.wrongArgs("latency")
		return
	}
	sub := strings.ToLower(string(args[1]))
	switch {
	case sub == "latest" && len(args) == 2,
		sub == "histogram", // [command ...]: no command has a histogram
		sub == "history" && len(args) == 3:
		c.out = resp.AppendArray(c.out, 0)
	case sub == "reset":
		c.out = resp.AppendInt(c.out, 0) // events reset: there were none
	case sub == "doctor" && len(args) == 2:
		c.out = resp.AppendBulk(c.out, "This is a redis-relay: it executes no commands and samples no latency events, so there is nothing to diagnose. Its replication lag is in INFO replication and in the redis_relay_replica_lag_* metrics.\n")
	case sub == "graph" && len(args) == 3:
		c.out = resp.AppendError(c.out, fmt.Sprintf("ERR No samples available for event '%s'", resp.Excerpt(args[2], 64)))
	case sub == "help" && len(args) == 2:
		help := []string{
			"LATENCY <subcommand> [<arg> ...]. A relay samples no events; every answer is empty.",
			"LATEST", "HISTORY <event>", "RESET [<event> ...]", "GRAPH <event>", "DOCTOR", "HISTOGRAM [<command> ...]", "HELP",
		}
		c.out = resp.AppendArray(c.out, len(help))
		for _, h := range help {
			c.out = resp.AppendSimple(c.out, h)
		}
	case sub == "latest" || sub == "history" || sub == "doctor" || sub == "graph" || sub == "help":
		c.wrongArgs("latency|" + sub)
	default:
		c.out = resp.AppendError(c.out, fmt.Sprintf("ERR unknown subcommand '%s'. Try LATENCY HELP.", resp.Excerpt(args[1], 64)))
	}
}

// relayCommand runs the relay's own admin commands:
//
//	RELAY GUARD RELEASE   accept the snapshot held by the empty-master guard
func (a *admin) relayCommand(c *client, args [][]byte) {
	sub := ""
	for _, a := range args[1:] {
		sub += strings.ToLower(string(a)) + " "
	}
	switch strings.TrimSpace(sub) {
	case "guard release":
		if err := a.r.ReleaseGuard(); err != nil {
			c.out = resp.AppendError(c.out, "ERR "+err.Error())
			return
		}
		c.out = resp.AppendSimple(c.out, "OK")
	default:
		c.out = resp.AppendError(c.out, "ERR unknown RELAY subcommand; try RELAY GUARD RELEASE")
	}
}
