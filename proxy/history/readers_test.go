package history

import (
	"os"
	"slices"
	"testing"

	"github.com/redis-relay/redis-relay/replstream"
)

// fakeReader is a reader that is not a session: the history reaches the
// replicas it serves only through the reader interface.
type fakeReader struct {
	isOnline bool
	next     int64
	ended    []ReaderEnd
}

func (r *fakeReader) Online() bool            { return r.isOnline }
func (r *fakeReader) SetOnline()              { r.isOnline = true }
func (r *fakeReader) NextOffset() int64       { return r.next }
func (r *fakeReader) EndReader(why ReaderEnd) { r.ended = append(r.ended, why) }
func (r *fakeReader) String() string          { return "fake" }

// TestHistoryReadersOnShiftAndFellBehind: a full sync pins the offset it
// streams from after its snapshot until it goes online; GoOnline refuses an
// ID that is no longer current; a replid shift ends the online readers and
// lets full syncs go on; a trim ends the online readers whose next byte the
// log no longer holds.
func TestHistoryReadersOnShiftAndFellBehind(t *testing.T) {
	h := openTestStore(t, t.TempDir())
	const replid, offset = "1111111111111111111111111111111111111111", 100
	path := h.Path("dump.rdb")
	if err := os.WriteFile(path, []byte("rdb"), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := replstream.CreateLog(h.Path(newLogDirName()), offset+1, h.logOptions())
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.id = replstream.Identity{ReplID: replid, SecondOffset: -1}
	h.snap = completeSnapshot(Snapshot{ReplID: replid, Offset: offset, Size: 3}, path)
	h.log = log
	h.mu.Unlock()

	online, full, behind, outside := &fakeReader{}, &fakeReader{}, &fakeReader{}, &fakeReader{}
	for _, r := range []*fakeReader{online, full, behind} {
		h.AddReader(r)
	}
	pin := func(r Reader) int64 {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.readers[r]
	}
	for _, r := range []*fakeReader{online, full} {
		_, f, err := h.SyncSource(t.Context(), r, func() error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if got := pin(r); got != offset+1 {
			t.Fatalf("pin during a full sync = %d, want %d", got, offset+1)
		}
	}
	if h.GoOnline(online, "2222222222222222222222222222222222222222") || online.isOnline {
		t.Fatal("GoOnline accepted an ID that is not the history's")
	}
	if !h.GoOnline(online, replid) || !online.isOnline || pin(online) != 0 {
		t.Fatalf("after GoOnline: online %v, pin %d; want online, pin 0", online.isOnline, pin(online))
	}
	h.GoOnline(outside, replid) // not registered: GoOnline must not register it
	h.mu.Lock()
	_, registered := h.readers[outside]
	h.mu.Unlock()
	if registered {
		t.Fatal("GoOnline registered a reader")
	}

	if err := h.ShiftReplID("3333333333333333333333333333333333333333"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(online.ended, []ReaderEnd{EndReplIDChanged}) || len(full.ended) != 0 || len(behind.ended) != 0 {
		t.Fatalf("after a shift: online ended %v, full sync %v, offline %v; want only the online one, replid changed",
			online.ended, full.ended, behind.ended)
	}

	behind.isOnline, behind.next = true, offset // the log starts at offset+1
	online.ended, online.next = nil, offset+1
	full.isOnline = true // online, not streaming yet
	h.dropFellBehind(log)
	if !slices.Equal(behind.ended, []ReaderEnd{EndFellBehind}) || len(online.ended) != 0 || len(full.ended) != 0 {
		t.Fatalf("after a trim: behind ended %v, at the log's start %v, not streaming yet %v; want only the one behind, fell behind",
			behind.ended, online.ended, full.ended)
	}
	h.RemoveReader(full)
	if got := pin(full); got != 0 {
		t.Fatalf("pin after RemoveReader = %d", got)
	}
}
