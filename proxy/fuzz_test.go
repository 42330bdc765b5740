package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	tresp "github.com/tidwall/resp"

	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/proxy/downstream"
)

// FuzzAdminCommands feeds arbitrary bytes to the command reader and runs
// every command it yields through its admin handler, as the server does
// for a connection (the server's own part, downstream's
// FuzzClientCommands, is fuzzed there). It checks that nothing panics and
// that every reply is well-formed RESP.
func FuzzAdminCommands(f *testing.F) {
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
	relay, err := New(Config{DataDir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { relay.Close() })

	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		who := downstream.ClientInfo{ID: 1, Addr: "fuzz", Sub: &messages{}}
		defer relay.srv.PubSub().UnsubscribeAll(who.Sub)
		for range 64 {
			args, err := resp.ReadCommand(br)
			if err != nil {
				var pe resp.ProtocolError
				if !errors.As(err, &pe) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				return
			}
			if len(args) == 0 {
				continue
			}
			name := string(bytes.ToLower(args[0]))
			h := relay.admin.Handler(name)
			if h == nil || name == "shutdown" {
				continue
			}
			out, _ := h(nil, who, args)
			checkReplies(t, out)
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
