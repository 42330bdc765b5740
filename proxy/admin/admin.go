package admin

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/proxy/acl"
	"github.com/redis-relay/redis-relay/proxy/downstream"
	"github.com/redis-relay/redis-relay/proxy/settings"
	"github.com/redis-relay/redis-relay/proxy/status"
)

// Admin answers the commands an operator, a monitoring tool or Redis
// Sentinel sends to the relay's port: INFO, ROLE, CONFIG, CLIENT,
// REPLICAOF, SHUTDOWN, LATENCY, SLOWLOG, RELAY, HELLO, and pub/sub
// (Sentinel's hello channel). It reads and changes the other parts only through the
// interfaces below; the pub/sub registry is the server's. It holds no
// state of its own and no lock.
//
// Every command is a handler in adminCommands. A handler appends its reply
// to the buffer it is given and returns it; it writes to no connection and
// no client's buffer. What it knows of the connection that sent the
// command is a clientInfo, and what it needs changed on that connection
// it returns as an effect, which the server applies.
type Admin struct {
	cfg     *settings.Live
	logger  *slog.Logger
	relay   Relay
	up      Upstream
	hist    History
	conns   Connections
	ps      *downstream.PubSub // the server's subscriptions
	acl     *acl.ACL           // the users: AUTH, ACL
	runID   string
	started time.Time
	version string
}

// Relay is what the admin commands read and change of the relay as a
// whole.
type Relay interface {
	// Status is the relay's state, for INFO and ROLE.
	Status() status.Status
	// Replicas lists the replica sessions, for INFO replication.
	Replicas() []downstream.ReplicaInfo
	// CurrentConfig is the running configuration with the upstream the
	// link follows now as replicaof, for CONFIG GET.
	CurrentConfig() settings.Config
	// Settings is every setting CONFIG REWRITE may write, with its value.
	Settings() map[string]string
	// Stop ends the relay's Run (SHUTDOWN).
	Stop()
}

// Upstream is what REPLICAOF needs of the upstream link.
type Upstream interface {
	MasterAddr() (string, <-chan struct{})
	SetMaster(addr string)
}

// History is what RELAY GUARD and CONFIG SET hold-on-commands need of the
// history.
type History interface {
	ReleaseGuard() error
	WarnHoldCommands(was, held map[string]bool)
}

// Connections is what the admin commands need of the downstream server:
// its connections, for CLIENT LIST and KILL and INFO clients.
type Connections interface {
	// ClientInfos describes every downstream connection, oldest first.
	ClientInfos() []clientInfo
	// KillClient closes the connection with that id. With endSession,
	// a replica session on it is first ended as killed by an operator.
	KillClient(id int64, endSession bool)
	// ClientCount is the number of downstream connections.
	ClientCount() int
}

// Options are what New wires the admin commands to.
type Options struct {
	Config      *settings.Live
	Logger      *slog.Logger
	Relay       Relay
	Upstream    Upstream
	History     History
	Connections Connections
	PubSub      *downstream.PubSub
	ACL         *acl.ACL
	RunID       string    // INFO's run_id
	Started     time.Time // for INFO's uptime_in_seconds
	Version     string    // INFO's relay_version
}

// New makes the admin commands; the server dispatches to them through
// Handler and NotServed.
func New(o Options) *Admin {
	return &Admin{
		cfg: o.Config, logger: o.Logger, relay: o.Relay, up: o.Upstream, hist: o.History,
		conns: o.Connections, ps: o.PubSub, acl: o.ACL, runID: o.RunID, started: o.Started, version: o.Version,
	}
}

// clientInfo is what an admin command sees of one connection: the one
// that sent it, or one listed by CLIENT LIST.
type clientInfo = downstream.ClientInfo

// effect is a change to the calling connection that a command asks the
// server to make after appending the reply. The zero effect changes
// nothing.
type effect = downstream.Effect

// adminHandler answers one admin command: args[0] is the command name as
// sent. It appends the reply to out and returns it.
type adminHandler func(a *Admin, out []byte, who clientInfo, args [][]byte) ([]byte, effect)

// adminCommands maps each admin command, lower case, to its handler. The
// server dispatches every command it finds here; the rest (the replication
// handshake: REPLCONF, PSYNC, SYNC; and MULTI/EXEC/DISCARD, which queue
// commands on the connection) are the server's own. Which commands an
// unauthenticated or subscribed connection may send is the server's to
// check, before it dispatches.
var adminCommands = map[string]adminHandler{
	"auth":         (*Admin).auth,
	"ping":         (*Admin).ping,
	"echo":         (*Admin).echo,
	"time":         (*Admin).timeCommand,
	"command":      (*Admin).command,
	"select":       (*Admin).selectDB,
	"quit":         (*Admin).quit,
	"info":         (*Admin).infoCommand,
	"role":         (*Admin).roleCommand,
	"latency":      (*Admin).latency,
	"client":       (*Admin).clientCommand,
	"relay":        (*Admin).relayCommand,
	"subscribe":    (*Admin).subscribe,
	"unsubscribe":  (*Admin).unsubscribe,
	"psubscribe":   (*Admin).patternSubscribe,
	"punsubscribe": (*Admin).patternSubscribe,
	"publish":      (*Admin).publishCommand,
	"replicaof":    (*Admin).replicaof,
	"slaveof":      (*Admin).replicaof,
	"config":       (*Admin).configCommand,
	"shutdown":     (*Admin).shutdown,
	"acl":          (*Admin).aclCommand,
	"hello":        (*Admin).hello,
	"slowlog":      (*Admin).slowlog,
}

// appendWrongArgs appends the error Redis gives for a command called with
// the wrong number of arguments.
func appendWrongArgs(out []byte, name string) []byte { return resp.AppendWrongArgs(out, name) }

