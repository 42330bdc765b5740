package acl

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

func args(s string) [][]byte {
	var out [][]byte
	for _, f := range strings.Fields(s) {
		out = append(out, []byte(f))
	}
	return out
}

func TestRules(t *testing.T) {
	tests := []struct {
		name  string
		rules string
		allow []string // commands, as sent
		deny  []string // commands, and the object Redis names: "config set x y=config|set"
	}{
		{"replica", "on >p +psync +replconf +ping", []string{"PSYNC ? -1", "REPLCONF capa eof", "ping", "AUTH x y", "GET k"},
			[]string{"CONFIG SET a b=config|set", "REPLICAOF no one=replicaof", "CLIENT KILL 1=client|kill", "SHUTDOWN=shutdown", "RELAY GUARD RELEASE=relay", "INFO=info", "SYNC=sync"}},
		{"subcommands", "on nopass +config|get +client -client|kill", []string{"config get *", "CLIENT LIST", "client setname x"},
			[]string{"config set a b=config|set", "client kill 1=client|kill", "config rewrite=config|rewrite"}},
		{"categories", "on nopass +@all -@dangerous +config|get", []string{"config get x", "ping", "acl whoami", "multi"},
			[]string{"config set a b=config|set", "info=info", "role=role", "replicaof a 1=replicaof", "acl setuser x=acl|setuser"}},
		{"fast only", "on nopass allchannels +@fast", []string{"ping", "publish c m", "role", "multi"}, []string{"exec=exec", "info=info"}},
		{"container rule covers unknown subcommand", "on nopass +config", []string{"config nosuch"}, []string{"client list=client|list"}},
		{"reset", "on nopass +@all reset", nil, []string{"ping=ping"}},
		{"case", "on nopass +PING +Config|Get", []string{"PING", "CONFIG GET x"}, []string{"CONFIG SET x y=config|set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New()
			if err := a.SetUser("u", strings.Fields(tt.rules)...); err != nil {
				t.Fatal(err)
			}
			for _, c := range tt.allow {
				if err := a.Check("u", args(c), nil); err != nil {
					t.Errorf("%s: %v, want allowed", c, err)
				}
			}
			for _, c := range tt.deny {
				cmd, obj, _ := strings.Cut(c, "=")
				err := a.Check("u", args(cmd), nil)
				want := "NOPERM this user has no permissions to run the '" + obj + "' command"
				if err == nil || err.Error() != want {
					t.Errorf("%s: %v, want %q", cmd, err, want)
				}
			}
			// The description rebuilds the same user.
			u, _ := a.User("u")
			again, err := ParseUserLine(append([]string{"u"}, u.Rules()...))
			if err != nil {
				t.Fatalf("description %q: %v", u.Describe(), err)
			}
			if !slices.Equal(again.allowed, u.allowed) || again.Describe() != u.Describe() {
				t.Errorf("description %q rebuilds %q", u.Describe(), again.Describe())
			}
		})
	}
}

func TestRuleErrors(t *testing.T) {
	tests := []struct{ rule, reason string }{
		{"bogus", "Syntax error"},
		{"+nosuch", "Unknown command or category name in ACL"},
		{"+@nosuch", "Unknown command or category name in ACL"},
		{"+config|nosuch", "Unknown command or category name in ACL"},
		{"#abc", "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters"},
		{"<nopw", "The password you are trying to remove from the user does not exist"},
		{"(+ping)", reasonSelectors},
		{"+ping|x", reasonFirstArg},
		{"%X~k", "Syntax error"},
	}
	for _, tt := range tests {
		a := New()
		err := a.SetUser("u", "on", tt.rule)
		var re *RuleError
		if !errors.As(err, &re) || re.Rule != tt.rule || re.Reason != tt.reason {
			t.Errorf("%s: %v, want reason %q", tt.rule, err, tt.reason)
		}
		if _, ok := a.User("u"); ok {
			t.Errorf("%s: the user was created though a rule failed", tt.rule)
		}
	}
	a := New()
	if err := a.SetUser("u", "allchannels", "&x"); err == nil || !strings.Contains(err.Error(), "resetchannels") {
		t.Errorf("&x after allchannels: %v", err)
	}
}

