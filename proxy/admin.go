package proxy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/proxy/settings"
)

// admin answers the commands an operator, a monitoring tool or Redis
// Sentinel sends to the relay's port: INFO, ROLE, CONFIG, CLIENT,
// REPLICAOF, SHUTDOWN, LATENCY, RELAY, and pub/sub (Sentinel's hello
// channel). It reads the other parts through the Relay and owns only the
// pub/sub subscriptions.
//
// Every command is a handler in adminCommands. A handler appends its reply
// to the buffer it is given and returns it; it writes to no connection and
// no client's buffer. What it knows of the connection that sent the
// command is a clientInfo, and what it needs changed on that connection
// it returns as an effect, which the server applies.
//
// psMu is a leaf lock.
type admin struct {
	r     *Relay
	conns connections // the downstream connections, for CLIENT LIST and KILL

	psMu     sync.Mutex
	channels map[string]map[subscriber]struct{} // subscribers of each channel; guarded by psMu
	subs     map[subscriber]map[string]struct{} // channels of each subscriber; guarded by psMu
}

// connections is what admin needs of the downstream server.
type connections interface {
	// clientInfos describes every downstream connection, oldest first.
	clientInfos() []clientInfo
	// killClient closes the connection with that id. With endSession,
	// a replica session on it is first ended as killed by an operator.
	killClient(id int64, endSession bool)
}

// clientInfo is what an admin command sees of one connection: the one
// that sent it, or one listed by CLIENT LIST. The fields are CLIENT LIST's.
type clientInfo struct {
	id            int64
	addr          string
	localAddr     string
	fd            int    // the socket's file descriptor; -1 when it has none
	name          string // CLIENT SETNAME
	user          string // the ACL user it runs as; "" before AUTH
	libName       string // CLIENT SETINFO
	libVer        string
	resp3         bool // HELLO 3: replies in RESP3
	lastCmd       string
	lastAt        time.Time // zero before the first command
	created       time.Time
	replica       bool       // became a replica session
	subscriptions int        // channels it listens to
	multi         int        // commands queued after MULTI; -1 outside a transaction
	multiMem      int64      // bytes of those commands
	argvMem       int64      // bytes of the arguments of the command it is running
	qbuf          int        // request bytes read and not yet handled
	qbufFree      int        // room left in the read buffer
	obl           int        // reply bytes not yet written
	omem          int64      // a replica: snapshot and stream bytes it has not been sent yet
	totMem        int64      // its buffers: read buffer, reply buffer, queued commands, arguments, omem
	sub           subscriber // where PUBLISH delivers this connection's messages; nil in a listing
}

// effect is a change to the calling connection that a command asks the
// server to make after appending the reply. The zero effect changes
// nothing.
type effect struct {
	quit          bool    // close the connection after the reply (QUIT, SHUTDOWN)
	authenticated bool    // AUTH or HELLO AUTH matched: the connection runs as user from now on
	user          string  // the ACL user AUTH or HELLO AUTH authenticated
	setName       *string // CLIENT SETNAME, HELLO SETNAME
	libName       *string // CLIENT SETINFO lib-name
	libVer        *string // CLIENT SETINFO lib-ver
	proto         int     // HELLO: 2 or 3 from now on; 0 leaves it
	subscriptions int     // the channels the connection now listens to, when subscribed is set
	subscribed    bool    // SUBSCRIBE or UNSUBSCRIBE ran: subscriptions holds the count
}

// adminHandler answers one admin command: args[0] is the command name as
// sent. It appends the reply to out and returns it.
type adminHandler func(a *admin, out []byte, who clientInfo, args [][]byte) ([]byte, effect)

// adminCommands maps each admin command, lower case, to its handler. The
// server dispatches every command it finds here; the rest (the replication
// handshake: REPLCONF, PSYNC, SYNC; and MULTI/EXEC/DISCARD, which queue
// commands on the connection) are the server's own. Which commands an
// unauthenticated or subscribed connection may send is the server's to
// check, before it dispatches.
var adminCommands = map[string]adminHandler{
	"auth":         (*admin).auth,
	"ping":         (*admin).ping,
	"echo":         (*admin).echo,
	"time":         (*admin).timeCommand,
	"command":      (*admin).command,
	"select":       (*admin).selectDB,
	"quit":         (*admin).quit,
	"info":         (*admin).infoCommand,
	"role":         (*admin).roleCommand,
	"latency":      (*admin).latency,
	"client":       (*admin).clientCommand,
	"relay":        (*admin).relayCommand,
	"subscribe":    (*admin).subscribe,
	"unsubscribe":  (*admin).unsubscribe,
	"psubscribe":   (*admin).patternSubscribe,
	"punsubscribe": (*admin).patternSubscribe,
	"publish":      (*admin).publishCommand,
	"replicaof":    (*admin).replicaof,
	"slaveof":      (*admin).replicaof,
	"config":       (*admin).configCommand,
	"shutdown":     (*admin).shutdown,
	"hello":        (*admin).hello,
	"slowlog":      (*admin).slowlog,
	"acl":          (*admin).aclCommand,
}

