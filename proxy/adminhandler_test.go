package proxy

import (
	"bytes"
	"strings"
	"testing"

	"github.com/redis-relay/redis-relay/proxy/downstream"
)

// messages is a subscriber that keeps what PUBLISH delivers to it.
type messages struct{ got [][]byte }

func (m *messages) Deliver(msg []byte) error {
	m.got = append(m.got, bytes.Clone(msg))
	return nil
}

// TestAdminHandlersAppendReplies calls admin handlers as the server does,
// with no connection at all: each appends its reply after what the buffer
// already holds and asks for a change to the calling connection only as
// an effect.
func TestAdminHandlersAppendReplies(t *testing.T) {
	relay, err := New(Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	sub := &messages{}
	who := downstream.ClientInfo{ID: 7, Addr: "10.0.0.1:5000", Name: "sentinel-1", Sub: sub}
	run := func(cmd string) (string, downstream.Effect) {
		t.Helper()
		var args [][]byte
		for _, f := range strings.Fields(cmd) {
			args = append(args, []byte(f))
		}
		h := relay.admin.Handler(strings.ToLower(cmd[:strings.IndexByte(cmd+" ", ' ')]))
		if h == nil {
			t.Fatalf("%s: no handler", cmd)
		}
		out, e := h([]byte("before"), who, args)
		if !bytes.HasPrefix(out, []byte("before")) {
			t.Fatalf("%s: reply %q does not keep what the buffer held", cmd, out)
		}
		checkReplies(t, out[len("before"):])
		return string(out[len("before"):]), e
	}
	for _, tc := range []struct {
		cmd, reply string
		effect     downstream.Effect
	}{
		{"PING", "+PONG\r\n", downstream.Effect{}},
		{"ECHO hi", "$2\r\nhi\r\n", downstream.Effect{}},
		{"SELECT 1", "-ERR a relay holds no keyspace; only SELECT 0 is accepted\r\n", downstream.Effect{}},
		{"AUTH secret", "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n", downstream.Effect{}},
		{"QUIT", "+OK\r\n", downstream.Effect{Quit: true}},
		{"CLIENT SETNAME relay-watcher", "+OK\r\n", downstream.Effect{}},
		{"CLIENT GETNAME", "$10\r\nsentinel-1\r\n", downstream.Effect{}},
		{"CLIENT ID", ":7\r\n", downstream.Effect{}},
		{"CLIENT", "-ERR wrong number of arguments for 'client' command\r\n", downstream.Effect{}},
		{"SLAVEOF NO ONE", "-ERR a relay cannot become a master: it holds no dataset, only the master's stream. Promote a replica instead, then point the relay at it with REPLICAOF host port\r\n", downstream.Effect{}},
		{"LATENCY LATEST", "*0\r\n", downstream.Effect{}},
		{"SHUTDOWN ABORT", "-ERR No shutdown in progress.\r\n", downstream.Effect{}},
		{"SUBSCRIBE a b", "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n", downstream.Effect{Subscribed: true, Subscriptions: 2}},
		{"PUBLISH a hello", ":1\r\n", downstream.Effect{}},
		{"UNSUBSCRIBE", "*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n", downstream.Effect{Subscribed: true}},
		{"PUBLISH a again", ":0\r\n", downstream.Effect{}},
		{"UNSUBSCRIBE", "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n", downstream.Effect{Subscribed: true}},
	} {
		reply, e := run(tc.cmd)
		if reply != tc.reply {
			t.Errorf("%s: reply %q, want %q", tc.cmd, reply, tc.reply)
		}
		if e.SetName != nil {
			if *e.SetName != "relay-watcher" {
				t.Errorf("%s: sets name %q", tc.cmd, *e.SetName)
			}
			e.SetName = nil
		} else if strings.HasPrefix(tc.cmd, "CLIENT SETNAME") {
			t.Errorf("%s: no name in the effect", tc.cmd)
		}
		if e != tc.effect {
			t.Errorf("%s: downstream.Effect %+v, want %+v", tc.cmd, e, tc.effect)
		}
	}
	if want := "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$5\r\nhello\r\n"; len(sub.got) != 1 || string(sub.got[0]) != want {
		t.Errorf("subscriber got %q, want one %q", sub.got, want)
	}
	if reply, _ := run("INFO replication"); !strings.Contains(reply, "role:slave") {
		t.Errorf("INFO replication = %q", reply)
	}
	if reply, _ := run("ROLE"); !strings.HasPrefix(reply, "*5\r\n$5\r\nslave\r\n") {
		t.Errorf("ROLE = %q", reply)
	}
}

// TestAuthHandlerReturnsTheEffect checks that only a matching password
// authenticates, and only through the downstream.Effect the server applies.
func TestAuthHandlerReturnsTheEffect(t *testing.T) {
	relay, err := New(Config{DataDir: t.TempDir(), RequirePass: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	auth := relay.admin.Handler("auth")
	for _, tc := range []struct {
		args  []string
		reply string
		ok    bool
	}{
		{[]string{"auth", "nope"}, "-WRONGPASS invalid username-password pair or user is disabled.\r\n", false},
		{[]string{"auth", "someone", "pw"}, "-WRONGPASS invalid username-password pair or user is disabled.\r\n", false},
		{[]string{"auth", "pw"}, "+OK\r\n", true},
		{[]string{"auth", "default", "pw"}, "+OK\r\n", true},
	} {
		var args [][]byte
		for _, a := range tc.args {
			args = append(args, []byte(a))
		}
		out, e := auth(nil, downstream.ClientInfo{Addr: "test"}, args)
		if string(out) != tc.reply || e.Authenticated != tc.ok || e.Quit {
			t.Errorf("%q: reply %q, downstream.Effect %+v", tc.args, out, e)
		}
	}
}

// TestHelloHandler checks HELLO's protocol switch and its AUTH, which is
// AUTH's check: all of it happens, through the effect, or none of it.
func TestHelloHandler(t *testing.T) {
	relay, err := New(Config{DataDir: t.TempDir(), RequirePass: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	hello := relay.admin.Handler("hello")
	for _, tc := range []struct {
		name  string
		args  string
		user  string // "" before AUTH
		reply string // prefix
		proto int
		auth  bool
	}{
		{"unknown protocol", "hello 4", "default", "-NOPROTO", 0, false},
		{"not a number", "hello x", "default", "-ERR Protocol version", 0, false},
		{"needs auth", "hello 3", "", "-NOAUTH HELLO must be called", 0, false},
		{"wrong password", "hello 3 auth default nope", "", "-WRONGPASS", 0, false},
		{"bad option", "hello 3 auth default", "default", "-ERR Syntax error in HELLO option 'auth'", 0, false},
		{"resp3 with auth", "hello 3 auth default pw setname x", "", "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n", 3, true},
		{"resp2", "hello 2", "default", "*14\r\n$6\r\nserver\r\n", 2, false},
		{"no version: current", "hello", "default", "*14\r\n", 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var args [][]byte
			for _, a := range strings.Fields(tc.args) {
				args = append(args, []byte(a))
			}
			out, e := hello(nil, downstream.ClientInfo{Addr: "test", User: tc.user}, args)
			if !strings.HasPrefix(string(out), tc.reply) || e.Proto != tc.proto || e.Authenticated != tc.auth {
				t.Errorf("reply %q, effect %+v; want %q, proto %d, authenticated %v", out, e, tc.reply, tc.proto, tc.auth)
			}
		})
	}
}
