package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// Tests of the redis.conf lines and start-up rules an operator meets on the
// first day: password files, include, several bind addresses, logfile and
// pidfile, Sentinel settings, and what CONFIG REWRITE may write.

// startApp runs `redis-relay run args...` in-process until the test ends
// and returns its standard error.
func startApp(t *testing.T, args ...string) *syncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	app := newApp()
	var stdout, stderr syncBuffer
	app.Writer, app.ErrWriter = &stdout, &stderr
	done := make(chan error, 1)
	go func() { done <- app.RunContext(ctx, append([]string{"redis-relay", "run"}, args...)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("run did not return 30 s after its context ended")
		}
		if t.Failed() {
			t.Logf("relay log:\n%s", stderr.String())
		}
	})
	return &stderr
}

func TestPasswordFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	req := write("requirepass", "downstream secret\n")
	auth := write("masterauth", "upstream\r\nsecond line ignored\n")
	empty := write("empty", "\n")

	s := effectiveSettings(t, "--requirepass-file", req, "--masterauth-file", auth)
	if s.Process.RequirePassFile != req || s.Process.MasterAuthFile != auth {
		t.Errorf("--check-config shows requirepass-file %q, masterauth-file %q", s.Process.RequirePassFile, s.Process.MasterAuthFile)
	}

	// settingsFromContext reads the files; check it through the flags.
	conf := writeTemp(t, "relay.conf", "requirepass-file "+req+"\n")
	got := loadSettings(t, "--config", conf, "--masterauth-file", auth)
	if got.RequirePass != "downstream secret" || got.MasterAuth != "upstream" {
		t.Errorf("passwords read %q, %q; want %q, %q", got.RequirePass, got.MasterAuth, "downstream secret", "upstream")
	}
	if got.origin["requirepass"] != "requirepass-file" || got.fromConfigFile("requirepass") {
		t.Errorf("requirepass origin %q, want requirepass-file (not the config file)", got.origin["requirepass"])
	}
	src := write("source", "sibling secret\n")
	got = loadSettings(t, "--masterauth-file", auth, "--snapshot-source-password-file", src)
	if got.SnapshotSourcePassword != "sibling secret" || got.MasterAuth != "upstream" {
		t.Errorf("snapshot-source-password %q, masterauth %q; want %q, %q", got.SnapshotSourcePassword, got.MasterAuth, "sibling secret", "upstream")
	}

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"file and plain", []string{"--requirepass-file", req, "--requirepass", "x"}, "requirepass-file and requirepass are both set (--requirepass-file, --requirepass): keep one"},
		{"empty file", []string{"--masterauth-file", empty}, "--masterauth-file: " + empty + " holds no password on its first line"},
		{"missing file", []string{"--requirepass-file", filepath.Join(dir, "nope")}, "no such file or directory"},
		{"source file and plain", []string{"--snapshot-source-password-file", req, "--snapshot-source-password", "x"}, "snapshot-source-password-file and snapshot-source-password are both set"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runApp(t.Context(), append([]string{"run", "--dir", t.TempDir(), "--port", "0"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// loadSettings assembles settings as run does, password files read, without
// starting anything.
func loadSettings(t *testing.T, args ...string) Settings {
	t.Helper()
	var s Settings
	cmd := runCommand()
	cmd.Action = func(c *cli.Context) error {
		var err error
		s, err = settingsFromContext(c)
		return err
	}
	app := newApp()
	app.Commands = append(app.Commands[:0:0], cmd)
	if err := app.RunContext(t.Context(), append([]string{"redis-relay", "run"}, args...)); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPersistableKeepsSecretsOut(t *testing.T) {
	conf := writeTemp(t, "relay.conf", "requirepass fromfile\n")
	t.Setenv("REDIS_RELAY_MASTERAUTH", "fromenv")
	s := loadSettings(t, "--config", conf, "--sentinel-addrs", "127.0.0.1:26379", "--sentinel-master-name", "m", "--sentinel-password", "fromflag")
	kept, left := s.persistable(map[string]string{
		"requirepass": "fromfile-or-config-set", "masterauth": "fromenv", "sentinel-password": "fromflag", "repl-timeout": "30",
	})
	if _, ok := kept["requirepass"]; !ok {
		t.Error("requirepass came from the config file: a rewrite may update it there")
	}
	if _, ok := kept["repl-timeout"]; !ok {
		t.Error("repl-timeout was left out")
	}
	if !slices.Equal(left, []string{"masterauth", "sentinel-password"}) {
		t.Errorf("left out %v, want [masterauth sentinel-password]", left)
	}

	// Where a password is read from is kept out the same way.
	byFlag := defaultSettings()
	byFlag.setOrigin("requirepass-file", "--requirepass-file")
	if _, left := byFlag.persistable(map[string]string{"requirepass-file": "/run/credentials/requirepass"}); !slices.Equal(left, []string{"requirepass-file"}) {
		t.Errorf("requirepass-file from a flag: left out %v, want [requirepass-file]", left)
	}
}

// TestRewriteNeverWritesEnvironmentSecrets runs the relay with passwords
// from the environment, a flag and a file, changes settings at runtime and
// rewrites its config file: the new values are there, no password is.
func TestRewriteNeverWritesEnvironmentSecrets(t *testing.T) {
	master := redistest.Start(t, "--requirepass", "master-secret")
	host, mport := master.HostPort()
	port := redistest.FreePort(t)
	passFile := writeTemp(t, "requirepass", "file-secret\n")
	conf := writeTemp(t, "relay.conf", fmt.Sprintf("port %d\ndir %q\nrequirepass-file %s\n", port, t.TempDir(), passFile))
	t.Setenv("REDIS_RELAY_MASTERAUTH", "master-secret")
	startApp(t, "--config", conf, "--sentinel-password", "flag-secret")

	client := relayClient(t, fmt.Sprintf("127.0.0.1:%d", port), "file-secret")
	ctx := t.Context()
	redistest.Eventually(t, 10*time.Second, func() error { return client.Ping(ctx).Err() })
	for _, cmd := range [][]any{
		{"REPLICAOF", host, mport},
		{"CONFIG", "SET", "timeout", "45"},
		{"CONFIG", "SET", "protected-mode", "no"},
		{"CONFIG", "REWRITE"},
	} {
		if err := client.Do(ctx, cmd...).Err(); err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
	}
	text := readFile(t, conf)
	for _, want := range []string{"replicaof " + host + " " + mport, "timeout 45", "protected-mode no", "requirepass-file " + passFile} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("rewritten file lacks %q:\n%s", want, text)
		}
	}
	for _, secret := range []string{"master-secret", "file-secret", "flag-secret", "masterauth ", "requirepass "} {
		if strings.Contains(text, secret) {
			t.Errorf("rewritten file holds %q:\n%s", secret, text)
		}
	}
	// The relay still reaches its master with the environment's password.
	redistest.Eventually(t, 20*time.Second, func() error {
		info, err := client.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return fmt.Errorf("link not up yet")
		}
		return nil
	})
}

func TestInclude(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.conf")
	os.WriteFile(base, []byte("port 7001\nmaxclients 10\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "conf.d", "a.conf"), []byte("maxclients 20\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "conf.d", "b.conf"), []byte("maxclients 30\nrepl-timeout 9\n"), 0o644)
	main := writeTemp(t, "relay.conf", fmt.Sprintf("include %s\ninclude %s\nport 7002\n", base, filepath.Join(dir, "conf.d", "*.conf")))
	s := defaultSettings()
	if err := loadConfigFile(main, &s); err != nil {
		t.Fatal(err)
	}
	if s.Process.Port != 7002 || s.MaxClients != 30 || s.ReplTimeout != 9*time.Second {
		t.Errorf("port %d maxclients %d repl-timeout %v; want 7002 (later line wins), 30 (b after a), 9s", s.Process.Port, s.MaxClients, s.ReplTimeout)
	}
	if o := s.origin["maxclients"]; o != filepath.Join(dir, "conf.d", "b.conf")+":1" {
		t.Errorf("maxclients origin %q", o)
	}

	self := filepath.Join(dir, "self.conf")
	os.WriteFile(self, []byte("include "+self+"\n"), 0o644)
	err := loadConfigFile(self, &s)
	if err == nil || !strings.Contains(err.Error(), "nested includes") {
		t.Errorf("a file including itself: %v", err)
	}
	bad := filepath.Join(dir, "bad.conf")
	os.WriteFile(bad, []byte("\nsave 900 1\n"), 0o644)
	inc := writeTemp(t, "inc.conf", "include "+bad+"\n")
	err = loadConfigFile(inc, &s)
	if err == nil || !strings.Contains(err.Error(), bad+":2: save: unknown directive") {
		t.Errorf("error in an included file: %v, want it to name that file's line", err)
	}
}

func TestSentinelSettingsChecked(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"addrs without a name", []string{"--sentinel-addrs", "127.0.0.1:26379"}, "--sentinel-addrs: names Sentinels but sentinel-master-name is not set"},
		{"name without addrs", []string{"--sentinel-master-name", "mymaster"}, "--sentinel-master-name: is set but sentinel-addrs names no Sentinel"},
		{"tls without a CA file", []string{"--sentinel-addrs", "127.0.0.1:26379", "--sentinel-master-name", "m", "--sentinel-tls", "yes", "--tls-ca-cert-file", "/nonexistent/ca.crt"}, "tls-ca-cert-file"},
		{"cluster and replicaof", []string{"--cluster-seeds", "127.0.0.1:7000", "--replicaof", "127.0.0.1:7001"}, "cluster-seeds and replicaof are both set (--replicaof)"},
		{"cluster and Sentinel", []string{"--cluster-seeds", "127.0.0.1:7000", "--sentinel-addrs", "127.0.0.1:26379", "--sentinel-master-name", "m"}, "cluster-seeds and sentinel-addrs are both set (--sentinel-addrs)"},
		{"slot out of range", []string{"--cluster-seeds", "127.0.0.1:7000", "--cluster-shard-slot", "16384"}, "cluster-shard-slot"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runApp(t.Context(), append([]string{"run", "--dir", t.TempDir(), "--port", "0"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestRunBindsEveryAddress: several bind addresses (one optional and
// absent from this host), a logfile and a pidfile.
func TestRunBindsEveryAddress(t *testing.T) {
	port := redistest.FreePort(t)
	dir := t.TempDir()
	logFile, pidFile := filepath.Join(dir, "relay.log"), filepath.Join(dir, "relay.pid")
	binds := "127.0.0.1 -203.0.113.77"
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil { // IPv6 loopback, where the host has it
		ln.Close()
		binds += " ::1"
	}
	conf := writeTemp(t, "relay.conf", fmt.Sprintf("bind %s\nport %d\ndir %q\nlogfile %s\npidfile %s\nloglevel notice\n", binds, port, filepath.Join(dir, "data"), logFile, pidFile))
	startApp(t, "--config", conf)

	for _, host := range strings.Fields(binds) {
		if strings.HasPrefix(host, "-") {
			continue
		}
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		redistest.Eventually(t, 10*time.Second, func() error { return relayClient(t, addr, "").Ping(t.Context()).Err() })
	}
	pid, err := os.ReadFile(pidFile)
	if err != nil || strings.TrimSpace(string(pid)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("pidfile holds %q (%v), want %d", pid, err, os.Getpid())
	}
	redistest.Eventually(t, 10*time.Second, func() error {
		log, _ := os.ReadFile(logFile)
		for _, want := range []string{"optional bind address unavailable", "203.0.113.77", "relay listening", "protected mode: no requirepass is set"} {
			if !strings.Contains(string(log), want) {
				return fmt.Errorf("logfile lacks %q:\n%s", want, log)
			}
		}
		return nil
	})
}