// appendWrongArgs appends the error Redis gives for a command called with
// the wrong number of arguments.
func appendWrongArgs(out []byte, name string) []byte {
	return resp.AppendError(out, fmt.Sprintf("ERR wrong number of arguments for '%s' command", name))
}

// replicaof re-points the upstream: REPLICAOF host port. The relay keeps
// its history and asks the new upstream for a partial resync.
func (a *admin) replicaof(out []byte, who clientInfo, args [][]byte) ([]byte, effect) {
	if len(args) != 3 {
		return appendWrongArgs(out, strings.ToLower(string(args[0]))), effect{}
	}
	addr, err := settings.ReplicaOfAddr(string(args[1]), string(args[2]))
	switch {
	case errors.Is(err, settings.ErrBadPort):
		return resp.AppendError(out, "ERR Invalid master port"), effect{}
	case err != nil:
		return resp.AppendError(out, "ERR "+err.Error()), effect{}
	case addr == "": // REPLICAOF NO ONE
		return resp.AppendError(out, "ERR a relay cannot become a master: it holds no dataset, only the master's stream. Promote a replica instead, then point the relay at it with REPLICAOF host port"), effect{}
	}
	if cur, _ := a.r.up.MasterAddr(); cur == addr {
		return resp.AppendSimple(out, "OK Already connected to specified master"), effect{}
	}
	a.r.logger.Info("REPLICAOF: re-pointing upstream", "upstream", addr, "client", who.addr)
	a.r.up.SetMaster(addr)
	return resp.AppendSimple(out, "OK"), effect{}
}

// clientCommand implements the CLIENT subcommands tools use.
func (a *admin) clientCommand(out []byte, who clientInfo, args [][]byte) ([]byte, effect) {
	if len(args) < 2 {
		return appendWrongArgs(out, "client"), effect{}
	}
	switch strings.ToLower(string(args[1])) {
	case "setname":
		if len(args) != 3 {
			return appendWrongArgs(out, "client|setname"), effect{}
		}
		name := string(args[2])
		return resp.AppendSimple(out, "OK"), effect{setName: &name}
	case "setinfo":
		if len(args) != 4 {
			return appendWrongArgs(out, "client|setinfo"), effect{}
		}
		v := string(args[3])
		if strings.ContainsAny(v, " \r\n") {
			return resp.AppendError(out, "ERR lib-name and lib-ver cannot contain spaces, newlines or special characters."), effect{}
		}
		switch strings.ToLower(string(args[2])) {
		case "lib-name":
			return resp.AppendSimple(out, "OK"), effect{libName: &v}
		case "lib-ver":
			return resp.AppendSimple(out, "OK"), effect{libVer: &v}
		}
		return resp.AppendError(out, fmt.Sprintf("ERR Unrecognized option '%s'", resp.Excerpt(args[2], 32))), effect{}
	case "getname":
		if who.name != "" {
			return resp.AppendBulk(out, who.name), effect{}
		}
		return resp.AppendNil(out, who.resp3), effect{}
	case "id":
		return resp.AppendInt(out, who.id), effect{}
	case "list":
		keep, msg := clientListFilter(args[2:])
		if msg != "" {
			return resp.AppendError(out, msg), effect{}
		}
		var b strings.Builder
		for _, o := range a.conns.clientInfos() {
			if keep(o) {
				b.WriteString(describeClient(o))
				b.WriteByte('\n')
			}
		}
		return resp.AppendText(out, b.String(), who.resp3), effect{}
	case "info":
		return resp.AppendText(out, describeClient(who)+"\n", who.resp3), effect{}
	case "kill":
		return a.clientKill(out, who, args[2:]), effect{}
	default:
		return resp.AppendError(out, fmt.Sprintf("ERR unknown subcommand '%s'. Try CLIENT LIST, KILL, ID, SETNAME, GETNAME.", resp.Excerpt(args[1], 64))), effect{}
	}
}

