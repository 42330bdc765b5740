package downstream

import (
	"net"
	"strings"
	"testing"
)

func TestProtectedModeRefuses(t *testing.T) {
	tcp := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000} }
	tests := []struct {
		name      string
		protected bool
		pass      string
		remote    net.Addr
		refuse    bool
	}{
		{"loopback v4", true, "", tcp("127.0.0.1"), false},
		{"loopback v4 elsewhere in 127/8", true, "", tcp("127.3.2.1"), false},
		{"loopback v6", true, "", tcp("::1"), false},
		{"v4-mapped loopback", true, "", tcp("::ffff:127.0.0.1"), false},
		{"private v4", true, "", tcp("10.0.0.7"), true},
		{"public v6", true, "", tcp("2001:db8::1"), true},
		{"unspecified", true, "", tcp("0.0.0.0"), true},
		{"unix socket", true, "", &net.UnixAddr{Name: "/run/relay.sock", Net: "unix"}, false},
		{"no address", true, "", nil, true},
		{"password set", true, "secret", tcp("10.0.0.7"), false},
		{"protected mode off", false, "", tcp("10.0.0.7"), false},
		{"other net.Addr, remote", true, "", fakeAddr("192.0.2.9:1234"), true},
		{"other net.Addr, loopback", true, "", fakeAddr("[::1]:1234"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := protectedModeRefuses(tt.protected, tt.pass, tt.remote); got != tt.refuse {
				t.Errorf("protectedModeRefuses(%v, %q, %v) = %v, want %v", tt.protected, tt.pass, tt.remote, got, tt.refuse)
			}
		})
	}
}

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }

func TestDeniedReplyIsOneLine(t *testing.T) {
	if strings.Count(deniedReply, "\r\n") != 1 || !strings.HasSuffix(deniedReply, "\r\n") || !strings.HasPrefix(deniedReply, "-DENIED ") {
		t.Fatalf("deniedReply is not one RESP error line: %q", deniedReply)
	}
}
