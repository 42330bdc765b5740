package rdbparse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// rdbBuilder assembles hand-made RDB files.
type rdbBuilder struct{ b []byte }

func newRDB(magic string) *rdbBuilder { return &rdbBuilder{b: []byte(magic)} }

func (r *rdbBuilder) raw(p ...byte) *rdbBuilder { r.b = append(r.b, p...); return r }

func (r *rdbBuilder) length(n uint64) *rdbBuilder {
	switch {
	case n < 1<<6:
		r.b = append(r.b, byte(n))
	case n < 1<<14:
		r.b = append(r.b, 0x40|byte(n>>8), byte(n))
	case n <= 0xFFFFFFFF:
		r.b = binary.BigEndian.AppendUint32(append(r.b, 0x80), uint32(n))
	default:
		r.b = binary.BigEndian.AppendUint64(append(r.b, 0x81), n)
	}
	return r
}

func (r *rdbBuilder) str(s string) *rdbBuilder {
	r.length(uint64(len(s)))
	r.b = append(r.b, s...)
	return r
}

func (r *rdbBuilder) aux(k, v string) *rdbBuilder { return r.raw(opAux).str(k).str(v) }

func (r *rdbBuilder) stringKey(k, v string) *rdbBuilder { return r.raw(typeString).str(k).str(v) }

// done appends the EOF opcode and a valid checksum.
func (r *rdbBuilder) done() []byte {
	b := append(r.b, opEOF)
	return binary.LittleEndian.AppendUint64(b, CRC64(b))
}

