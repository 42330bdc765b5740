package proxy

import (
	"strings"
	"testing"
	"time"
)

// TestConfigCommandReadsTheTable: CONFIG SET takes and refuses what the
// config file does, and CONFIG GET answers every setting, including the
// ones only the run command uses.
func TestConfigCommandReadsTheTable(t *testing.T) {
	relay := startRelay(t, "", func(c *Config) {
		c.RequirePass = ""
		c.Process = DefaultConfig().Process
		c.CommandTimeout = 3 * time.Second
	})
	ctx := t.Context()
	cl := relay.Client()

	for _, tt := range []struct {
		name, value string
		want        string // "" for OK, else part of the error
	}{
		{"guard-min-keys-ratio", "5", "5 is outside 0-1"},
		{"refresh-ratio", "0", "0 is not a ratio"},
		{"repl-timeout", "90s", ""},
		{"repl-timeout", "0", "below the minimum of 1"},
		{"refresh-min-size", "0", ""},
		{"retain-size", "-1", "is not a size"},
		{"wait-ahead", "-1", "is negative"},
		{"port", "7000", "can't set immutable config"},
		{"slave-announce-port", "1", "can't set immutable config"},
		{"replica-priority", "1", "can't set immutable config"},
		{"no-such-thing", "1", "Unknown option"},
		// What CONFIG GET shows for a password is not taken for one.
		{"masterauth", secretShown, "not a password"},
	} {
		err := cl.ConfigSet(ctx, tt.name, tt.value).Err()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("CONFIG SET %s %s: %v", tt.name, tt.value, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("CONFIG SET %s %s: %v, want an error with %q", tt.name, tt.value, err, tt.want)
		}
	}
	if got := relay.Relay.cfg.timeout(); got != 90*time.Second {
		t.Errorf("repl-timeout 90s set the timeout to %v", got)
	}
	if got := relay.Relay.cfg.get().RefreshMinBytes; got >= 0 {
		t.Errorf("refresh-min-size 0 holds RefreshMinBytes %d, want a negative value (no minimum)", got)
	}

	got, err := cl.ConfigGet(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"repl-timeout": "90", "refresh-min-size": "0", "port": "6380", "bind": "127.0.0.1",
		"tls-port": "0", "tls-auth-clients": "yes", "sentinel-addrs": "", "log-level": "info",
		"metrics-addr": "", "command-timeout": "3s", "requireuser": "", "replicaof": "",
		"replica-priority": "0", "slave-announce-port": "0", "repl-backlog-size": "1048576",
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("CONFIG GET * answers %s = %q (listed: %v), want %q", name, v, ok, want)
		}
	}
	if n := len(SettingTable()); len(got) < n {
		t.Errorf("CONFIG GET * answers %d parameters; the table has %d settings", len(got), n)
	}
	if got := cl.ConfigGet(ctx, "tls-*").Val(); len(got) != 6 {
		t.Errorf("CONFIG GET tls-* = %v, want the 6 tls settings", got)
	}

	if err := cl.ConfigSet(ctx, "requirepass", "hunter2").Err(); err != nil {
		t.Fatal(err)
	}
	if v := cl.ConfigGet(ctx, "requirepass").Val()["requirepass"]; v != secretShown {
		t.Errorf("CONFIG GET requirepass = %q, want %q", v, secretShown)
	}
}

// TestSettingTable checks the table itself: every entry can be parsed and
// written, and every default reads back as itself.
func TestSettingTable(t *testing.T) {
	def := DefaultConfig()
	for _, s := range SettingTable() {
		if s.parse == nil || s.format == nil || s.Kind == "" || s.Usage == "" {
			t.Errorf("%s: parse, format, kind or usage missing", s.Name)
		}
		if err := s.Check(&def); err != nil {
			t.Errorf("%s: default fails its own check: %v", s.Name, err)
		}
		if s.Secret && s.Rewrite != RewriteIfFromFile {
			t.Errorf("%s: a password that CONFIG REWRITE would write wherever it came from", s.Name)
		}
		if LookupSetting(strings.ToUpper(s.Name)) != s {
			t.Errorf("%s: not found by its name in upper case", s.Name)
		}
	}
}
