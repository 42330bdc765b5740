package downstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"

	tresp "github.com/tidwall/resp"

	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/proxy/acl"
	"github.com/redis-relay/redis-relay/proxy/history"
	"github.com/redis-relay/redis-relay/proxy/settings"
)

// noUpstream is a relay with no upstream configured.
type noUpstream struct{}

func (noUpstream) MasterAddr() (string, <-chan struct{}) { return "", nil }
func (noUpstream) NoteDownstreamAck()                    {}
func (noUpstream) RefreshBlocked() string                { return "no upstream" }
func (noUpstream) AskRefresh() (<-chan struct{}, func() error) {
	ended := make(chan struct{})
	close(ended)
	return ended, func() error { return errors.New("no upstream") }
}

// stubCommands answers the commands the relay's admin handlers would with
// a plain reply and the effects that change how the server treats the
// connection (AUTH, QUIT, SUBSCRIBE, UNSUBSCRIBE), so that the server's
// own checks (NOAUTH, subscribed mode, MULTI) run as they do in the relay.
func stubCommands(name string) Handler {
	switch name {
	case "auth":
		return func(out []byte, _ ClientInfo, _ [][]byte) ([]byte, Effect) {
			return resp.AppendSimple(out, "OK"), Effect{Authenticated: true}
		}
	case "quit":
		return func(out []byte, _ ClientInfo, _ [][]byte) ([]byte, Effect) {
			return resp.AppendSimple(out, "OK"), Effect{Quit: true}
		}
	case "subscribe", "unsubscribe":
		n := 0
		if name == "subscribe" {
			n = 1
		}
		return func(out []byte, _ ClientInfo, _ [][]byte) ([]byte, Effect) {
			return resp.AppendInt(out, int64(n)), Effect{Subscribed: true, Subscriptions: n}
		}
	case "ping", "info", "role", "config", "client", "slaveof", "publish", "relay":
		return func(out []byte, _ ClientInfo, _ [][]byte) ([]byte, Effect) {
			return resp.AppendSimple(out, "OK"), Effect{}
		}
	}
	return nil
}

// FuzzClientCommands feeds arbitrary bytes to the downstream command reader
// and runs every command it yields, as a connection to the relay would,
// with stand-in handlers for the admin commands (the relay's own are
// fuzzed by proxy's FuzzAdminCommands). It checks that nothing panics, that
// memory stays bounded, and that every reply is well-formed RESP.
func FuzzClientCommands(f *testing.F) {
	for _, seed := range []string{
		"PING\r\n",
		"*1\r\n$4\r\nPING\r\n",
		"*3\r\n$8\r\nREPLCONF\r\n$14\r\nlistening-port\r\n$4\r\n6380\r\n",
		"*5\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n",
		"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n",
		"PSYNC 0123456789012345678901234567890123456789 100\r\n",
		"REPLCONF ack 100 fack 20\r\nREPLCONF getack *\r\n",
		"AUTH user pass\r\nAUTH x\r\n",
		"INFO replication\r\nROLE\r\nINFO everything\r\n",
		"CONFIG GET *\r\nCONFIG SET repl-timeout 30\r\nCONFIG SET retain-size 1gb\r\n",
		"MULTI\r\nSLAVEOF 127.0.0.1 1\r\nCLIENT KILL TYPE normal\r\nEXEC\r\n",
		"CLIENT LIST\r\nCLIENT SETNAME x\r\nCLIENT GETNAME\r\n",
		"SUBSCRIBE a b\r\nPING\r\nUNSUBSCRIBE\r\n",
		"PUBLISH __sentinel__:hello x\r\n",
		"RELAY GUARD RELEASE\r\n",
		"*2\r\n$4\r\nPING\r\n$100\r\nabc",
		"*99999999\r\n",
		"*1\r\n$4294967296\r\n",
	} {
		f.Add([]byte(seed))
	}
	cfg := settings.Config{DataDir: f.TempDir(), Logger: slog.New(slog.DiscardHandler)}
	cfg.FillDefaults()
	live := settings.NewLive(cfg)
	hist, err := history.Open(live, cfg.Logger)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { hist.Close() })
	users := acl.New()
	users.SetRequirePass("")
	srv := New(live, hist, noUpstream{}, users, cfg.Logger)
	srv.SetCommands(stubCommands, nil)

	f.Fuzz(func(t *testing.T, data []byte) {
		local, remote := net.Pipe()
		defer local.Close()
		defer remote.Close()
		c := &client{srv: srv, nc: local, br: bufio.NewReader(bytes.NewReader(data)), addr: "fuzz"}
		c.user = acl.DefaultUser
		c.publish()
		defer srv.ps.UnsubscribeAll(c)
		for range 64 {
			args, err := resp.ReadCommand(c.br)
			if err != nil {
				var pe resp.ProtocolError
				if !errors.As(err, &pe) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				return
			}
			for _, a := range args {
				if len(a) > resp.MaxBulk {
					t.Fatalf("argument of %d bytes passed the limit", len(a))
				}
			}
			if len(args) == 0 {
				continue
			}
			if name := string(bytes.ToLower(args[0])); name == "shutdown" {
				continue
			}
			c.out = c.out[:0]
			c.execute(args)
			checkReplies(t, c.out)
		}
	})
}

// checkReplies parses out as a sequence of RESP values.
func checkReplies(t *testing.T, out []byte) {
	t.Helper()
	rd := tresp.NewReader(bytes.NewReader(out))
	for {
		if _, _, err := rd.ReadValue(); err != nil {
			if err == io.EOF {
				return
			}
			t.Fatalf("malformed reply %q: %v", out, err)
		}
	}
}
