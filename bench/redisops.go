package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redisproc"
)

// info runs INFO section and returns its fields.
func info(ctx context.Context, c *redis.Client, section string) (map[string]string, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := c.Info(cctx, section).Result()
	if err != nil {
		return nil, err
	}
	return redisproc.ParseInfo(s), nil
}

func infoInt(m map[string]string, key string) int64 {
	v, err := strconv.ParseInt(m[key], 10, 64)
	if err != nil {
		return -1
	}
	return v
}

// replOffset is master_repl_offset of a master (or of the relay).
func replOffset(ctx context.Context, p *proc) (int64, error) {
	m, err := info(ctx, p.c, "replication")
	if err != nil {
		return 0, err
	}
	return infoInt(m, "master_repl_offset"), nil
}

// replicaState reports whether a replica's link is up with no sync in
// progress, and the offset it has applied.
func replicaState(ctx context.Context, p *proc) (up bool, off int64, err error) {
	m, err := info(ctx, p.c, "replication")
	if err != nil {
		return false, 0, err
	}
	up = m["master_link_status"] == "up" && m["master_sync_in_progress"] == "0"
	return up, infoInt(m, "slave_repl_offset"), nil
}

// statCounters are the INFO stats counters the scenarios take deltas of.
type statCounters struct {
	syncFull, syncPartialOK, syncPartialErr, forks, replOut int64
}

func readStats(ctx context.Context, p *proc) (statCounters, error) {
	m, err := info(ctx, p.c, "stats")
	if err != nil {
		return statCounters{}, err
	}
	return statCounters{
		syncFull:       infoInt(m, "sync_full"),
		syncPartialOK:  infoInt(m, "sync_partial_ok"),
		syncPartialErr: infoInt(m, "sync_partial_err"),
		forks:          infoInt(m, "total_forks"),
		replOut:        infoInt(m, "total_net_repl_output_bytes"),
	}, nil
}

func (a statCounters) sub(b statCounters) statCounters {
	return statCounters{a.syncFull - b.syncFull, a.syncPartialOK - b.syncPartialOK, a.syncPartialErr - b.syncPartialErr, a.forks - b.forks, a.replOut - b.replOut}
}

// replicaof points p at target ("NO ONE" when target is nil).
func replicaof(ctx context.Context, p *proc, host, port string) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return p.c.Do(cctx, "REPLICAOF", host, port).Err()
}

func replicaofProc(ctx context.Context, p, target *proc) error {
	return replicaof(ctx, p, "127.0.0.1", strconv.Itoa(target.port))
}

// populate fills db 0 with keys "key:0".."key:<n-1>" of size value bytes.
func populate(ctx context.Context, p *proc, keys, size int64) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	return p.c.Do(cctx, "DEBUG", "POPULATE", keys, "key", size).Err()
}

func digest(ctx context.Context, p *proc) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	return p.c.Do(cctx, "DEBUG", "DIGEST").Text()
}

// digestsEqual compares DEBUG DIGEST of the master with every replica.
func digestsEqual(ctx context.Context, master *proc, replicas ...*proc) (bool, error) {
	want, err := digest(ctx, master)
	if err != nil {
		return false, fmt.Errorf("digest of %s: %w", master.name, err)
	}
	ok := true
	for _, r := range replicas {
		got, err := digest(ctx, r)
		if err != nil {
			return false, fmt.Errorf("digest of %s: %w", r.name, err)
		}
		if got != want {
			ok = false
		}
	}
	return ok, nil
}

// waitInSync polls until every replica's link is up and its offset has
// reached the master's, and returns the time it first saw that. Offsets are
// read master first, so a replica counts as in sync only once it holds
// everything the master had written when the round began.
func waitInSync(ctx context.Context, master *proc, replicas []*proc, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	synced := make([]bool, len(replicas))
	var lastErr error
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return time.Time{}, err
		}
		mOff, err := replOffset(ctx, master)
		if err != nil {
			lastErr = err
			time.Sleep(20 * time.Millisecond)
			continue
		}
		all := true
		for i, r := range replicas {
			if synced[i] {
				continue
			}
			up, off, err := replicaState(ctx, r)
			if err != nil {
				lastErr = err
				all = false
				continue
			}
			if up && off >= mOff {
				synced[i] = true
			} else {
				all = false
			}
		}
		if all {
			return time.Now(), nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	var behind []string
	for i, r := range replicas {
		if !synced[i] {
			behind = append(behind, r.name)
		}
	}
	return time.Time{}, errors.Join(fmt.Errorf("not in sync after %v: %s", timeout, strings.Join(behind, ", ")), lastErr)
}