func mustParse(t *testing.T, data []byte) *Summary {
	t.Helper()
	s, err := Parse(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s
}

func TestParseHandMade(t *testing.T) {
	data := newRDB("REDIS0010").
		aux("redis-ver", "7.0.15").aux("repl-id", strings.Repeat("ab", 20)).
		raw(opAux).str("repl-offset").raw(0xC1, 0x39, 0x30). // int16 12345
		raw(opAux).str("repl-stream-db").raw(0xC0, 0).
		raw(opSelectDB).length(0).raw(opResizeDB).length(2).length(1).
		stringKey("a", "1").
		raw(opExpireMs).raw(binary.LittleEndian.AppendUint64(nil, 1<<42)...).stringKey("b", "2").
		raw(opSelectDB).length(5).
		raw(opFreq, 7).raw(typeList).str("l").length(2).str("x").str("y").
		done()
	s := mustParse(t, data)
	if s.Version != 10 || s.Magic != "REDIS" || s.RedisVer != "7.0.15" {
		t.Errorf("header: %+v", s)
	}
	if s.ReplID != strings.Repeat("ab", 20) || !s.HasReplOffset || s.ReplOffset != 12345 || s.ReplStreamDB != 0 {
		t.Errorf("repl fields: id %q offset %d/%v db %d", s.ReplID, s.ReplOffset, s.HasReplOffset, s.ReplStreamDB)
	}
	want := []DBSummary{{DB: 0, Keys: 2, Expires: 1, HintKeys: 2, HintExpires: 1}, {DB: 5, Keys: 1}}
	if len(s.DBs) != 2 || s.DBs[0] != want[0] || s.DBs[1] != want[1] {
		t.Errorf("DBs = %+v, want %+v", s.DBs, want)
	}
	if s.Types["string"].Count != 2 || s.Types["list"].Count != 1 || s.Types["list"].Elements != 2 {
		t.Errorf("types: %+v", s.Types)
	}
	if s.Checksum != ChecksumOK || !s.Complete || s.Unparsed != "" || s.Size != int64(len(data)) {
		t.Errorf("verdict: checksum %s complete %v unparsed %q size %d", s.Checksum, s.Complete, s.Unparsed, s.Size)
	}
}

// A value type this package does not know stops the walk, but the rest is
// still read for the checksum.
func TestParseUnknownType(t *testing.T) {
	data := newRDB("REDIS0011").stringKey("a", "1").raw(30).str("k").str("v").stringKey("b", "2").done()
	s := mustParse(t, data)
	if s.Complete || !strings.Contains(s.Unparsed, "unknown value type 30") {
		t.Errorf("complete %v unparsed %q", s.Complete, s.Unparsed)
	}
	if s.Keys != 1 || s.Checksum != ChecksumOK || s.Size != int64(len(data)) {
		t.Errorf("keys %d checksum %s size %d", s.Keys, s.Checksum, s.Size)
	}
}

// A record the framer accepts but the decoder cannot read (a ziplist that
// is not one) is reported, and later keys are still counted.
func TestParseDecoderFailure(t *testing.T) {
	data := newRDB("REDIS0009").stringKey("a", "1").raw(typeListZiplist).str("bad").str("xyz").
		stringKey("b", "2").raw(typeSet).str("s").length(1).str("m").done()
	s := mustParse(t, data)
	if !strings.Contains(s.Unparsed, `decoder failed at key 2 ("bad"`) {
		t.Errorf("unparsed %q", s.Unparsed)
	}
	if s.Keys != 4 || !s.Complete || s.Checksum != ChecksumOK || s.Types["set"].Count != 1 {
		t.Errorf("keys %d complete %v checksum %s types %+v", s.Keys, s.Complete, s.Checksum, s.Types)
	}
	if s.Types["string"].MemBytes == 0 || s.Types["set"].MemBytes != 0 {
		t.Errorf("only keys before the failure should be decoded: %+v", s.Types)
	}
}

// Module values are framed and counted but never reach the decoder.
func TestParseModuleValue(t *testing.T) {
	const id = 0x123456789AB << 10 // an arbitrary name, encoding version 0
	data := newRDB("REDIS0010").
		raw(opModuleAux).length(id).length(2).length(2).length(5).str("blob").length(0).
		stringKey("a", "1").
		raw(typeModule2).str("m").length(id).
		length(1).length(42).length(3).raw(1, 2, 3, 4).length(4).raw(make([]byte, 8)...).length(5).str("s").length(0).
		stringKey("b", "2").done()
	s := mustParse(t, data)
	name := moduleTypeName(id)
	if s.Keys != 3 || s.Modules[name] != 1 || s.Types["module"].Count != 1 || s.Unparsed != "" || s.Checksum != ChecksumOK {
		t.Errorf("keys %d modules %v types %+v unparsed %q checksum %s", s.Keys, s.Modules, s.Types, s.Unparsed, s.Checksum)
	}
	if s.Types["string"].MemBytes == 0 {
		t.Error("string keys around the module value were not decoded")
	}
}

func TestParseVersions(t *testing.T) {
	s := mustParse(t, newRDB("REDIS0013").stringKey("a", "1").done())
	if !strings.Contains(s.Unparsed, "does not read REDIS version 13") || s.Keys != 1 || s.Checksum != ChecksumOK {
		t.Errorf("v13: %+v", s)
	}
	s = mustParse(t, newRDB("VALKEY080").stringKey("a", "1").done())
	if s.Unparsed != "" || s.Magic != "VALKEY" || s.Version != 80 || s.Types["string"].MemBytes == 0 {
		t.Errorf("valkey: %+v", s)
	}
	// Before version 5 there is no checksum after the EOF opcode.
	s = mustParse(t, newRDB("REDIS0004").stringKey("a", "1").raw(opEOF).b)
	if s.Checksum != ChecksumMissing || !s.Complete || s.Keys != 1 {
		t.Errorf("v4: %+v", s)
	}
}

func TestParseBadInput(t *testing.T) {
	valid := newRDB("REDIS0010").stringKey("a", "1").done()
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrBadMagic},
		{"short", []byte("REDIS"), ErrBadMagic},
		{"not rdb", []byte("GET / HTTP/1.1\r\n\r\n"), ErrBadMagic},
		{"bad version", []byte("REDIS00x0\xff"), ErrBadMagic},
		{"no eof", newRDB("REDIS0010").stringKey("a", "1").b, ErrTruncated},
		{"half checksum", valid[:len(valid)-4], ErrTruncated},
		{"trailing", append(append([]byte(nil), valid...), "extra"...), ErrTrailingData},
		{"bad length prefix", newRDB("REDIS0010").raw(typeString, 0x85).done(), ErrCorrupt},
		{"bad string encoding", newRDB("REDIS0010").raw(typeString, 0xC5).done(), ErrCorrupt},
		{"expiry before eof", newRDB("REDIS0010").raw(opExpireSec, 1, 2, 3, 4).done(), ErrCorrupt},
		{"aux too long", newRDB("REDIS0010").raw(opAux).str("k").length(MaxAuxLen + 1).done(), ErrCorrupt},
		{"bad quicklist container", newRDB("REDIS0010").raw(typeListQuicklist2).str("l").length(1).length(7).str("x").done(), ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(bytes.NewReader(tc.data))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// Lengths and counts that promise far more data than exists must fail on
// the missing data, without allocating anything like the declared size.
func TestParseHugeDeclarations(t *testing.T) {
	intset := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 8), 0xFFFFFFFF)
	lp := func(entries ...byte) string { // a listpack header, then raw entries
		b := binary.LittleEndian.AppendUint32(nil, uint32(6+len(entries)+1))
		b = binary.LittleEndian.AppendUint16(b, 0)
		return string(append(append(b, entries...), 0xFF))
	}
	// count 1, deleted 0, then a master field count of 2^62 as int64.
	hugeFields := lp(append([]byte{0x01, 1, 0x00, 1, 0xF4}, append(binary.LittleEndian.AppendUint64(nil, 1<<62), 9)...)...)
	// count 2^40 entries.
	hugeCount := lp(append([]byte{0xF4}, append(binary.LittleEndian.AppendUint64(nil, 1<<40), 9, 0x00, 1, 0x00, 1)...)...)
	streamWith := func(node string) []byte {
		return newRDB("REDIS0010").raw(typeStreamLP2).str("s").length(1).str(strings.Repeat("\x00", 16)).str(node).done()
	}
	cases := map[string][]byte{
		"string 4GiB":        newRDB("REDIS0010").raw(typeString).str("k").length(4 << 30).raw([]byte("tiny")...).done(),
		"string 2^63":        newRDB("REDIS0010").raw(typeString).str("k").length(1 << 63).done(),
		"list 2^40":          newRDB("REDIS0010").raw(typeList).str("k").length(1 << 40).str("a").done(),
		"zset 2^40":          newRDB("REDIS0010").raw(typeZset2).str("k").length(1 << 40).done(),
		"set 2^62":           newRDB("REDIS0010").raw(typeSet).str("k").length(1 << 62).done(),
		"stream groups":      newRDB("REDIS0010").raw(typeStreamLP2).str("k").length(0).length(0).length(0).length(0).length(0).length(0).length(0).length(0).length(0).length(1 << 40).done(),
		"lzf 4GiB out":       newRDB("REDIS0010").raw(typeString).str("k").raw(0xC3).length(4).length(4<<30).raw(1, 2, 3, 4).done(),
		"intset 2^32":        newRDB("REDIS0010").raw(typeSetIntset).str("k").str(string(intset)).done(),
		"stream fields":      streamWith(hugeFields),
		"stream entries":     streamWith(hugeCount),
		"aux 4GiB":           newRDB("REDIS0010").raw(opAux).str("k").length(4 << 30).done(),
		"function 4GiB":      newRDB("REDIS0010").raw(opFunction2).length(4 << 30).done(),
		"quicklist nodes":    newRDB("REDIS0010").raw(typeListQuicklist2).str("k").length(1 << 50).done(),
		"hash fields 2^50":   newRDB("REDIS0010").raw(typeHash).str("k").length(1 << 50).done(),
		"module string 2^40": newRDB("REDIS0010").raw(typeModule2).str("k").length(1 << 10).length(5).length(1 << 40).done(),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := Parse(bytes.NewReader(data))
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) {
				t.Errorf("unexpected error class: %v", err)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
				t.Errorf("allocated %d bytes for a %d byte file", grew, len(data))
			}
			// With the size known, the same inputs fail before any read.
			if _, err := ParseSized(bytes.NewReader(data), int64(len(data))); err == nil {
				t.Error("ParseSized: no error")
			}
		})
	}
}

