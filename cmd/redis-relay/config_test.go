package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/proxy/settings"
)

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		name string
		line string
		want []string
		err  error
	}{
		{"empty", "", nil, nil},
		{"blanks only", " \t\v\f ", nil, nil},
		{"words", "port 6380", []string{"port", "6380"}, nil},
		{"runs of blanks", "  bind \t 127.0.0.1  ", []string{"bind", "127.0.0.1"}, nil},
		{"double quoted", `requirepass "a b  c"`, []string{"requirepass", "a b  c"}, nil},
		{"double escapes", `x "\n\r\t\b\a\\\""`, []string{"x", "\n\r\t\b\a\\\""}, nil},
		{"hex escape", `x "\x41\x7a\x00\xff"`, []string{"x", "Az\x00\xff"}, nil},
		{"short hex is a plain x", `x "\x4g"`, []string{"x", "x4g"}, nil},
		{"unknown escape keeps the char", `x "\q\'"`, []string{"x", "q'"}, nil},
		{"single quoted", `x 'a "b" c'`, []string{"x", `a "b" c`}, nil},
		{"single quote escape", `x 'it\'s'`, []string{"x", "it's"}, nil},
		{"backslash in single quotes is literal", `x 'a\nb\\c'`, []string{"x", `a\nb\\c`}, nil},
		{"backslash before the closing single quote escapes it", `x 'a\\'`, nil, errUnbalancedQuotes},
		{"empty double", `masterauth ""`, []string{"masterauth", ""}, nil},
		{"empty single", `masterauth ''`, []string{"masterauth", ""}, nil},
		{"quote inside a word", `x ab"c d"`, []string{"x", "abc d"}, nil},
		{"hash is not a comment mid-line", `x a#b #c`, []string{"x", "a#b", "#c"}, nil},
		{"backslash outside quotes is literal", `dir C:\relay`, []string{"dir", `C:\relay`}, nil},
		{"quote then tab", "x \"a\"\ty", []string{"x", "a", "y"}, nil},
		{"unbalanced double", `requirepass "abc`, nil, errUnbalancedQuotes},
		{"unbalanced single", `requirepass 'abc`, nil, errUnbalancedQuotes},
		{"escape at the end", `x "abc\`, nil, errUnbalancedQuotes},
		{"escaped closing quote", `x "abc\"`, nil, errUnbalancedQuotes},
		{"text after closing double", `x "a"b`, nil, errQuoteNotEnded},
		{"text after closing single", `x 'a'b`, nil, errQuoteNotEnded},
		{"NUL", "x a\x00b", nil, errNUL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := splitArgs(tt.line)
			if !errors.Is(err, tt.err) {
				t.Fatalf("splitArgs(%q) error = %v, want %v", tt.line, err, tt.err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("splitArgs(%q) = %q, want %q", tt.line, got, tt.want)
			}
		})
	}
}

func TestQuoteArgRoundTrip(t *testing.T) {
	for _, a := range []string{
		"plain", "", " ", "a b", `"`, `'`, `\`, `\x41`, "#hash", "tab\there", "new\nline",
		"\x00\x01\x7f\xff", "héllo wörld", "\u00a0nbsp", "日本語", "\xe6\x97", `it's "quoted"`,
	} {
		q := quoteArg(a)
		got, err := splitArgs("x " + q)
		if err != nil || len(got) != 2 || got[1] != a {
			t.Errorf("quoteArg(%q) = %s, which splits to %q, %v", a, q, got, err)
		}
	}
	if q := quoteArg("plain-value_1.2:3"); q != "plain-value_1.2:3" {
		t.Errorf("a plain value was quoted: %s", q)
	}
}

// settingsText renders every directive's value, secrets included, so two
// Settings can be compared and a difference read.
func settingsText(s *Settings) string {
	var b strings.Builder
	for _, d := range settings.Table() {
		fmt.Fprintf(&b, "%s\n", formatDirective(d.Name, d.Format(&s.Config)))
	}
	return b.String()
}

