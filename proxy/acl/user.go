package acl

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// User is one ACL user. It is immutable once built: rules apply to a copy
// (User.With), which the ACL swaps in whole.
type User struct {
	name    string
	enabled bool     // on
	nopass  bool     // any password, or none, authenticates
	hashes  []string // SHA-256 of each password, lower-case hex

	allCommands bool   // +@all: every command, those added later too
	allowed     []bool // allowed[i]: commands[i] may run
	// cmdRules are the command rules that made allowed, oldest first,
	// with a rule dropped once a later one names the same target: they
	// describe the user (ACL LIST) and read back to the same allowed.
	cmdRules []string

	allChannels bool     // allchannels, &*
	channels    []string // channel patterns (&pattern), without the &
	allKeys     bool     // allkeys, ~*: accepted, no effect
	keys        []string // key patterns as written (~x, %R~x): accepted, no effect
}

// newUser is a user as ACL SETUSER creates it: off, no password, no
// command, no channel (Redis's acl-pubsub-default resetchannels).
func newUser(name string) *User {
	return &User{name: name, allowed: make([]bool, len(commands))}
}

// Name is the user's name.
func (u *User) Name() string { return u.name }

// Enabled reports whether the user is on.
func (u *User) Enabled() bool { return u.enabled }

// NoPass reports whether the user authenticates with any password.
func (u *User) NoPass() bool { return u.nopass }

// RuleError is a rule that could not be applied, with Redis's reason.
type RuleError struct {
	Rule   string
	Reason string
}

func (e *RuleError) Error() string {
	return fmt.Sprintf("error in rule '%s': %s", e.Rule, e.Reason)
}

// Redis's reasons for a rule it refuses.
const (
	reasonSyntax       = "Syntax error"
	reasonUnknownName  = "Unknown command or category name in ACL"
	reasonBadHash      = "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters"
	reasonNoSuchPass   = "The password you are trying to remove from the user does not exist"
	reasonChannelAfter = "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels"
	reasonKeyAfter     = "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns"
	reasonSelectors    = "Selectors are not supported by the relay: it holds no keys, so write the rules on the user itself"
	reasonFirstArg     = "The relay does not match commands by their first argument: allow or deny the whole command"
)

// maxRuleLen bounds one rule (a password or pattern is the long case), so
// that a user line from the network keeps its memory bounded.
const maxRuleLen = 4096

// With returns a copy of u with rules applied in order, or the first rule
// that cannot be, as a *RuleError. u is not changed.
func (u *User) With(rules ...string) (*User, error) {
	n := u.clone()
	for _, r := range rules {
		if err := n.apply(r); err != nil {
			return nil, &RuleError{Rule: r, Reason: err.Error()}
		}
	}
	return n, nil
}

func (u *User) clone() *User {
	n := *u
	n.hashes = slices.Clone(u.hashes)
	n.allowed = slices.Clone(u.allowed)
	n.cmdRules = slices.Clone(u.cmdRules)
	n.channels = slices.Clone(u.channels)
	n.keys = slices.Clone(u.keys)
	return &n
}

// apply applies one rule; its error is the reason alone.
func (u *User) apply(rule string) error {
	if rule == "" || len(rule) > maxRuleLen {
		return errors.New(reasonSyntax)
	}
	switch strings.ToLower(rule) {
	case "on":
		u.enabled = true
		return nil
	case "off":
		u.enabled = false
		return nil
	case "nopass":
		u.nopass, u.hashes = true, nil
		return nil
	case "resetpass":
		u.nopass, u.hashes = false, nil
		return nil
	case "allcommands", "+@all":
		u.setAll(true)
		return nil
	case "nocommands", "-@all":
		u.setAll(false)
		return nil
	case "allchannels", "&*":
		u.allChannels, u.channels = true, nil
		return nil
	case "resetchannels":
		u.allChannels, u.channels = false, nil
		return nil
	case "allkeys", "~*":
		u.allKeys, u.keys = true, nil
		return nil
	case "resetkeys":
		u.allKeys, u.keys = false, nil
		return nil
	case "reset":
		*u = *newUser(u.name)
		return nil
	case "sanitize-payload", "skip-sanitize-payload":
		return nil // about RESTORE payloads; the relay restores nothing
	case "clearselectors":
		return errors.New(reasonSelectors)
	}
	switch rule[0] {
	case '>':
		u.addHash(hashOf(rule[1:]))
	case '<':
		return u.removeHash(hashOf(rule[1:]))
	case '#':
		h := rule[1:]
		if !isHash(h) {
			return errors.New(reasonBadHash)
		}
		u.addHash(h)
	case '!':
		h := rule[1:]
		if !isHash(h) {
			return errors.New(reasonBadHash)
		}
		return u.removeHash(h)
	case '&':
		if u.allChannels {
			return errors.New(reasonChannelAfter)
		}
		if !slices.Contains(u.channels, rule[1:]) {
			u.channels = append(u.channels, rule[1:])
		}
	case '~', '%':
		return u.addKeys(rule)
	case '+', '-':
		return u.applyCommandRule(rule)
	case '(':
		return errors.New(reasonSelectors)
	default:
		return errors.New(reasonSyntax)
	}
	return nil
}

func (u *User) addHash(h string) {
	u.nopass = false
	if !slices.Contains(u.hashes, h) {
		u.hashes = append(u.hashes, h)
	}
}

func (u *User) removeHash(h string) error {
	i := slices.Index(u.hashes, h)
	if i < 0 {
		return errors.New(reasonNoSuchPass)
	}
	u.hashes = slices.Delete(u.hashes, i, i+1)
	u.nopass = false
	return nil
}

