package redisproc

import (
	"testing"
)

func TestParseMajorVersion(t *testing.T) {
	for _, tt := range []struct {
		out  string
		want int
	}{
		{"Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d7c971a948f0\n", 7},
		{"Redis server v=6.2.16 sha=00000000:0 malloc=libc bits=64 build=681d083924c36041\n", 6},
		{"Valkey server v=8.0.1 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=1\n", 8},
	} {
		if got, err := parseMajorVersion(tt.out); err != nil || got != tt.want {
			t.Errorf("parseMajorVersion(%q) = %d, %v; want %d", tt.out, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "redis-server 7", "Redis server v=x.1"} {
		if _, err := parseMajorVersion(bad); err == nil {
			t.Errorf("parseMajorVersion(%q): no error", bad)
		}
	}
}
