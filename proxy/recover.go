package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redisproc"
	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/replstream"
)

// Point-in-time recovery. The data dir holds a snapshot and the exact
// stream after it, with the time each part arrived (the log's time index).
// Recover rebuilds the dataset as of a point with the engine that matters:
// a scratch redis-server is fed the snapshot and the stream up to the point
// exactly as a replica is fed (+FULLRESYNC, the RDB, the commands), and
// its dataset is digested and saved while it is still that replica. The point always falls on a resume point: whole
// commands, never half a MULTI/EXEC block. The data dir is only read.

// RecoverOptions say which point to go back to and what to leave there.
// Exactly one of Until, UntilOffset and BeforeCommand is set.
type RecoverOptions struct {
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

// RecoverResult describes the dataset recovered.
type RecoverResult struct {
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
func (o RecoverOptions) bind() string {
	if strings.TrimSpace(o.Bind) == "" {
		return "127.0.0.1"
	}
	return o.Bind
}

// ErrOutOfRange: the point asked for is not in what the data dir holds.
var ErrOutOfRange = errors.New("point not retained")

// Recover rebuilds the dataset at a point, see RecoverOptions.
func Recover(ctx context.Context, o RecoverOptions) (RecoverResult, error) {
	start := time.Now()
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if why := expiryCaveat(o.BeforeCommand); why != "" {
		o.Logger.Warn("--before-command "+strings.ToUpper(o.BeforeCommand)+" also stops at a key the master expired or evicted", "reason", why)
	}
	h, err := openArchive(o.DataDir)
	if err != nil {
		return RecoverResult{}, err
	}
	defer h.close()
	cut, res, err := h.cutPoint(o)
	if err != nil {
		return RecoverResult{}, err
	}
	snap, _ := h.base(cut)
	o.Logger.Info("recovering", "replid", h.state.Identity.ReplID, "snapshot_offset", snap.Offset, "offset", cut-1, "log_bytes", cut-snap.Offset-1)
	srv, err := startScratch(ctx, o)
	if err != nil {
		return RecoverResult{}, err
	}
	keep := false
	defer func() {
		if !keep {
			srv.stop()
		}
	}()
	release, err := h.feed(ctx, srv, cut)
	if err != nil {
		return RecoverResult{}, err
	}
	defer release()
	// The dataset as of the point is taken while the scratch server is
	// still a replica: a replica never expires keys on its own, so a key
	// whose TTL ran out after the point is still there, with its absolute
	// expiry time, however long the recovery took.
	c := srv.client
	if res.Digest, err = c.Do(ctx, "DEBUG", "DIGEST").Text(); err != nil {
		return RecoverResult{}, fmt.Errorf("digest: %w", err)
	}
	if res.Keys, err = keyCount(ctx, c); err != nil {
		return RecoverResult{}, err
	}
	if o.Out != "" {
		if err := c.Do(ctx, "SAVE").Err(); err != nil {
			return RecoverResult{}, fmt.Errorf("save: %w", err)
		}
		if err := copyFile(filepath.Join(srv.proc.Dir, "dump.rdb"), o.Out); err != nil {
			return RecoverResult{}, err
		}
	}
	if o.ServePort > 0 {
		// Served, it is a master like any other: from now on it expires
		// the keys whose time has come.
		if err := c.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
			return RecoverResult{}, fmt.Errorf("promote the scratch server: %w", err)
		}
		keep = true
		res.Pid = srv.proc.Pid()
	}
	res.ReplID = h.state.Identity.ReplID
	res.Elapsed = time.Since(start)
	return res, nil
}

// archive is a read-only view of a data dir: state.json, the snapshots it
// names that the log still follows, and the log, all opened at once.
type archive struct {
	state diskState
	snaps []Snapshot // newest first; snaps[len-1] is where framing starts
	files []*os.File // open on snaps
	log   *replstream.LogReader
	times *replstream.TimeIndex
}

func openArchive(dir string) (*archive, error) {
	raw, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w (is %s a relay's data dir?)", stateFile, err, dir)
	}
	h := &archive{}
	if err := json.Unmarshal(raw, &h.state); err != nil || h.state.Snapshot.File == "" {
		return nil, fmt.Errorf("%s is not a relay's state: %v", stateFile, err)
	}
	logDir := filepath.Join(dir, h.state.LogDir)
	// The time index first, so that its files of segments a running relay
	// trims before the log is opened are still held.
	if h.times, err = replstream.OpenTimeIndex(logDir, 0, math.MaxInt64); err != nil {
		return nil, err
	}
	if h.log, err = replstream.OpenLogReader(logDir); err != nil {
		h.times.Close()
		return nil, err
	}
	first, next := h.log.Range()
	if err := h.times.Clip(first, next); err != nil {
		h.close()
		return nil, err
	}
	for i, s := range append([]Snapshot{h.state.Snapshot}, h.state.Older...) {
		if s.Offset+1 < first || s.Offset+1 > next {
			continue // the log no longer (or not yet) holds the stream after it
		}
		f, err := os.Open(filepath.Join(dir, s.File))
		if err != nil {
			if i == 0 {
				h.close()
				return nil, fmt.Errorf("open snapshot: %w", err)
			}
			continue // dropped by the relay meanwhile
		}
		h.snaps, h.files = append(h.snaps, s), append(h.files, f)
	}
	if len(h.snaps) == 0 {
		h.close()
		return nil, fmt.Errorf("log holds [%d, %d), the snapshot needs %d", first, next, h.state.Snapshot.Offset+1)
	}
	return h, nil
}

func (h *archive) close() {
	for _, f := range h.files {
		f.Close()
	}
	h.times.Close()
	h.log.Close()
}

// oldest is the oldest snapshot the log follows: the start of the reach.
func (h *archive) oldest() Snapshot { return h.snaps[len(h.snaps)-1] }

// start is the offset of the first stream byte after the oldest snapshot.
func (h *archive) start() int64 { return h.oldest().Offset + 1 }

// base is the newest snapshot at or before cut, and its file.
func (h *archive) base(cut int64) (Snapshot, *os.File) {
	for i, s := range h.snaps {
		if s.Offset+1 <= cut {
			return s, h.files[i]
		}
	}
	return h.oldest(), h.files[len(h.files)-1]
}

// span says what the data dir can go back to, for error messages.
func (h *archive) span() string {
	_, next := h.log.Range()
	s := fmt.Sprintf("offsets %d to %d", h.start()-1, next-1)
	if created := h.oldest().Created; !created.IsZero() {
		s += ", from " + created.UTC().Format(time.RFC3339Nano)
		if m, ok, _ := h.times.Newest(); ok {
			s += " to " + m.Time.UTC().Format(time.RFC3339Nano)
		}
	}
	return s
}

// cutPoint frames the log from the snapshot on and returns the offset of
// the first byte left out: a resume point.
func (h *archive) cutPoint(o RecoverOptions) (int64, RecoverResult, error) {
	var res RecoverResult
	_, next := h.log.Range()
	limit := next
	switch {
	case o.UntilOffset >= 0:
		limit = o.UntilOffset + 1
		if limit < h.start() || limit > next {
			return 0, res, fmt.Errorf("%w: offset %d; this data dir holds %s", ErrOutOfRange, o.UntilOffset, h.span())
		}
	case !o.Until.IsZero():
		if o.Until.Before(h.oldest().Created) {
			return 0, res, fmt.Errorf("%w: %s is before the snapshot; this data dir holds %s", ErrOutOfRange, o.Until.UTC().Format(time.RFC3339Nano), h.span())
		}
		var err error
		if limit, err = h.times.OffsetAfter(o.Until); err != nil {
			return 0, res, err
		}
	case o.BeforeCommand == "":
		return 0, res, errors.New("say which point: a time, an offset or a command")
	}
	name := []byte(strings.ToLower(o.BeforeCommand))
	// With After, only commands from the first mark at or after that time
	// on count (marks grow in offset and time alike).
	from := h.start()
	if !o.After.IsZero() {
		var err error
		if from, err = h.times.OffsetAfter(o.After.Add(-time.Nanosecond)); err != nil {
			return 0, res, err
		}
	}
	fr := replstream.NewFramer(h.start(), replstream.DefaultLimits)
	rp := replstream.NewResumePoint(h.start())
	found := false
	onCmd := func(c *replstream.Command) {
		if found {
			return
		}
		if len(name) > 0 && bytes.EqualFold(c.Name, name) {
			if c.Offset >= from {
				found = true
				res.Command, res.CmdAt = strings.ToUpper(o.BeforeCommand), c.Offset
				return
			}
		}
		rp.Add(c)
	}
	buf := make([]byte, 256<<10)
	for off := h.start(); off < limit && !found; {
		n, err := h.log.ReadAt(buf[:min(int64(len(buf)), limit-off)], off)
		if n > 0 {
			if _, ferr := fr.Feed(buf[:n], onCmd); ferr != nil {
				break // a torn tail: what came before it stands
			}
			off += int64(n)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, res, err
		}
		if n == 0 {
			break
		}
	}
	if len(name) > 0 && !found {
		after := ""
		if !o.After.IsZero() {
			after = " after " + o.After.UTC().Format(time.RFC3339Nano)
		}
		return 0, res, fmt.Errorf("%w: no %s%s in the log; this data dir holds %s", ErrOutOfRange, strings.ToUpper(o.BeforeCommand), after, h.span())
	}
	cut := rp.At()
	res.Offset = cut - 1
	if cut > h.start() {
		var err error
		if res.Time, _, err = h.times.TimeOf(cut - 1); err != nil {
			return 0, res, err
		}
	} else {
		res.Time = h.oldest().Created
	}
	return cut, res, nil
}

// scratch is the redis-server a recovery feeds.
type scratch struct {
	proc   *redisproc.Proc
	client *redis.Client
}

// startScratch starts the scratch redis-server in a directory of its own
// (redisproc.Start: until the server answering on the port is proven to be
// the one started, nothing but PING and INFO is sent to the port, so a
// server someone else runs there is never touched). A port asked for
// (--serve) that is taken is an error; a port picked here that a stranger
// took in the meantime is picked again.
func startScratch(ctx context.Context, o RecoverOptions) (*scratch, error) {
	dir, err := os.MkdirTemp("", "redis-relay-recover-")
	if err != nil {
		return nil, err
	}
	p, err := redisproc.Start(ctx, redisproc.Options{Bin: o.RedisServer, Dir: dir, Host: o.bind(), Port: o.ServePort})
	if err != nil {
		os.RemoveAll(dir)
		if o.ServePort > 0 {
			return nil, fmt.Errorf("--serve %d: %w", o.ServePort, err)
		}
		return nil, fmt.Errorf("the scratch redis-server: %w", err)
	}
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), Protocol: 2, DisableIdentity: true, ReadTimeout: time.Minute, MaxRetries: -1})
	return &scratch{proc: p, client: c}, nil
}