func TestAuthenticate(t *testing.T) {
	a := New()
	if !a.StartsAuthenticated() {
		t.Error("a fresh ACL's default user should need no password")
	}
	a.SetUser("u", "on", ">secret", "#"+hashOf("other"), "+@all")
	a.SetUser("off", "off", ">secret")
	for _, c := range []struct {
		user, pass string
		ok         bool
	}{{"u", "secret", true}, {"u", "other", true}, {"u", "wrong", false}, {"off", "secret", false}, {"nobody", "secret", false}} {
		if got := a.Authenticate(c.user, c.pass, nil); got != c.ok {
			t.Errorf("AUTH %s %s = %v, want %v", c.user, c.pass, got, c.ok)
		}
	}
	a.AlsoFollowRequirePass("legacy")
	a.SetRequirePass("pw")
	if a.StartsAuthenticated() || !a.Authenticate("default", "pw", nil) || a.Authenticate("default", "", nil) || !a.Authenticate("legacy", "pw", nil) {
		t.Error("requirepass does not set the default user's password")
	}
	a.SetUser("default", ">second")
	a.SetRequirePass("pw") // unchanged: the SETUSER holds
	if !a.Authenticate("default", "second", nil) {
		t.Error("an unchanged requirepass undid ACL SETUSER default")
	}
	a.SetRequirePass("")
	if !a.StartsAuthenticated() {
		t.Error("an empty requirepass should leave the default user without a password")
	}
	if e := a.Log().Entries(-1); len(e) == 0 || e[0].Reason != "auth" || e[0].Object != "AUTH" {
		t.Errorf("failed AUTH not logged: %+v", e)
	}
}

func TestChannels(t *testing.T) {
	a := New()
	a.SetUser("s", "on", "nopass", "+@pubsub", "&__sentinel__:hello", "&news.*")
	for _, c := range []string{"SUBSCRIBE __sentinel__:hello", "PUBLISH news.x m", "PSUBSCRIBE news.*", "UNSUBSCRIBE other"} {
		if err := a.Check("s", args(c), nil); err != nil {
			t.Errorf("%s: %v", c, err)
		}
	}
	for _, c := range []string{"SUBSCRIBE __sentinel__:hello other", "PUBLISH sport m", "PSUBSCRIBE news.?"} {
		err := a.Check("s", args(c), nil)
		if err == nil || err.Error() != "NOPERM this user has no permissions to access one of the channels used as arguments" {
			t.Errorf("%s: %v", c, err)
		}
	}
}

func TestGlob(t *testing.T) {
	for _, c := range []struct {
		p, s string
		ok   bool
	}{
		{"*", "", true}, {"a*c", "abbbc", true}, {"a*c", "abbb", false}, {"h?llo", "hello", true},
		{"h[ae]llo", "hallo", true}, {"h[^e]llo", "hello", false}, {"h[a-b]llo", "hbllo", true},
		{`a\*`, "a*", true}, {`a\*`, "ab", false}, {"*:hello", "__sentinel__:hello", true}, {"[", "x", false},
		{"a*b*c*d", strings.Repeat("a", 200), false},
	} {
		if got := matchGlob(c.p, c.s); got != c.ok {
			t.Errorf("match(%q, %q) = %v, want %v", c.p, c.s, got, c.ok)
		}
	}
}

