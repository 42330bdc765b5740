package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/rdbparse"
)

// TestSnapshotSourceMustProveHistory: a snapshot source that answers
// +FULLRESYNC with the master's own replid and offset, and then sends an
// RDB that does not carry them (no repl-id, no repl-offset, or other
// values), is refused with a log line and a counter; the relay takes the
// master's snapshot instead, its replica gets the master's data, not the
// source's. The source, a hostile peer played by this test, records every
// byte it receives: the master's password is never among them.
func TestSnapshotSourceMustProveHistory(t *testing.T) {
	const masterPass, sourcePass = "master-s3cret", "source-s3cret"
	master := redistest.Start(t, "--requirepass", masterPass)
	master.Do(t, "DEBUG", "POPULATE", "2000", "db0:str", "32")
	// A replica gives the master a backlog, so the master would continue
	// after any offset of its history the source names.
	spare := replicaOf(t, master.HostPort, "--masterauth", masterPass)
	inSync(t, 30*time.Second, master, spare)

	for _, tc := range []struct {
		name string
		aux  func(replid string, offset int64) map[string]string
		says string // in the log line
	}{
		{"no repl-id", func(_ string, off int64) map[string]string {
			return map[string]string{"repl-offset": strconv.FormatInt(off, 10)}
		}, "no repl-id aux field"},
		{"no repl-offset", func(id string, _ int64) map[string]string {
			return map[string]string{"repl-id": id}
		}, "no repl-offset aux field"},
		{"other repl-id", func(_ string, off int64) map[string]string {
			return map[string]string{"repl-id": strings.Repeat("ab", 20), "repl-offset": strconv.FormatInt(off, 10)}
		}, "the RDB says " + strings.Repeat("ab", 20)},
		{"other repl-offset", func(id string, off int64) map[string]string {
			return map[string]string{"repl-id": id, "repl-offset": strconv.FormatInt(off-1, 10)}
		}, "+FULLRESYNC said"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := startFakeSource(t, func() (string, int64, []byte) {
				info := master.Info(t, "replication")
				off, _ := strconv.ParseInt(info["master_repl_offset"], 10, 64)
				return info["master_replid"], off, fakeRDB(tc.aux(info["master_replid"], off))
			})
			var logs syncBuffer
			relay := startRelay(t, master.Addr(), func(c *Config) {
				c.MasterAuth = masterPass
				c.SnapshotSource = src.addr
				c.SnapshotSourcePassword = sourcePass
				c.SnapshotSourceFallback = true
				c.RefreshRatio = -1
				c.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), &logs), nil))
			})
			leaf := replicaOf(t, relay.HostPort)
			master.Do(t, "SET", "after", tc.name)
			inSync(t, 30*time.Second, master, leaf)
			if n := relay.InfoInt(t, "snapshot_source_unproven"); n != 1 {
				t.Errorf("snapshot_source_unproven = %d, want 1", n)
			}
			if n := relay.InfoInt(t, "snapshot_source_fallbacks"); n != 1 {
				t.Errorf("snapshot_source_fallbacks = %d, want 1", n)
			}
			if n := relay.InfoInt(t, "master_forks_avoided"); n != 0 {
				t.Errorf("master_forks_avoided = %d, want 0: the source's snapshot was used", n)
			}
			if from := relay.InfoField(t, "snapshot_from"); from != "master" {
				t.Errorf("snapshot_from %q, want master", from)
			}
			if n := relay.InfoInt(t, "sync_full"); n != 1 {
				t.Errorf("relay sync_full = %d, want 1: the leaf saw the source's snapshot first", n)
			}
			if n := leaf.Client().Exists(t.Context(), "fake:key").Val(); n != 0 {
				t.Error("the leaf holds the source's key")
			}
			line := logs.lineWith("snapshot source not used")
			if !strings.Contains(line, "does not prove") || !strings.Contains(line, tc.says) {
				t.Errorf("log line %q, want one saying the RDB does not prove its history (%q)", line, tc.says)
			}
			got := src.received()
			if !bytes.Contains(got, []byte(sourcePass)) || !bytes.Contains(got, []byte("PSYNC")) {
				t.Fatalf("the source did not receive AUTH %s and PSYNC: %q", sourcePass, got)
			}
			if bytes.Contains(got, []byte(masterPass)) {
				t.Errorf("the master's password reached the snapshot source: %q", got)
			}
		})
	}
}

