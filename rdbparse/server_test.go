package rdbparse

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// TestRegenerateTestdata rewrites testdata/small.rdb from a live server.
// It only runs with RDBPARSE_REGEN=1.
func TestRegenerateTestdata(t *testing.T) {
	if os.Getenv("RDBPARSE_REGEN") != "1" {
		t.Skip("set RDBPARSE_REGEN=1 to regenerate testdata/small.rdb")
	}
	srv := redistest.Start(t)
	c := client(t, srv)
	populate(t, c, false)
	data, err := os.ReadFile(saveRDB(t, srv, c))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", "small.rdb"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d bytes", len(data))
}

// checkAgainstServer compares a summary with the live server's keyspace.
func checkAgainstServer(t *testing.T, s *Summary, c *respConn, types map[string]int64) {
	t.Helper()
	ks := c.keyspace(t)
	if len(s.DBs) != len(ks) {
		t.Errorf("summary has %d databases, server %d: %+v vs %v", len(s.DBs), len(ks), s.DBs, ks)
	}
	var total int64
	for _, d := range s.DBs {
		want := ks[d.DB]
		if d.Keys != want[0] || d.Expires != want[1] {
			t.Errorf("db %d: keys %d expires %d, server says %d/%d", d.DB, d.Keys, d.Expires, want[0], want[1])
		}
		total += d.Keys
	}
	if total != s.Keys {
		t.Errorf("db keys add up to %d, Keys is %d", total, s.Keys)
	}
	for typ, n := range types {
		if got := s.Types[typ]; got.Count != n || got.MemBytes == 0 || got.Bytes == 0 {
			t.Errorf("type %s: %+v, want count %d", typ, got, n)
		}
	}
	if s.Functions != 1 {
		t.Errorf("functions = %d, want 1", s.Functions)
	}
	if s.Version != 10 || !strings.HasPrefix(s.RedisVer, "7.") {
		t.Errorf("version %d, redis-ver %q", s.Version, s.RedisVer)
	}
	if !s.Complete || s.Unparsed != "" {
		t.Errorf("complete %v, unparsed %q", s.Complete, s.Unparsed)
	}
}

func TestParseRedisSnapshot(t *testing.T) {
	srv := redistest.Start(t)
	c := client(t, srv)
	types := populate(t, c, true)
	path := saveRDB(t, srv, c)
	s, err := ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	checkAgainstServer(t, s, c, types)
	if s.Checksum != ChecksumOK || s.StoredCRC != s.ComputedCRC || s.StoredCRC == 0 {
		t.Errorf("checksum %s stored %#x computed %#x", s.Checksum, s.StoredCRC, s.ComputedCRC)
	}
	st, _ := os.Stat(path)
	if s.Size != st.Size() {
		t.Errorf("size %d, file %d", s.Size, st.Size())
	}
	if s.Types["stream"].Elements != 30+1 {
		t.Errorf("stream entries = %d, want 31", s.Types["stream"].Elements)
	}

	h, err := ReadHeader(bytes.NewReader(mustRead(t, path)))
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != 10 || h.RedisVer() != s.RedisVer || h.Aux["redis-bits"] != "64" || h.Len <= 9 {
		t.Errorf("header %+v", h)
	}
}

