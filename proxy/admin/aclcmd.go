package admin

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis-relay/redis-relay/internal/fsutil"
	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/proxy/acl"
)

// aclCommand answers ACL and its subcommands as Redis does, on the
// relay's users (package acl).
func (a *Admin) aclCommand(out []byte, who clientInfo, args [][]byte) ([]byte, effect) {
	if len(args) < 2 {
		return appendWrongArgs(out, "acl"), effect{}
	}
	sub := strings.ToLower(string(args[1]))
	rest := args[2:]
	wrong := func(want int, variadic bool) bool {
		return len(rest) < want || (!variadic && len(rest) > want)
	}
	switch sub {
	case "whoami":
		if wrong(0, false) {
			break
		}
		return resp.AppendBulk(out, who.User), effect{}
	case "users":
		if wrong(0, false) {
			break
		}
		return appendBulks(out, a.acl.Users()), effect{}
	case "list":
		if wrong(0, false) {
			break
		}
		return appendBulks(out, a.acl.List()), effect{}
	case "cat":
		if wrong(0, true) || len(rest) > 1 {
			break
		}
		if len(rest) == 0 {
			return appendBulks(out, acl.Categories()), effect{}
		}
		names, ok := acl.CommandsIn(string(rest[0]))
		if !ok {
			return resp.AppendError(out, fmt.Sprintf("ERR Unknown category '%s'", resp.Excerpt(rest[0], 64))), effect{}
		}
		return appendBulks(out, names), effect{}
	case "setuser":
		if wrong(1, true) {
			break
		}
		rules := make([]string, len(rest)-1)
		for i, r := range rest[1:] {
			rules[i] = string(r)
		}
		if err := a.acl.SetUser(string(rest[0]), rules...); err != nil {
			var re *acl.RuleError
			if errors.As(err, &re) {
				return resp.AppendError(out, fmt.Sprintf("ERR Error in ACL SETUSER modifier '%s': %s", resp.Excerpt([]byte(re.Rule), 64), re.Reason)), effect{}
			}
			return resp.AppendError(out, "ERR "+err.Error()), effect{}
		}
		a.logger.Info("ACL SETUSER", "user", string(rest[0]), "client", who.Addr)
		return resp.AppendSimple(out, "OK"), effect{}
	case "deluser":
		if wrong(1, true) {
			break
		}
		names := make([]string, len(rest))
		for i, r := range rest {
			names[i] = string(r)
		}
		n, err := a.acl.DelUser(names...)
		if err != nil {
			return resp.AppendError(out, "ERR "+err.Error()), effect{}
		}
		a.dropRemovedUsers(who)
		return resp.AppendInt(out, int64(n)), effect{}
	case "getuser":
		if wrong(1, false) {
			break
		}
		u, ok := a.acl.User(string(rest[0]))
		if !ok {
			return resp.AppendNull(out), effect{}
		}
		return appendUser(out, u), effect{}
	case "log":
		return a.aclLog(out, rest), effect{}
	case "load":
		if wrong(0, false) {
			break
		}
		return a.aclLoad(out, who), effect{}
	case "save":
		if wrong(0, false) {
			break
		}
		path := a.cfg.Get().ACLFile
		if path == "" {
			return resp.AppendError(out, "ERR This relay is not configured to use an ACL file. Set aclfile to load and save its users."), effect{}
		}
		if err := fsutil.WriteFile(path, a.acl.File(), 0o600); err != nil {
			a.logger.Warn("ACL SAVE failed", "path", path, "err", err)
			return resp.AppendError(out, "ERR There was an error trying to save the ACLs. Please check the server logs for more information"), effect{}
		}
		return resp.AppendSimple(out, "OK"), effect{}
	case "genpass":
		bits := 256
		if len(rest) == 1 {
			n, err := strconv.Atoi(string(rest[0]))
			if err != nil || n <= 0 || n > 4096 {
				return resp.AppendError(out, "ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096"), effect{}
			}
			bits = n
		} else if len(rest) > 1 {
			break
		}
		b := make([]byte, (bits+7)/8)
		rand.Read(b)
		return resp.AppendBulk(out, hex.EncodeToString(b)[:(bits+3)/4]), effect{}
	case "help":
		help := []string{
			"ACL <subcommand> [<arg> ...]. Subcommands are:",
			"CAT [<category>]", "DELUSER <username> [<username> ...]", "GETUSER <username>", "GENPASS [<bits>]",
			"LIST", "LOAD", "LOG [<count> | RESET]", "SAVE", "SETUSER <username> <attribute> [<attribute> ...]",
			"USERS", "WHOAMI", "HELP",
		}
		out = resp.AppendArray(out, len(help))
		for _, h := range help {
			out = resp.AppendSimple(out, h)
		}
		return out, effect{}
	default:
		return resp.AppendError(out, fmt.Sprintf("ERR unknown subcommand '%s'. Try ACL HELP.", resp.Excerpt(args[1], 64))), effect{}
	}
	return appendWrongArgs(out, "acl|"+sub), effect{}
}

