package replstream

import (
	"strings"
	"testing"
)

const (
	idA = "8371b4fb1155b71f4a04d3e1bc3e18c4a990aeeb"
	idB = "3d1b2f6e5a0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e"
	idC = "0123456789abcdef0123456789abcdef01234567"
)

// TestDecideRedisBoundaries replays the PSYNC boundaries of a Redis 7.0
// master whose backlog starts at byte 1 and whose master_repl_offset is 192.
func TestDecideRedisBoundaries(t *testing.T) {
	const first, next = 1, 193 // next = master_repl_offset + 1
	cur := NewIdentity(idA)
	shifted := NewIdentity(idB).Shift(idA, 936) // idB valid up to 936
	cases := []struct {
		name        string
		id          Identity
		first, next Offset
		replid      string
		off         Offset
		want        Decision
	}{
		{"at next", cur, first, next, idA, 193, Continue},
		{"inside", cur, first, next, idA, 156, Continue},
		{"one past next, current id", cur, first, next, idA, 194, WaitAhead},
		{"far ahead, current id", cur, first, next, idA, 1 << 40, WaitAhead},
		{"before first", cur, first, next, idA, 0, FullResync},
		{"at first", cur, first, next, idA, 1, Continue},
		{"unknown id", cur, first, next, idC, 100, FullResync},
		{"question mark", cur, first, next, "?", -1, FullResync},
		{"question mark in range", cur, first, next, "?", 100, FullResync},
		{"upper-case current id", cur, first, next, strings.ToUpper(idA), 100, Continue},
		{"NoReplID never matches unset replid2", cur, first, next, NoReplID, 100, FullResync},
		{"empty id", cur, first, next, "", 100, FullResync},
		{"replid2 at second offset", shifted, 1, 1000, idB, 936, Continue},
		{"replid2 past second offset", shifted, 1, 1000, idB, 937, FullResync},
		{"replid2 upper case", shifted, 1, 1000, strings.ToUpper(idB), 500, Continue},
		{"replid2 before first", shifted, 100, 1000, idB, 99, FullResync},
		{"new id after shift", shifted, 1, 1000, idA, 1000, Continue},
		{"new id ahead after shift", shifted, 1, 1000, idA, 1001, WaitAhead},
		// The previous history is accepted up to SecondOffset, but an offset
		// beyond Next under it cannot be waited for: only the current ID
		// grows.
		{"replid2 ahead of next", shifted, 1, 900, idB, 901, FullResync},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Decide(c.id, c.first, c.next, c.replid, c.off); got != c.want {
				t.Errorf("Decide(%+v, %d, %d, %q, %d) = %v, want %v", c.id, c.first, c.next, c.replid, c.off, got, c.want)
			}
		})
	}
}

func TestAccepts(t *testing.T) {
	var zero Identity
	if zero.Accepts("", 1) || zero.Accepts(idA, 1) {
		t.Error("the zero Identity accepts something")
	}
	id := NewIdentity(idA)
	if !id.Accepts(idA, -5) || !id.Accepts(idA, 1<<50) {
		t.Error("current id must be accepted at any offset")
	}
	if id.Accepts(NoReplID, 0) || id.Accepts(NoReplID, -1) {
		t.Error("an unset replid2 was accepted")
	}
	if id.Accepts("?", 1) || id.Accepts("?"+idA, 1) {
		t.Error("? accepted")
	}
	q := Identity{ReplID: "?", ReplID2: NoReplID, SecondOffset: -1}
	if q.Accepts("?", 1) {
		t.Error("? accepted by an identity named ?")
	}
	s := id.Shift(idB, 500)
	if s.ReplID != idB || s.ReplID2 != idA || s.SecondOffset != 500 {
		t.Fatalf("Shift = %+v", s)
	}
	if !s.Accepts(idA, 500) || s.Accepts(idA, 501) || !s.Accepts(idB, 501) {
		t.Error("shifted identity: wrong acceptance around SecondOffset")
	}
	// A second shift forgets the oldest history, as Redis does.
	s2 := s.Shift(idC, 800)
	if s2.Accepts(idA, 100) {
		t.Error("history two shifts back still accepted")
	}
	if !s2.Accepts(idB, 800) || s2.Accepts(idB, 801) {
		t.Error("second shift: wrong acceptance of replid2")
	}
}

func TestValidReplID(t *testing.T) {
	good := []string{idA, strings.ToUpper(idA), NoReplID, RandomHex40()}
	bad := []string{"", "?", idA[:39], idA + "0", strings.Replace(idA, "8", "g", 1), strings.Replace(idA, "8", " ", 1)}
	for _, s := range good {
		if !ValidReplID(s) {
			t.Errorf("ValidReplID(%q) = false", s)
		}
	}
	for _, s := range bad {
		if ValidReplID(s) {
			t.Errorf("ValidReplID(%q) = true", s)
		}
	}
}

func TestRandomHex40(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		s := RandomHex40()
		if len(s) != ReplIDLen || !ValidReplID(s) || strings.ToLower(s) != s {
			t.Fatalf("RandomHex40() = %q", s)
		}
		if seen[s] {
			t.Fatalf("RandomHex40 repeated %q", s)
		}
		seen[s] = true
	}
}

func TestDecisionString(t *testing.T) {
	for d, want := range map[Decision]string{FullResync: "fullresync", Continue: "continue", WaitAhead: "wait-ahead", Decision(42): "fullresync"} {
		if got := d.String(); got != want {
			t.Errorf("Decision(%d).String() = %q, want %q", int(d), got, want)
		}
	}
}