func readSmallRDB(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "small.rdb"))
	if err != nil {
		t.Fatalf("read testdata: %v", err)
	}
	return data
}

func TestParseTestdata(t *testing.T) {
	data := readSmallRDB(t)
	s, err := ParseFile(filepath.Join("testdata", "small.rdb"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Checksum != ChecksumOK || !s.Complete || s.Unparsed != "" || s.Version != 10 || s.Functions != 1 {
		t.Fatalf("summary: %+v", s)
	}
	for _, typ := range []string{"string", "list", "set", "zset", "hash", "stream"} {
		if s.Types[typ].Count == 0 || s.Types[typ].MemBytes == 0 {
			t.Errorf("type %s missing or not decoded: %+v", typ, s.Types[typ])
		}
	}
	// A stream that trickles in, in tiny pieces, gives the same summary.
	pr, pw := io.Pipe()
	go func() {
		rng := rand.New(rand.NewPCG(5, 6))
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(50))
			if _, err := pw.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
		}
		pw.Close()
	}()
	s2, err := Parse(pr)
	if err != nil {
		t.Fatal(err)
	}
	if !summariesEqual(s, s2) {
		t.Errorf("streamed summary differs:\n%+v\n%+v", s, s2)
	}
}

func summariesEqual(a, b *Summary) bool {
	if a.Keys != b.Keys || a.Expires != b.Expires || a.Size != b.Size || a.Checksum != b.Checksum ||
		a.ComputedCRC != b.ComputedCRC || a.Functions != b.Functions || a.Unparsed != b.Unparsed ||
		len(a.DBs) != len(b.DBs) || len(a.Types) != len(b.Types) {
		return false
	}
	for i := range a.DBs {
		if a.DBs[i] != b.DBs[i] {
			return false
		}
	}
	for k, v := range a.Types {
		if b.Types[k] != v {
			return false
		}
	}
	return true
}