// Handler is the server's view of adminCommands: the handler of the
// command name, bound to a, or nil.
func (a *Admin) Handler(name string) downstream.Handler {
	h := adminCommands[name]
	if h == nil {
		return nil
	}
	return func(out []byte, who clientInfo, args [][]byte) ([]byte, effect) { return h(a, out, who, args) }
}

// replicaof re-points the upstream: REPLICAOF host port. The relay keeps
// its history and asks the new upstream for a partial resync.
func (a *Admin) replicaof(out []byte, who clientInfo, args [][]byte) ([]byte, effect) {
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
	if cur, _ := a.up.MasterAddr(); cur == addr {
		return resp.AppendSimple(out, "OK Already connected to specified master"), effect{}
	}
	a.logger.Info("REPLICAOF: re-pointing upstream", "upstream", addr, "client", who.Addr)
	a.up.SetMaster(addr)
	return resp.AppendSimple(out, "OK"), effect{}
}

// clientCommand implements the CLIENT subcommands tools use.
func (a *Admin) clientCommand(out []byte, who clientInfo, args [][]byte) ([]byte, effect) {
	if len(args) < 2 {
		return appendWrongArgs(out, "client"), effect{}
	}
	switch strings.ToLower(string(args[1])) {
	case "setname":
		if len(args) != 3 {
			return appendWrongArgs(out, "client|setname"), effect{}
		}
		name := string(args[2])
		return resp.AppendSimple(out, "OK"), effect{SetName: &name}
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
			return resp.AppendSimple(out, "OK"), effect{LibName: &v}
		case "lib-ver":
			return resp.AppendSimple(out, "OK"), effect{LibVer: &v}
		}
		return resp.AppendError(out, fmt.Sprintf("ERR Unrecognized option '%s'", resp.Excerpt(args[2], 32))), effect{}
	case "getname":
		if who.Name != "" {
			return resp.AppendBulk(out, who.Name), effect{}
		}
		return resp.AppendNil(out, who.RESP3), effect{}
	case "id":
		return resp.AppendInt(out, who.ID), effect{}
	case "list":
		keep, msg := clientListFilter(args[2:])
		if msg != "" {
			return resp.AppendError(out, msg), effect{}
		}
		var b strings.Builder
		for _, o := range a.conns.ClientInfos() {
			if keep(o) {
				b.WriteString(describeClient(o))
				b.WriteByte('\n')
			}
		}
		return resp.AppendText(out, b.String(), who.RESP3), effect{}
	case "info":
		return resp.AppendText(out, describeClient(who)+"\n", who.RESP3), effect{}
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
		if ids != nil && !ids[c.ID] {
			return false
		}
		switch typ {
		case "normal":
			return !c.Replica && c.Subscriptions == 0
		case "replica", "slave":
			return c.Replica
		case "pubsub":
			return c.Subscriptions > 0
		case "master":
			return false // the relay's link to its master is not a client of it
		}
		return true
	}, ""
}

// describeClient renders one CLIENT LIST line.
func describeClient(c clientInfo) string { return c.Describe() }

// clientKill handles CLIENT KILL addr and CLIENT KILL <filter> <value> ...
// (ID, ADDR, TYPE normal|replica|slave|master|pubsub, SKIPME yes|no).
func (a *Admin) clientKill(out []byte, who clientInfo, args [][]byte) []byte {
	if len(args) == 1 {
		for _, o := range a.conns.ClientInfos() {
			if o.Addr == string(args[0]) {
				a.conns.KillClient(o.ID, false)
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
	for _, o := range a.conns.ClientInfos() {
		switch {
		case o.ID == who.ID && skipMe,
			id >= 0 && o.ID != id,
			addr != "" && o.Addr != addr,
			(typ == "normal") && o.Replica,
			(typ == "replica" || typ == "slave") && !o.Replica,
			typ == "master", typ == "pubsub":
			continue
		}
		a.conns.KillClient(o.ID, true)
		killed++
	}
	return resp.AppendInt(out, int64(killed))
}

// shutdown stops the relay (SHUTDOWN [NOSAVE|SAVE|NOW|FORCE]). On success
// nothing is answered: the connection closes.
func (a *Admin) shutdown(out []byte, who clientInfo, args [][]byte) ([]byte, effect) {
	for _, arg := range args[1:] {
		switch strings.ToLower(string(arg)) {
		case "nosave", "save", "now", "force":
		case "abort":
			return resp.AppendError(out, "ERR No shutdown in progress."), effect{}
		default:
			return resp.AppendError(out, "ERR syntax error"), effect{}
		}
	}
	a.logger.Warn("SHUTDOWN requested", "client", who.Addr)
	a.relay.Stop()
	return out, effect{Quit: true}
}

// latency answers LATENCY as a Redis server with nothing to report does.
// The relay executes no commands and samples no latency events, so every
// list is empty; monitoring tools (redis_exporter asks LATENCY LATEST and
// LATENCY HISTOGRAM on every scrape) get an answer rather than an error.
func (a *Admin) latency(out []byte, _ clientInfo, args [][]byte) ([]byte, effect) {
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
func (a *Admin) relayCommand(out []byte, _ clientInfo, args [][]byte) ([]byte, effect) {
	sub := ""
	for _, a := range args[1:] {
		sub += strings.ToLower(string(a)) + " "
	}
	switch strings.TrimSpace(sub) {
	case "guard release":
		if err := a.hist.ReleaseGuard(); err != nil {
			return resp.AppendError(out, "ERR "+err.Error()), effect{}
		}
		return resp.AppendSimple(out, "OK"), effect{}
	default:
		return resp.AppendError(out, "ERR unknown RELAY subcommand; try RELAY GUARD RELEASE"), effect{}
	}
}
