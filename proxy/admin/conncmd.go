package admin

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/proxy/acl"
)

// The commands every Redis client sends about its own connection: AUTH,
// HELLO, PING, ECHO, TIME, COMMAND, SELECT, QUIT and SLOWLOG. Like the other admin
// commands they answer into the buffer they are given; AUTH and QUIT hand
// the change to the connection back as an effect.

func (a *Admin) ping(out []byte, _ clientInfo, args [][]byte) ([]byte, effect) {
	switch len(args) {
	case 1:
		return resp.AppendSimple(out, "PONG"), effect{}
	case 2:
		return resp.AppendBulk(out, string(args[1])), effect{}
	default:
		return appendWrongArgs(out, "ping"), effect{}
	}
}

func (a *Admin) echo(out []byte, _ clientInfo, args [][]byte) ([]byte, effect) {
	if len(args) != 2 {
		return appendWrongArgs(out, "echo"), effect{}
	}
	return resp.AppendBulk(out, string(args[1])), effect{}
}

func (a *Admin) timeCommand(out []byte, _ clientInfo, _ [][]byte) ([]byte, effect) {
	now := time.Now()
	out = resp.AppendArray(out, 2)
	out = resp.AppendBulk(out, strconv.FormatInt(now.Unix(), 10))
	return resp.AppendBulk(out, strconv.Itoa(now.Nanosecond()/1000)), effect{}
}

// command answers COMMAND with no commands: the relay executes none.
func (a *Admin) command(out []byte, _ clientInfo, _ [][]byte) ([]byte, effect) {
	return resp.AppendArray(out, 0), effect{}
}

func (a *Admin) selectDB(out []byte, _ clientInfo, args [][]byte) ([]byte, effect) {
	if len(args) == 2 && string(args[1]) == "0" {
		return resp.AppendSimple(out, "OK"), effect{}
	}
	return resp.AppendError(out, "ERR a relay holds no keyspace; only SELECT 0 is accepted"), effect{}
}

func (a *Admin) quit(out []byte, _ clientInfo, _ [][]byte) ([]byte, effect) {
	return resp.AppendSimple(out, "OK"), effect{Quit: true}
}

// auth checks AUTH [user] password against the ACL users; AUTH password
// is the default user's, which requirepass sets. Only a match
// authenticates the connection, as that user, through the effect.
func (a *Admin) auth(out []byte, who clientInfo, args [][]byte) ([]byte, effect) {
	var user, pass string
	switch len(args) {
	case 2:
		user, pass = "default", string(args[1])
	case 3:
		user, pass = string(args[1]), string(args[2])
	default:
		return appendWrongArgs(out, "auth"), effect{}
	}
	a.acl.SetRequirePass(a.cfg.Get().RequirePass)
	if len(args) == 2 {
		if u, _ := a.acl.User(acl.DefaultUser); u.Enabled() && u.NoPass() {
			return resp.AppendError(out, "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"), effect{}
		}
	}
	if msg := a.checkAuth(who, user, pass); msg != "" {
		return resp.AppendError(out, msg), effect{}
	}
	return resp.AppendSimple(out, "OK"), effect{Authenticated: true, User: user}
}

// checkAuth checks a user and password against the ACL users (the
// default user's password is requirepass), for AUTH and HELLO AUTH. It
// returns the error to answer, or "" on a match.
func (a *Admin) checkAuth(who clientInfo, user, pass string) string {
	a.acl.SetRequirePass(a.cfg.Get().RequirePass)
	if !a.acl.Authenticate(user, pass, func() string { return describeClient(who) }) {
		a.logger.Warn("downstream AUTH failed", "client", who.Addr, "user", resp.Excerpt([]byte(user), 64))
		return "WRONGPASS invalid username-password pair or user is disabled."
	}
	return ""
}