// addKeys reads a key pattern (~pattern, %R~pattern, %W~pattern,
// %RW~pattern), which is kept to describe the user and has no effect.
func (u *User) addKeys(rule string) error {
	pattern := rule
	if rule[0] == '%' {
		perm, rest, ok := strings.Cut(rule[1:], "~")
		if !ok || perm == "" || strings.Trim(strings.ToUpper(perm), "RW") != "" {
			return errors.New(reasonSyntax)
		}
		pattern = "~" + rest
	}
	if u.allKeys {
		return errors.New(reasonKeyAfter)
	}
	if pattern == "~*" && rule[0] == '~' {
		u.allKeys, u.keys = true, nil
		return nil
	}
	if !slices.Contains(u.keys, rule) {
		u.keys = append(u.keys, rule)
	}
	return nil
}

// setAll allows (+@all) or denies (-@all) every command.
func (u *User) setAll(on bool) {
	u.allCommands = on
	for i := range u.allowed {
		u.allowed[i] = on
	}
	if on {
		u.cmdRules = []string{"+@all"}
	} else {
		u.cmdRules = nil
	}
}

// applyCommandRule applies +name, -name, +name|sub, -name|sub, +@cat or
// -@cat.
func (u *User) applyCommandRule(rule string) error {
	allow := rule[0] == '+'
	target := strings.ToLower(rule[1:])
	var set []int
	if cat, ok := strings.CutPrefix(target, "@"); ok {
		c, found := categoryByName(cat)
		if !found {
			return errors.New(reasonUnknownName)
		}
		for i, cmd := range commands {
			if cmd.cats&c != 0 {
				set = append(set, i)
			}
		}
	} else {
		i, found := commandIndex[target]
		if !found {
			if parent, _, ok := strings.Cut(target, "|"); ok {
				if p, known := commandIndex[parent]; known && len(commands[p].subs) == 0 {
					return errors.New(reasonFirstArg)
				}
			}
			return errors.New(reasonUnknownName)
		}
		set = append(append(set, i), commands[i].subs...)
	}
	for _, i := range set {
		u.allowed[i] = allow
	}
	if !allow {
		u.allCommands = false
	}
	// A later rule on the same target overrides an earlier one whole.
	u.cmdRules = slices.DeleteFunc(u.cmdRules, func(r string) bool { return r[1:] == target })
	u.cmdRules = append(u.cmdRules, string(rule[0])+target)
	return nil
}

// hashOf is the SHA-256 of a password in lower-case hex, as ACL GETUSER
// shows and #hash rules write it.
func hashOf(password string) string {
	sum := sha256.Sum256([]byte(password))
	return hex.EncodeToString(sum[:])
}

func isHash(h string) bool {
	if len(h) != sha256.Size*2 {
		return false
	}
	for _, c := range []byte(h) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// authenticates reports whether password opens this user.
func (u *User) authenticates(password string) bool {
	if !u.enabled {
		return false
	}
	if u.nopass {
		return true
	}
	h := hashOf(password)
	ok := 0
	for _, want := range u.hashes {
		ok |= subtle.ConstantTimeCompare([]byte(h), []byte(want))
	}
	return ok == 1
}

// Describe returns the user's rules in the order that rebuilds it, as
// ACL LIST writes them after the name: "on #<hash> ~* &* +@all".
func (u *User) Describe() string {
	return strings.Join(u.Rules(), " ")
}

// Rules returns Describe's rules one by one.
func (u *User) Rules() []string {
	out := []string{onOff(u.enabled)}
	if u.nopass {
		out = append(out, "nopass")
	}
	for _, h := range u.hashes {
		out = append(out, "#"+h)
	}
	out = append(out, u.keyRules()...)
	out = append(out, u.channelRules()...)
	return append(out, u.CommandRules()...)
}

func (u *User) keyRules() []string {
	if u.allKeys {
		return []string{"~*"}
	}
	return slices.Clone(u.keys)
}

func (u *User) channelRules() []string {
	if u.allChannels {
		return []string{"&*"}
	}
	out := []string{"resetchannels"}
	for _, c := range u.channels {
		out = append(out, "&"+c)
	}
	return out
}

// CommandRules returns the command rules alone, as ACL GETUSER's
// "commands" field shows them: starting from -@all or +@all.
func (u *User) CommandRules() []string {
	if len(u.cmdRules) > 0 && u.cmdRules[0] == "+@all" {
		return slices.Clone(u.cmdRules)
	}
	return append([]string{"-@all"}, u.cmdRules...)
}

// Flags returns ACL GETUSER's flags: on or off, then nopass, allkeys,
// allchannels as they hold.
func (u *User) Flags() []string {
	out := []string{onOff(u.enabled)}
	if u.allKeys {
		out = append(out, "allkeys")
	}
	if u.allChannels {
		out = append(out, "allchannels")
	}
	if u.allCommands {
		out = append(out, "allcommands")
	}
	if u.nopass {
		out = append(out, "nopass")
	}
	return out
}

// Hashes returns the SHA-256 hashes of the user's passwords.
func (u *User) Hashes() []string { return slices.Clone(u.hashes) }

// KeyPatterns and ChannelPatterns return ACL GETUSER's keys and channels
// fields.
func (u *User) KeyPatterns() string {
	if u.allKeys {
		return "~*"
	}
	return strings.Join(u.keys, " ")
}

func (u *User) ChannelPatterns() string {
	if u.allChannels {
		return "&*"
	}
	out := make([]string, len(u.channels))
	for i, c := range u.channels {
		out[i] = "&" + c
	}
	return strings.Join(out, " ")
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
