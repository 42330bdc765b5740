package acl

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
)

// DefaultUser is the user a connection starts as, and the one AUTH with a
// password alone authenticates.
const DefaultUser = "default"

// ACL holds the users, the ACL LOG and the count of denied commands.
//
// mu is a leaf lock.
type ACL struct {
	mu     sync.RWMutex
	users  map[string]*User    // by name; always holds DefaultUser; guarded by mu
	pass   string              // the requirepass last applied (SetRequirePass); guarded by mu
	also   []string            // users besides the default one that follow requirepass; guarded by mu
	denied map[deniedKey]int64 // commands refused, by user and command; guarded by mu
	log    Log
}

type deniedKey struct{ user, command string }

// New returns an ACL with the default user alone, as Redis starts: on,
// no password, every command and channel.
func New() *ACL {
	a := &ACL{users: make(map[string]*User), denied: make(map[deniedKey]int64)}
	a.users[DefaultUser] = defaultUser()
	a.log.max = DefaultLogLen
	return a
}

func defaultUser() *User {
	u, _ := newUser(DefaultUser).With("on", "nopass", "~*", "&*", "+@all")
	return u
}

// User returns the user with that name.
func (a *ACL) User(name string) (*User, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	u, ok := a.users[name]
	return u, ok
}

// Users returns every user name, sorted.
func (a *ACL) Users() []string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	names := make([]string, 0, len(a.users))
	for n := range a.users {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// List returns one line per user, as ACL LIST and an ACL file write
// them: "user <name> <rules>", by name.
func (a *ACL) List() []string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	names := make([]string, 0, len(a.users))
	for n := range a.users {
		names = append(names, n)
	}
	sort.Strings(names)
	lines := make([]string, len(names))
	for i, n := range names {
		lines[i] = "user " + n + " " + a.users[n].Describe()
	}
	return lines
}

// SetUser applies rules to the user with that name, creating it (off, no
// password, no command) if there is none. Either every rule applies or
// nothing changes; the error is a *RuleError.
func (a *ACL) SetUser(name string, rules ...string) error {
	if err := checkName(name); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	u := a.users[name]
	if u == nil {
		u = newUser(name)
	}
	n, err := u.With(rules...)
	if err != nil {
		return err
	}
	a.users[name] = n
	return nil
}

// ErrDefaultUser is DELUSER default.
var ErrDefaultUser = errors.New("The 'default' user cannot be removed")

