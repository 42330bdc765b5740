package recovery

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/proxy"
	"github.com/redis-relay/redis-relay/proxy/history"
	"github.com/redis-relay/redis-relay/rdbparse"
)

// TestRecoverToPoint: writes, a FLUSHALL, more writes; the relay's data dir
// gives back the dataset just before the FLUSHALL and at earlier moments,
// beside the running relay and after a restart, and refuses points it does
// not hold.
func TestRecoverToPoint(t *testing.T) {
	master := redistest.Start(t)
	master.Do(t, "DEBUG", "POPULATE", 2000, "base", 32)
	relay := startRelay(t, master.Addr(), func(c *proxy.Config) { c.RefreshRatio = -1 })

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
		onDisk(t, master, relay)
		moments = append(moments, moment{at: time.Now(), digest: master.Digest(t)})
		time.Sleep(50 * time.Millisecond) // well apart from the next write in the time index
	}
	beforeFlush := master.Digest(t)
	master.Do(t, "FLUSHALL")
	writeKeys(t, master, 5, 100)
	onDisk(t, master, relay)

	// INFO says how far back the relay can go.
	if got, want := relay.InfoInt(t, "recover_newest_offset"), master.InfoInt(t, "master_repl_offset"); got != want {
		t.Errorf("recover_newest_offset %d, want the master's offset %d", got, want)
	}
	if oldest := relay.InfoInt(t, "recover_oldest_time"); oldest <= 0 || oldest > relay.InfoInt(t, "recover_newest_time") {
		t.Errorf("recover_oldest_time %d, newest %d", oldest, relay.InfoInt(t, "recover_newest_time"))
	}

	recover := func(o Options) Result {
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
	res := recover(Options{BeforeCommand: "flushall", Out: out})
	if res.Digest != beforeFlush {
		t.Errorf("before FLUSHALL: digest %s, want %s (the master's just before it)", res.Digest, beforeFlush)
	}
	sum, err := rdbparse.ParseFile(out)
	if err != nil || sum.Keys != res.Keys || sum.Keys == 0 {
		t.Errorf("the RDB written holds %d keys (%v), the recovered dataset %d", sum.Keys, err, res.Keys)
	}
	for i, m := range moments {
		if res := recover(Options{Until: m.at}); res.Digest != m.digest {
			t.Errorf("until moment %d: digest %s, want %s", i, res.Digest, m.digest)
		}
	}
	// --serve leaves a redis-server with the dataset.
	port := redistest.FreePort(t)
	served := recover(Options{Until: moments[2].at, ServePort: port})
	t.Cleanup(func() {
		if p, err := os.FindProcess(served.Pid); err == nil {
			p.Kill()
			p.Wait()
		}
	})
	c := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Protocol: 2})
	defer c.Close()
	if d, err := c.Do(t.Context(), "DEBUG", "DIGEST").Text(); err != nil || d != moments[2].digest {
		t.Errorf("served dataset: digest %s (%v), want %s", d, err, moments[2].digest)
	}
	if role, _ := c.Do(t.Context(), "ROLE").Slice(); len(role) == 0 || role[0] != "master" {
		t.Errorf("served server's role %v, want master", role)
	}
	byOffset := recover(Options{Until: moments[1].at})
	if again := recover(Options{UntilOffset: byOffset.Offset}); again.Digest != moments[1].digest {
		t.Errorf("until offset %d: digest %s, want %s", byOffset.Offset, again.Digest, moments[1].digest)
	}

	// Points the data dir does not hold are refused with what it holds.
	o := Options{DataDir: relay.cfg.DataDir, UntilOffset: -1, Until: time.Now().Add(-time.Hour)}
	if _, err := Recover(t.Context(), o); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("a point before the snapshot: %v, want ErrOutOfRange", err)
	}
	o = Options{DataDir: relay.cfg.DataDir, UntilOffset: -1, BeforeCommand: "flushdb"}
	if _, err := Recover(t.Context(), o); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("a command that never came: %v, want ErrOutOfRange", err)
	}

	// After a restart, and on a stopped relay's data dir, the same points.
	relay.Restart()
	onDisk(t, master, relay)
	relay.Stop()
	if res := recover(Options{Until: moments[0].at}); res.Digest != moments[0].digest {
		t.Errorf("after a restart, until moment 0: digest %s, want %s", res.Digest, moments[0].digest)
	}
	if _, err := os.Stat(filepath.Join(relay.cfg.DataDir, history.StateFile)); err != nil {
		t.Fatal(err)
	}
}

