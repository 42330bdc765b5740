package redistest

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	// copyBufSize is the largest chunk moved in one read/write.
	copyBufSize = 32 << 10
	// dialTimeout bounds connecting to the target.
	dialTimeout = 5 * time.Second
)

// FaultProxy forwards TCP connections from its own loopback listener to a
// target address and can inject faults: dropped connections, refused
// connections, a silent black hole, a bandwidth limit and a cut after a given
// number of bytes.
//
// "Downstream" means target to client (for a replica connected through the
// proxy: master to replica, which carries the RDB and the command stream).
//
// All goroutines belong to the proxy and have ended when Close returns.
type FaultProxy struct {
	ln       net.Listener
	ctx      context.Context // cancelled by Close; aborts pending dials
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	once     sync.Once
	accepted atomic.Int64

	mu       sync.Mutex
	target   string
	refuse   bool
	hold     chan struct{} // non-nil while black-holed; closed to resume
	rate     int           // downstream bytes per second per connection; 0 = unlimited
	cutAfter int64         // for the next connection; 0 = off
	mangle   func([]byte) []byte
	links    map[*link]struct{}
	closed   bool
}

// link is one proxied connection: the accepted client side and the dialled
// upstream side.
type link struct {
	p        *FaultProxy
	client   net.Conn
	upstream net.Conn
	cutAfter int64 // reset the link after this many downstream bytes; 0 = never
	done     chan struct{}
	once     sync.Once
}

// NewFaultProxy starts a proxy listening on 127.0.0.1 (random port) that
// forwards to target. It is closed when the test ends.
func NewFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: fault proxy listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &FaultProxy{
		ln:     ln,
		ctx:    ctx,
		cancel: cancel,
		target: target,
		links:  make(map[*link]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's listening address, "127.0.0.1:port".
func (p *FaultProxy) Addr() string {
	return p.ln.Addr().String()
}

// HostPort returns the proxy's host and port as separate strings.
func (p *FaultProxy) HostPort() (string, string) {
	host, port, err := net.SplitHostPort(p.Addr())
	if err != nil {
		// A listener address always splits; keep going with something usable.
		return p.Addr(), ""
	}
	return host, port
}

// SetTarget changes where new connections are forwarded. Existing
// connections keep their old target.
func (p *FaultProxy) SetTarget(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = addr
}

// CutAll abruptly closes (TCP reset) both sides of every current connection.
func (p *FaultProxy) CutAll() {
	for _, l := range p.snapshot() {
		l.close(true)
	}
}

// SetRefuse makes the proxy, while on, accept new connections and close them
// at once without contacting the target.
func (p *FaultProxy) SetRefuse(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = on
}

// SetBlackHole, while on, stops forwarding in both directions without
// closing anything: bytes already read are held, the rest wait in kernel
// buffers, and new connections are accepted but get no traffic. Turning it
// off resumes forwarding where it stopped.
func (p *FaultProxy) SetBlackHole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case on && p.hold == nil:
		p.hold = make(chan struct{})
	case !on && p.hold != nil:
		close(p.hold)
		p.hold = nil
	}
}

// SetRate limits each connection's downstream (target to client) traffic to
// about bytesPerSec. Zero or less removes the limit. Changes apply to
// existing connections too.
func (p *FaultProxy) SetRate(bytesPerSec int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rate = max(bytesPerSec, 0)
}

// CutAfter arms a one-shot fault: the next accepted connection is reset once
// n bytes have been forwarded downstream (for example part-way through an
// RDB transfer). The client sees at most n bytes. Zero disarms it.
func (p *FaultProxy) CutAfter(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutAfter = max(n, 0)
}

// Conns returns the number of connections currently being forwarded.
func (p *FaultProxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Accepted returns how many connections the proxy has accepted in total,
// refused ones included.
func (p *FaultProxy) Accepted() int64 {
	return p.accepted.Load()
}

// Close stops the listener, closes every connection and waits for all of the
// proxy's goroutines to finish. It is safe to call more than once.
func (p *FaultProxy) Close() {
	p.once.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()

		p.cancel()
		_ = p.ln.Close()
		for _, l := range p.snapshot() {
			l.close(false)
		}
		p.wg.Wait()
	})
}

// snapshot returns the current links, so they can be closed without holding
// the lock (closing a link takes it).
func (p *FaultProxy) snapshot() []*link {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*link, 0, len(p.links))
	for l := range p.links {
		out = append(out, l)
	}
	return out
}

