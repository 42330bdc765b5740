package settings

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestSettingTable checks the table itself: every entry can be parsed and
// written, and every default passes its own checks and reads back as
// itself.
func TestSettingTable(t *testing.T) {
	def := Default()
	for _, s := range Table() {
		if s.parse == nil || s.format == nil || s.Kind == "" || s.Usage == "" {
			t.Errorf("%s: parse, format, kind or usage missing", s.Name)
		}
		if err := s.Check(&def); err != nil {
			t.Errorf("%s: default %q fails its own check: %v", s.Name, s.Default, err)
		}
		if s.Secret && s.Rewrite != RewriteIfFromFile {
			t.Errorf("%s: a password that CONFIG REWRITE would write wherever it came from", s.Name)
		}
		if Lookup(strings.ToUpper(s.Name)) != s {
			t.Errorf("%s: not found by its name in upper case", s.Name)
		}
		if s.Format(&def) == nil {
			continue // nothing to write: replicaof with no master
		}
		again := Default()
		if err := s.Set(&again, s.Value(&def)); err != nil || s.Value(&again) != s.Value(&def) {
			t.Errorf("%s: default %q is written as %q, which reads back as %q (%v)", s.Name, s.Default, s.Value(&def), s.Value(&again), err)
		}
	}
}

// TestFillDefaults: a Config written in code with a field left at zero
// gets the same default as the config file does; a value that means
// something (no refresh minimum, never refresh) is kept.
func TestFillDefaults(t *testing.T) {
	var c Config
	c.FillDefaults()
	def := Default()
	for _, s := range Table() {
		if s.unset == nil {
			continue
		}
		if got, want := s.Value(&c), s.Value(&def); got != want {
			t.Errorf("%s: a zero Config gets %q, the config file %q", s.Name, got, want)
		}
	}
	if c.RingSize != 64<<20 || c.Logger == nil {
		t.Errorf("RingSize = %d, Logger = %v; want the table's 64mb and a logger", c.RingSize, c.Logger)
	}

	kept := Config{RefreshMinBytes: -1, RefreshRatio: -1, RingSize: 1 << 20, ReplTimeout: time.Second}
	kept.FillDefaults()
	if kept.RefreshMinBytes != -1 || kept.RefreshRatio != -1 || kept.RingSize != 1<<20 || kept.ReplTimeout != time.Second {
		t.Errorf("FillDefaults changed set fields: %+v", kept)
	}
}

// TestParseSize reads units as redis.conf does: 1k is 1000 bytes, 1kb is
// 1024.
func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"100", 100}, {"100b", 100},
		{"1k", 1000}, {"1kb", 1 << 10}, {"2m", 2e6}, {"2mb", 2 << 20}, {"3g", 3e9}, {"3GB", 3 << 30},
	} {
		if got, err := ParseSize(tt.in); err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "-1", "1x", "kb", "99999999999gb"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) took it", bad)
		}
	}
}

// TestReplicaOfAddr: the one check of a master address, for the config
// file and the REPLICAOF command alike.
func TestReplicaOfAddr(t *testing.T) {
	for _, tt := range []struct {
		host, port, want string
		badPort          bool
	}{
		{"10.0.0.5", "6379", "10.0.0.5:6379", false},
		{"::1", "06379", "[::1]:6379", false},
		{"NO", "ONE", "", false},
		{"h", "0", "", true},
		{"h", "65536", "", true},
		{"h", "x", "", true},
		{"a b", "6379", "", false},
	} {
		got, err := ReplicaOfAddr(tt.host, tt.port)
		if errors.Is(err, ErrBadPort) != tt.badPort || got != tt.want || (tt.want == "" && !tt.badPort && tt.host != "NO" && err == nil) {
			t.Errorf("ReplicaOfAddr(%q, %q) = %q, %v", tt.host, tt.port, got, err)
		}
	}
}
