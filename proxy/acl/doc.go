// Package acl is the relay's access control: users as redis.conf and ACL
// files write them ("user replica-user on >secret +psync +replconf
// +ping"), the check made before every command, and ACL LOG.
//
// A user is a set of rules applied in order, as in Redis: on|off, the
// passwords (kept only as SHA-256 hashes), the commands it may run, by
// name (+psync), by subcommand (+config|get) or by Redis's category
// (+@admin), and the pub/sub channels it may use (&pattern). Key patterns
// (~pattern, allkeys) are accepted so that a line written for Redis loads,
// and have no effect: the relay holds no keys.
//
// The commands a rule may name are the ones the relay answers, each in the
// categories Redis 7 puts it in (commands.go). A rule naming any other
// command is an error, as in Redis.
//
// An ACL holds the users and is safe for concurrent use. A User is an
// immutable value: ACL SETUSER builds a new one and swaps it in, so a
// check reads a user without holding the ACL's lock while it decides.
package acl