// acceptLoop accepts client connections until the listener is closed.
func (p *FaultProxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.ctx.Err() != nil {
				return
			}
			// Likely a transient error (e.g. out of file descriptors).
			select {
			case <-time.After(10 * time.Millisecond):
				continue
			case <-p.ctx.Done():
				return
			}
		}
		p.accepted.Add(1)

		p.mu.Lock()
		refuse, target, cut := p.refuse, p.target, p.cutAfter
		if !refuse {
			p.cutAfter = 0 // one shot: only this connection gets it
		}
		p.mu.Unlock()

		if refuse {
			_ = c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c, target, cut)
	}
}

// serve dials the target for one accepted client and starts the two copy
// goroutines.
func (p *FaultProxy) serve(client net.Conn, target string, cut int64) {
	defer p.wg.Done()

	ctx, cancel := context.WithTimeout(p.ctx, dialTimeout)
	var d net.Dialer
	upstream, err := d.DialContext(ctx, "tcp", target)
	cancel()
	if err != nil {
		// The target is unreachable: pass that on as a reset.
		resetConn(client)
		return
	}

	l := &link{
		p:        p,
		client:   client,
		upstream: upstream,
		cutAfter: cut,
		done:     make(chan struct{}),
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = client.Close()
		_ = upstream.Close()
		return
	}
	p.links[l] = struct{}{}
	p.wg.Add(2)
	p.mu.Unlock()

	go p.pump(l, upstream, client, false)
	go p.pump(l, client, upstream, true)
}

// pump copies src to dst until either side fails or the link is closed.
// When it stops, it closes the whole link.
func (p *FaultProxy) pump(l *link, dst, src net.Conn, downstream bool) {
	defer p.wg.Done()
	defer l.close(false)

	buf := make([]byte, copyBufSize)
	var sent int64 // downstream bytes written so far
	for {
		n, readErr := src.Read(buf)
		if n > 0 && !p.forward(l, dst, buf[:n], downstream, &sent) {
			return
		}
		if readErr != nil {
			return
		}
	}
}

// forward writes data to dst, applying the black hole and, downstream, the
// rate limit and the byte cut. *sent counts the bytes written downstream. It
// returns false when the link is closed and the pump should stop.
func (p *FaultProxy) forward(l *link, dst net.Conn, data []byte, downstream bool, sent *int64) bool {
	if downstream {
		p.mu.Lock()
		m := p.mangle
		p.mu.Unlock()
		if m != nil {
			data = m(data)
		}
	}
	for len(data) > 0 {
		piece := data
		if downstream {
			if rate := p.currentRate(); rate > 0 {
				piece = piece[:min(len(piece), chunkSize(rate))]
				if !l.sleep(pace(len(piece), rate)) {
					return false
				}
			}
		}
		if !p.waitOpen(l) {
			return false
		}
		cut := false
		if downstream && l.cutAfter > 0 {
			if left := l.cutAfter - *sent; int64(len(piece)) >= left {
				piece = piece[:left]
				cut = true
			}
		}
		if _, err := dst.Write(piece); err != nil {
			return false
		}
		*sent += int64(len(piece))
		if cut {
			l.close(true)
			return false
		}
		data = data[len(piece):]
	}
	return true
}

// SetMangle installs f to rewrite every chunk flowing target->client (to
// corrupt a stream on the wire); nil removes it. f runs on the proxy's
// goroutine, one chunk at a time, and may return a different slice.
func (p *FaultProxy) SetMangle(f func([]byte) []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mangle = f
}

// currentRate returns the downstream rate limit in bytes per second.
func (p *FaultProxy) currentRate() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rate
}

// chunkSize is how much a rate-limited pump writes at once: about a tenth of
// a second's worth of bytes, so the pacing stays smooth.
func chunkSize(rate int) int {
	return min(max(rate/10, 1), copyBufSize)
}

// pace is how long n bytes take at rate bytes per second.
func pace(n, rate int) time.Duration {
	return time.Duration(n) * time.Second / time.Duration(rate)
}

// waitOpen blocks while the proxy is black-holed. It returns false if the
// link was closed meanwhile.
func (p *FaultProxy) waitOpen(l *link) bool {
	for {
		p.mu.Lock()
		hold := p.hold
		p.mu.Unlock()
		if hold == nil {
			return true
		}
		select {
		case <-hold:
		case <-l.done:
			return false
		}
	}
}

// sleep waits for d, or returns false early if the link is closed.
func (l *link) sleep(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-l.done:
		return false
	}
}

// close shuts both sides of the link once; with reset, the peers get a TCP
// RST instead of an orderly FIN. Blocked reads and writes return at once.
func (l *link) close(reset bool) {
	l.once.Do(func() {
		if reset {
			resetConn(l.client)
			resetConn(l.upstream)
		} else {
			_ = l.client.Close()
			_ = l.upstream.Close()
		}
		close(l.done)

		l.p.mu.Lock()
		delete(l.p.links, l)
		l.p.mu.Unlock()
	})
}

// resetConn closes c so that the peer sees a reset rather than end-of-file.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