func TestLogGroupsAndIsBounded(t *testing.T) {
	a := New()
	a.SetUser("u", "on", "nopass", "+ping", "+publish")
	for range 3 {
		a.Check("u", args("CONFIG SET a b"), func() string { return "id=1" })
	}
	for i := range 2 * DefaultLogLen {
		a.Check("u", args("PUBLISH c"+strings.Repeat("x", i)), nil)
	}
	a.Check("u", args("CONFIG SET a b"), nil)
	e := a.Log().Entries(-1)
	if len(e) != DefaultLogLen {
		t.Fatalf("log holds %d entries, want %d", len(e), DefaultLogLen)
	}
	// The first config|set entry fell off the end: a new one starts.
	if e[0].Object != "config|set" || e[0].Count != 1 || e[0].Reason != "command" {
		t.Errorf("newest entry %+v, want config|set counted once", e[0])
	}
	if e[1].Reason != "channel" || e[1].Count != 1 || len(e[1].Object) != 2*DefaultLogLen {
		t.Errorf("second entry %+v, want the last channel refused", e[1])
	}
	a.Check("u", args("CONFIG SET a b"), nil)
	if e := a.Log().Entries(1); e[0].Count != 2 {
		t.Errorf("a like refusal within a minute counts in the entry: %+v", e[0])
	}
	if got := a.DeniedCounts(); len(got) != 2 || got[0] != (DeniedCount{"u", "config|set", 5}) || got[1].Count != 2*DefaultLogLen {
		t.Errorf("denied counts %+v", got)
	}
	a.Log().Reset()
	if n := len(a.Log().Entries(-1)); n != 0 {
		t.Errorf("after reset: %d entries", n)
	}
}

func TestParseFile(t *testing.T) {
	data, err := os.ReadFile("testdata/users.acl")
	if err != nil {
		t.Fatal(err)
	}
	users, err := ParseFile("users.acl", data)
	if err != nil {
		t.Fatal(err)
	}
	a := New()
	a.Replace(users)
	if got := a.Users(); !slices.Equal(got, []string{"blocked", "default", "metrics", "operator", "replica-user", "sentinel-user"}) {
		t.Errorf("users %v", got)
	}
	// What ACL SAVE writes loads back the same.
	again, err := ParseFile("saved.acl", a.File())
	if err != nil {
		t.Fatal(err)
	}
	b := New()
	b.Replace(again)
	if !slices.Equal(a.List(), b.List()) {
		t.Errorf("saved and loaded:\n%s\nwant\n%s", b.File(), a.File())
	}
	if !a.Authenticate("operator", "password", nil) || a.Authenticate("blocked", "", nil) {
		t.Error("passwords from the file")
	}

	for _, c := range []struct{ text, want string }{
		{"user a on +ping\n\nuser b on +nosuch\n", "users.acl:3: Error in applying operation '+nosuch': Unknown command or category name in ACL"},
		{"usr a on\n", "users.acl:1: should start with user keyword"},
		{"user a on\nuser a off\n", "users.acl:2: Duplicate user 'a' found"},
		{"user\n", "users.acl:1: a user line needs a user name"},
	} {
		_, err := ParseFile("users.acl", []byte(c.text))
		var le *LineError
		if !errors.As(err, &le) || err.Error() != c.want {
			t.Errorf("%q: %v, want %q", c.text, err, c.want)
		}
	}
}

func TestCategoriesAndDelUser(t *testing.T) {
	if n, ok := CommandsIn("transaction"); !ok || !slices.Equal(n, []string{"multi", "exec", "discard"}) {
		t.Errorf("@transaction = %v", n)
	}
	if _, ok := CommandsIn("nosuch"); ok {
		t.Error("unknown category found")
	}
	a := New()
	if _, err := a.DelUser("default"); !errors.Is(err, ErrDefaultUser) {
		t.Errorf("DELUSER default: %v", err)
	}
	a.SetUser("x")
	if n, _ := a.DelUser("x", "y"); n != 1 {
		t.Errorf("DELUSER x y = %d", n)
	}
	if err := a.Check("x", args("PING"), nil); !errors.Is(err, ErrNoUser) {
		t.Errorf("check by a removed user: %v", err)
	}
}
