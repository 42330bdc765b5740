package replstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tidwall/resp"
)

const benchChunk = 16 << 10

// benchChunkData is 16 KiB of whole SET commands (the last one padded to
// fill the chunk exactly), so every Append ends on a command boundary.
func benchChunkData() []byte {
	var b []byte
	for i := 0; ; i++ {
		cmd := encodeCmd("SET", fmt.Sprintf("key:%d", i), string(bytes.Repeat([]byte("v"), 100)))
		if len(b)+len(cmd) > benchChunk-200 {
			break
		}
		b = append(b, cmd...)
	}
	// A last command sized so that the chunk is exactly benchChunk bytes.
	for pad := 0; ; pad++ {
		last := encodeCmd("SET", "pad", string(bytes.Repeat([]byte("p"), pad)))
		if len(b)+len(last) == benchChunk {
			return append(b, last...)
		}
		if len(b)+len(last) > benchChunk {
			panic("cannot pad the benchmark chunk")
		}
	}
}

func benchLog(b *testing.B) *Log {
	b.Helper()
	l, err := CreateLog(b.TempDir(), 1, LogOptions{RingSize: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

// BenchmarkLogAppend appends 16 KiB chunks to a log with a 64 MiB ring and
// the default 64 MiB segments (so each roll's fsync is included).
func BenchmarkLogAppend(b *testing.B) {
	chunk := benchChunkData()
	l := benchLog(b)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Append(chunk, true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLogFanout appends 16 KiB chunks while N cursors read everything.
// MB/s is the aggregate read throughput (N times the appended bytes); the
// appender waits when the slowest reader falls more than maxLag behind, so
// the readers really keep up.
func BenchmarkLogFanout(b *testing.B) {
	for _, n := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("cursors=%d", n), func(b *testing.B) { benchFanout(b, n) })
	}
}

func benchFanout(b *testing.B, readers int) {
	const maxLag = 8 << 20
	chunk := benchChunkData()
	l := benchLog(b)
	pos := make([]atomic.Int64, readers)
	var total atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for r := range readers {
		c, err := l.Cursor(1)
		if err != nil {
			b.Fatal(err)
		}
		pos[r].Store(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(ctx, buf)
				if err != nil {
					if !errors.Is(err, context.Canceled) && !errors.Is(err, ErrClosed) {
						b.Error(err)
					}
					return
				}
				total.Add(int64(n))
				pos[r].Store(c.Offset())
			}
		}()
	}
	slowest := func() Offset {
		m := pos[0].Load()
		for i := range pos {
			m = min(m, pos[i].Load())
		}
		return m
	}
	b.SetBytes(int64(len(chunk) * readers))
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Append(chunk, true); err != nil {
			b.Fatal(err)
		}
		_, next := l.Range()
		for next-slowest() > maxLag {
			runtime.Gosched()
		}
	}
	_, next := l.Range()
	for slowest() < next {
		runtime.Gosched()
	}
	cancel()
	wg.Wait()
	if want := int64(next-1) * int64(readers); total.Load() != want {
		b.Fatalf("readers read %d bytes, want %d", total.Load(), want)
	}
}

// setBenchStream is about 1 MiB of "SET key:<i> <100-byte value>".
func setBenchStream() []byte { return setStream(1<<20/140, 100) }

// BenchmarkFramer frames a stream of SET commands with 100-byte values, fed
// in 16 KiB reads as from a socket.
func BenchmarkFramer(b *testing.B) {
	stream := setBenchStream()
	want := 1 << 20 / 140
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		f := NewFramer(1, DefaultLimits)
		cmds := 0
		count := func(*Command) { cmds++ }
		for at := 0; at < len(stream); at += benchChunk {
			if _, err := f.Feed(stream[at:min(at+benchChunk, len(stream))], count); err != nil {
				b.Fatal(err)
			}
		}
		if cmds != want {
			b.Fatalf("%d commands, want %d", cmds, want)
		}
	}
}

// BenchmarkTidwallResp parses the same stream with tidwall/resp, which
// materializes every argument, for comparison.
func BenchmarkTidwallResp(b *testing.B) {
	stream := setBenchStream()
	want := 1 << 20 / 140
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		rd := resp.NewReader(bytes.NewReader(stream))
		cmds := 0
		for {
			_, _, _, err := rd.ReadMultiBulk()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			cmds++
		}
		if cmds != want {
			b.Fatalf("%d commands, want %d", cmds, want)
		}
	}
}