// aclLoad replaces the users with the ACL file's, all or nothing.
func (a *Admin) aclLoad(out []byte, who clientInfo) []byte {
	path := a.cfg.Get().ACLFile
	if path == "" {
		return resp.AppendError(out, "ERR This relay is not configured to use an ACL file. Set aclfile to load and save its users.")
	}
	users, err := acl.ReadFile(path)
	if err != nil {
		return resp.AppendError(out, "ERR "+err.Error())
	}
	a.acl.Replace(users)
	a.logger.Info("ACL LOAD", "path", path, "users", len(users), "client", who.Addr)
	a.dropRemovedUsers(who)
	return resp.AppendSimple(out, "OK")
}

// dropRemovedUsers closes the connections whose user no longer exists,
// as Redis does after ACL DELUSER and ACL LOAD; replica sessions on them
// end as killed by an operator.
func (a *Admin) dropRemovedUsers(who clientInfo) {
	for _, o := range a.conns.ClientInfos() {
		if o.User == "" || o.ID == who.ID {
			continue
		}
		if _, ok := a.acl.User(o.User); !ok {
			a.conns.KillClient(o.ID, true)
		}
	}
}

// aclLog answers ACL LOG [<count> | RESET].
func (a *Admin) aclLog(out []byte, rest [][]byte) []byte {
	n := 10
	switch {
	case len(rest) > 1:
		return appendWrongArgs(out, "acl|log")
	case len(rest) == 1 && strings.EqualFold(string(rest[0]), "reset"):
		a.acl.Log().Reset()
		return resp.AppendSimple(out, "OK")
	case len(rest) == 1:
		v, err := strconv.Atoi(string(rest[0]))
		if err != nil || v < 0 {
			return resp.AppendError(out, "ERR value is out of range, must be positive")
		}
		n = v
	}
	entries := a.acl.Log().Entries(n)
	now := time.Now()
	out = resp.AppendArray(out, len(entries))
	for _, e := range entries {
		out = resp.AppendArray(out, 14)
		out = resp.AppendBulk(out, "count")
		out = resp.AppendInt(out, e.Count)
		for _, kv := range [][2]string{
			{"reason", e.Reason}, {"context", e.Context}, {"object", e.Object}, {"username", e.Username},
			{"age-seconds", strconv.FormatFloat(now.Sub(e.Created).Seconds(), 'f', 3, 64)},
			{"client-info", e.ClientInfo},
		} {
			out = resp.AppendBulk(out, kv[0])
			out = resp.AppendBulk(out, kv[1])
		}
	}
	return out
}

// appendUser answers ACL GETUSER as Redis 7.0 does.
func appendUser(out []byte, u *acl.User) []byte {
	out = resp.AppendArray(out, 12)
	out = resp.AppendBulk(out, "flags")
	out = appendBulks(out, u.Flags())
	out = resp.AppendBulk(out, "passwords")
	out = appendBulks(out, u.Hashes())
	out = resp.AppendBulk(out, "commands")
	out = resp.AppendBulk(out, strings.Join(u.CommandRules(), " "))
	out = resp.AppendBulk(out, "keys")
	out = resp.AppendBulk(out, u.KeyPatterns())
	out = resp.AppendBulk(out, "channels")
	out = resp.AppendBulk(out, u.ChannelPatterns())
	out = resp.AppendBulk(out, "selectors")
	return resp.AppendArray(out, 0)
}

func appendBulks(out []byte, items []string) []byte {
	out = resp.AppendArray(out, len(items))
	for _, s := range items {
		out = resp.AppendBulk(out, s)
	}
	return out
}