func (s *scratch) stop() {
	s.client.Close()
	s.proc.Kill()
	os.RemoveAll(s.proc.Dir)
}

// feed makes the scratch server a replica of a one-shot master that serves
// the snapshot and the stream up to cut, and waits until it has applied
// all of it. The link stays open until release: the scratch server stays a
// replica of this one-shot master and has no port to reconnect to that
// someone else could have taken.
func (h *archive) feed(ctx context.Context, srv *scratch, cut int64) (release func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 24*time.Hour)
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	var nc net.Conn
	release = func() {
		stop()
		cancel()
		if nc != nil {
			nc.Close()
		}
		ln.Close()
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if err := srv.client.Do(ctx, "REPLICAOF", "127.0.0.1", port).Err(); err != nil {
		return nil, fmt.Errorf("point the scratch server at the recovery: %w", err)
	}
	if nc, err = ln.Accept(); err != nil {
		return nil, fmt.Errorf("wait for the scratch server: %w", err)
	}
	stopConn := context.AfterFunc(ctx, func() { nc.Close() })
	defer stopConn()
	br := bufio.NewReader(nc)
	for {
		args, err := resp.ReadCommand(br)
		if err != nil {
			return nil, fmt.Errorf("handshake with the scratch server: %w", err)
		}
		if len(args) == 0 {
			continue
		}
		switch strings.ToLower(string(args[0])) {
		case "psync", "sync":
			if err := h.serveTo(nc, br, cut); err != nil {
				return nil, err
			}
			return release, nil
		case "ping":
			nc.Write([]byte("+PONG\r\n"))
		default: // AUTH, REPLCONF
			nc.Write([]byte("+OK\r\n"))
		}
	}
}

