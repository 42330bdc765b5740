package history

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis-relay/redis-relay/internal/fsutil"
	"github.com/redis-relay/redis-relay/replstream"
)

// StateFile is the name of the state file in a data dir. It is replaced
// whole (a temporary file named StateFile+".tmp*", fsynced, renamed over
// it), so a reader sees the old state or the new one.
const StateFile = "state.json"

// ErrInvalidState: state.json is there but does not describe a history
// (it does not decode, names no snapshot or has no valid replid).
var ErrInvalidState = errors.New("not a relay's state")

// State is state.json: which files in the data dir form the history.
type State struct {
	Identity replstream.Identity `json:"identity"`
	Snapshot Snapshot            `json:"snapshot"`
	LogDir   string              `json:"log_dir"`
	Older    []Snapshot          `json:"older_snapshots,omitempty"` // newest first
	Hold     *Hold               `json:"hold,omitempty"`            // the command tripwire holds replicas
}

// Snapshot describes an RDB file in the data dir: the dataset as of Offset
// in history ReplID. The stream resumes at Offset+1.
type Snapshot struct {
	ReplID  string    `json:"replid"`
	Offset  int64     `json:"offset"`
	Size    int64     `json:"size"`
	File    string    `json:"file"` // name within the data dir
	Created time.Time `json:"created"`
	Keys    int64     `json:"keys"`    // keys in all databases, from the RDB parser; -1 when unknown
	Expires int64     `json:"expires"` // keys with a TTL; -1 when unknown
	Version int       `json:"rdb_version"`
	DBs     []DBKeys  `json:"dbs,omitempty"` // per database, from the RDB parser; empty when unknown
}

// DBKeys is what a snapshot holds in one database.
type DBKeys struct {
	DB      int   `json:"db"`
	Keys    int64 `json:"keys"`
	Expires int64 `json:"expires"`
}

// Hold is the command tripwire holding replicas; it is kept in state.json
// so that a restart keeps holding.
type Hold struct {
	At      int64     `json:"at"`      // replicas get the stream up to this offset, not including it
	Command string    `json:"command"` // the command that tripped it
	Since   time.Time `json:"since"`
}

// ReadState reads dir's state.json. A missing file is an error wrapping
// os.ErrNotExist; one that does not describe a history, an error wrapping
// ErrInvalidState.
func ReadState(dir string) (State, error) {
	var st State
	path := filepath.Join(dir, StateFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return st, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("%s: %w: %v", path, ErrInvalidState, err)
	}
	if st.Snapshot.File == "" || !replstream.ValidReplID(st.Identity.ReplID) {
		return st, fmt.Errorf("%s: %w: no snapshot or no replid", path, ErrInvalidState)
	}
	return st, nil
}

// WriteState replaces dir's state.json with st, making it durable with
// sync (normally (*os.File).Sync) before the rename, and the directory
// after it.
func WriteState(dir string, st State, sync func(*os.File) error) error {
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := fsutil.WriteFileWithSync(filepath.Join(dir, StateFile), raw, 0o600, sync); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// ExpiryCaveat says why a command tripwire on the command name also
// matches deletions the master makes on its own, or "" when it does not.
// A Redis 7 master propagates the removal of a key that expires (in its
// expire cycle, on access, or by EXPIRE with a time in the past) or that
// is evicted as "DEL key", or as "UNLINK key" with lazyfree-lazy-expire and
// lazyfree-lazy-eviction yes: the bytes an application's DEL or UNLINK may
// have, with nothing in the stream to tell them apart.
func ExpiryCaveat(name string) string {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "del":
		return "a master sends DEL for every key that expires or is evicted, unless lazyfree-lazy-expire and lazyfree-lazy-eviction are yes on it (then UNLINK); nothing in the stream tells those from an application's DEL"
	case "unlink":
		return "a master with lazyfree-lazy-expire or lazyfree-lazy-eviction yes sends UNLINK for every key that expires or is evicted; nothing in the stream tells those from an application's UNLINK"
	}
	return ""
}
