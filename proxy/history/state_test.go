package history

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/replstream"
)

// TestStateRoundTrip: what WriteState writes, ReadState reads back; a
// data dir without state.json, or with one that names no history, says so.
func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadState(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("no state.json: %v, want os.ErrNotExist", err)
	}
	id := replstream.NewIdentity(replstream.RandomHex40())
	snap := Snapshot{ReplID: id.ReplID, Offset: 99, Size: 1234, File: "snapshot-1.rdb", Created: time.Unix(1700000000, 0).UTC(), Keys: 10, Expires: 1, Version: 10}
	want := State{Identity: id, Snapshot: snap, LogDir: "log-1", Older: []Snapshot{snap}, Hold: &Hold{At: 120, Command: "FLUSHALL", Since: time.Unix(1700000001, 0).UTC()}}
	if err := WriteState(dir, want, (*os.File).Sync); err != nil {
		t.Fatal(err)
	}
	got, err := ReadState(dir)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("ReadState = %+v, %v\nwant %+v", got, err, want)
	}
	for _, bad := range []string{"{not json", `{"identity":{"replid":"x"},"snapshot":{"file":"s"}}`, `{"snapshot":{}}`} {
		os.WriteFile(filepath.Join(dir, StateFile), []byte(bad), 0o644)
		if _, err := ReadState(dir); !errors.Is(err, ErrInvalidState) {
			t.Errorf("state.json %q: %v, want ErrInvalidState", bad, err)
		}
	}
}
