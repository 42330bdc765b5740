package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/proxy/settings"
)

// TestConfigCommandReadsTheTable: CONFIG SET takes and refuses what the
// config file does, and CONFIG GET answers every setting, including the
// ones only the run command uses.
func TestConfigCommandReadsTheTable(t *testing.T) {
	relay := startRelay(t, "", func(c *Config) {
		c.RequirePass = ""
		c.Process = settings.Default().Process
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
		{"masterauth", settings.SecretShown, "not a password"},
	} {
		err := cl.ConfigSet(ctx, tt.name, tt.value).Err()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("CONFIG SET %s %s: %v", tt.name, tt.value, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("CONFIG SET %s %s: %v, want an error with %q", tt.name, tt.value, err, tt.want)
		}
	}
	if got := relay.Relay.cfg.Timeout(); got != 90*time.Second {
		t.Errorf("repl-timeout 90s set the timeout to %v", got)
	}
	if got := relay.Relay.cfg.Get().RefreshMinBytes; got >= 0 {
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
	if n := len(settings.Table()); len(got) < n {
		t.Errorf("CONFIG GET * answers %d parameters; the table has %d settings", len(got), n)
	}
	if got := cl.ConfigGet(ctx, "tls-*").Val(); len(got) != 6 {
		t.Errorf("CONFIG GET tls-* = %v, want the 6 tls settings", got)
	}

	if err := cl.ConfigSet(ctx, "requirepass", "hunter2").Err(); err != nil {
		t.Fatal(err)
	}
	if v := cl.ConfigGet(ctx, "requirepass").Val()["requirepass"]; v != settings.SecretShown {
		t.Errorf("CONFIG GET requirepass = %q, want %q", v, settings.SecretShown)
	}
}

// TestNewTakesTheTableDefaults: a Config written in code that leaves a
// setting at zero runs with the default the config file gives it (the
// table's), not one of its own.
func TestNewTakesTheTableDefaults(t *testing.T) {
	relay, err := New(Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	got, def := relay.currentConfig(), settings.Default()
	for _, name := range []string{"repl-backlog-size", "segment-size", "repl-timeout", "wait-ahead", "maxclients", "command-timeout", "refresh-ratio", "refresh-min-size"} {
		s := settings.Lookup(name)
		if a, b := s.Value(&got), s.Value(&def); a != b {
			t.Errorf("%s: New runs with %s, the config file's default is %s", name, a, b)
		}
	}
	if st := relay.Status(); st.Log.RingSize != int64(def.RingSize) {
		t.Errorf("INFO ring size %d, want the default %d", st.Log.RingSize, def.RingSize)
	}
}