// TestSnapshotSourceRefreshMustProveHistory: a client that may run CONFIG
// SET points snapshot-source at a server of its own, which offers a
// refresh under the relay's replid and a newer offset, in an RDB without
// repl-id. The relay keeps its snapshot, and a replica that full-syncs
// afterwards gets the master's data.
func TestSnapshotSourceRefreshMustProveHistory(t *testing.T) {
	const masterPass = "master-s3cret"
	master := redistest.Start(t, "--requirepass", masterPass)
	master.Do(t, "DEBUG", "POPULATE", "2000", "db0:str", "32")
	relay := startRelay(t, master.Addr(), func(c *Config) { c.MasterAuth = masterPass })
	leaf := replicaOf(t, relay.HostPort)
	inSync(t, 30*time.Second, master, leaf)
	before := relay.Status().Snapshot.Offset
	for i := range 200 {
		master.Do(t, "SET", fmt.Sprint("w:", i), i)
	}
	waitOffsets(t, master, relay)
	src := startFakeSource(t, func() (string, int64, []byte) {
		info := master.Info(t, "replication")
		off, _ := strconv.ParseInt(info["master_repl_offset"], 10, 64)
		return info["master_replid"], off, fakeRDB(map[string]string{"repl-offset": strconv.FormatInt(off, 10)})
	})
	if err := relay.Client().Do(t.Context(), "CONFIG", "SET", "snapshot-source", src.addr, "refresh-ratio", "0.0001", "refresh-min-size", "1").Err(); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 30*time.Second, func() error {
		if n := relay.InfoInt(t, "snapshot_source_unproven"); n < 1 {
			return fmt.Errorf("no refusal yet (refreshes %d, failures %d)", relay.InfoInt(t, "snapshot_refreshes"), relay.InfoInt(t, "snapshot_refresh_failures"))
		}
		return nil
	})
	relay.Client().Do(t.Context(), "CONFIG", "SET", "refresh-ratio", "-1")
	if n := relay.InfoInt(t, "snapshot_refreshes"); n != 0 {
		t.Errorf("snapshot_refreshes = %d, want 0", n)
	}
	if off := relay.Status().Snapshot.Offset; off != before {
		t.Errorf("snapshot offset %d, want %d: the source's snapshot replaced it", off, before)
	}
	late := replicaOf(t, relay.HostPort)
	inSync(t, 30*time.Second, master, late)
	if got := src.received(); bytes.Contains(got, []byte(masterPass)) {
		t.Errorf("the master's password reached the snapshot source: %q", got)
	}
}

// fakeSource is a snapshot source played by the test: it answers the
// replication handshake, then +FULLRESYNC and an RDB from offer, and
// closes. It records every byte it receives.
type fakeSource struct {
	addr  string
	mu    sync.Mutex
	bytes []byte
}

func startFakeSource(t *testing.T, offer func() (replid string, offset int64, rdb []byte)) *fakeSource {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSource{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			stop := context.AfterFunc(t.Context(), func() { nc.Close() })
			wg.Go(func() {
				defer stop()
				defer nc.Close()
				f.serve(nc, offer)
			})
		}
	})
	return f
}

func (f *fakeSource) serve(nc net.Conn, offer func() (string, int64, []byte)) {
	br := bufio.NewReader(io.TeeReader(nc, f))
	for {
		args, err := resp.ReadCommand(br)
		if err != nil {
			return
		}
		var reply []byte
		switch strings.ToLower(string(args[0])) {
		case "ping":
			reply = resp.AppendSimple(nil, "PONG")
		case "auth", "replconf":
			reply = resp.AppendSimple(nil, "OK")
		case "psync", "sync":
			replid, offset, rdb := offer()
			reply = fmt.Appendf(nil, "+FULLRESYNC %s %d\r\n$%d\r\n", replid, offset, len(rdb))
			reply = append(reply, rdb...)
			nc.Write(reply)
			return
		default:
			reply = resp.AppendError(nil, "ERR unknown command")
		}
		if _, err := nc.Write(reply); err != nil {
			return
		}
	}
}

// Write records bytes the source received.
func (f *fakeSource) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bytes = append(f.bytes, p...)
	return len(p), nil
}

func (f *fakeSource) received() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.bytes)
}

// fakeRDB is a valid RDB (version 10, checksummed) with the given aux
// fields and one key, fake:key, that the master does not have.
func fakeRDB(aux map[string]string) []byte {
	str := func(b []byte, s string) []byte { // lengths below 64 only
		return append(append(b, byte(len(s))), s...)
	}
	b := []byte("REDIS0010")
	b = str(str(append(b, 0xFA), "redis-ver"), "7.0.15")
	for _, k := range []string{"repl-id", "repl-offset"} {
		if v, ok := aux[k]; ok {
			b = str(str(append(b, 0xFA), k), v)
		}
	}
	b = append(b, 0xFE, 0) // RDB_OPCODE_SELECTDB 0
	b = str(str(append(b, 0), "fake:key"), "from the snapshot source")
	b = append(b, 0xFF) // RDB_OPCODE_EOF
	return binary.LittleEndian.AppendUint64(b, rdbparse.CRC64(b))
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lineWith returns the first line that contains sub, or "".
func (s *syncBuffer) lineWith(sub string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for line := range strings.Lines(s.b.String()) {
		if strings.Contains(line, sub) {
			return line
		}
	}
	return ""
}
