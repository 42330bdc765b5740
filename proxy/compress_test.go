package proxy

import (
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/proxy/redistest"
)

// TestCompressedRelayChain: relay R2 follows relay R1 over a zstd link.
// The leaf behind R2 has the master's data and offsets; the link survives
// a cut and a restart of R2 with partial resyncs; text compresses, random
// bytes cost little more than themselves.
func TestCompressedRelayChain(t *testing.T) {
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	populate(t, master, 0, 5000)
	r1 := startRelay(t, master.Addr())
	link := redistest.NewFaultProxy(t, r1.Addr())
	r2 := startRelay(t, link.Addr(), func(c *Config) { c.UpstreamCompression = "yes" })
	leaf := replicaOf(t, r2.HostPort)
	inSync(t, 30*time.Second, master, leaf)
	if got := r2.InfoField(t, "master_link_compression"); got != "zstd" {
		t.Fatalf("R2 master_link_compression %q, want zstd", got)
	}
	text := strings.Repeat("the quick brown fox jumps over the lazy dog ", 200)
	for i := range 200 {
		master.Do(t, "SET", fmt.Sprint("text:", i), text+fmt.Sprint(i))
	}
	writeKeys(t, master, 1, 500)
	inSync(t, 30*time.Second, master, leaf)
	waitOffsets(t, master, r2, leaf)
	stream, wire := r2.InfoInt(t, "compressed_in_stream_bytes"), r2.InfoInt(t, "compressed_in_wire_bytes")
	t.Logf("text-heavy: %d bytes of stream and snapshot in %d bytes on the wire (%.1fx)", stream, wire, float64(stream)/float64(wire))
	if stream == 0 || wire*2 > stream {
		t.Errorf("compressed link: %d stream bytes in %d wire bytes, want at least 2x", stream, wire)
	}
	if out := r1.InfoInt(t, "compressed_out_stream_bytes"); out != stream {
		t.Errorf("R1 sent %d stream bytes compressed, R2 received %d", out, stream)
	}

	// Random values: the worst case.
	before, beforeWire := stream, wire
	for i := range 50 {
		b := make([]byte, 20000)
		rand.Read(b)
		master.Do(t, "SET", fmt.Sprint("random:", i), b)
	}
	waitOffsets(t, master, r2, leaf)
	stream, wire = r2.InfoInt(t, "compressed_in_stream_bytes")-before, r2.InfoInt(t, "compressed_in_wire_bytes")-beforeWire
	t.Logf("random bytes: %d bytes of stream in %d bytes on the wire (%+.2f%%)", stream, wire, 100*(float64(wire)/float64(stream)-1))
	if wire > stream+stream/50 {
		t.Errorf("random stream: %d wire bytes for %d stream bytes, more than 2%% overhead", wire, stream)
	}

	// A cut link and a restart of R2 under load: partial resyncs, no
	// full sync below R1, same data.
	load := startLoad(t, master)
	time.Sleep(500 * time.Millisecond)
	link.CutAll()
	time.Sleep(500 * time.Millisecond)
	r2.Restart()
	time.Sleep(500 * time.Millisecond)
	load.Stop(t)
	inSync(t, 30*time.Second, master, leaf)
	waitOffsets(t, master, r2, leaf)
	if n := r1.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("R1 served %d full syncs, want 1 (R2's first)", n)
	}
	if n := r1.InfoInt(t, "sync_partial_ok"); n < 2 {
		t.Errorf("R1 sync_partial_ok = %d, want 2 (the cut and the restart)", n)
	}
	if got := r2.InfoField(t, "master_link_compression"); got != "zstd" {
		t.Errorf("after the restart R2 master_link_compression %q, want zstd", got)
	}
}

// TestCompressionRefused: a relay with serve-compression no, and a stock
// master, give a relay that asks for compression a plain link.
func TestCompressionRefused(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 1000)
	r1 := startRelay(t, master.Addr(), func(c *Config) { c.NoServeCompression = true; c.UpstreamCompression = "yes" })
	r2 := startRelay(t, r1.Addr(), func(c *Config) { c.UpstreamCompression = "best" })
	leaf := replicaOf(t, r2.HostPort)
	inSync(t, 30*time.Second, master, leaf)
	for _, r := range []*testRelay{r1, r2} {
		if got := r.InfoField(t, "master_link_compression"); got != "none" {
			t.Errorf("master_link_compression %q, want none", got)
		}
	}
}
