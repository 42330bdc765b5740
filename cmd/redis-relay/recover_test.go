package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestRecoverFlags: recover refuses what cannot name one point and one
// destination, before it touches the data dir.
func TestRecoverFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--out", "x.rdb"}, "exactly one of --until and --before-command"},
		{[]string{"--until", "10", "--before-command", "FLUSHALL", "--out", "x.rdb"}, "exactly one of --until and --before-command"},
		{[]string{"--until", "10"}, "exactly one of --out and --serve"},
		{[]string{"--until", "10", "--out", "x.rdb", "--serve", "7000"}, "exactly one of --out and --serve"},
		{[]string{"--until", "10", "--out", "x.rdb", "--bind", "0.0.0.0"}, "--bind goes with --serve"},
		{[]string{"--until", "yesterday", "--out", "x.rdb"}, "neither an offset nor an RFC 3339 time"},
		{[]string{"--until", "10", "--after", "2026-01-01T00:00:00Z", "--out", "x.rdb"}, "--after goes with --before-command"},
		{[]string{"--before-command", "FLUSHALL", "--after", "noon", "--out", "x.rdb"}, "not an RFC 3339 time"},
		{[]string{"--until", "2026-01-01T00:00:00Z", "--out", "x.rdb"}, "is " + dir + " a relay's data dir?"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			app := newApp()
			var out bytes.Buffer
			app.Writer, app.ErrWriter = &out, &out
			err := app.RunContext(context.Background(), append([]string{"redis-relay", "recover", "--dir", dir}, tc.args...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}
