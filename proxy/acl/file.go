package acl

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// An ACL file holds one user per line, as ACL SAVE writes it:
//
//	user <name> <rule> <rule> ...
//
// Rules are separated by spaces and not quoted. Blank lines and lines
// starting with # are skipped. A user may be defined once.

// LineError is a line of an ACL file (or of the config file's user
// lines) that could not be used: where, and Redis's reason.
type LineError struct {
	File   string
	Line   int // 1-based
	Reason string
}

func (e *LineError) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason)
}

// ParseUserLine reads one user definition, the arguments after "user" in
// redis.conf: the name, then the rules. The user starts off, with no
// password and no command.
func ParseUserLine(args []string) (*User, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("a user line needs a user name")
	}
	if err := checkName(args[0]); err != nil {
		return nil, err
	}
	u, err := newUser(args[0]).With(args[1:]...)
	if err != nil {
		var re *RuleError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("Error in applying operation '%s': %s", re.Rule, re.Reason)
		}
		return nil, err
	}
	return u, nil
}

// ParseFile reads an ACL file. The error of the first line that cannot be
// used is a *LineError naming name and the line.
func ParseFile(name string, data []byte) ([]*User, error) {
	var users []*User
	seen := make(map[string]bool)
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if f[0] != "user" {
			return nil, &LineError{File: name, Line: i + 1, Reason: "should start with user keyword"}
		}
		u, err := ParseUserLine(f[1:])
		if err != nil {
			return nil, &LineError{File: name, Line: i + 1, Reason: err.Error()}
		}
		if seen[u.name] {
			return nil, &LineError{File: name, Line: i + 1, Reason: fmt.Sprintf("Duplicate user '%s' found", u.name)}
		}
		seen[u.name] = true
		users = append(users, u)
	}
	return users, nil
}

// File returns the ACL file that holds every user: ACL SAVE's content.
func (a *ACL) File() []byte {
	return []byte(strings.Join(a.List(), "\n") + "\n")
}

// ReadFile reads and parses the ACL file at path.
func ReadFile(path string) ([]*User, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("aclfile: %w", err)
	}
	users, err := ParseFile(path, data)
	if err != nil {
		return nil, fmt.Errorf("aclfile: %w", err)
	}
	return users, nil
}