func TestParseRedisNoCompressionNoChecksum(t *testing.T) {
	srv := redistest.Start(t, "--rdbchecksum", "no")
	c := client(t, srv)
	c.must(t, "CONFIG", "SET", "rdbcompression", "no")
	types := populate(t, c, true)
	s, err := ParseFile(saveRDB(t, srv, c))
	if err != nil {
		t.Fatal(err)
	}
	checkAgainstServer(t, s, c, types)
	if s.Checksum != ChecksumDisabled || s.StoredCRC != 0 {
		t.Errorf("checksum %s stored %#x", s.Checksum, s.StoredCRC)
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fullSync performs PSYNC ? -1 on a fresh connection and returns the
// +FULLRESYNC reply's id and offset with the connection positioned at the
// payload's bulk header.
func fullSync(t *testing.T, srv *redistest.Server, capaEOF bool) (*respConn, string, int64) {
	t.Helper()
	c, err := dialRESP(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	if capaEOF {
		c.must(t, "REPLCONF", "capa", "eof", "capa", "psync2")
	}
	if err := c.send("PSYNC", "?", "-1"); err != nil {
		t.Fatal(err)
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := c.line()
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "+FULLRESYNC" {
		t.Fatalf("PSYNC reply %q", line)
	}
	off, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return c, f[1], off
}

// bulkHeader skips the newlines a master sends while it prepares the
// snapshot and returns the "$..." line that announces it.
func bulkHeader(t *testing.T, c *respConn) string {
	t.Helper()
	for {
		b, err := c.br.ReadByte()
		if err != nil {
			t.Fatal(err)
		}
		if b == '\n' {
			continue
		}
		if err := c.br.UnreadByte(); err != nil {
			t.Fatal(err)
		}
		line, err := c.line()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(line, "$") {
			t.Fatalf("payload header %q", line)
		}
		return line[1:]
	}
}

// The relay's use: the snapshot of a full sync carries the replication ID
// and offset of the +FULLRESYNC reply in its aux fields.
func TestFullSyncHeaderMatchesFullResync(t *testing.T) {
	srv := redistest.Start(t, "--repl-diskless-sync", "no")
	c := client(t, srv)
	populate(t, c, false)

	t.Run("disk", func(t *testing.T) {
		sc, id, off := fullSync(t, srv, false)
		n, err := strconv.ParseInt(bulkHeader(t, sc), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(io.LimitReader(sc.br, n))
		h, err := ReadHeader(br)
		if err != nil {
			t.Fatal(err)
		}
		checkReplHeader(t, h, id, off)
		if next, err := br.Peek(1); err != nil || next[0] == opAux {
			t.Errorf("ReadHeader did not stop at the first non-aux record: %v %v", next, err)
		}
	})

	t.Run("disk-parse", func(t *testing.T) {
		sc, id, off := fullSync(t, srv, false)
		n, err := strconv.ParseInt(bulkHeader(t, sc), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ParseSized(io.LimitReader(sc.br, n), n)
		if err != nil {
			t.Fatal(err)
		}
		if s.ReplID != id || !s.HasReplOffset || s.ReplOffset != off || s.Checksum != ChecksumOK || s.Size != n {
			t.Errorf("summary repl %q/%d checksum %s size %d; want %q/%d size %d", s.ReplID, s.ReplOffset, s.Checksum, s.Size, id, off, n)
		}
	})

	t.Run("diskless", func(t *testing.T) {
		c.must(t, "CONFIG", "SET", "repl-diskless-sync", "yes")
		c.must(t, "CONFIG", "SET", "repl-diskless-sync-delay", "0")
		sc, id, off := fullSync(t, srv, true)
		hdr := bulkHeader(t, sc)
		mark, ok := strings.CutPrefix(hdr, "EOF:")
		if !ok || len(mark) != 40 {
			t.Fatalf("diskless header %q", hdr)
		}
		// Parse straight off the socket, as the relay would while the
		// snapshot is still arriving.
		s, err := Parse(&eofMarkReader{r: sc.br, mark: []byte(mark)})
		if err != nil {
			t.Fatal(err)
		}
		if s.ReplID != id || s.ReplOffset != off || s.Checksum != ChecksumOK || !s.Complete || s.Functions != 1 {
			t.Errorf("diskless summary: %+v; want %q/%d", s, id, off)
		}
	})
}

func checkReplHeader(t *testing.T, h *Header, id string, off int64) {
	t.Helper()
	if h.ReplID() != id {
		t.Errorf("repl-id %q, FULLRESYNC said %q", h.ReplID(), id)
	}
	if got, ok := h.ReplOffset(); !ok || got != off {
		t.Errorf("repl-offset %d (%v), FULLRESYNC said %d", got, ok, off)
	}
	if db, ok := h.ReplStreamDB(); !ok || db < 0 {
		t.Errorf("repl-stream-db %d (%v)", db, ok)
	}
}

// eofMarkReader yields a diskless payload up to its 40 byte end mark,
// holding back 40 bytes so the mark itself is never passed on.
type eofMarkReader struct {
	r    io.Reader
	mark []byte
	buf  []byte
	done bool
}

func (e *eofMarkReader) Read(p []byte) (int, error) {
	for !e.done && len(e.buf) <= len(e.mark) {
		chunk := make([]byte, 4096)
		n, err := e.r.Read(chunk)
		e.buf = append(e.buf, chunk[:n]...)
		if len(e.buf) >= len(e.mark) && bytes.Equal(e.buf[len(e.buf)-len(e.mark):], e.mark) {
			e.buf = e.buf[:len(e.buf)-len(e.mark)]
			e.done = true
		}
		if err != nil && !e.done {
			return 0, fmt.Errorf("payload ended before its mark: %w", err)
		}
	}
	if e.done && len(e.buf) == 0 {
		return 0, io.EOF
	}
	avail := len(e.buf)
	if !e.done {
		avail -= len(e.mark)
	}
	n := copy(p, e.buf[:avail])
	e.buf = e.buf[n:]
	return n, nil
}

// A master with a replica attached saves its replication identity.
func TestReplicaAttachedSave(t *testing.T) {
	master := redistest.Start(t, "--repl-diskless-sync-delay", "0")
	mc := client(t, master)
	populate(t, mc, false)
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	rc := client(t, replica)
	deadline := time.Now().Add(20 * time.Second)
	for rc.info(t, "replication")["master_link_status"] != "up" {
		if time.Now().After(deadline) {
			t.Fatal("replica did not sync")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The fork that fed the replica may outlive the sync; SAVE refuses to
	// run beside it.
	for mc.info(t, "persistence")["rdb_bgsave_in_progress"] != "0" {
		if time.Now().After(deadline) {
			t.Fatal("the master's sync fork did not end")
		}
		time.Sleep(50 * time.Millisecond)
	}
	mc.must(t, "SET", "after-sync", "1")
	path := saveRDB(t, master, mc)
	info := mc.info(t, "replication")
	h, err := ReadHeader(bytes.NewReader(mustRead(t, path)))
	if err != nil {
		t.Fatal(err)
	}
	if h.ReplID() != info["master_replid"] {
		t.Errorf("repl-id %q, master_replid %q", h.ReplID(), info["master_replid"])
	}
	off, ok := h.ReplOffset()
	now, _ := strconv.ParseInt(info["master_repl_offset"], 10, 64)
	if !ok || off <= 0 || off > now {
		t.Errorf("repl-offset %d (%v), master_repl_offset %d", off, ok, now)
	}

	// redis-cli --rdb fetches the same kind of snapshot over the wire.
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatal("redis-cli not found: apt-get install -y redis-tools")
	}
	out := filepath.Join(t.TempDir(), "cli.rdb")
	if msg, err := exec.Command(cli, "-p", strconv.Itoa(master.Port), "--rdb", out).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --rdb: %v\n%s", err, msg)
	}
	s, err := ParseFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if s.ReplID != info["master_replid"] || !s.HasReplOffset || s.Checksum != ChecksumOK {
		t.Errorf("redis-cli dump: repl-id %q offset %d/%v checksum %s", s.ReplID, s.ReplOffset, s.HasReplOffset, s.Checksum)
	}
}