// DelUser removes the named users and reports how many there were.
func (a *ACL) DelUser(names ...string) (int, error) {
	if slices.Contains(names, DefaultUser) {
		return 0, ErrDefaultUser
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, name := range names {
		if _, ok := a.users[name]; ok {
			delete(a.users, name)
			n++
		}
	}
	return n, nil
}

// Replace swaps every user for those in users (ParseFile's), keeping
// the default user as it is unless users define it.
func (a *ACL) Replace(users []*User) {
	a.mu.Lock()
	defer a.mu.Unlock()
	next := make(map[string]*User, len(users)+1)
	next[DefaultUser] = a.users[DefaultUser]
	for _, u := range users {
		next[u.name] = u
	}
	a.users = next
}

// AlsoFollowRequirePass makes the named user (the relay's requireuser)
// follow requirepass as the default user does: created on, with every
// command, when requirepass is first set.
func (a *ACL) AlsoFollowRequirePass(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.also = append(a.also, name)
}

// SetRequirePass makes the default user's password follow requirepass,
// as Redis does: a change of it resets the default user's passwords to
// it (or to nopass when it is empty), and those of the users named by
// AlsoFollowRequirePass. Calling it again with the same value changes
// nothing, so that ACL SETUSER default keeps its rules until requirepass
// itself changes.
func (a *ACL) SetRequirePass(pass string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if pass == a.pass {
		return
	}
	a.pass = pass
	rule := "nopass"
	if pass != "" {
		rule = ">" + pass
	}
	for _, name := range append([]string{DefaultUser}, a.also...) {
		u := a.users[name]
		if u == nil {
			u = newUser(name)
			if name != DefaultUser {
				u, _ = u.With("on", "~*", "&*", "+@all")
			}
		}
		if n, err := u.With("resetpass", rule); err == nil {
			a.users[name] = n
		}
	}
}

// Authenticate reports whether password opens the named user, which must
// be on. A failure is logged in ACL LOG with client, which describes the
// connection.
func (a *ACL) Authenticate(name, password string, client func() string) bool {
	u, ok := a.User(name)
	if ok && u.authenticates(password) {
		return true
	}
	a.log.add(Entry{Reason: "auth", Context: "toplevel", Object: "AUTH", Username: name}, client)
	return false
}

// StartsAuthenticated reports whether a new connection is the default
// user without AUTH: the default user is on and takes no password.
func (a *ACL) StartsAuthenticated() bool {
	u, _ := a.User(DefaultUser)
	return u.enabled && u.nopass
}

// Denied is a command a user may not run, or a channel it may not use.
type Denied struct {
	User    string
	Reason  string // "command" or "channel", as ACL LOG says
	Object  string // the command ("config|set") or the channel
	Command string // the command, for the metric
}

// Error is Redis's -NOPERM text (without the leading "-").
func (d *Denied) Error() string {
	if d.Reason == "channel" {
		return "NOPERM this user has no permissions to access one of the channels used as arguments"
	}
	return fmt.Sprintf("NOPERM this user has no permissions to run the '%s' command", d.Object)
}

// ErrNoUser is a connection whose user was removed.
var ErrNoUser = errors.New("NOPERM the user of this connection no longer exists")

// Check decides whether the named user may run the command in args. A
// command the table does not hold is not checked (the server answers it
// as unknown); nor is AUTH, which every connection may send. A refusal
// is a *Denied, logged in ACL LOG (client describes the connection, and
// is called only then) and counted.
func (a *ACL) Check(name string, args [][]byte, client func() string) error {
	idx, known := lookup(args)
	if !known || commands[idx].name == "auth" || commands[idx].name == "hello" {
		return nil
	}
	u, ok := a.User(name)
	if !ok {
		return ErrNoUser
	}
	cmd := commands[idx].name
	var d *Denied
	switch {
	case !u.allCommands && !u.allowed[idx]:
		d = &Denied{User: name, Reason: "command", Object: cmd, Command: cmd}
	case !u.allChannels:
		if ch, ok := deniedChannel(u, cmd, args); ok {
			d = &Denied{User: name, Reason: "channel", Object: ch, Command: cmd}
		}
	}
	if d == nil {
		return nil
	}
	a.mu.Lock()
	if len(a.denied) < maxDeniedSeries || a.denied[deniedKey{name, cmd}] > 0 {
		a.denied[deniedKey{name, cmd}]++
	}
	a.mu.Unlock()
	a.log.add(Entry{Reason: d.Reason, Context: "toplevel", Object: d.Object, Username: name}, client)
	return d
}

// maxDeniedSeries bounds the (user, command) pairs counted: users are the
// operator's and commands the table's, so it is reached only by an ACL
// with thousands of users.
const maxDeniedSeries = 4096

// deniedChannel returns the first channel argument of a pub/sub command
// that u may not use. SUBSCRIBE and PUBLISH name channels, matched
// against u's patterns; PSUBSCRIBE names patterns, which must be one of
// u's patterns as written, as in Redis.
func deniedChannel(u *User, cmd string, args [][]byte) (string, bool) {
	var chans [][]byte
	switch cmd {
	case "subscribe":
		chans = args[1:]
	case "publish":
		if len(args) > 1 {
			chans = args[1:2]
		}
	case "psubscribe":
		for _, p := range args[1:] {
			if !slices.Contains(u.channels, string(p)) {
				return string(p), true
			}
		}
		return "", false
	}
	for _, ch := range chans {
		if !slices.ContainsFunc(u.channels, func(p string) bool { return matchGlob(p, string(ch)) }) {
			return string(ch), true
		}
	}
	return "", false
}

// DeniedCount is how many commands one user was refused, by command.
type DeniedCount struct {
	User, Command string
	Count         int64
}

// DeniedCounts returns the commands refused so far, by user and command.
func (a *ACL) DeniedCounts() []DeniedCount {
	a.mu.RLock()
	out := make([]DeniedCount, 0, len(a.denied))
	for k, n := range a.denied {
		out = append(out, DeniedCount{User: k.user, Command: k.command, Count: n})
	}
	a.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].User != out[j].User {
			return out[i].User < out[j].User
		}
		return out[i].Command < out[j].Command
	})
	return out
}

// Log is the ACL's log, for ACL LOG.
func (a *ACL) Log() *Log { return &a.log }

// checkName refuses a user name that could not be written back on one
// line: empty, with a blank or a control byte, or too long.
func checkName(name string) error {
	if name == "" || len(name) > 256 || strings.IndexFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return &RuleError{Rule: name, Reason: "Usernames can't contain spaces or null characters"}
	}
	return nil
}
