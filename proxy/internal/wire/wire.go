package wire

import (
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
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

// CapaZstd is the REPLCONF capa a relay offers for a compressed link.
const CapaZstd = "relay-zstd"

// ZstdLevelOption is the REPLCONF option a relay sends with the level it
// wants its compressed link at (fastest, default, better, best).
const ZstdLevelOption = "relay-zstd-level"

// RDBCurrentOption is the REPLCONF option ("relay-rdb-current 1") a relay
// sends beside "rdb-only 1" when it refreshes its snapshot for a tool that
// needs the current data (redis-cli --rdb): the relay above then gives it
// a snapshot holding everything it had received when asked, refreshing its
// own first if need be, as it would for the tool itself, instead of any
// snapshot. A stock master forks a current snapshot for every full sync
// and answers the unknown option with an error, which is ignored.
const RDBCurrentOption = "relay-rdb-current"

// CompressionWord ends a +FULLRESYNC or +CONTINUE line when what follows
// is compressed.
const CompressionWord = "zstd"

// LevelName is the name a level is asked for by.
func LevelName(l zstd.EncoderLevel) string {
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

// LinkBytes counts one direction of compressed links: bytes of stream and
// bytes on the wire.
type LinkBytes struct {
	Stream atomic.Int64
	Wire   atomic.Int64
}

// CountingWriter counts what goes to the wire.
type CountingWriter struct {
	W io.Writer
	N *atomic.Int64
}

func (c CountingWriter) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.N.Add(int64(n))
	return n, err
}

// CountingReader counts what comes from the wire.
type CountingReader struct {
	R io.Reader
	N *atomic.Int64
}

func (c CountingReader) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N.Add(int64(n))
	return n, err
}

// ProgressWriter counts bytes written through it and logs the progress of
// a long transfer every ProgressEvery: bytes done and total, rate and ETA.
type ProgressWriter struct {
	W      io.Writer     // where the bytes go; nil when only Count is used
	N      *atomic.Int64 // bytes done
	Also   *atomic.Int64 // optional second counter
	Total  int64         // -1 when unknown (EOF-framed transfer)
	Logger *slog.Logger
	What   string // the log line's message
	start  time.Time
	last   time.Time
}

// ProgressEvery is how often a ProgressWriter logs.
const ProgressEvery = 5 * time.Second

func (p *ProgressWriter) Write(b []byte) (int, error) {
	n, err := p.W.Write(b)
	p.Count(n)
	return n, err
}

// Count records n more bytes, and logs the progress when it is time.
func (p *ProgressWriter) Count(n int) {
	done := p.N.Add(int64(n))
	if p.Also != nil {
		p.Also.Add(int64(n))
	}
	if now := time.Now(); now.Sub(p.last) >= ProgressEvery {
		if p.last.IsZero() {
			p.start, p.last = now, now
			return
		}
		p.last = now
		rate := float64(done) / now.Sub(p.start).Seconds()
		args := []any{"bytes", done, "rate_mb_s", fmt.Sprintf("%.1f", rate/1e6)}
		if p.Total > 0 && rate > 0 {
			eta := time.Duration(float64(p.Total-done) / rate * float64(time.Second))
			args = append(args, "total", p.Total, "percent", fmt.Sprintf("%.1f", 100*float64(done)/float64(p.Total)), "eta", eta.Round(time.Second))
		}
		p.Logger.Info(p.What, args...)
	}
}
