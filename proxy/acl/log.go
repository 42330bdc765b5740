package acl

import (
	"sync"
	"time"
)

// DefaultLogLen is how many entries ACL LOG keeps (Redis's acllog-max-len).
const DefaultLogLen = 128

// maxLogField bounds the user name and object an entry keeps: both can
// come from the network (AUTH's user name, a channel).
const maxLogField = 256

// groupWindow is how recent an entry must be for a like refusal to count
// in it rather than start a new one, as in Redis.
const groupWindow = 60 * time.Second

// Entry is one ACL LOG entry: a refusal, or like refusals close together.
type Entry struct {
	Count      int64
	Reason     string // command, channel or auth
	Context    string // toplevel
	Object     string // the command, channel, or AUTH
	Username   string
	Created    time.Time
	Updated    time.Time
	ClientInfo string // the last connection refused, as CLIENT LIST shows it
}

// Log is the ring of the newest entries, newest first.
//
// mu is a leaf lock.
type Log struct {
	mu      sync.Mutex
	max     int
	entries []Entry // newest first, at most max; guarded by mu
}

// add records a refusal: into the newest like entry (same reason,
// context, object and user, updated within groupWindow), which moves to
// the front, or as a new entry, dropping the oldest past max.
func (l *Log) add(e Entry, client func() string) {
	e.Object, e.Username = clip(e.Object), clip(e.Username)
	now := time.Now()
	info := ""
	if client != nil {
		info = client()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, o := range l.entries {
		if o.Reason == e.Reason && o.Context == e.Context && o.Object == e.Object && o.Username == e.Username && now.Sub(o.Updated) < groupWindow {
			o.Count++
			o.Updated, o.ClientInfo = now, info
			copy(l.entries[1:i+1], l.entries[:i])
			l.entries[0] = o
			return
		}
	}
	e.Count, e.Created, e.Updated, e.ClientInfo = 1, now, now, info
	if l.max <= 0 {
		l.max = DefaultLogLen
	}
	if len(l.entries) < l.max {
		l.entries = append(l.entries, Entry{})
	}
	copy(l.entries[1:], l.entries)
	l.entries[0] = e
}

// Entries returns up to n entries, newest first; n < 0 is all of them.
func (l *Log) Entries(n int) []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n < 0 || n > len(l.entries) {
		n = len(l.entries)
	}
	return append([]Entry(nil), l.entries[:n]...)
}

// Reset empties the log.
func (l *Log) Reset() {
	l.mu.Lock()
	l.entries = nil
	l.mu.Unlock()
}

func clip(s string) string {
	if len(s) > maxLogField {
		return s[:maxLogField]
	}
	return s
}
