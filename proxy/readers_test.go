package proxy

import (
	"errors"
	"log/slog"
	"os"
	"slices"
	"testing"

	"github.com/redis-relay/redis-relay/proxy/settings"
	"github.com/redis-relay/redis-relay/replstream"
)

// fakeReader is a reader that is not a session: the history reaches the
// replicas it serves only through the reader interface.
type fakeReader struct {
	isOnline bool
	next     int64
	ended    []readerEnd
}

func (r *fakeReader) online() bool            { return r.isOnline }
func (r *fakeReader) setOnline()              { r.isOnline = true }
func (r *fakeReader) nextOffset() int64       { return r.next }
func (r *fakeReader) endReader(why readerEnd) { r.ended = append(r.ended, why) }
func (r *fakeReader) String() string          { return "fake" }

// TestHistoryReadersOnShiftAndFellBehind: a full sync pins the offset it
// streams from after its snapshot until it goes online; goOnline refuses an
// ID that is no longer current; a replid shift ends the online readers and
// lets full syncs go on; a trim ends the online readers whose next byte the
// log no longer holds.
func TestHistoryReadersOnShiftAndFellBehind(t *testing.T) {
	cfg := Config{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
	cfg.FillDefaults()
	stats := &counters{disconnects: newCounts(closeReasons), linkDowns: newCounts(LinkDownReasons())}
	h, err := openHistory(settings.NewLive(cfg), stats, cfg.Logger)
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	const replid, offset = "1111111111111111111111111111111111111111", 100
	path := h.path("dump.rdb")
	if err := os.WriteFile(path, []byte("rdb"), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := replstream.CreateLog(h.path(newLogDirName()), offset+1, h.logOptions())
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
		h.addReader(r)
	}
	pin := func(r reader) int64 {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.readers[r]
	}
	for _, r := range []*fakeReader{online, full} {
		_, f, err := h.syncSource(t.Context(), r, func() error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if got := pin(r); got != offset+1 {
			t.Fatalf("pin during a full sync = %d, want %d", got, offset+1)
		}
	}
	if h.goOnline(online, "2222222222222222222222222222222222222222") || online.isOnline {
		t.Fatal("goOnline accepted an ID that is not the history's")
	}
	if !h.goOnline(online, replid) || !online.isOnline || pin(online) != 0 {
		t.Fatalf("after goOnline: online %v, pin %d; want online, pin 0", online.isOnline, pin(online))
	}
	h.goOnline(outside, replid) // not registered: goOnline must not register it
	h.mu.Lock()
	_, registered := h.readers[outside]
	h.mu.Unlock()
	if registered {
		t.Fatal("goOnline registered a reader")
	}

	if err := h.shiftReplID("3333333333333333333333333333333333333333"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(online.ended, []readerEnd{endReplIDChanged}) || len(full.ended) != 0 || len(behind.ended) != 0 {
		t.Fatalf("after a shift: online ended %v, full sync %v, offline %v; want only the online one, replid changed",
			online.ended, full.ended, behind.ended)
	}

	behind.isOnline, behind.next = true, offset // the log starts at offset+1
	online.ended, online.next = nil, offset+1
	full.isOnline = true // online, not streaming yet
	h.dropFellBehind(log)
	if !slices.Equal(behind.ended, []readerEnd{endFellBehind}) || len(online.ended) != 0 || len(full.ended) != 0 {
		t.Fatalf("after a trim: behind ended %v, at the log's start %v, not streaming yet %v; want only the one behind, fell behind",
			behind.ended, online.ended, full.ended)
	}
	h.removeReader(full)
	if got := pin(full); got != 0 {
		t.Fatalf("pin after removeReader = %d", got)
	}
}

// TestSessionReaderEnds: the session maps each way the history ends a
// reader to its own close reason.
func TestSessionReaderEnds(t *testing.T) {
	for why, want := range map[readerEnd]CloseReason{endReplIDChanged: reasonReplIDChanged, endFellBehind: reasonFellBehind} {
		var got error
		s := &session{cancel: func(cause error) { got = cause }}
		s.endReader(why)
		var ce *closeError
		if !errors.As(got, &ce) || ce.reason != want {
			t.Errorf("endReader(%d) ended the session with %v, want %s", why, got, want)
		}
	}
}
