package recovery

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redisproc"
	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/replstream"
)

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
func startScratch(ctx context.Context, o Options) (*scratch, error) {
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
