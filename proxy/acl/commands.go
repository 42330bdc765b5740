package acl

import (
	"slices"
	"strings"
)

// Category is a set of Redis's ACL command categories, one bit each.
type Category uint32

// Redis's categories, in the order ACL CAT lists them.
const (
	CatKeyspace Category = 1 << iota
	CatRead
	CatWrite
	CatSet
	CatSortedSet
	CatList
	CatHash
	CatString
	CatBitmap
	CatHyperLogLog
	CatGeo
	CatStream
	CatPubSub
	CatAdmin
	CatFast
	CatSlow
	CatBlocking
	CatDangerous
	CatConnection
	CatTransaction
	CatScripting
)

// categoryNames are the names ACL CAT lists, in its order: every one of
// Redis's, so that a rule such as -@write reads as it does there, even
// where no command the relay answers is in the category.
var categoryNames = []string{
	"keyspace", "read", "write", "set", "sortedset", "list", "hash", "string",
	"bitmap", "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow",
	"blocking", "dangerous", "connection", "transaction", "scripting",
}

// Categories returns the names of every category, as ACL CAT lists them.
func Categories() []string { return slices.Clone(categoryNames) }

// categoryByName finds a category by its name without the @.
func categoryByName(name string) (Category, bool) {
	i := slices.Index(categoryNames, strings.ToLower(name))
	if i < 0 {
		return 0, false
	}
	return 1 << i, true
}

// command is one entry of the command table: a command, or one
// subcommand of a container command ("config|get").
type command struct {
	name string // lower case; "config|get" for a subcommand
	cats Category
	subs []int // a container's subcommands, as indexes into commands
}

// commandDefs lists the commands the relay answers and the categories
// Redis 7.0's COMMAND INFO gives each (client|setinfo is Redis 7.2's).
// RELAY is the relay's own; it changes what the relay serves, so it is
// @admin and @dangerous like CONFIG SET. A container's own categories
// are those Redis gives the container; its rules are decided on the
// subcommands.
var commandDefs = []struct {
	name string
	cats Category
}{
	{"auth", CatFast | CatConnection},
	{"ping", CatFast | CatConnection},
	{"echo", CatFast | CatConnection},
	{"time", CatFast},
	{"select", CatFast | CatConnection},
	{"quit", CatFast | CatConnection},
	{"hello", CatFast | CatConnection}, // like AUTH, every connection may send it (Check)
	{"info", CatSlow | CatDangerous},
	{"role", CatAdmin | CatFast | CatDangerous},
	{"subscribe", CatPubSub | CatSlow},
	{"unsubscribe", CatPubSub | CatSlow},
	{"psubscribe", CatPubSub | CatSlow},
	{"punsubscribe", CatPubSub | CatSlow},
	{"publish", CatPubSub | CatFast},
	{"replicaof", CatAdmin | CatSlow | CatDangerous},
	{"slaveof", CatAdmin | CatSlow | CatDangerous},
	{"shutdown", CatAdmin | CatSlow | CatDangerous},
	{"replconf", CatAdmin | CatSlow | CatDangerous},
	{"psync", CatAdmin | CatSlow | CatDangerous},
	{"sync", CatAdmin | CatSlow | CatDangerous},
	{"multi", CatFast | CatTransaction},
	{"exec", CatSlow | CatTransaction},
	{"discard", CatFast | CatTransaction},
	{"relay", CatAdmin | CatSlow | CatDangerous},

	{"command", CatSlow | CatConnection},
	{"command|count", CatSlow | CatConnection},
	{"command|docs", CatSlow | CatConnection},
	{"command|info", CatSlow | CatConnection},
	{"command|list", CatSlow | CatConnection},
	{"command|help", CatSlow | CatConnection},

	{"latency", CatSlow},
	{"latency|doctor", CatAdmin | CatSlow | CatDangerous},
	{"latency|graph", CatAdmin | CatSlow | CatDangerous},
	{"latency|histogram", CatAdmin | CatSlow | CatDangerous},
	{"latency|history", CatAdmin | CatSlow | CatDangerous},
	{"latency|latest", CatAdmin | CatSlow | CatDangerous},
	{"latency|reset", CatAdmin | CatSlow | CatDangerous},
	{"latency|help", CatSlow},

	{"slowlog", CatSlow},
	{"slowlog|get", CatAdmin | CatSlow | CatDangerous},
	{"slowlog|len", CatAdmin | CatSlow | CatDangerous},
	{"slowlog|reset", CatAdmin | CatSlow | CatDangerous},
	{"slowlog|help", CatSlow},

	{"client", CatSlow},
	{"client|getname", CatSlow | CatConnection},
	{"client|id", CatSlow | CatConnection},
	{"client|info", CatSlow | CatConnection},
	{"client|kill", CatAdmin | CatSlow | CatDangerous | CatConnection},
	{"client|list", CatAdmin | CatSlow | CatDangerous | CatConnection},
	{"client|setname", CatSlow | CatConnection},
	{"client|setinfo", CatSlow | CatConnection},

	{"config", CatSlow},
	{"config|get", CatAdmin | CatSlow | CatDangerous},
	{"config|set", CatAdmin | CatSlow | CatDangerous},
	{"config|rewrite", CatAdmin | CatSlow | CatDangerous},
	{"config|resetstat", CatAdmin | CatSlow | CatDangerous},
	{"config|help", CatSlow},

	{"acl", CatSlow},
	{"acl|cat", CatSlow},
	{"acl|deluser", CatAdmin | CatSlow | CatDangerous},
	{"acl|genpass", CatSlow},
	{"acl|getuser", CatAdmin | CatSlow | CatDangerous},
	{"acl|list", CatAdmin | CatSlow | CatDangerous},
	{"acl|load", CatAdmin | CatSlow | CatDangerous},
	{"acl|log", CatAdmin | CatSlow | CatDangerous},
	{"acl|save", CatAdmin | CatSlow | CatDangerous},
	{"acl|setuser", CatAdmin | CatSlow | CatDangerous},
	{"acl|users", CatAdmin | CatSlow | CatDangerous},
	{"acl|whoami", CatSlow},
	{"acl|help", CatSlow},
}

