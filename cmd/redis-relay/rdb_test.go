package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/rdbparse"
)

// savedRDB writes keys of every core type (some with expiries, in two
// databases) and a function library to a real redis-server, runs SAVE and
// returns the dump's path and the server's version.
func savedRDB(t *testing.T) (path, version string) {
	t.Helper()
	srv := redistest.Start(t)
	srv.Do(t, "DEBUG", "POPULATE", "100", "str", "16")
	srv.Do(t, "SET", "expiring", "v", "EX", "3600")
	srv.Do(t, "RPUSH", "list", "a", "b", "c")
	srv.Do(t, "SADD", "set", "a", "b")
	srv.Do(t, "ZADD", "zset", "1", "a", "2", "b")
	srv.Do(t, "HSET", "hash", "f1", "v1", "f2", "v2")
	srv.Do(t, "XADD", "stream", "*", "f", "v")
	srv.Do(t, "FUNCTION", "LOAD", "#!lua name=relaylib\nredis.register_function('relayf', function() return 1 end)")
	srv.Do(t, "SET", "db3key", "v", "PX", "3600000")
	srv.Do(t, "MOVE", "db3key", "3")
	srv.Do(t, "SAVE")
	return filepath.Join(srv.Dir, "dump.rdb"), srv.Info(t, "server")["redis_version"]
}

func TestRDBInspect(t *testing.T) {
	path, version := savedRDB(t)
	out, _, err := runApp(t.Context(), "rdb", "inspect", path)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{
		"file        " + path + "\n",
		"format      REDIS, RDB version ",
		"redis-ver   " + version + "\n",
		"keys        107 (2 with an expiry)\n",
		"functions   1 libraries\n",
		"checksum    ok (crc64 ",
		"\naux fields\n",
		"  redis-bits  64\n",
		"  ctime       ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "unparsed") || strings.Contains(out, "complete    no") {
		t.Errorf("a clean dump reported as incomplete:\n%s", out)
	}
	// Per database and per type rows, columns right-aligned.
	rows := map[string][]string{}
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) > 0 {
			rows[f[0]] = f
		}
	}
	checks := map[string][]string{
		"0": {"0", "106", "1"}, "3": {"3", "1", "1"},
		"string": {"string", "102"}, "list": {"list", "1"}, "set": {"set", "1"},
		"zset": {"zset", "1"}, "hash": {"hash", "1"}, "stream": {"stream", "1"},
	}
	for key, want := range checks {
		got := rows[key]
		if len(got) < len(want) || strings.Join(got[:len(want)], " ") != strings.Join(want, " ") {
			t.Errorf("row %s = %q, want it to start with %q:\n%s", key, got, want, out)
		}
	}
}

func TestRDBInspectJSON(t *testing.T) {
	path, version := savedRDB(t)
	out, _, err := runApp(t.Context(), "rdb", "inspect", "--json", path)
	if err != nil {
		t.Fatal(err)
	}
	var sum rdbparse.Summary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if sum.Keys != 107 || sum.Expires != 2 || sum.RedisVer != version || sum.Functions != 1 || sum.Checksum != rdbparse.ChecksumOK || !sum.Complete {
		t.Fatalf("summary %+v", sum)
	}
	if sum.Types["hash"].Count != 1 || len(sum.DBs) != 2 {
		t.Fatalf("types %+v, dbs %+v", sum.Types, sum.DBs)
	}
}

func TestRDBInspectDamaged(t *testing.T) {
	path, _ := savedRDB(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.rdb")
	if err := os.WriteFile(cut, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := runApp(t.Context(), "rdb", "inspect", cut)
	if err == nil {
		t.Fatalf("a truncated file inspected without error:\n%s", out)
	}
	if !strings.HasPrefix(err.Error(), "inspect "+cut+": ") {
		t.Errorf("error %q does not name the file", err)
	}
	if !strings.Contains(out, "format      REDIS, RDB version ") || !strings.Contains(out, "redis-ver") {
		t.Errorf("what was read before the error is not shown:\n%s", out)
	}

	flipped := filepath.Join(t.TempDir(), "flipped.rdb")
	bad := append([]byte(nil), data...)
	bad[len(bad)-1] ^= 0xff // the last checksum byte
	if err := os.WriteFile(flipped, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err = runApp(t.Context(), "rdb", "inspect", flipped)
	if !strings.Contains(out, "checksum    MISMATCH") {
		t.Errorf("checksum mismatch not shown (err %v):\n%s", err, out)
	}

	_, _, err = runApp(t.Context(), "rdb", "inspect", filepath.Join(t.TempDir(), "none.rdb"))
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
	_, _, err = runApp(t.Context(), "rdb", "inspect")
	if err == nil || err.Error() != "rdb inspect takes one FILE, got 0 arguments" {
		t.Errorf("no file: %v", err)
	}
}

func TestRenderSummaryUnparsed(t *testing.T) {
	s := &rdbparse.Summary{
		Magic: "REDIS", Version: 11, Aux: map[string]string{"weird": "a\x00b"}, ReplStreamDB: -1,
		Modules: map[string]int64{"ReJSON-RL": 3}, Unparsed: "module type ReJSON-RL not decoded",
		Checksum: rdbparse.ChecksumDisabled, Complete: true,
	}
	out := renderSummary("x.rdb", s)
	for _, want := range []string{"unparsed    module type ReJSON-RL not decoded\n", `"a\x00b"`, "ReJSON-RL", "disabled"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "replication") {
		t.Errorf("absent replication fields shown:\n%s", out)
	}
}
