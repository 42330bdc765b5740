package recovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redisproc"
	"github.com/redis-relay/redis-relay/proxy/history"
)

// Options say which point to go back to and what to leave there.
// Exactly one of Until, UntilOffset and BeforeCommand is set.
type Options struct {
	DataDir       string
	Until         time.Time // the dataset as it was at this time
	UntilOffset   int64     // the dataset as of this master_repl_offset; -1: unset
	BeforeCommand string    // just before the first command of this name ...
	After         time.Time // ... that arrived at or after this time (zero: any)

	Out         string // write the dataset here as an RDB file
	ServePort   int    // or leave a redis-server with it on this port
	Bind        string // the addresses it listens on (redis-server's bind); default 127.0.0.1
	RedisServer string // redis-server binary; default: $REDIS_SERVER, or from PATH
	Logger      *slog.Logger
}

// Result describes the dataset recovered.
type Result struct {
	ReplID  string    // the history it belongs to
	Offset  int64     // its master_repl_offset: every command through it is applied
	Time    time.Time // when the last applied command arrived (zero if unknown)
	Command string    // with BeforeCommand: the command left out, and its offset
	CmdAt   int64
	Digest  string // DEBUG DIGEST of the recovered dataset
	Keys    int64
	Pid     int // with ServePort: the redis-server left running
	Elapsed time.Duration
}

// bind is what the scratch server listens on.
func (o Options) bind() string {
	if strings.TrimSpace(o.Bind) == "" {
		return "127.0.0.1"
	}
	return o.Bind
}

// ErrOutOfRange: the point asked for is not in what the data dir holds.
var ErrOutOfRange = errors.New("point not retained")

// Recover rebuilds the dataset at a point, see Options.
func Recover(ctx context.Context, o Options) (Result, error) {
	start := time.Now()
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if why := history.ExpiryCaveat(o.BeforeCommand); why != "" {
		o.Logger.Warn("--before-command "+strings.ToUpper(o.BeforeCommand)+" also stops at a key the master expired or evicted", "reason", why)
	}
	h, err := openArchive(o.DataDir)
	if err != nil {
		return Result{}, err
	}
	defer h.close()
	cut, res, err := h.cutPoint(o)
	if err != nil {
		return Result{}, err
	}
	snap, _ := h.base(cut)
	o.Logger.Info("recovering", "replid", h.state.Identity.ReplID, "snapshot_offset", snap.Offset, "offset", cut-1, "log_bytes", cut-snap.Offset-1)
	srv, err := startScratch(ctx, o)
	if err != nil {
		return Result{}, err
	}
	keep := false
	defer func() {
		if !keep {
			srv.stop()
		}
	}()
	release, err := h.feed(ctx, srv, cut)
	if err != nil {
		return Result{}, err
	}
	defer release()
	// The dataset as of the point is taken while the scratch server is
	// still a replica: a replica never expires keys on its own, so a key
	// whose TTL ran out after the point is still there, with its absolute
	// expiry time, however long the recovery took.
	c := srv.client
	if res.Digest, err = c.Do(ctx, "DEBUG", "DIGEST").Text(); err != nil {
		return Result{}, fmt.Errorf("digest: %w", err)
	}
	if res.Keys, err = keyCount(ctx, c); err != nil {
		return Result{}, err
	}
	if o.Out != "" {
		if err := c.Do(ctx, "SAVE").Err(); err != nil {
			return Result{}, fmt.Errorf("save: %w", err)
		}
		if err := copyFile(filepath.Join(srv.proc.Dir, "dump.rdb"), o.Out); err != nil {
			return Result{}, err
		}
	}
	if o.ServePort > 0 {
		// Served, it is a master like any other: from now on it expires
		// the keys whose time has come.
		if err := c.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
			return Result{}, fmt.Errorf("promote the scratch server: %w", err)
		}
		keep = true
		res.Pid = srv.proc.Pid()
	}
	res.ReplID = h.state.Identity.ReplID
	res.Elapsed = time.Since(start)
	return res, nil
}

// keyCount is the number of keys in every database: INFO keyspace has a
// line "db0:keys=1000,expires=10,avg_ttl=0" for each that holds any.
func keyCount(ctx context.Context, c *redis.Client) (int64, error) {
	text, err := c.Info(ctx, "keyspace").Result()
	if err != nil {
		return 0, err
	}
	var n int64
	for field, v := range redisproc.ParseInfo(text) {
		if !strings.HasPrefix(field, "db") {
			continue
		}
		keys, _, _ := strings.Cut(v, ",")
		if k, ok := strings.CutPrefix(keys, "keys="); ok {
			m, _ := strconv.ParseInt(k, 10, 64)
			n += m
		}
	}
	return n, nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("write %s: %w", to, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
