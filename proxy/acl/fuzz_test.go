package acl

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// FuzzParseRule applies a user line (split at spaces) to a fresh user.
// It must never panic; a line that applies must describe a user that the
// description rebuilds exactly, and whose check never panics.
func FuzzParseRule(f *testing.F) {
	data, err := os.ReadFile("testdata/users.acl")
	if err != nil {
		f.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "user "); ok {
			f.Add(rest, "CONFIG SET a b")
		}
	}
	f.Add("u on nopass +@all -config|set &a*[b-", "SUBSCRIBE ab")
	f.Add("u %RW~k:* ~x resetkeys allkeys (+ping) <x !abc", "PSUBSCRIBE a*")
	f.Fuzz(func(t *testing.T, line, cmd string) {
		fields := strings.Fields(line)
		u, err := ParseUserLine(fields)
		if err != nil {
			return
		}
		again, err := ParseUserLine(append([]string{u.Name()}, u.Rules()...))
		if err != nil {
			t.Fatalf("description %q of %q does not parse: %v", u.Describe(), line, err)
		}
		if !slices.Equal(again.allowed, u.allowed) || again.Describe() != u.Describe() || again.allCommands != u.allCommands {
			t.Fatalf("%q describes as %q, which rebuilds %q", line, u.Describe(), again.Describe())
		}
		a := New()
		a.Replace([]*User{u})
		a.Check(u.Name(), args(cmd), nil)
	})
}
