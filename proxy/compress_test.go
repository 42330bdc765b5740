package proxy

import (
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
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

// TestCompressionOverThrottledLink: the same full sync between two relays
// over a 1 MB/s link, plain and compressed. Both end in sync; the times
// say what compression buys on a slow link (logged, not asserted: the
// machine's load decides them).
func TestCompressionOverThrottledLink(t *testing.T) {
	master := redistest.Start(t)
	// Documents of words from a small vocabulary: little repetition inside
	// one value (the RDB's own LZF gains little), much across values.
	words := strings.Fields("order status shipped carrier acme pending delivered customer address street city zip country price total tax item quantity warehouse region north south east west priority standard express returned refund invoice paid")
	rng := mrand.New(mrand.NewPCG(1, 2))
	c := master.Client()
	for i := range 5000 {
		var b strings.Builder
		for b.Len() < 1000 {
			b.WriteString(words[rng.IntN(len(words))])
			b.WriteByte(' ')
		}
		if err := c.Set(t.Context(), fmt.Sprint("doc:", i), b.String(), 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	r1 := startRelay(t, master.Addr())
	waitRelaySnapshot(t, r1)
	size := r1.Status().Snapshot.Size
	for _, level := range []string{"no", "yes"} {
		link := redistest.NewFaultProxy(t, r1.Addr())
		link.SetRate(1 << 20)
		start := time.Now()
		r2 := startRelay(t, link.Addr(), func(c *Config) { c.UpstreamCompression = level })
		leaf := replicaOf(t, r2.HostPort)
		inSync(t, 60*time.Second, master, leaf)
		t.Logf("upstream-compression %s: a %d-byte snapshot through a 1 MB/s link in %v (%d wire bytes)",
			level, size, time.Since(start).Round(time.Millisecond), r2.Status().CompressedInWire)
		leaf.Kill()
		r2.Stop()
	}
}
