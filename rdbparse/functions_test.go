package rdbparse

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// TestLibrariesFromRedis: the libraries read from a Redis dump and from
// FUNCTION DUMP are the code FUNCTION LIST WITHCODE shows, and an RDB
// written with AppendFunctionsRDB loads into Redis with the same libraries
// and no keys.
func TestLibrariesFromRedis(t *testing.T) {
	srv := redistest.Start(t, "--rdbcompression", "yes")
	c := client(t, srv)
	// A library long enough to be LZF-compressed in the dump.
	long := "#!lua name=long\n-- " + strings.Repeat("padding ", 200) + "\nredis.register_function('g', function() return 2 end)"
	c.must(t, "FUNCTION", "LOAD", testLibrary)
	c.must(t, "FUNCTION", "LOAD", long)
	c.must(t, "SET", "k", "v")
	want := []string{testLibrary, long}

	f, err := os.Open(saveRDB(t, srv, c))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	libs, h, err := Libraries(f)
	if err != nil {
		t.Fatal(err)
	}
	if !sameLibraries(libs, want) {
		t.Errorf("Libraries = %q, want %q", libs, want)
	}

	dump, ok := c.must(t, "FUNCTION", "DUMP").(string)
	if !ok {
		t.Fatal("FUNCTION DUMP gave no bulk string")
	}
	libs, err = DumpLibraries([]byte(dump), h.Version)
	if err != nil {
		t.Fatal(err)
	}
	if !sameLibraries(libs, want) {
		t.Errorf("DumpLibraries = %q, want %q", libs, want)
	}
	bad := []byte(dump)
	bad[3] ^= 1
	if _, err := DumpLibraries(bad, h.Version); err == nil {
		t.Error("a corrupt dump payload was read")
	}

	rdb := AppendFunctionsRDB(nil, h.Version, []string{"redis-ver", h.RedisVer(), "repl-offset", "77"}, want)
	sum, err := Parse(bytes.NewReader(rdb))
	if err != nil || !sum.Complete || sum.Checksum != ChecksumOK || sum.Functions != 2 || sum.Keys != 0 || sum.Aux["repl-offset"] != "77" {
		t.Fatalf("written RDB: %+v, %v", sum, err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dump.rdb"), rdb, 0o644); err != nil {
		t.Fatal(err)
	}
	scratch := redistest.Start(t, "--dir", dir, "--dbfilename", "dump.rdb")
	sc := client(t, scratch)
	if n := sc.must(t, "DBSIZE"); n != int64(0) {
		t.Errorf("DBSIZE after loading = %v", n)
	}
	if got := sc.must(t, "FCALL", "g", 0); got != int64(2) {
		t.Errorf("FCALL g = %v", got)
	}
}

func sameLibraries(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// dumpPayload is what FUNCTION DUMP gives for these libraries: their
// records, the RDB version and the CRC-64, little-endian.
func dumpPayload(libs ...string) []byte {
	var p []byte
	for _, code := range libs {
		p = appendRDBString(append(p, opFunction2), code)
	}
	p = binary.LittleEndian.AppendUint16(p, 10)
	return binary.LittleEndian.AppendUint64(p, CRC64(p))
}

// FuzzLibraries: the library readers never panic, allocate in proportion
// to their input, and read back what AppendFunctionsRDB and a dump payload
// hold.
func FuzzLibraries(f *testing.F) {
	fuzzSeeds(f)
	f.Add(AppendFunctionsRDB(nil, 10, []string{"redis-ver", "7.0.15"}, []string{testLibrary}))
	f.Add(dumpPayload(testLibrary, "#!lua name=b\nreturn 1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		before := heapAllocated()
		_, _, _ = Libraries(bytes.NewReader(data))
		_, _ = DumpLibraries(data, 10)
		if grew := heapAllocated() - before; grew > 256*uint64(len(data))+(8<<20) {
			t.Fatalf("allocated %d bytes for %d bytes of input", grew, len(data))
		}
		libs := []string{string(data)}
		if got, err := DumpLibraries(dumpPayload(libs...), 10); err != nil || !slices.Equal(got, libs) {
			t.Fatalf("dump of %q read back as %q, %v", libs, got, err)
		}
		got, _, err := Libraries(bytes.NewReader(AppendFunctionsRDB(nil, 10, nil, libs)))
		if err != nil || !slices.Equal(got, libs) {
			t.Fatalf("RDB of %q read back as %q, %v", libs, got, err)
		}
	})
}