// commands is commandDefs with each container linked to its
// subcommands; commandIndex finds an entry by name.
var commands, commandIndex = func() ([]command, map[string]int) {
	list := make([]command, len(commandDefs))
	index := make(map[string]int, len(commandDefs))
	for i, d := range commandDefs {
		if _, dup := index[d.name]; dup {
			panic("acl: command " + d.name + " listed twice")
		}
		list[i] = command{name: d.name, cats: d.cats}
		index[d.name] = i
		if parent, _, ok := strings.Cut(d.name, "|"); ok {
			p, found := index[parent]
			if !found {
				panic("acl: subcommand " + d.name + " listed before its command")
			}
			list[p].subs = append(list[p].subs, i)
		}
	}
	return list, index
}()

// Known reports whether name (lower case) is a command the ACL rules can
// name.
func Known(name string) bool {
	_, ok := commandIndex[name]
	return ok
}

// CommandsIn returns the commands in the category (without the @), as
// ACL CAT <category> lists them; false when there is no such category.
func CommandsIn(category string) ([]string, bool) {
	c, ok := categoryByName(category)
	if !ok {
		return nil, false
	}
	var names []string
	for _, cmd := range commands {
		if cmd.cats&c != 0 && len(cmd.subs) == 0 {
			names = append(names, cmd.name)
		}
	}
	return names, true
}

// lookup finds the table entry that decides on a request: the
// subcommand's when the command is a container and args[1] names one of
// its subcommands, else the command's own. ok is false for a command the
// table does not hold.
func lookup(args [][]byte) (idx int, ok bool) {
	if len(args) == 0 || len(args[0]) > 32 {
		return 0, false
	}
	var buf [32]byte
	name := lowerInto(buf[:0], args[0])
	idx, ok = commandIndex[string(name)]
	if !ok || len(commands[idx].subs) == 0 || len(args) < 2 || len(args[1]) > 32 {
		return idx, ok
	}
	var full [72]byte
	sub := append(append(lowerInto(full[:0], args[0]), '|'), lowerInto(buf[:0], args[1])...)
	if s, found := commandIndex[string(sub)]; found {
		return s, true
	}
	return idx, true
}

// lowerInto appends the ASCII lower case of b to dst.
func lowerInto(dst, b []byte) []byte {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