// stride steps through every byte position, or under the race detector
// through every byte of the first and last 300 and every 13th in between.
func stride(pos, size int) int {
	if !raceEnabled || pos < 300 || pos >= size-300 {
		return 1
	}
	return 13
}

// Every prefix of a real snapshot is an error, never a panic or a success.
func TestParseTruncated(t *testing.T) {
	data := readSmallRDB(t)
	for cut := 0; cut < len(data); cut += stride(cut, len(data)) {
		s, err := Parse(bytes.NewReader(data[:cut]))
		if err == nil {
			t.Fatalf("cut at %d of %d: no error (%+v)", cut, len(data), s)
		}
		want := ErrTruncated
		if cut < 9 {
			want = ErrBadMagic
		}
		if !errors.Is(err, want) {
			t.Fatalf("cut at %d: %v, want %v", cut, err, want)
		}
		if _, err := ParseSized(bytes.NewReader(data[:cut]), int64(cut)); !errors.Is(err, want) {
			t.Fatalf("sized, cut at %d: %v, want %v", cut, err, want)
		}
	}
}

// Every single corrupted byte is an error or a checksum mismatch.
func TestParseCorrupted(t *testing.T) {
	data := readSmallRDB(t)
	rng := rand.New(rand.NewPCG(7, 8))
	bad := make([]byte, len(data))
	for pos := 0; pos < len(data); pos += stride(pos, len(data)) {
		for _, flip := range []byte{0xFF, byte(1 + rng.IntN(255))} {
			copy(bad, data)
			bad[pos] ^= flip
			s, err := Parse(bytes.NewReader(bad))
			if err == nil && s.Checksum != ChecksumMismatch {
				t.Fatalf("byte %d ^ %#x: accepted with checksum %q (unparsed %q)", pos, flip, s.Checksum, s.Unparsed)
			}
		}
	}
}

func BenchmarkParseSmall(b *testing.B) {
	data := readSmallRDB(b)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}
