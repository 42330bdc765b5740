package redisproc

import (
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func startT(t *testing.T, o Options) *Proc {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	p, err := Start(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

// startOnTaken runs redis-server on port past Start's own probe of it, as
// when another process binds the port between the probe and the start.
func startOnTaken(t *testing.T, port int) error {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	o := Options{Bin: bin, Dir: dir, Host: "127.0.0.1", LogPath: filepath.Join(dir, "redis.log"), OutPath: filepath.Join(dir, "redis.stdout"), ReadyTimeout: DefaultReadyTimeout}
	p, err := startOn(t.Context(), o, port)
	if p != nil {
		p.Kill()
	}
	return err
}

// TestStart: the server started is the process Start returns, on a port
// it picked, with DEBUG enabled, no persistence and Args after the
// defaults.
func TestStart(t *testing.T) {
	t.Parallel()
	p := startT(t, Options{Args: []string{"--save", "900 1"}})
	if p.Port == 0 || p.Port == 6379 {
		t.Fatalf("port %d", p.Port)
	}
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), Protocol: 2, DisableIdentity: true})
	defer c.Close()
	text, err := c.Info(t.Context(), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	if got := ParseInfo(text)["process_id"]; got != strconv.Itoa(p.Pid()) {
		t.Errorf("process_id %s, pid %d", got, p.Pid())
	}
	if err := c.Do(t.Context(), "DEBUG", "DIGEST").Err(); err != nil {
		t.Errorf("DEBUG DIGEST: %v", err)
	}
	if got, _ := c.ConfigGet(t.Context(), "save").Result(); got["save"] != "900 1" {
		t.Errorf("save = %q, want the Args' 900 1", got["save"])
	}
	p.Kill()
	p.Kill() // harmless
	if !p.Exited() || p.Signal(terminate) == nil {
		t.Error("a killed process still takes signals")
	}
}

// TestPortInUse: a port given that another process holds is an error
// wrapping ErrPortInUse, both when Start sees it taken and when
// redis-server finds it so (the race between the probe and the bind).
func TestPortInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if _, err := Start(t.Context(), Options{Dir: t.TempDir(), Port: port}); !errors.Is(err, ErrPortInUse) || !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Errorf("Start on a taken port: %v, want ErrPortInUse naming the port", err)
	}
	if err := startOnTaken(t, port); !errors.Is(err, ErrPortInUse) {
		t.Errorf("redis-server on a taken port: %v, want ErrPortInUse", err)
	}
}

// TestStrangerUntouched: a start on the port of a running redis-server
// fails with ErrPortInUse and leaves that server as it was.
func TestStrangerUntouched(t *testing.T) {
	t.Parallel()
	other := startT(t, Options{})
	c := redis.NewClient(&redis.Options{Addr: other.Addr(), Protocol: 2, DisableIdentity: true})
	defer c.Close()
	if err := c.Set(t.Context(), "precious", "do not touch", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(t.Context(), Options{Dir: t.TempDir(), Port: other.Port}); !errors.Is(err, ErrPortInUse) {
		t.Errorf("Start on its port: %v, want ErrPortInUse", err)
	}
	if err := startOnTaken(t, other.Port); !errors.Is(err, ErrPortInUse) {
		t.Errorf("redis-server on its port: %v, want ErrPortInUse", err)
	}
	if got, err := c.Get(t.Context(), "precious").Result(); err != nil || got != "do not touch" || other.Exited() {
		t.Errorf("the server on the port: precious = %q, %v; exited %v", got, err, other.Exited())
	}
}

// TestDebugCommandArgs: the options match the installed server, which
// starts with them and answers DEBUG (TestStart).
func TestDebugCommandArgs(t *testing.T) {
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	major, err := MajorVersion(bin)
	if err != nil {
		t.Fatal(err)
	}
	args := DebugCommandArgs(bin)
	if wantOpt := major >= 7; wantOpt != slices.Contains(args, "--enable-debug-command") {
		t.Errorf("Redis %d: DebugCommandArgs = %q", major, args)
	}
}
