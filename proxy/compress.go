package proxy

import (
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/redis-relay/redis-relay/proxy/settings"
)

// Compressed relay-to-relay links. A relay that follows another relay
// offers "REPLCONF capa relay-zstd" in its handshake, a capability stock
// Redis never sends and a stock master ignores. A relay that serves it
// (serve-compression yes) answers +FULLRESYNC or +CONTINUE with a last
// word, "zstd", and from the end of that line on sends everything (the
// snapshot's framing and payload, the stream) as one zstd stream, flushed
// after every write so that a quiet link adds no latency. The follower
// decompresses and stores the same bytes as over a plain link, so
// replication IDs and offsets stay the master's at every level. ACKs go
// back uncompressed.

const capaZstd = "relay-zstd"

// zstdLevelOption is the REPLCONF option a relay sends with the level it
// wants its compressed link at (fastest, default, better, best).
const zstdLevelOption = "relay-zstd-level"

// compressionWord ends a +FULLRESYNC or +CONTINUE line when what follows
// is compressed.
const compressionWord = "zstd"

// levelName is the name a level is asked for by.
func levelName(l zstd.EncoderLevel) string {
	switch l {
	case zstd.SpeedFastest:
		return "fastest"
	case zstd.SpeedBetterCompression:
		return "better"
	case zstd.SpeedBestCompression:
		return "best"
	}
	return "default"
}

// linkBytes counts one direction of compressed links: bytes of stream and
// bytes on the wire.
type linkBytes struct {
	stream atomic.Int64
	wire   atomic.Int64
}

// countingWriter counts what goes to the wire.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// countingReader counts what comes from the wire.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// deadlineWriter writes to a connection with a write deadline per write.
type deadlineWriter struct {
	nc      net.Conn
	timeout func() time.Duration
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.nc.SetWriteDeadline(time.Now().Add(d.timeout()))
	return d.nc.Write(p)
}

// ParseCompression checks an upstream-compression value: whether it asks
// for compression, and at which zstd level.
func ParseCompression(v string) (level zstd.EncoderLevel, on bool, err error) {
	return settings.CompressionLevel(v)
}