// clientListFilter reads CLIENT LIST's options, TYPE normal|master|
// replica|slave|pubsub and ID id [id ...], into the test a listed
// connection must pass; msg is the error to answer instead.
func clientListFilter(args [][]byte) (keep func(clientInfo) bool, msg string) {
	typ := ""
	var ids map[int64]bool
	for i := 0; i < len(args); i++ {
		switch opt := strings.ToLower(string(args[i])); {
		case opt == "type" && i+1 < len(args):
			typ = strings.ToLower(string(args[i+1]))
			switch typ {
			case "normal", "master", "replica", "slave", "pubsub":
			default:
				return nil, fmt.Sprintf("ERR Unknown client type '%s'", resp.Excerpt(args[i+1], 32))
			}
			i++
		case opt == "id" && i+1 < len(args):
			ids = map[int64]bool{}
			for i+1 < len(args) {
				id, err := strconv.ParseInt(string(args[i+1]), 10, 64)
				if err != nil || id <= 0 {
					break
				}
				ids[id] = true
				i++
			}
			if len(ids) == 0 {
				return nil, "ERR Invalid client ID"
			}
		default:
			return nil, "ERR syntax error"
		}
	}
	return func(c clientInfo) bool {
		if ids != nil && !ids[c.id] {
			return false
		}
		switch typ {
		case "normal":
			return !c.replica && c.subscriptions == 0
		case "replica", "slave":
			return c.replica
		case "pubsub":
			return c.subscriptions > 0
		case "master":
			return false // the relay's link to its master is not a client of it
		}
		return true
	}, ""
}

// describeClient renders one CLIENT LIST line, with Redis 7.2's fields in
// its order. What the relay has no use for is Redis's value for a client
// without it: db=0, ssub=0, redir=-1, oll=0, events=r.
func describeClient(c clientInfo) string {
	flags := ""
	if c.replica {
		flags += "S"
	}
	if c.subscriptions > 0 {
		flags += "P"
	}
	if c.multi >= 0 {
		flags += "x"
	}
	if flags == "" {
		flags = "N"
	}
	idle := 0
	if !c.lastAt.IsZero() {
		idle = int(time.Since(c.lastAt).Seconds())
	}
	proto := 2
	if c.resp3 {
		proto = 3
	}
	cmd := c.lastCmd
	if cmd == "" {
		cmd = "NULL"
	}
	return fmt.Sprintf("id=%d addr=%s laddr=%s fd=%d name=%s age=%d idle=%d flags=%s db=0 sub=%d psub=0 ssub=0 multi=%d "+
		"qbuf=%d qbuf-free=%d argv-mem=%d multi-mem=%d obl=%d oll=0 omem=%d tot-mem=%d events=r cmd=%s user=%s redir=-1 resp=%d lib-name=%s lib-ver=%s",
		c.id, c.addr, c.localAddr, c.fd, c.name, int(time.Since(c.created).Seconds()), idle, flags, c.subscriptions, c.multi,
		c.qbuf, c.qbufFree, c.argvMem, c.multiMem, c.obl, c.omem, c.totMem, cmd, c.user, proto, c.libName, c.libVer)
}

// clientKill handles CLIENT KILL addr and CLIENT KILL <filter> <value> ...
// (ID, ADDR, TYPE normal|replica|slave|master|pubsub, SKIPME yes|no).
func (a *admin) clientKill(out []byte, who clientInfo, args [][]byte) []byte {
	if len(args) == 1 {
		for _, o := range a.conns.clientInfos() {
			if o.addr == string(args[0]) {
				a.conns.killClient(o.id, false)
				return resp.AppendSimple(out, "OK")
			}
		}
		return resp.AppendError(out, "ERR No such client")
	}
	if len(args) == 0 || len(args)%2 != 0 {
		return resp.AppendError(out, "ERR syntax error")
	}
	var id int64 = -1
	addr, typ, skipMe := "", "", true
	for i := 0; i < len(args); i += 2 {
		v := string(args[i+1])
		switch strings.ToLower(string(args[i])) {
		case "id":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return resp.AppendError(out, "ERR client-id should be greater than 0")
			}
			id = n
		case "addr":
			addr = v
		case "type":
			typ = strings.ToLower(v)
			switch typ {
			case "normal", "replica", "slave", "master", "pubsub":
			default:
				return resp.AppendError(out, fmt.Sprintf("ERR Unknown client type '%s'", resp.Excerpt(args[i+1], 32)))
			}
		case "skipme":
			on, err := settings.ParseYesNo(v)
			if err != nil {
				return resp.AppendError(out, "ERR syntax error")
			}
			skipMe = on
		default:
			return resp.AppendError(out, "ERR syntax error")
		}
	}
	killed := 0
	for _, o := range a.conns.clientInfos() {
		switch {
		case o.id == who.id && skipMe,
			id >= 0 && o.id != id,
			addr != "" && o.addr != addr,
			(typ == "normal") && o.replica,
			(typ == "replica" || typ == "slave") && !o.replica,
			typ == "master", typ == "pubsub":
			continue
		}
		a.conns.killClient(o.id, true)
		killed++
	}
	return resp.AppendInt(out, int64(killed))
}