// TestRecoverAcrossRefresh: a refresh replaces the snapshot, but while
// retention keeps the log after the old one, the old snapshot stays and a
// point before the refresh is still reachable. Without retention it is
// refused.
func TestRecoverAcrossRefresh(t *testing.T) {
	for _, retain := range []bool{true, false} {
		t.Run(map[bool]string{true: "retain-age 1h", false: "no retention"}[retain], func(t *testing.T) {
			master := redistest.Start(t)
			master.Do(t, "DEBUG", "POPULATE", 2000, "base", 32)
			relay := startRelay(t, master.Addr(), func(c *proxy.Config) {
				c.RefreshRatio = -1
				c.SegmentSize = 32 << 10
				if retain {
					c.RetainAge = time.Hour
				}
			})
			writeKeys(t, master, 1, 300)
			onDisk(t, master, relay)
			before, digest := time.Now(), master.Digest(t)
			time.Sleep(50 * time.Millisecond)
			writeKeys(t, master, 2, 300)
			first := relay.Status().Snapshot.Offset
			if err := relay.Client().Do(t.Context(), "CONFIG", "SET", "refresh-ratio", "0.0001", "refresh-min-size", "1").Err(); err != nil {
				t.Fatal(err)
			}
			redistest.Eventually(t, 30*time.Second, func() error {
				if relay.Status().Snapshot.Offset == first {
					return errors.New("no refresh yet")
				}
				return nil
			})
			if err := relay.Client().Do(t.Context(), "CONFIG", "SET", "refresh-ratio", "-1").Err(); err != nil {
				t.Fatal(err)
			}
			writeKeys(t, master, 3, 100)
			onDisk(t, master, relay)
			res, err := Recover(t.Context(), Options{DataDir: relay.cfg.DataDir, UntilOffset: -1, Until: before, Out: filepath.Join(t.TempDir(), "x.rdb")})
			switch {
			case retain && err != nil:
				t.Fatalf("a point before the refresh, within retention: %v", err)
			case retain && res.Digest != digest:
				t.Fatalf("digest %s, want %s", res.Digest, digest)
			case !retain && !errors.Is(err, ErrOutOfRange):
				t.Fatalf("a point before the refresh without retention: %v, want ErrOutOfRange", err)
			}
		})
	}
}

// TestRecoverServeBusyPort: --serve on a port where an unrelated
// redis-server runs fails with an error that names the port, and that
// server is left as it was: its key, its role, its data.
func TestRecoverServeBusyPort(t *testing.T) {
	master := redistest.Start(t)
	relay := startRelay(t, master.Addr(), func(c *proxy.Config) { c.RefreshRatio = -1 })
	writeKeys(t, master, 0, 50)
	onDisk(t, master, relay)
	other := redistest.Start(t)
	other.Do(t, "SET", "precious", "do not touch")
	digest := other.Digest(t)
	untouched := func(what string) {
		t.Helper()
		if got := other.Do(t, "GET", "precious"); got != "do not touch" {
			t.Fatalf("%s: precious = %v", what, got)
		}
		if role := other.Info(t, "replication")["role"]; role != "master" {
			t.Fatalf("%s: the unrelated server's role is %s", what, role)
		}
		if got := other.Digest(t); got != digest {
			t.Fatalf("%s: the unrelated server's digest %s, was %s", what, got, digest)
		}
	}
	_, err := Recover(t.Context(), Options{DataDir: relay.cfg.DataDir, UntilOffset: -1, Until: time.Now(), ServePort: other.Port})
	if err == nil || !strings.Contains(err.Error(), strconv.Itoa(other.Port)) {
		t.Fatalf("recover --serve %d: %v, want an error naming the port", other.Port, err)
	}
	untouched("recover --serve")
}

// TestRecoverTTLAsOfPoint: keys with short TTLs written before the point
// are all in the dataset recovered as of it, with their expiry times, the
// same whether the recovery runs before or after their TTLs ran out.
func TestRecoverTTLAsOfPoint(t *testing.T) {
	master := redistest.Start(t)
	// Enough keys that taking the digest and the RDB lasts longer than one
	// of the scratch server's expiry cycles (10 a second).
	master.Do(t, "DEBUG", "POPULATE", 50000, "lasting", 32)
	relay := startRelay(t, master.Addr(), func(c *proxy.Config) { c.RefreshRatio = -1 })
	const expiring = 3000
	pipe := master.Client().Pipeline()
	for i := range expiring {
		pipe.Set(t.Context(), "ttl:"+strconv.Itoa(i), i, time.Duration(1500+i%1500)*time.Millisecond)
	}
	if _, err := pipe.Exec(t.Context()); err != nil {
		t.Fatal(err)
	}
	onDisk(t, master, relay)
	all := master.Do(t, "DBSIZE").(int64)
	time.Sleep(50 * time.Millisecond) // the point, well apart from the writes around it in the time index
	point := time.Now()
	time.Sleep(50 * time.Millisecond)
	master.Do(t, "SET", "after", "the point")
	onDisk(t, master, relay)
	recover := func() (Result, int64) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "x.rdb")
		res, err := Recover(t.Context(), Options{DataDir: relay.cfg.DataDir, UntilOffset: -1, Until: point, Out: out})
		if err != nil {
			t.Fatal(err)
		}
		sum, err := rdbparse.ParseFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return res, sum.Keys
	}
	first, firstRDB := recover()
	// Every TTL runs out; the master expires the keys and propagates DELs
	// (after the point).
	redistest.Eventually(t, 20*time.Second, func() error {
		if n := master.Do(t, "DBSIZE").(int64); n != all-expiring+1 {
			return fmt.Errorf("master holds %d keys, %d once every TTL has run out", n, all-expiring+1)
		}
		return nil
	})
	second, secondRDB := recover()
	for i, r := range []struct {
		res  Result
		keys int64
	}{{first, firstRDB}, {second, secondRDB}} {
		if r.res.Keys != all || r.keys != all {
			t.Errorf("run %d: %d keys, %d in the RDB; the master held %d at the point", i+1, r.res.Keys, r.keys, all)
		}
	}
	if first.Digest != second.Digest {
		t.Errorf("digest %s, then %s once the TTLs ran out", first.Digest, second.Digest)
	}
}
