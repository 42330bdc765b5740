package proxy

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/proxy/redistest"
	"github.com/redis-relay/redis-relay/rdbparse"
)

// TestRecoverToPoint: writes, a FLUSHALL, more writes; the relay's data dir
// gives back the dataset just before the FLUSHALL and at earlier moments,
// beside the running relay and after a restart, and refuses points it does
// not hold.
func TestRecoverToPoint(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 0, 2000)
	relay := startRelay(t, master.Addr(), func(c *Config) { c.RefreshRatio = -1 })
	replica := replicaOf(t, relay.HostPort)
	inSync(t, 30*time.Second, master, replica)

	type moment struct {
		at     time.Time
		digest string
	}
	var moments []moment
	for i := range 3 {
		writeKeys(t, master, 1+i, 200)
		master.Do(t, "MULTI")
		master.Do(t, "INCR", "counter")
		master.Do(t, "SET", "last", i)
		master.Do(t, "EXEC")
		waitOffsets(t, master, relay, replica)
		moments = append(moments, moment{at: time.Now(), digest: master.Digest(t)})
		time.Sleep(50 * time.Millisecond) // well apart from the next write in the time index
	}
	beforeFlush := master.Digest(t)
	master.Do(t, "FLUSHALL")
	writeKeys(t, master, 5, 100)
	waitOffsets(t, master, relay, replica)
	if _, err := relay.currentLog().Sync(); err != nil { // the time index goes to disk with the log
		t.Fatal(err)
	}

	recover := func(o RecoverOptions) RecoverResult {
		t.Helper()
		o.DataDir = relay.cfg.DataDir
		if o.UntilOffset == 0 {
			o.UntilOffset = -1
		}
		res, err := Recover(t.Context(), o)
		if err != nil {
			t.Fatalf("recover %+v: %v", o, err)
		}
		return res
	}
	out := filepath.Join(t.TempDir(), "before-flush.rdb")
	res := recover(RecoverOptions{BeforeCommand: "flushall", Out: out})
	if res.Digest != beforeFlush {
		t.Errorf("before FLUSHALL: digest %s, want %s (the master's just before it)", res.Digest, beforeFlush)
	}
	sum, err := rdbparse.ParseFile(out)
	if err != nil || sum.Keys != res.Keys || sum.Keys == 0 {
		t.Errorf("the RDB written holds %d keys (%v), the recovered dataset %d", sum.Keys, err, res.Keys)
	}
	for i, m := range moments {
		if res := recover(RecoverOptions{Until: m.at}); res.Digest != m.digest {
			t.Errorf("until moment %d: digest %s, want %s", i, res.Digest, m.digest)
		}
	}
	byOffset := recover(RecoverOptions{Until: moments[1].at})
	if again := recover(RecoverOptions{UntilOffset: byOffset.Offset}); again.Digest != moments[1].digest {
		t.Errorf("until offset %d: digest %s, want %s", byOffset.Offset, again.Digest, moments[1].digest)
	}

	// Points the data dir does not hold are refused with what it holds.
	o := RecoverOptions{DataDir: relay.cfg.DataDir, UntilOffset: -1, Until: time.Now().Add(-time.Hour)}
	if _, err := Recover(t.Context(), o); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("a point before the snapshot: %v, want ErrOutOfRange", err)
	}
	o = RecoverOptions{DataDir: relay.cfg.DataDir, UntilOffset: -1, BeforeCommand: "flushdb"}
	if _, err := Recover(t.Context(), o); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("a command that never came: %v, want ErrOutOfRange", err)
	}

	// After a restart, and on a stopped relay's data dir, the same points.
	relay.Restart()
	waitOffsets(t, master, relay, replica)
	relay.Stop()
	if res := recover(RecoverOptions{Until: moments[0].at}); res.Digest != moments[0].digest {
		t.Errorf("after a restart, until moment 0: digest %s, want %s", res.Digest, moments[0].digest)
	}
	if _, err := os.Stat(filepath.Join(relay.cfg.DataDir, stateFile)); err != nil {
		t.Fatal(err)
	}
}