// serveTo sends +FULLRESYNC, the snapshot and the stream up to cut, then
// reads ACKs until the replica has applied everything.
func (h *archive) serveTo(nc net.Conn, br *bufio.Reader, cut int64) error {
	snap, f := h.base(cut)
	st, err := f.Stat()
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(nc, 256<<10)
	fmt.Fprintf(w, "+FULLRESYNC %s %d\r\n", h.state.Identity.ReplID, snap.Offset)
	w.Write(replstream.Payload{Size: st.Size()}.Preamble())
	if _, err := io.Copy(w, io.NewSectionReader(f, 0, st.Size())); err != nil {
		return fmt.Errorf("send the snapshot: %w", err)
	}
	buf := make([]byte, 256<<10)
	for off := snap.Offset + 1; off < cut; {
		n, err := h.log.ReadAt(buf[:min(int64(len(buf)), cut-off)], off)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return fmt.Errorf("send the stream: %w", werr)
			}
			off += int64(n)
		}
		if err != nil && (n == 0 || !errors.Is(err, io.EOF)) {
			return fmt.Errorf("read the log at %d: %w", off, err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	for {
		args, err := resp.ReadCommand(br)
		if err != nil {
			return fmt.Errorf("wait for the scratch server to apply the stream: %w", err)
		}
		if len(args) == 3 && strings.EqualFold(string(args[0]), "replconf") && strings.EqualFold(string(args[1]), "ack") {
			if acked, _ := strconv.ParseInt(string(args[2]), 10, 64); acked >= cut-1 {
				return nil
			}
		}
	}
}

var keysField = regexp.MustCompile(`(?m)^db\d+:keys=(\d+)`)

// keyCount is the number of keys in every database (INFO keyspace).
func keyCount(ctx context.Context, c *redis.Client) (int64, error) {
	text, err := c.Info(ctx, "keyspace").Result()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, m := range keysField.FindAllStringSubmatch(text, -1) {
		k, _ := strconv.ParseInt(m[1], 10, 64)
		n += k
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