// hello answers HELLO [protover [AUTH user pass] [SETNAME name]]: it
// switches the connection to RESP2 or RESP3, authenticates it and names
// it, all or nothing, and describes the server in a map (in the protocol
// just chosen). Every admin reply after HELLO 3 is in RESP3.
func (a *Admin) hello(out []byte, who clientInfo, args [][]byte) ([]byte, effect) {
	e := effect{Proto: 2}
	if who.RESP3 {
		e.Proto = 3
	}
	if len(args) >= 2 {
		v, err := strconv.Atoi(string(args[1]))
		if err != nil {
			return resp.AppendError(out, "ERR Protocol version is not an integer or out of range"), effect{}
		}
		if v < 2 || v > 3 {
			return resp.AppendError(out, "NOPROTO unsupported protocol version"), effect{}
		}
		e.Proto = v
	}
	var user, pass *string
	for i := 2; i < len(args); i++ {
		more := len(args) - i - 1
		switch opt := strings.ToLower(string(args[i])); {
		case opt == "auth" && more >= 2:
			u, p := string(args[i+1]), string(args[i+2])
			user, pass = &u, &p
			i += 2
		case opt == "setname" && more >= 1:
			name := string(args[i+1])
			e.SetName = &name
			i++
		default:
			return resp.AppendError(out, fmt.Sprintf("ERR Syntax error in HELLO option '%s'", resp.Excerpt(args[i], 32))), effect{}
		}
	}
	if user != nil {
		if msg := a.checkAuth(who, *user, *pass); msg != "" {
			return resp.AppendError(out, msg), effect{}
		}
		e.Authenticated, e.User = true, *user
	} else if who.User == "" {
		return resp.AppendError(out, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"), effect{}
	}
	resp3 := e.Proto == 3
	version, _ := a.redisVersion()
	out = resp.AppendMapHeader(out, 7, resp3)
	out = resp.AppendBulk(out, "server")
	out = resp.AppendBulk(out, "redis")
	out = resp.AppendBulk(out, "version")
	out = resp.AppendBulk(out, version)
	out = resp.AppendBulk(out, "proto")
	out = resp.AppendInt(out, int64(e.Proto))
	out = resp.AppendBulk(out, "id")
	out = resp.AppendInt(out, who.ID)
	out = resp.AppendBulk(out, "mode")
	out = resp.AppendBulk(out, redisMode)
	out = resp.AppendBulk(out, "role")
	out = resp.AppendBulk(out, "replica")
	out = resp.AppendBulk(out, "modules")
	out = resp.AppendArray(out, 0)
	return out, e
}

// slowlog answers SLOWLOG GET|LEN|RESET|HELP as a Redis server whose slow
// log is empty: the relay executes no commands, so none is ever slow.
// (redis_exporter reads SLOWLOG LEN and SLOWLOG GET 1 on every scrape.)
func (a *Admin) slowlog(out []byte, _ clientInfo, args [][]byte) ([]byte, effect) {
	if len(args) < 2 {
		return appendWrongArgs(out, "slowlog"), effect{}
	}
	switch sub := strings.ToLower(string(args[1])); {
	case sub == "get" && len(args) <= 3:
		if len(args) == 3 {
			if n, err := strconv.ParseInt(string(args[2]), 10, 64); err != nil || n < -1 {
				return resp.AppendError(out, "ERR count should be greater than or equal to -1"), effect{}
			}
		}
		return resp.AppendArray(out, 0), effect{}
	case sub == "len" && len(args) == 2:
		return resp.AppendInt(out, 0), effect{}
	case sub == "reset" && len(args) == 2:
		return resp.AppendSimple(out, "OK"), effect{}
	case sub == "help" && len(args) == 2:
		help := []string{
			"SLOWLOG <subcommand> [<arg> ...]. A relay executes no commands; its slow log stays empty.",
			"GET [<count>]", "LEN", "RESET", "HELP",
		}
		out = resp.AppendArray(out, len(help))
		for _, h := range help {
			out = resp.AppendSimple(out, h)
		}
		return out, effect{}
	case sub == "get" || sub == "len" || sub == "reset" || sub == "help":
		return appendWrongArgs(out, "slowlog|"+sub), effect{}
	default:
		return resp.AppendError(out, fmt.Sprintf("ERR unknown subcommand '%s'. Try SLOWLOG HELP.", resp.Excerpt(args[1], 64))), effect{}
	}
}
