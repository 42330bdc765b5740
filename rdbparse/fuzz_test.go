package rdbparse

import (
	"bytes"
	"encoding/binary"
	"runtime/metrics"
	"testing"
)

// heapAllocated returns the bytes allocated on the heap so far. Unlike
// runtime.ReadMemStats it does not stop the world, so it suits a fuzz loop;
// it may lag by what sits in per-P caches, which is small next to the
// allocations this guards against.
func heapAllocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func fuzzSeeds(f *testing.F) {
	f.Add(readSmallRDB(f))
	f.Add(newRDB("REDIS0010").aux("repl-id", "abc").stringKey("a", "1").done())
	f.Add(newRDB("VALKEY080").raw(opSelectDB).length(2).stringKey("a", "1").done())
	f.Add(newRDB("REDIS0009").raw(typeSetIntset).str("s").
		str(string(binary.LittleEndian.AppendUint16(binary.LittleEndian.AppendUint64(nil, 2|1<<32), 7))).done())
	f.Add(newRDB("REDIS0010").raw(typeString).str("k").raw(0xC3).length(4).length(8).raw(1, 'a', 'b', 0xE0).done())
	f.Add([]byte("REDIS0010\xff"))
}

func FuzzParse(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		before := heapAllocated()
		s, err := Parse(bytes.NewReader(data))
		if grew := heapAllocated() - before; grew > 256*uint64(len(data))+(8<<20) {
			t.Fatalf("allocated %d bytes for %d bytes of input", grew, len(data))
		}
		if err == nil {
			var keys int64
			for _, d := range s.DBs {
				keys += d.Keys
			}
			if keys != s.Keys || s.Size != int64(len(data)) {
				t.Fatalf("inconsistent summary: db keys %d, Keys %d, Size %d of %d", keys, s.Keys, s.Size, len(data))
			}
			switch s.Checksum {
			case ChecksumOK, ChecksumMismatch, ChecksumDisabled, ChecksumMissing:
			default:
				t.Fatalf("checksum verdict %q", s.Checksum)
			}
		}
		// The sized form takes other early exits; it must not panic either.
		_, _ = ParseSized(bytes.NewReader(data), int64(len(data)))
	})
}

func FuzzReadHeader(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		before := heapAllocated()
		h, err := ReadHeader(bytes.NewReader(data))
		if grew := heapAllocated() - before; grew > 256*uint64(len(data))+(1<<20) {
			t.Fatalf("allocated %d bytes for %d bytes of input", grew, len(data))
		}
		if h == nil {
			if err == nil {
				t.Fatal("nil header without an error")
			}
			return
		}
		if h.Len > int64(len(data)) || len(h.Aux) > MaxAuxFields {
			t.Fatalf("header claims %d bytes of %d and %d aux fields", h.Len, len(data), len(h.Aux))
		}
		for k, v := range h.Aux {
			if len(k) > MaxAuxLen || len(v) > MaxAuxLen {
				t.Fatal("aux field over the cap")
			}
		}
	})
}
