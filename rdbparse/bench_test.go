package rdbparse

import (
	"os"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// envInt reads a positive integer setting from the environment.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkParse parses a snapshot made by a real server with DEBUG
// POPULATE: RDBPARSE_BENCH_KEYS keys (default 1,000,000) with values of
// RDBPARSE_BENCH_VALUE bytes (default 80), saved uncompressed, which comes
// to about 100 MB. It reports throughput and the peak live heap.
func BenchmarkParse(b *testing.B) {
	keys := envInt("RDBPARSE_BENCH_KEYS", 1_000_000)
	valueSize := envInt("RDBPARSE_BENCH_VALUE", 80)
	srv := redistest.Start(b)
	c := client(b, srv)
	c.must(b, "CONFIG", "SET", "rdbcompression", "no")
	c.must(b, "DEBUG", "POPULATE", keys, "key", valueSize)
	path := saveRDB(b, srv, c)
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())
	b.ReportAllocs()

	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	for b.Loop() {
		s, err := ParseFile(path)
		if err != nil {
			b.Fatal(err)
		}
		if s.Keys != int64(keys) || s.Checksum != ChecksumOK {
			b.Fatalf("keys %d checksum %s", s.Keys, s.Checksum)
		}
	}
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(st.Size())/(1<<20), "file-MiB")
}

// BenchmarkCRC64 measures the checksum every snapshot byte passes through.
func BenchmarkCRC64(b *testing.B) {
	p := make([]byte, 1<<20)
	for i := range p {
		p[i] = byte(i * 7)
	}
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		CRC64(p)
	}
}
