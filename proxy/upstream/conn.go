package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/proxy/internal/wire"
	"github.com/redis-relay/redis-relay/proxy/settings"
	"github.com/redis-relay/redis-relay/replstream"
)

// peer is an upstream server and how to log in to it: the master with
// masteruser, masterauth and tls-replication, or the snapshot source with
// its own snapshot-source-* settings. Neither's credentials are ever sent
// to the other.
type peer struct {
	addr     string
	role     string // "master" or "snapshot source", for errors
	user     string // AUTH user; "": the default user
	password string // "": no AUTH
	passName string // the setting that holds password, for errors
	tls      *tls.Config
	// offerWithin bounds the wait for the reply to a snapshot request,
	// keepalives or not; 0: no bound, as a replica waits for its master.
	offerWithin time.Duration
}

// masterPeer is the master at addr.
func masterPeer(cfg settings.Config, addr string) peer {
	return peer{addr: addr, role: "master", user: cfg.MasterUser, password: cfg.MasterAuth, passName: "masterauth", tls: cfg.UpstreamTLS}
}

// sourcePeer is the snapshot source.
func sourcePeer(cfg settings.Config) peer {
	return peer{addr: cfg.SnapshotSource, role: "snapshot source", user: cfg.SnapshotSourceUser, password: cfg.SnapshotSourcePassword, passName: "snapshot-source-password", tls: cfg.SnapshotSourceTLS,
		offerWithin: cfg.ReplTimeout}
}

// upstreamConn is one connection to an upstream (the master, or a snapshot source).
type upstreamConn struct {
	peer    peer
	nc      net.Conn
	br      *bufio.Reader
	dec     *zstd.Decoder // set on a compressed link; br then reads through it
	wmu     sync.Mutex
	timeout func() time.Duration // repl-timeout
	stop    func() bool
}

// dial connects to an upstream; the connection closes when ctx ends.
func (u *Link) dial(ctx context.Context, p peer, status *linkStatus) (*upstreamConn, error) {
	d := net.Dialer{Timeout: handshakeTimeout}
	var nc net.Conn
	var err error
	if p.tls != nil {
		td := tls.Dialer{NetDialer: &d, Config: p.tls}
		nc, err = td.DialContext(ctx, "tcp", p.addr)
	} else {
		nc, err = d.DialContext(ctx, "tcp", p.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	c := &upstreamConn{peer: p, nc: nc, timeout: u.cfg.Timeout, br: bufio.NewReaderSize(&activityReader{nc: nc, timeout: u.cfg.Timeout, status: status}, 64<<10)}
	c.stop = context.AfterFunc(ctx, func() { nc.Close() })
	return c, nil
}

// handshake sends PING, AUTH (with the credentials of the peer dialled)
// and the given REPLCONF commands as a stock replica does, and returns the
// replies to the REPLCONFs (errors to them are not fatal, as for a stock
// replica).
func (u *Link) handshake(c *upstreamConn, replconfs ...[]string) ([][]byte, error) {
	if err := c.write(resp.AppendCommand(nil, "PING")); err != nil {
		return nil, fmt.Errorf("send PING: %w", err)
	}
	line, err := c.readLine(handshakeTimeout)
	if err != nil {
		return nil, fmt.Errorf("read PING reply: %w", err)
	}
	if len(line) > 0 && line[0] == '-' && !isAuthError(line) {
		if strings.HasPrefix(string(line), "-LOADING") {
			return nil, fmt.Errorf("%w: PING answered %s", errTryLater, resp.Excerpt(line, 200))
		}
		return nil, fmt.Errorf("PING answered %s", resp.Excerpt(line, 200))
	}
	var batch []byte
	p := c.peer
	auth := p.password != ""
	if auth {
		if p.user != "" {
			batch = resp.AppendCommand(batch, "AUTH", p.user, p.password)
		} else {
			batch = resp.AppendCommand(batch, "AUTH", p.password)
		}
	}
	for _, cmd := range replconfs {
		batch = resp.AppendCommand(batch, cmd...)
	}
	if err := c.write(batch); err != nil {
		return nil, fmt.Errorf("send handshake: %w", err)
	}
	if auth {
		line, err := c.readLine(handshakeTimeout)
		if err != nil {
			return nil, fmt.Errorf("read AUTH reply: %w", err)
		}
		if len(line) == 0 || line[0] != '+' {
			return nil, fmt.Errorf("%w: %s AUTH answered %s", errAuth, p.role, resp.Excerpt(line, 200))
		}
	}
	replies := make([][]byte, len(replconfs))
	for i := range replconfs {
		line, err := c.readLine(handshakeTimeout)
		if err != nil {
			return nil, fmt.Errorf("read handshake reply: %w", err)
		}
		if isAuthError(line) {
			return nil, fmt.Errorf("%w: %s requires a password (set %s)", errAuth, p.role, p.passName)
		}
		replies[i] = line
	}
	return replies, nil
}

func (c *upstreamConn) close() {
	c.stop()
	c.nc.Close()
	if c.dec != nil {
		c.dec.Close()
	}
}

// decompress reads everything after the PSYNC reply through a zstd
// decoder, with bounded memory: the upstream is not trusted.
func (c *upstreamConn) decompress(counts *wire.LinkBytes) error {
	dec, err := zstd.NewReader(wire.CountingReader{R: c.br, N: &counts.Wire},
		zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20), zstd.WithDecoderMaxMemory(256<<20))
	if err != nil {
		return fmt.Errorf("start decompression: %w", err)
	}
	c.dec = dec
	c.br = bufio.NewReaderSize(wire.CountingReader{R: dec, N: &counts.Stream}, 64<<10)
	return nil
}

func (c *upstreamConn) write(p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(c.timeout()))
	_, err := c.nc.Write(p)
	return err
}