func TestParseConfigFile(t *testing.T) {
	s := defaultSettings()
	if err := loadConfigFile("testdata/relay.conf", &s); err != nil {
		t.Fatal(err)
	}
	want := defaultSettings()
	c := &want.Config
	c.MasterAddr, c.MasterUser, c.MasterAuth = "10.0.0.5:6379", "relay", `pa ss"word`
	c.ReplTimeout, c.Process.ReplPingReplicaPeriod, c.Process.ReplDisklessSyncDelay = 30*time.Second, 5*time.Second, 0
	c.AnnouncePort, c.AckPolicy = 7380, settings.AckPolicy{Kind: "downstream-quorum", Quorum: 2}
	c.AnnounceIP, c.ReplicaAnnounced = "10.0.0.9", true
	c.Process.Bind, c.Process.Port, c.RequirePass, c.MaxClients = []string{"0.0.0.0", "-::1"}, 7000, "it's a secret", 500
	c.WaitAhead, c.DataDir, c.RingSize, c.SegmentSize = 2*time.Second, "/var/lib/redis-relay", 128<<20, 16<<20
	c.RefreshRatio, c.RefreshMinBytes, c.RefreshMaxAge, c.RetainBytes, c.RetainAge = 2.5, 1<<30, 6*time.Hour, 512<<20, time.Hour
	c.RDBOnlyMaxAge = 15 * time.Minute
	c.DisableGuard, c.GuardMinKeysRatio, c.HoldOnCommands = true, 0.5, []string{"FLUSHALL", "FLUSHDB"}
	c.SnapshotSource, c.SnapshotSourceFallback, c.UpstreamCompression, c.NoServeCompression = "10.0.0.6:6379", true, "fastest", true
	c.SnapshotSourceUser, c.SnapshotSourcePassword, c.Process.SourceTLS = "sibling", "s0urce", true
	c.FullSyncBandwidth, c.FullSyncReplicaBandwidth, c.FullSyncMaxConcurrent = 100<<20, 20<<20, 4
	c.Process.MetricsAddr, c.Process.LogLevel, c.Process.LogFormat = "0.0.0.0:8380", "debug", "json"
	c.Process.LogFile, c.Process.PidFile = "/var/log/redis-relay.log", "/run/redis-relay.pid"
	c.IdleTimeout, c.ProtectedMode, c.Process.TCPKeepAlive = 2*time.Minute, false, time.Minute
	c.RequireUser, c.CommandTimeout = "sub", 3*time.Second
	c.Users = [][]string{
		{"replica-user", "on", ">replica-pass", "+psync", "+replconf", "+ping"},
		{"sentinel-user", "on", "#5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8", "&__sentinel__:hello", "+multi", "+slaveof", "+ping", "+exec", "+subscribe", "+config|rewrite", "+role", "+publish", "+info", "+client|setname", "+client|kill"},
	}
	c.Sentinels, c.MasterName, c.SentinelUser, c.SentinelPassword, c.Process.SentinelTLS = []string{"10.0.0.7:26379", "10.0.0.8:26379"}, "mymaster", "watcher", "s3nt", true
	c.ClusterShardSlot, c.ClusterPollInterval = 5000, 500*time.Millisecond
	c.Process.TLSPort, c.Process.TLSCertFile, c.Process.TLSKeyFile = 7443, "/etc/redis-relay/relay.crt", "/etc/redis-relay/relay.key"
	c.Process.TLSCACertFile, c.Process.TLSReplication, c.Process.TLSAuthClients = "/etc/redis-relay/ca.crt", true, "optional"
	if got, exp := settingsText(&s), settingsText(&want); got != exp {
		t.Fatalf("settings differ:\ngot:\n%s\nwant:\n%s", got, exp)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	// The example sets every directive, so each has a file origin, but
	// for the password files (each excludes its plain twin, which the
	// example sets) and aclfile (it excludes user lines, which the
	// example sets).
	for _, d := range settings.Table() {
		switch d.Name {
		case "requirepass-file", "masterauth-file", "snapshot-source-password-file", "aclfile":
			continue
		}
		if o := s.origin[d.Name]; !strings.HasPrefix(o, "testdata/relay.conf:") {
			t.Errorf("%s: origin %q, want a line of testdata/relay.conf", d.Name, o)
		}
	}
	if o := s.origin["port"]; o != "testdata/relay.conf:16" {
		t.Errorf("port origin = %q, want testdata/relay.conf:16", o)
	}
}

func TestParseConfigForms(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		check func(s *Settings) bool
	}{
		{"names are case-insensitive", "PORT 1234\nRepl-Timeout 9", func(s *Settings) bool { return s.Process.Port == 1234 && s.ReplTimeout == 9*time.Second }},
		{"slaveof alias", "slaveof 127.0.0.1 6000", func(s *Settings) bool { return s.MasterAddr == "127.0.0.1:6000" }},
		{"replicaof IPv6", "replicaof ::1 6000", func(s *Settings) bool { return s.MasterAddr == "[::1]:6000" }},
		{"replicaof no one", "replicaof a 1\nreplicaof no one", func(s *Settings) bool { return s.MasterAddr == "" }},
		{"last one wins", "port 1\nport 2\n", func(s *Settings) bool { return s.Process.Port == 2 }},
		{"CRLF and indentation", "  port 42\r\n\t# comment\r\n", func(s *Settings) bool { return s.Process.Port == 42 }},
		{"yes/no any case", "empty-master-guard NO", func(s *Settings) bool { return s.DisableGuard }},
		{"negative refresh ratio", "refresh-ratio -1", func(s *Settings) bool { return s.RefreshRatio == -1 }},
		{"size units", "repl-backlog-size 1gb\nsegment-size 100k\nretain-size 2m", func(s *Settings) bool {
			return s.RingSize == 1<<30 && s.SegmentSize == 100000 && s.RetainBytes == 2000000
		}},
		{"duration forms", "refresh-max-age 90\nretain-age 1.5\nwait-ahead 250ms", func(s *Settings) bool {
			return s.RefreshMaxAge == 90*time.Second && s.RetainAge == 1500*time.Millisecond && s.WaitAhead == 250*time.Millisecond
		}},
		{"seconds as a Go duration", "repl-timeout 2m", func(s *Settings) bool { return s.ReplTimeout == 2*time.Minute }},
		{"old alias names", "repl-ping-slave-period 3\nslave-announce-port 1\nslave-announce-ip 10.1.1.1", func(s *Settings) bool {
			return s.Process.ReplPingReplicaPeriod == 3*time.Second && s.AnnouncePort == 1 && s.AnnounceIP == "10.1.1.1"
		}},
		{"empty password", `requirepass ""`, func(s *Settings) bool { return s.RequirePass == "" }},
		{"metrics off", `metrics-addr ""`, func(s *Settings) bool { return s.Process.MetricsAddr == "" }},
		{"several bind addresses", "bind 127.0.0.1 -::1 10.0.0.1", func(s *Settings) bool {
			return slices.Equal(s.Process.Bind, []string{"127.0.0.1", "-::1", "10.0.0.1"})
		}},
		{"Redis log levels", "loglevel notice", func(s *Settings) bool { return s.Process.LogLevel == "info" }},
		{"loglevel warning", "loglevel warning", func(s *Settings) bool { return s.Process.LogLevel == "warn" }},
		{"loglevel verbose", "LOGLEVEL verbose", func(s *Settings) bool { return s.Process.LogLevel == "debug" }},
		{"daemonize no", "daemonize no", func(s *Settings) bool { return true }},
		{"protected-mode no", "protected-mode no", func(s *Settings) bool { return !s.ProtectedMode }},
		{"timeout", "timeout 300", func(s *Settings) bool { return s.IdleTimeout == 5*time.Minute }},
		{"tcp-keepalive off", "tcp-keepalive 0", func(s *Settings) bool { return s.Process.TCPKeepAlive == 0 }},
		{"logfile and pidfile", "logfile /tmp/r.log\npidfile /tmp/r.pid", func(s *Settings) bool {
			return s.Process.LogFile == "/tmp/r.log" && s.Process.PidFile == "/tmp/r.pid"
		}},
		{"sentinel user and TLS", "sentinel-user u\nsentinel-tls yes", func(s *Settings) bool { return s.SentinelUser == "u" && s.Process.SentinelTLS }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := defaultSettings()
			if err := parseConfig("relay.conf", []byte(tt.text), &s); err != nil {
				t.Fatal(err)
			}
			if !tt.check(&s) {
				t.Fatalf("unexpected settings:\n%s", settingsText(&s))
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		text string
		want string // the whole error
	}{
		{"unknown directive", "# ok\nport 1\nsave 900 1\n", `relay.conf:3: save: unknown directive`},
		{"bad user rule", "port 1\nuser ops on >pw +@all +nosuch\n", `relay.conf:2: user: Error in applying operation '+nosuch': Unknown command or category name in ACL`},
		{"bad password hash", "user ops on #abc\n", `relay.conf:1: user: Error in applying operation '#abc': The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters`},
		{"bad seconds", "\n\n\n\n\n\n\n\n\n\n\nrepl-timeout abc", `relay.conf:12: repl-timeout: "abc" is not a number of seconds`},
		{"zero seconds", "repl-timeout 0", `relay.conf:1: repl-timeout: 0 is below the minimum of 1`},
		{"negative seconds", "repl-timeout -5", `relay.conf:1: repl-timeout: "-5" is negative`},
		{"too many args", "port 1 2", `relay.conf:1: port: wrong number of arguments (want 1: port <n>; got 2)`},
		{"too few args", "replicaof 10.0.0.1", `relay.conf:1: replicaof: wrong number of arguments (want 2: replicaof <host> <port>; got 1)`},
		{"no args", "dir", `relay.conf:1: dir: wrong number of arguments (want 1: dir <path>; got 0)`},
		{"bind without address", "bind", `relay.conf:1: bind: wrong number of arguments (want 1 or more: bind <addr> [<addr> ...]; got 0)`},
		{"daemonize yes", "daemonize yes", `relay.conf:1: daemonize: yes does not apply: the relay never forks into the background; run it under systemd (deploy/systemd), a container runtime or a supervisor, which also restart it`},
		{"announce ip", "replica-announce-ip 10.1.1.1 10.1.1.2", `relay.conf:1: replica-announce-ip: wrong number of arguments (want 1: replica-announce-ip <ip>; got 2)`},
		{"negative timeout", "timeout -1", `relay.conf:1: timeout: "-1" is negative`},
		{"include missing", "include /nonexistent/relay.conf", `relay.conf:1: include: open /nonexistent/relay.conf: no such file or directory`},
		{"include two paths", "include a b", `relay.conf:1: include: wrong number of arguments (want 1: include <path>; got 2)`},
		{"protected-mode", "protected-mode maybe", `relay.conf:1: protected-mode: "maybe" is neither yes nor no`},
		{"port not a number", "port http", `relay.conf:1: port: "http" is not an integer`},
		{"port out of range", "port 70000", `relay.conf:1: port: 70000 is outside 0-65535`},
		{"replicaof bad port", "replicaof h 0", `relay.conf:1: replicaof: "0" is not a port (1-65535)`},
		{"replicaof blank host", `replicaof "a b" 1`, `relay.conf:1: replicaof: "a b" is not a host name or address`},
		{"maxclients zero", "maxclients 0", `relay.conf:1: maxclients: 0 is outside 1-2147483647`},
		{"announce port", "replica-announce-port -1", `relay.conf:1: replica-announce-port: -1 is outside 0-65535`},
		{"bad size", "repl-backlog-size lots", `relay.conf:1: repl-backlog-size: "lots" is not a size (use bytes or a unit such as 64mb)`},
		{"backlog too small", "repl-backlog-size 1k", `relay.conf:1: repl-backlog-size: 1000 is below the minimum of 16kb`},
		{"segment too small", "segment-size 1", `relay.conf:1: segment-size: 1 is below the minimum of 4kb`},
		{"bad duration", "refresh-max-age soon", `relay.conf:1: refresh-max-age: "soon" is not a duration (use 90s, 2h or a number of seconds)`},
		{"negative duration", "retain-age -1h", `relay.conf:1: retain-age: "-1h" is negative`},
		{"zero wait-ahead", "wait-ahead 0", `relay.conf:1: wait-ahead: 0 is below the minimum of 1ms`},
		{"bad bool", "empty-master-guard maybe", `relay.conf:1: empty-master-guard: "maybe" is neither yes nor no`},
		{"bad float", "refresh-ratio x", `relay.conf:1: refresh-ratio: "x" is not a number`},
		{"NaN", "refresh-ratio NaN", `relay.conf:1: refresh-ratio: "NaN" is not a number`},
		{"zero ratio", "refresh-ratio 0", `relay.conf:1: refresh-ratio: 0 is not a ratio: use a positive number, or a negative one to never refresh`},
		{"guard ratio", "guard-min-keys-ratio 1.5", `relay.conf:1: guard-min-keys-ratio: 1.5 is outside 0-1`},
		{"log level", "log-level loud", `relay.conf:1: log-level: "loud" is not a level (debug, info, warn or error)`},
		{"ack policy", "ack-policy downstream-quorum:0", `relay.conf:1: ack-policy: "downstream-quorum:0" is not received, downstream-min or downstream-quorum:<k>`},
		{"log format", "log-format xml", `relay.conf:1: log-format: "xml" is neither text nor json`},
		{"metrics addr", "metrics-addr 8380", `relay.conf:1: metrics-addr: "8380" is not host:port`},
		{"metrics port", "metrics-addr :http", `relay.conf:1: metrics-addr: ":http" does not end in a port number`},
		{"empty dir", `dir ""`, `relay.conf:1: dir: must not be empty`},
		{"ignored ones are still checked", "repl-ping-replica-period 0", `relay.conf:1: repl-ping-replica-period: 0 is below the minimum of 1`},
		{"unbalanced quotes", "port 1\nrequirepass \"abc\n", `relay.conf:2: unbalanced quotes`},
		{"closing quote", "masterauth 'a'b", `relay.conf:1: a closing quote must be followed by a space or the end of the line`},
		{"NUL byte", "port 1\x00", `relay.conf:1: line holds a NUL byte`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := defaultSettings()
			err := parseConfig("relay.conf", []byte(tt.text), &s)
			if err == nil {
				t.Fatalf("no error; want %s", tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("error:\n got %s\nwant %s", err, tt.want)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.File != "relay.conf" || ce.Line < 1 {
				t.Fatalf("error %v is not a *ConfigError with a line", err)
			}
		})
	}
}

func TestLoadConfigFileMissing(t *testing.T) {
	s := defaultSettings()
	err := loadConfigFile(filepath.Join(t.TempDir(), "none.conf"), &s)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error = %v, want one wrapping ErrNotExist", err)
	}
}

func TestValidate(t *testing.T) {
	def := defaultSettings()
	if err := def.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	tests := []struct {
		name   string
		modify func(s *Settings)
		want   string
	}{
		{"port", func(s *Settings) { s.Process.Port = -1 }, "port: -1 is outside 0-65535"},
		{"port from a file", func(s *Settings) { s.Process.Port = 1 << 20; s.setOrigin("port", "relay.conf:7") }, "relay.conf:7: port: 1048576 is outside 0-65535"},
		{"port from a flag", func(s *Settings) { s.Process.Port = 1 << 20; s.setOrigin("port", "--port") }, "--port: 1048576 is outside 0-65535"},
		{"replicaof without port", func(s *Settings) { s.MasterAddr = "10.0.0.1" }, `replicaof: "10.0.0.1" is not host:port`},
		{"replicaof port", func(s *Settings) { s.MasterAddr = "10.0.0.1:99999" }, `replicaof: "99999" is not a port (1-65535)`},
		{"refresh ratio", func(s *Settings) { s.RefreshRatio = 0 }, "refresh-ratio: 0 is not a ratio"},
		{"guard ratio", func(s *Settings) { s.GuardMinKeysRatio = -0.1 }, "guard-min-keys-ratio: -0.1 is outside 0-1"},
		{"timeout", func(s *Settings) { s.ReplTimeout = time.Millisecond }, "repl-timeout: 1ms is below the minimum of 1"},
		{"log level", func(s *Settings) { s.Process.LogLevel = "" }, `log-level: "" is not a level`},
		{"users twice", func(s *Settings) {
			s.Users, s.ACLFile = [][]string{{"ops", "on"}}, "users.acl"
			s.setOrigin("user", "relay.conf:3")
			s.setOrigin("aclfile", "relay.conf:4")
		}, "relay.conf:4: aclfile: users are defined by user lines (relay.conf:3: user) and by an ACL file: keep one, as Redis requires"},
		{"two at once", func(s *Settings) { s.DataDir = ""; s.MaxClients = 0 }, "maxclients: 0 is outside 1-2147483647\ndir: must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := defaultSettings()
			tt.modify(&s)
			err := s.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestProxyConfigMapping(t *testing.T) {
	s := defaultSettings()
	if err := loadConfigFile("testdata/relay.conf", &s); err != nil {
		t.Fatal(err)
	}
	cfg := s.proxyConfig(nil)
	checks := []struct {
		field     string
		got, want any
	}{
		{"MasterAddr", cfg.MasterAddr, "10.0.0.5:6379"},
		{"MasterUser", cfg.MasterUser, "relay"},
		{"MasterAuth", cfg.MasterAuth, `pa ss"word`},
		{"RequirePass", cfg.RequirePass, "it's a secret"},
		{"DataDir", cfg.DataDir, "/var/lib/redis-relay"},
		{"AnnouncePort", cfg.AnnouncePort, 7380},
		{"AnnounceIP", cfg.AnnounceIP, "10.0.0.9"},
		{"ReplicaAnnounced", cfg.ReplicaAnnounced, true},
		{"AckPolicy", cfg.AckPolicy, settings.AckPolicy{Kind: "downstream-quorum", Quorum: 2}},
		{"RingSize", cfg.RingSize, 128 << 20},
		{"SegmentSize", cfg.SegmentSize, int64(16 << 20)},
		{"ReplTimeout", cfg.ReplTimeout, 30 * time.Second},
		{"WaitAhead", cfg.WaitAhead, 2 * time.Second},
		{"MaxClients", cfg.MaxClients, 500},
		{"RefreshRatio", cfg.RefreshRatio, 2.5},
		{"RefreshMinBytes", cfg.RefreshMinBytes, int64(1 << 30)},
		{"RefreshMaxAge", cfg.RefreshMaxAge, 6 * time.Hour},
		{"RDBOnlyMaxAge", cfg.RDBOnlyMaxAge, 15 * time.Minute},
		{"RetainBytes", cfg.RetainBytes, int64(512 << 20)},
		{"RetainAge", cfg.RetainAge, time.Hour},
		{"DisableGuard", cfg.DisableGuard, true},
		{"GuardMinKeysRatio", cfg.GuardMinKeysRatio, 0.5},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
	if err := settings.Lookup("refresh-min-size").Set(&s.Config, "0"); err != nil {
		t.Fatal(err)
	}
	if got := s.proxyConfig(nil).RefreshMinBytes; got >= 0 {
		t.Errorf("refresh-min-size 0 maps to RefreshMinBytes %d, want a negative value: no minimum (0 there takes the default)", got)
	}
}

// syncBuffer is a bytes.Buffer that loggers on other goroutines may write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// runApp runs the CLI in-process with args (without the program name) and
// returns what it printed.
func runApp(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	app := newApp()
	var out, errOut syncBuffer
	app.Writer, app.ErrWriter = &out, &errOut
	err = app.RunContext(ctx, append([]string{"redis-relay"}, args...))
	return out.String(), errOut.String(), err
}

// effectiveSettings runs `run --check-config` and parses what it printed.
func effectiveSettings(t *testing.T, args ...string) Settings {
	t.Helper()
	out, _, err := runApp(t.Context(), append([]string{"run", "--check-config"}, args...)...)
	if err != nil {
		t.Fatalf("run --check-config %q: %v", args, err)
	}
	s := defaultSettings()
	if err := parseConfig("check-config output", []byte(out), &s); err != nil {
		t.Fatalf("--check-config printed a file that does not parse: %v\n%s", err, out)
	}
	return s
}

func TestPrecedence(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "relay.conf")
	text := "port 7001\nrepl-timeout 30\nrefresh-ratio 2\nmaxclients 10\nreplicaof 10.0.0.1 6379\n"
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REDIS_RELAY_REPL_TIMEOUT", "40")
	t.Setenv("REDIS_RELAY_REFRESH_RATIO", "3")
	t.Setenv("REDIS_RELAY_SEGMENT_SIZE", "1mb")
	s := effectiveSettings(t, "--config", conf, "--refresh-ratio", "4", "--replicaof", "10.0.0.2:6380", "--log-level", "warn")

	checks := []struct {
		what      string
		got, want any
	}{
		{"port (file over default)", s.Process.Port, 7001},
		{"maxclients (file over default)", s.MaxClients, 10},
		{"repl-timeout (env over file)", s.ReplTimeout, 40 * time.Second},
		{"segment-size (env over default)", s.SegmentSize, int64(1 << 20)},
		{"refresh-ratio (flag over env and file)", s.RefreshRatio, 4.0},
		{"replicaof (flag over file)", s.MasterAddr, "10.0.0.2:6380"},
		{"log-level (flag over default)", s.Process.LogLevel, "warn"},
		{"wait-ahead (default)", s.WaitAhead, 60 * time.Second},
		{"bind (default)", strings.Join(s.Process.Bind, " "), "127.0.0.1"},
		{"protected-mode (default)", s.ProtectedMode, true},
		{"timeout (default: never)", s.IdleTimeout, time.Duration(0)},
		{"tcp-keepalive (default)", s.Process.TCPKeepAlive, 300 * time.Second},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
}

func TestConfigFromEnvironment(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "relay.conf")
	if err := os.WriteFile(conf, []byte("port 7001\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REDIS_RELAY_CONFIG", conf)
	t.Setenv("REDIS_RELAY_REPLICAOF", "master.example 6379")
	s := effectiveSettings(t)
	if s.Process.Port != 7001 || s.MasterAddr != "master.example:6379" {
		t.Fatalf("port %d, replicaof %q; want 7001 and master.example:6379", s.Process.Port, s.MasterAddr)
	}
}

func TestFlagErrors(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "relay.conf")
	if err := os.WriteFile(conf, []byte("# nothing\n\nport 99999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"flag", nil, []string{"--repl-timeout", "abc"}, `--repl-timeout: "abc" is not a number of seconds`},
		{"env", map[string]string{"REDIS_RELAY_REPL_TIMEOUT": "abc"}, nil, `REDIS_RELAY_REPL_TIMEOUT: "abc" is not a number of seconds`},
		{"replicaof form", nil, []string{"--replicaof", "10.0.0.1"}, `--replicaof: "10.0.0.1" is not host:port`},
		{"range", nil, []string{"--guard-min-keys-ratio", "2"}, `--guard-min-keys-ratio: 2 is outside 0-1`},
		{"bool", nil, []string{"--empty-master-guard", "off"}, `--empty-master-guard: "off" is neither yes nor no`},
		{"file", nil, []string{"--config", conf}, conf + `:3: port: 99999 is outside 0-65535`},
		{"flag does not rescue a bad file", nil, []string{"--config", conf, "--port", "1"}, conf + `:3: port: 99999 is outside 0-65535`},
		{"missing file", nil, []string{"--config", conf + ".none"}, "read config: open " + conf + ".none: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, _, err := runApp(t.Context(), append([]string{"run", "--check-config"}, tt.args...)...)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error:\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}

func TestCheckConfigHidesPasswords(t *testing.T) {
	out, _, err := runApp(t.Context(), "run", "--check-config", "--requirepass", "hunter2", "--masterauth", "hunter3")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "hunter") {
		t.Fatalf("--check-config printed a password:\n%s", out)
	}
	if !strings.Contains(out, "# requirepass is set (not shown)") {
		t.Fatalf("--check-config does not say requirepass is set:\n%s", out)
	}
}

func TestFlagsMatchDirectives(t *testing.T) {
	run := runCommand()
	names := map[string]bool{}
	for _, f := range run.Flags {
		for _, n := range f.Names() {
			names[n] = true
		}
	}
	for _, d := range settings.Table() {
		for _, n := range append([]string{d.Name}, d.Aliases...) {
			if !names[n] {
				t.Errorf("setting %s has no --%s flag", d.Name, n)
			}
		}
		if want := "REDIS_RELAY_" + strings.ToUpper(strings.ReplaceAll(d.Name, "-", "_")); d.EnvVar() != want {
			t.Errorf("%s: env twin %s, want %s", d.Name, d.EnvVar(), want)
		}
	}
}

// FuzzConfigParse feeds arbitrary files to the config parser. It must not
// panic; an error must carry a line of the input; accepted settings must
// validate; every line that splits must survive quoting; and rewriting the
// file with its own settings must parse back to the same settings.
func FuzzConfigParse(f *testing.F) {
	if seed, err := os.ReadFile("testdata/relay.conf"); err == nil {
		f.Add(seed)
	}
	for _, s := range []string{
		"", "# only a comment\n", "port 1\r\nport 2", "replicaof ::1 6379\nslaveof no one\n",
		`requirepass "a\x41\n\"b"`, "masterauth 'it\\'s'", "x \"unbalanced", "port 1 2", "bind \"a\"b",
		"refresh-ratio -1e3\nretain-age 1.25\nrefresh-max-age 1h30m", "log-level DEBUG\nlog-format json",
		"repl-backlog-size 16kb\nsegment-size 4kb", "dir \"\\xff\\x00\"", "\x00", "port 1\n# Generated by CONFIG REWRITE\nport 2",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := defaultSettings()
		err := parseConfig("fuzz.conf", data, &s)
		lines := strings.Split(string(data), "\n")
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Line < 1 || ce.Line > len(lines) {
				t.Fatalf("error without a line of the input: %v", err)
			}
			if !strings.HasPrefix(err.Error(), fmt.Sprintf("fuzz.conf:%d: ", ce.Line)) {
				t.Fatalf("error does not start with file:line: %v", err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted settings do not validate: %v", err)
		}
		for _, line := range lines {
			args, err := configLineArgs(line)
			if err != nil || len(args) == 0 {
				continue
			}
			back, err := splitArgs(formatDirective(args[0], args[1:]))
			if err != nil || !slices.Equal(back, args) {
				t.Fatalf("line %q splits to %q; quoted again it splits to %q, %v", line, args, back, err)
			}
		}
		want := make(map[*settings.Setting][]string)
		atDefault := make(map[*settings.Setting]bool)
		def := defaultSettings()
		for _, d := range settings.Table() {
			if args := d.Format(&s.Config); args != nil {
				want[d] = args
				atDefault[d] = slices.Equal(args, d.Format(&def.Config))
			}
		}
		again := defaultSettings()
		rewritten := rewriteLines(string(data), want, atDefault)
		if err := parseConfig("rewritten.conf", []byte(rewritten), &again); err != nil {
			t.Fatalf("rewritten file does not parse: %v\n%s", err, rewritten)
		}
		if a, b := settingsText(&s), settingsText(&again); a != b {
			t.Fatalf("rewrite changed the settings:\nbefore:\n%s\nafter:\n%s", a, b)
		}
	})
}

// TestBadACLFileStopsStartUp: run, and run --check-config, refuse an ACL
// file with a line they cannot use, naming the file, the line and the
// reason.
func TestBadACLFileStopsStartUp(t *testing.T) {
	acl := writeTemp(t, "users.acl", "user default on nopass ~* &* +@all\nuser ops on >pw +config|get +@nosuch\n")
	conf := writeTemp(t, "relay.conf", fmt.Sprintf("port 0\ndir %q\naclfile %q\n", t.TempDir(), acl))
	want := fmt.Sprintf("%s:3: aclfile: %s:2: Error in applying operation '+@nosuch': Unknown command or category name in ACL", conf, acl)
	for _, args := range [][]string{{"run", "--config", conf}, {"run", "--check-config", "--config", conf}} {
		_, _, err := runApp(t.Context(), args...)
		if err == nil || err.Error() != want {
			t.Errorf("%v with a bad ACL file: %v, want %q", args, err, want)
		}
	}
}