// shutdown stops the relay (SHUTDOWN [NOSAVE|SAVE|NOW|FORCE]). On success
// nothing is answered: the connection closes.
func (a *admin) shutdown(out []byte, who clientInfo, args [][]byte) ([]byte, effect) {
	for _, arg := range args[1:] {
		switch strings.ToLower(string(arg)) {
		case "nosave", "save", "now", "force":
		case "abort":
			return resp.AppendError(out, "ERR No shutdown in progress."), effect{}
		default:
			return resp.AppendError(out, "ERR syntax error"), effect{}
		}
	}
	a.r.logger.Warn("SHUTDOWN requested", "client", who.addr)
	a.r.stop()
	return out, effect{quit: true}
}

// latency answers LATENCY as a Redis server with nothing to report does.
// The relay executes no commands and samples no latency events, so every
// list is empty; monitoring tools (redis_exporter asks LATENCY LATEST and
// LATENCY HISTOGRAM on every scrape) get an answer rather than an error.
func (a *admin) latency(out []byte, _ clientInfo, args [][]byte) ([]byte, effect) {
	if len(args) < 2 {
		return appendWrongArgs(out, "latency"), effect{}
	}
	sub := strings.ToLower(string(args[1]))
	switch {
	case sub == "latest" && len(args) == 2,
		sub == "histogram", // [command ...]: no command has a histogram
		sub == "history" && len(args) == 3:
		out = resp.AppendArray(out, 0)
	case sub == "reset":
		out = resp.AppendInt(out, 0) // events reset: there were none
	case sub == "doctor" && len(args) == 2:
		out = resp.AppendBulk(out, "This is a redis-relay: it executes no commands and samples no latency events, so there is nothing to diagnose. Its replication lag is in INFO replication and in the redis_relay_replica_lag_* metrics.\n")
	case sub == "graph" && len(args) == 3:
		out = resp.AppendError(out, fmt.Sprintf("ERR No samples available for event '%s'", resp.Excerpt(args[2], 64)))
	case sub == "help" && len(args) == 2:
		help := []string{
			"LATENCY <subcommand> [<arg> ...]. A relay samples no events; every answer is empty.",
			"LATEST", "HISTORY <event>", "RESET [<event> ...]", "GRAPH <event>", "DOCTOR", "HISTOGRAM [<command> ...]", "HELP",
		}
		out = resp.AppendArray(out, len(help))
		for _, h := range help {
			out = resp.AppendSimple(out, h)
		}
	case sub == "latest" || sub == "history" || sub == "doctor" || sub == "graph" || sub == "help":
		out = appendWrongArgs(out, "latency|"+sub)
	default:
		out = resp.AppendError(out, fmt.Sprintf("ERR unknown subcommand '%s'. Try LATENCY HELP.", resp.Excerpt(args[1], 64)))
	}
	return out, effect{}
}

// relayCommand runs the relay's own admin commands:
//
//	RELAY GUARD RELEASE   accept the snapshot held by the empty-master guard
func (a *admin) relayCommand(out []byte, _ clientInfo, args [][]byte) ([]byte, effect) {
	sub := ""
	for _, a := range args[1:] {
		sub += strings.ToLower(string(a)) + " "
	}
	switch strings.TrimSpace(sub) {
	case "guard release":
		if err := a.r.ReleaseGuard(); err != nil {
			return resp.AppendError(out, "ERR "+err.Error()), effect{}
		}
		return resp.AppendSimple(out, "OK"), effect{}
	default:
		return resp.AppendError(out, "ERR unknown RELAY subcommand; try RELAY GUARD RELEASE"), effect{}
	}
}
