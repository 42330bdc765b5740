package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// nonLoopbackIP returns an address of this host that is not loopback, so
// that a client dialling from it is "remote" to protected mode.
func nonLoopbackIP(t *testing.T) net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP
		}
	}
	return nil
}

// runRelayOn runs a relay without a master on the given listeners.
func runRelayOn(t *testing.T, cfg Config, lns ...net.Listener) *Relay {
	t.Helper()
	cfg.DataDir = t.TempDir()
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, lns...) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay run: %v", err)
		}
		r.Close()
	})
	return r
}

// roundTrip sends one inline command from a connection dialled from local
// (nil: any) and returns the first reply line.
func roundTrip(t *testing.T, local net.IP, addr, cmd string) string {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != nil {
		d.LocalAddr = &net.TCPAddr{IP: local}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, cmd+"\r\n"); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Logf("write %q: %v", cmd, err) // a refused client may be closed before it writes
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("%s from %v: read reply: %v", cmd, local, err)
	}
	return strings.TrimRight(line, "\r\n")
}

// TestProtectedModeOverTheNetwork listens on loopback and on a
// non-loopback address of this host: a client dialling from the latter is
// refused with -DENIED until protected-mode is turned off or a password
// set, from loopback.
func TestProtectedModeOverTheNetwork(t *testing.T) {
	ip := nonLoopbackIP(t)
	if ip == nil {
		t.Skip("this host has no non-loopback IPv4 address; TestProtectedModeRefuses covers the rule")
	}
	lo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ext, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		lo.Close()
		t.Fatal(err)
	}
	runRelayOn(t, Config{ProtectedMode: true}, lo, ext)

	if got := roundTrip(t, ip, ext.Addr().String(), "PING"); !strings.HasPrefix(got, "-DENIED ") || !strings.Contains(got, "protected-mode no") {
		t.Fatalf("remote PING = %q, want -DENIED naming protected-mode no", got)
	}
	if got := roundTrip(t, nil, lo.Addr().String(), "PING"); got != "+PONG" {
		t.Fatalf("loopback PING = %q, want +PONG", got)
	}
	if got := roundTrip(t, nil, lo.Addr().String(), "CONFIG SET protected-mode no"); got != "+OK" {
		t.Fatalf("CONFIG SET protected-mode no = %q", got)
	}
	if got := roundTrip(t, ip, ext.Addr().String(), "PING"); got != "+PONG" {
		t.Fatalf("remote PING with protected-mode no = %q, want +PONG", got)
	}
	if got := roundTrip(t, nil, lo.Addr().String(), "CONFIG SET protected-mode yes requirepass s3cret"); got != "+OK" {
		t.Fatalf("CONFIG SET = %q", got)
	}
	if got := roundTrip(t, ip, ext.Addr().String(), "GET x"); !strings.HasPrefix(got, "-NOAUTH") {
		t.Fatalf("remote GET with a password = %q, want -NOAUTH (protected mode does not apply)", got)
	}
}

// TestIdleTimeout: timeout closes a silent client, but not a subscriber;
// 0 (the default) never does.
func TestIdleTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runRelayOn(t, Config{IdleTimeout: 200 * time.Millisecond}, ln)

	dial := func(cmd string) (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		br := bufio.NewReader(c)
		io.WriteString(c, cmd+"\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		return c, br
	}

	idle, ibr := dial("PING")
	sub, sbr := dial("SUBSCRIBE news")
	for { // the rest of the subscribe reply, up to the count :1
		line, err := sbr.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, ":") {
			break
		}
	}
	start := time.Now()
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := ibr.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle client: read = %v, want EOF from the relay closing it", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("idle client closed after %v, want about 200ms", el)
	}
	// The subscriber stays silent for three timeouts: the relay keeps it,
	// so the read ends at our deadline, not with EOF.
	sub.SetReadDeadline(time.Now().Add(600 * time.Millisecond))
	if _, err := sbr.ReadByte(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("subscriber: read = %v, want our own deadline", err)
	}
	io.WriteString(sub, "PING\r\n")
	sub.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		line, err := sbr.ReadString('\n')
		if err != nil {
			t.Fatalf("subscriber was closed: %v", err)
		}
		if strings.HasPrefix(line, "$4") { // "pong"
			break
		}
	}
}
