package replstream

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
)

// Offset is a position in a replication stream, in Redis's units (see the
// package comment).
type Offset = int64

// ReplIDLen is the length of a replication ID: 40 lowercase hex characters
// (CONFIG_RUN_ID_SIZE in Redis).
const ReplIDLen = 40

// NoReplID is what Redis shows as master_replid2 when there is no previous
// history.
const NoReplID = "0000000000000000000000000000000000000000"

// Identity names the history a stream belongs to, as Redis keeps it: the
// current replication ID, and the previous one together with the highest
// PSYNC offset still acceptable under it (second_repl_offset).
type Identity struct {
	ReplID       string `json:"replid"`
	ReplID2      string `json:"replid2"`
	SecondOffset Offset `json:"second_offset"` // -1 when ReplID2 is unset
}

// NewIdentity is a history with no predecessor.
func NewIdentity(replid string) Identity {
	return Identity{ReplID: replid, ReplID2: NoReplID, SecondOffset: -1}
}

// Shift moves to a new replication ID the way a Redis replica does on
// "+CONTINUE <newid>" and a master on promotion: the current ID becomes the
// second one, valid for PSYNC offsets up to next (master_repl_offset+1).
func (id Identity) Shift(newID string, next Offset) Identity {
	return Identity{ReplID: newID, ReplID2: id.ReplID, SecondOffset: next}
}

// Accepts reports whether PSYNC <replid> <off> names this history: the
// current ID, or the previous one for offsets up to SecondOffset.
func (id Identity) Accepts(replid string, off Offset) bool {
	if id.ReplID == "" || strings.HasPrefix(replid, "?") {
		return false
	}
	if strings.EqualFold(replid, id.ReplID) {
		return true
	}
	return id.SecondOffset >= 0 && strings.EqualFold(replid, id.ReplID2) && off <= id.SecondOffset
}

// ValidReplID reports whether s looks like a replication ID.
func ValidReplID(s string) bool {
	if len(s) != ReplIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// RandomHex40 returns 40 random lowercase hex characters, the shape of a
// replication ID and of an EOF mark.
func RandomHex40() string {
	var b [20]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// Decision is the answer to a PSYNC request.
type Decision int

const (
	// FullResync: the requested history or offset cannot be served.
	FullResync Decision = iota
	// Continue: serve the stream from the requested offset.
	Continue
	// WaitAhead: the history matches but the offset is beyond Next; the
	// replica came from a server slightly ahead of us. Wait for the log to
	// catch up (bounded), then decide again.
	WaitAhead
)

func (d Decision) String() string {
	switch d {
	case Continue:
		return "continue"
	case WaitAhead:
		return "wait-ahead"
	}
	return "fullresync"
}

// Decide applies Redis's PSYNC rule (masterTryPartialResynchronization) to a
// request for (replid, off) against the history id and the retained range
// [first, next] of the log.
func Decide(id Identity, first, next Offset, replid string, off Offset) Decision {
	if !id.Accepts(replid, off) {
		return FullResync
	}
	switch {
	case off < first:
		return FullResync
	case off <= next:
		return Continue
	case strings.EqualFold(replid, id.ReplID):
		return WaitAhead
	}
	return FullResync
}
