package admin

import (
	"strconv"
	"time"

	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/proxy/acl"
)

// The commands every Redis client sends about its own connection: AUTH,
// PING, ECHO, TIME, COMMAND, SELECT and QUIT. Like the other admin
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
	if !a.acl.Authenticate(user, pass, func() string { return describeClient(who) }) {
		a.logger.Warn("downstream AUTH failed", "client", who.Addr, "user", resp.Excerpt([]byte(user), 64))
		return resp.AppendError(out, "WRONGPASS invalid username-password pair or user is disabled."), effect{}
	}
	return resp.AppendSimple(out, "OK"), effect{Authenticated: true, User: user}
}
