package rdbparse

import (
	"encoding/binary"
	"hash/crc64"
	"math/rand/v2"
	"testing"
)

func TestCRC64CheckValue(t *testing.T) {
	if got := CRC64([]byte("123456789")); got != 0xE9C6D914C4B8D9CA {
		t.Fatalf("CRC64(123456789) = %#x, want 0xe9c6d914c4b8d9ca", got)
	}
	if got := CRC64(nil); got != 0 {
		t.Fatalf("CRC64(nil) = %#x, want 0", got)
	}
}

// The table-driven fast path must agree with hash/crc64 used bytewise with
// Redis's conventions (initial value 0, no final xor).
func TestCRC64MatchesStdlib(t *testing.T) {
	tab := crc64.MakeTable(jonesPoly)
	ref := func(p []byte) uint64 { return ^crc64.Update(^uint64(0), tab, p) }
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 300; n++ {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		if got, want := CRC64(p), ref(p); got != want {
			t.Fatalf("len %d: got %#x want %#x", n, got, want)
		}
		split := rng.IntN(n + 1)
		if got := updateCRC(updateCRC(0, p[:split]), p[split:]); got != ref(p) {
			t.Fatalf("len %d split %d: incremental CRC differs", n, split)
		}
	}
}

// fakeRDB returns magic + body + EOF + the little-endian CRC trailer.
func fakeRDB(body []byte) []byte {
	b := append([]byte("REDIS0010"), body...)
	b = append(b, opEOF)
	return binary.LittleEndian.AppendUint64(b, CRC64(b))
}

func feedChunks(c *Checker, data []byte, rng *rand.Rand) {
	for len(data) > 0 {
		n := 1 + rng.IntN(min(len(data), 20))
		if rng.IntN(4) == 0 {
			n = len(data)
		}
		if w, err := c.Write(data[:n]); w != n || err != nil {
			panic("checker write failed")
		}
		data = data[n:]
	}
}

func TestCheckerChunked(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 200; trial++ {
		body := make([]byte, rng.IntN(100))
		for i := range body {
			body[i] = byte(rng.Uint32())
		}
		data := fakeRDB(body)
		c := NewChecker()
		feedChunks(c, data, rng)
		stored, computed, ok := c.Sum()
		if !ok || stored != computed || c.Size() != int64(len(data)) {
			t.Fatalf("trial %d: stored %#x computed %#x ok %v size %d", trial, stored, computed, ok, c.Size())
		}
		r := c.Result()
		if r.Status != ChecksumOK || !r.Magic || !r.Trailer {
			t.Fatalf("trial %d: result %+v", trial, r)
		}

		// Any single flipped byte is caught.
		bad := append([]byte(nil), data...)
		bad[rng.IntN(len(bad))] ^= byte(1 + rng.IntN(255))
		c = NewChecker()
		feedChunks(c, bad, rng)
		if _, _, ok := c.Sum(); ok && c.Result().Status != ChecksumDisabled {
			t.Fatalf("trial %d: corruption not detected: %+v", trial, c.Result())
		}
	}
}

func TestCheckerVerdicts(t *testing.T) {
	data := fakeRDB([]byte{opSelectDB, 0})
	check := func(b []byte) CheckResult {
		c := NewChecker()
		_, _ = c.Write(b)
		return c.Result()
	}
	if r := check(data); r.Status != ChecksumOK {
		t.Errorf("valid: %+v", r)
	}
	disabled := append([]byte(nil), data...)
	copy(disabled[len(disabled)-8:], make([]byte, 8))
	if r := check(disabled); r.Status != ChecksumDisabled {
		t.Errorf("zero trailer: %+v", r)
	}
	mismatch := append([]byte(nil), data...)
	mismatch[len(mismatch)-1] ^= 1
	if r := check(mismatch); r.Status != ChecksumMismatch {
		t.Errorf("flipped trailer: %+v", r)
	}
	if r := check(data[:len(data)-1]); r.Status != ChecksumMissing {
		t.Errorf("one byte short: %+v", r)
	}
	if r := check(data[:5]); r.Status != ChecksumMissing || r.Magic {
		t.Errorf("five bytes: %+v", r)
	}
	if r := check([]byte("NOTANRDBFILE-AT-ALL")); r.Magic {
		t.Errorf("bad magic accepted: %+v", r)
	}
	c := NewChecker()
	_, _ = c.Write([]byte("VALKEY080"))
	if !c.MagicOK() {
		t.Error("VALKEY080 magic rejected")
	}
}
