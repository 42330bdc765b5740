package rdbparse

import (
	"os"
	"testing"
)

// TestParseWithoutDecoding: framing alone counts the same keys, expiries,
// databases and functions as a full decode, and SkipChecksum leaves the
// CRC to the caller.
func TestParseWithoutDecoding(t *testing.T) {
	f, err := os.Open("testdata/small.rdb")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	full, err := ParseFile("testdata/small.rdb")
	if err != nil {
		t.Fatal(err)
	}
	lean, err := ParseWith(f, -1, Options{SkipChecksum: true})
	if err != nil {
		t.Fatal(err)
	}
	if lean.Keys != full.Keys || lean.Expires != full.Expires || len(lean.DBs) != len(full.DBs) || lean.Functions != full.Functions {
		t.Fatalf("framing only: keys %d expires %d dbs %d functions %d; decoded: %d %d %d %d",
			lean.Keys, lean.Expires, len(lean.DBs), lean.Functions, full.Keys, full.Expires, len(full.DBs), full.Functions)
	}
	for typ, ts := range full.Types {
		if lean.Types[typ].Count != ts.Count || lean.Types[typ].Bytes != ts.Bytes {
			t.Errorf("type %s: framing only %+v, decoded %+v", typ, lean.Types[typ], ts)
		}
	}
	if lean.Checksum != ChecksumUnchecked || full.Checksum != ChecksumOK {
		t.Errorf("checksum: framing only %q, decoded %q", lean.Checksum, full.Checksum)
	}
	if !lean.Complete || lean.Unparsed != "" {
		t.Errorf("framing only: complete %v, unparsed %q", lean.Complete, lean.Unparsed)
	}
}