// readLine reads a reply line, allowing timeout for it.
func (c *upstreamConn) readLine(timeout time.Duration) ([]byte, error) {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	return replstream.ReadLine(c.br, 1<<16)
}

// activityReader refreshes the read deadline before every read, so the link
// fails after ReplTimeout of silence, and records the time of the last byte.
type activityReader struct {
	nc          net.Conn
	timeout     func() time.Duration
	status      *linkStatus
	deadlineSet time.Time
}

func (a *activityReader) Read(p []byte) (int, error) {
	// Moving the deadline costs a timer update; under load, doing it once
	// per eighth of the timeout is enough to keep it at least 7/8 away.
	timeout := a.timeout()
	if now := time.Now(); now.Sub(a.deadlineSet) > timeout/8 {
		a.nc.SetReadDeadline(now.Add(timeout))
		a.deadlineSet = now
	}
	n, err := a.nc.Read(p)
	if n > 0 {
		a.status.lastIO.Store(time.Now().UnixNano())
	}
	return n, err
}

// handshakeTimeout bounds each reply during the handshake, as Redis's
// CONFIG_REPL_SYNCIO_TIMEOUT does.
const handshakeTimeout = 5 * time.Second

func isAuthError(line []byte) bool {
	s := string(line)
	return strings.HasPrefix(s, "-NOAUTH") || strings.HasPrefix(s, "-NOPERM") || strings.HasPrefix(s, "-ERR operation not permitted")
}

// readReply reads the reply to PSYNC, skipping newline keepalives (each one
// refreshes the timeout).
func (c *upstreamConn) readReply() ([]byte, error) {
	for {
		line, err := c.readLine(c.timeout())
		if err != nil {
			return nil, err
		}
		if len(line) > 0 {
			return line, nil
		}
	}
}

// readReplyWithin reads the reply to PSYNC as readReply does, but gives
// up after within in all: newline keepalives do not extend it. (Every
// read moves the connection's deadline, so the limit closes it instead.)
func (c *upstreamConn) readReplyWithin(within time.Duration) ([]byte, error) {
	var expired atomic.Bool
	limit := time.AfterFunc(within, func() {
		expired.Store(true)
		c.nc.Close()
	})
	defer limit.Stop()
	line, err := c.readReply()
	if err != nil && expired.Load() {
		return nil, fmt.Errorf("%w: no reply but keepalives within %s", errNoOffer, within)
	}
	return line, err
}

// errNoOffer: an upstream kept a PSYNC waiting past its bound.
var errNoOffer = errors.New("upstream offered no snapshot")

// readPayloadHeader reads the $<len> or $EOF:<mark> line, skipping
// keepalives.
func (c *upstreamConn) readPayloadHeader() (replstream.Payload, error) {
	for {
		line, err := c.readLine(c.timeout())
		if err != nil {
			return replstream.Payload{}, fmt.Errorf("read transfer preamble: %w", err)
		}
		p, keepalive, err := replstream.ParsePayloadLine(line)
		if err != nil || !keepalive {
			return p, err
		}
	}
}
