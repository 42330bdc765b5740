package downstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/proxy/acl"
	"github.com/redis-relay/redis-relay/proxy/history"
	"github.com/redis-relay/redis-relay/proxy/internal/wire"
	"github.com/redis-relay/redis-relay/proxy/settings"
)

// deniedReply is what protected mode answers a client from outside loopback
// before closing it, in the manner of Redis's -DENIED.
const deniedReply = "-DENIED redis-relay is running in protected mode: no password is set " +
	"(requirepass), so only clients on the loopback interface may connect, and a replica " +
	"that connects is handed the master's whole dataset. To let this client in, do one of: " +
	"1) set a password with requirepass (or requirepass-file) and have replicas send it " +
	"as masterauth; 2) if every host that can reach the relay may read the dataset, start " +
	"it with protected-mode no (or CONFIG SET protected-mode no from the loopback " +
	"interface, then CONFIG REWRITE to keep it); 3) listen on loopback only with bind " +
	"127.0.0.1 and reach the relay through a tunnel.\r\n"

// protectedModeRefuses reports whether protected mode turns the client at
// remote away: protected mode is on, no password is set, and remote is
// neither a loopback address nor a Unix socket.
func protectedModeRefuses(protected bool, requirePass string, remote net.Addr) bool {
	if !protected || requirePass != "" {
		return false
	}
	switch a := remote.(type) {
	case *net.TCPAddr:
		return !a.IP.IsLoopback()
	case *net.UnixAddr:
		return false
	case nil:
		return true
	}
	host, _, err := net.SplitHostPort(remote.String())
	if err != nil {
		host = remote.String()
	}
	ip, err := netip.ParseAddr(host)
	return err != nil || !ip.Unmap().IsLoopback()
}

// Server is the relay as a master: it accepts downstream connections,
// answers their commands (the admin ones through the handlers wired in
// with SetCommands), and turns a connection that sends PSYNC or SYNC into a
// session reading the history.
//
// clientsMu is a leaf lock, as is the pub/sub registry's.
type Server struct {
	cfg    *settings.Live
	hist   *history.Store
	up     Upstream // where the history comes from: wait-ahead asks if there is one; downstream ACK policies wake its ACK loop
	acl    *acl.ACL // decides what each connection's user may run
	logger *slog.Logger
	stats  *counters

	commands func(name string) Handler // the admin commands; set before Serve
	other    Handler                   // answers any other command; set before Serve
	ps       *PubSub                   // who listens to which channel

	clientsMu    sync.Mutex
	clients      map[*client]struct{}  // every downstream connection; guarded by clientsMu
	sessions     map[*session]struct{} // every replica session running; guarded by clientsMu
	nextClientID atomic.Int64
	cmdStats     commandStats // commands clients sent, by name
	unknown      atomic.Int64 // commands clients sent that neither the server nor a handler knows

	syncPace pacer     // the full-sync-bandwidth-limit shared by every full sync
	slots    syncSlots // full syncs running and queued (full-sync-max-concurrent)
}

// Upstream is what the server needs of the upstream link: whether
// there is an upstream to wait for (wait-ahead), and a nudge when a
// replica ACKed more (downstream ACK policies).
type Upstream interface {
	MasterAddr() (string, <-chan struct{})
	NoteDownstreamAck()
	// RefreshBlocked and AskRefresh: a tool's rdb-only (rdbonly.go) asks
	// for a current snapshot.
	RefreshBlocked() string
	AskRefresh() (<-chan struct{}, func() error)
}

// New makes the server for the history hist, with the users of users;
// Serve runs it on a listener.
func New(cfg *settings.Live, hist *history.Store, up Upstream, users *acl.ACL, logger *slog.Logger) *Server {
	return &Server{
		cfg: cfg, hist: hist, up: up, acl: users, stats: newCounters(), logger: logger,
		ps:       newPubSub(),
		clients:  make(map[*client]struct{}),
		sessions: make(map[*session]struct{}),
	}
}

// Serve accepts downstream connections until ctx ends, then waits for their
// goroutines.
func (srv *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	var open atomic.Int64
	var delay time.Duration // backoff after a failed accept
	var warned time.Time
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if acceptCanRecover(err) {
				// Out of file descriptors or buffers: the relay keeps
				// serving the connections it has and tries again, as
				// net/http does, rather than ending.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				if time.Since(warned) > 10*time.Second {
					warned = time.Now()
					srv.logger.Warn("accept failed, retrying", "err", err, "retry_in", delay)
				}
				select {
				case <-time.After(delay):
				case <-ctx.Done():
				}
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		delay = 0
		if open.Load() >= int64(srv.cfg.Get().MaxClients) {
			srv.stats.rejectedConns.Add(1)
			nc.SetWriteDeadline(time.Now().Add(time.Second))
			nc.Write([]byte("-ERR max number of clients reached\r\n"))
			nc.Close()
			continue
		}
		open.Add(1)
		srv.stats.connections.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer open.Add(-1)
			srv.handleConn(ctx, nc)
		}()
	}
}

// acceptCanRecover reports whether a failed accept is worth retrying: a
// timeout, or a shortage of descriptors or memory that closing connections
// relieves.
func acceptCanRecover(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// client is one downstream connection before it becomes a replica session.
//
// Its fields belong to the connection's own goroutine. What CLIENT LIST
// shows of it to other connections is the copy in shown, which that
// goroutine replaces before and after every command.
type client struct {
	srv  *Server
	nc   net.Conn
	br   *bufio.Reader
	out  []byte
	addr string

	// Set by REPLCONF.
	listeningPort int
	announceIP    string
	capaEOF       bool
	capaPSYNC2    bool
	capaZstd      bool // a relay below asks for a compressed link
	zstdLevel     zstd.EncoderLevel
	rdbOnly       bool
	rdbCurrent    bool // a relay refreshing for a tool: rdb-only must be current (wire.RDBCurrentOption)
	// rdb-filter-only: filtered asks for an RDB without keys, with the
	// function libraries when filterFunctions.
	filtered        bool
	filterFunctions bool

	id       int64
	fd       int // the socket's file descriptor; -1 when it has none
	created  time.Time
	name     string // CLIENT SETNAME, HELLO SETNAME
	user     string // the ACL user the connection runs as; "" before AUTH
	libName  string // CLIENT SETINFO lib-name
	libVer   string // CLIENT SETINFO lib-ver
	resp3    bool   // HELLO 3: replies in RESP3
	lastCmd  string // as CLIENT LIST names it: "get", "client|list"
	lastAt   time.Time
	argvMem  int64      // bytes of the arguments of the command running; 0 between commands
	multi    [][][]byte // commands queued after MULTI; nil outside a transaction
	multiMem int64      // bytes of their arguments
	inMulti  bool
	// multiAborted: a command was refused while queuing, so EXEC
	// discards the transaction (EXECABORT), as in Redis.
	multiAborted bool
	replica      atomic.Bool                // became a replica session
	shown        atomic.Pointer[ClientInfo] // what CLIENT LIST shows of the connection
	wmu          sync.Mutex                 // serialises writes: replies and published messages

	// subscriptions is how many channels the connection listens to, as the
	// last SUBSCRIBE or UNSUBSCRIBE reported (the PubSub keeps the channels).
	// Only the connection's own goroutine reads and writes it.
	subscriptions int
}

func (srv *Server) handleConn(ctx context.Context, nc net.Conn) {
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	cfg := srv.cfg.Get()
	// The default user takes the running requirepass (CONFIG SET changes
	// it from the next connection or AUTH), as in Redis.
	srv.acl.SetRequirePass(cfg.RequirePass)
	open := srv.acl.StartsAuthenticated() // the default user needs no password
	if protectedModeRefuses(cfg.ProtectedMode && open, cfg.RequirePass, nc.RemoteAddr()) {
		srv.stats.rejectedConns.Add(1)
		srv.logger.Debug("client refused by protected mode", "client", nc.RemoteAddr().String())
		nc.SetWriteDeadline(time.Now().Add(time.Second))
		nc.Write([]byte(deniedReply))
		return
	}
	c := &client{
		srv: srv, nc: nc, br: bufio.NewReaderSize(wire.CountingReader{R: nc, N: &srv.stats.clientBytesIn}, clientReadBuffer),
		addr:    nc.RemoteAddr().String(),
		id:      srv.nextClientID.Add(1),
		fd:      socketFD(nc),
		created: time.Now(),

		zstdLevel: zstd.SpeedDefault,
	}
	if open {
		c.user = acl.DefaultUser
	}
	c.publish()
	srv.clientsMu.Lock()
	srv.clients[c] = struct{}{}
	srv.clientsMu.Unlock()
	defer func() {
		srv.clientsMu.Lock()
		delete(srv.clients, c)
		srv.clientsMu.Unlock()
		srv.ps.UnsubscribeAll(c)
	}()
	for {
		// Between commands only timeout (Config.IdleTimeout) applies, and
		// not to subscribers, as in Redis; CommandTimeout bounds one
		// command from its first byte to its last.
		var idleUntil time.Time
		if idle := srv.cfg.Get().IdleTimeout; idle > 0 && c.subscriptions == 0 {
			idleUntil = time.Now().Add(idle)
		}
		nc.SetReadDeadline(idleUntil)
		if _, err := c.br.Peek(1); err != nil {
			return
		}
		nc.SetReadDeadline(time.Now().Add(srv.cfg.Get().CommandTimeout))
		args, err := resp.ReadCommand(c.br)
		if err != nil {
			var pe resp.ProtocolError
			if errors.As(err, &pe) {
				srv.stats.protocolErrors.Add(1)
				srv.logger.Warn("bad request from client, closing", "client", c.addr, "err", err)
				c.out = resp.AppendError(c.out, "ERR "+pe.Error())
				c.flush()
			}
			return
		}
		if len(args) == 0 {
			continue
		}
		c.lastCmd, c.lastAt, c.argvMem = commandLabel(args), time.Now(), argsSize(args)
		c.publish()
		sess, quit := c.execute(args)
		c.argvMem = 0
		if sess != nil {
			c.replica.Store(true)
		}
		c.publish()
		if err := c.flush(); err != nil || quit {
			return
		}
		if sess != nil {
			sess.run(ctx)
			return
		}
	}
}

func (c *client) flush() error {
	if len(c.out) == 0 {
		return nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.Timeout()))
	n, err := c.nc.Write(c.out)
	c.srv.stats.clientBytesOut.Add(int64(n))
	c.out = c.out[:0]
	return err
}

// execute runs one command, or queues it inside MULTI.
func (c *client) execute(args [][]byte) (sess *session, quit bool) {
	name := strings.ToLower(string(args[0]))
	// user, set only by AUTH's or HELLO's effect, guards every command
	// but AUTH, HELLO, PING and QUIT; then the user's ACL decides, for
	// every command, queued ones included; a subscribed connection may
	// send only these few.
	if c.user == "" {
		if name != "auth" && name != "hello" && name != "ping" && name != "quit" {
			c.reject(name, "NOAUTH Authentication required.")
			return nil, false
		}
	} else if err := c.srv.acl.Check(c.user, args, func() string { return c.info().Describe() }); err != nil {
		c.reject(name, err.Error())
		c.multiAborted = c.inMulti
		return nil, errors.Is(err, acl.ErrNoUser)
	}
	if c.subscriptions > 0 {
		switch name {
		case "subscribe", "unsubscribe", "ping", "quit", "psubscribe", "punsubscribe":
		default:
			c.reject(name, fmt.Sprintf("ERR Can't execute '%s': only (P)SUBSCRIBE / (P)UNSUBSCRIBE / PING / QUIT are allowed in this context", resp.Excerpt(args[0], 32)))
			return nil, false
		}
		if name == "ping" {
			c.count(name, 0, false)
			c.out = resp.AppendArray(c.out, 2)
			c.out = resp.AppendBulk(c.out, "pong")
			c.out = resp.AppendBulk(c.out, "")
			return nil, false
		}
	}
	if c.inMulti {
		switch name {
		case "exec":
			c.count(name, 0, false)
			queued, aborted := c.multi, c.multiAborted
			c.multi, c.multiMem, c.inMulti, c.multiAborted = nil, 0, false, false
			if aborted {
				c.out = resp.AppendError(c.out, "EXECABORT Transaction discarded because of previous errors.")
				return nil, false
			}
			c.out = resp.AppendArray(c.out, len(queued))
			for _, q := range queued {
				if _, quit := c.dispatch(q); quit {
					return nil, true
				}
			}
		case "discard":
			c.count(name, 0, false)
			c.multi, c.multiMem, c.inMulti, c.multiAborted = nil, 0, false, false
			c.out = resp.AppendSimple(c.out, "OK")
		case "multi":
			c.reject(name, "ERR MULTI calls can not be nested")
		case "psync", "sync", "shutdown", "quit":
			c.reject(name, "ERR Command not allowed inside a transaction")
		default:
			if len(c.multi) >= resp.MaxArgs {
				c.reject(name, "ERR too many commands in the transaction")
				return nil, false
			}
			c.multi = append(c.multi, args)
			c.multiMem += argsSize(args)
			c.out = resp.AppendSimple(c.out, "QUEUED")
		}
		return nil, false
	}
	switch name {
	case "multi":
		c.count(name, 0, false)
		c.inMulti = true
		c.out = resp.AppendSimple(c.out, "OK")
		return nil, false
	case "exec", "discard":
		c.count(name, 0, true)
		c.out = resp.AppendError(c.out, fmt.Sprintf("ERR %s without MULTI", strings.ToUpper(name)))
		return nil, false
	}
	return c.dispatch(args)
}

// dispatch runs one command. It returns a session when the connection
// became a replica, and quit when it must be closed. An admin command goes
// to its handler (SetCommands), which appends the reply to c.out and hands
// back what the connection must change; the connection applies it.
func (c *client) dispatch(args [][]byte) (sess *session, quit bool) {
	name := strings.ToLower(string(args[0]))
	start, replyAt := time.Now(), len(c.out)
	defer func() {
		c.count(name, time.Since(start), len(c.out) > replyAt && c.out[replyAt] == '-')
	}()
	if h := c.srv.handler(name); h != nil {
		var e Effect
		c.out, e = h(c.out, c.info(), args)
		return nil, c.apply(e)
	}
	switch name {
	case "replconf":
		c.replconf(args)
	case "psync":
		if len(args) < 3 {
			c.wrongArgs(name)
			return nil, false
		}
		off, err := strconv.ParseInt(string(args[2]), 10, 64)
		if err != nil {
			c.out = resp.AppendError(c.out, "ERR value is not an integer or out of range")
			return nil, false
		}
		if len(args) > 3 {
			c.out = resp.AppendError(c.out, "ERR PSYNC FAILOVER can't be sent to a relay.")
			return nil, false
		}
		if c.filtered && !c.capaEOF {
			c.out = resp.AppendError(c.out, "ERR Filtered replica requires EOF capability")
			return nil, false
		}
		return newSession(c, string(args[1]), off, false), false
	case "sync":
		if c.filtered && !c.capaEOF {
			c.out = resp.AppendError(c.out, "ERR Filtered replica requires EOF capability")
			return nil, false
		}
		return newSession(c, "?", -1, true), false
	default:
		c.srv.unknown.Add(1)
		if h := c.srv.other; h != nil {
			var e Effect
			c.out, e = h(c.out, c.info(), args)
			return nil, c.apply(e)
		}
		var b strings.Builder
		for _, a := range args[1:] {
			fmt.Fprintf(&b, "'%s' ", resp.Excerpt(a, 64))
		}
		c.out = resp.AppendError(c.out, fmt.Sprintf("ERR unknown command '%s', with args beginning with: %s", resp.Excerpt(args[0], 64), b.String()))
	}
	return nil, false
}

func (c *client) wrongArgs(name string) {
	c.out = resp.AppendWrongArgs(c.out, name)
}

// info is what a command handler sees of this connection. Only the
// connection's own goroutine may call it.
func (c *client) info() ClientInfo {
	multi := -1
	if c.inMulti {
		multi = len(c.multi)
	}
	qbuf := c.br.Buffered()
	return ClientInfo{
		ID: c.id, Addr: c.addr, LocalAddr: c.nc.LocalAddr().String(), FD: c.fd,
		Name: c.name, User: c.user, LibName: c.libName, LibVer: c.libVer, RESP3: c.resp3,
		LastCmd: c.lastCmd, LastAt: c.lastAt, Created: c.created, Replica: c.replica.Load(),
		Subscriptions: c.subscriptions, Multi: multi, MultiMem: c.multiMem, ArgvMem: c.argvMem,
		Qbuf: qbuf, QbufFree: c.br.Size() - qbuf, Obl: len(c.out),
		TotMem: int64(c.br.Size()+cap(c.out)) + c.multiMem + c.argvMem,
		Sub:    c,
	}
}

// publish replaces what CLIENT LIST shows of the connection.
func (c *client) publish() {
	ci := c.info()
	ci.Sub = nil
	c.shown.Store(&ci)
}

// clientReadBuffer is the size of a connection's read buffer (qbuf and
// qbuf-free in CLIENT LIST add up to it).
const clientReadBuffer = 16 << 10

// socketFD is the file descriptor of the socket under nc (through TLS),
// or -1 when it has none.
func socketFD(nc net.Conn) int {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	raw.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// commandLabel names a command as CLIENT LIST's cmd= does: the command,
// or command|subcommand for the commands that have subcommands.
func commandLabel(args [][]byte) string {
	name := strings.ToLower(string(args[0]))
	switch name {
	case "client", "config", "slowlog", "latency", "command", "relay", "acl":
		if len(args) > 1 && len(args[1]) <= 32 {
			return name + "|" + strings.ToLower(string(args[1]))
		}
	}
	if len(name) > 64 {
		name = name[:64]
	}
	return name
}

// argsSize is the bytes of a command's arguments.
func argsSize(args [][]byte) int64 {
	var n int64
	for _, a := range args {
		n += int64(len(a))
	}
	return n
}

// apply makes the change an admin command asked of this connection, after
// its reply has been appended, and reports whether the connection must
// close.
func (c *client) apply(e Effect) (quit bool) {
	if e.Authenticated {
		c.user = e.User
	}
	if e.SetName != nil {
		c.name = *e.SetName
	}
	if e.LibName != nil {
		c.libName = *e.LibName
	}
	if e.LibVer != nil {
		c.libVer = *e.LibVer
	}
	if e.Proto != 0 {
		c.resp3 = e.Proto == 3
	}
	if e.Subscribed {
		c.subscriptions = e.Subscriptions
	}
	return e.Quit
}

// Deliver writes one published message to the connection, between its
// replies (wmu). A connection that cannot take it within a second is closed.
func (c *client) Deliver(msg []byte) error {
	if s := c.shown.Load(); s != nil && s.RESP3 && len(msg) > 0 && msg[0] == '*' {
		// The same message as a RESP3 push: only the header's type differs.
		msg = append([]byte{'>'}, msg[1:]...)
	}
	c.wmu.Lock()
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	n, err := c.nc.Write(msg)
	c.wmu.Unlock()
	c.srv.stats.clientBytesOut.Add(int64(n))
	if err != nil {
		c.nc.Close()
	}
	return err
}

// replconf answers REPLCONF option/value pairs as a Redis master does.
func (c *client) replconf(args [][]byte) {
	if len(args)%2 == 0 {
		c.out = resp.AppendError(c.out, "ERR syntax error")
		return
	}
	for i := 1; i < len(args); i += 2 {
		opt, val := strings.ToLower(string(args[i])), string(args[i+1])
		switch opt {
		case "listening-port":
			p, err := strconv.Atoi(val)
			if err != nil || p < 0 || p > 65535 {
				c.out = resp.AppendError(c.out, "ERR value is not an integer or out of range")
				return
			}
			c.listeningPort = p
		case "ip-address":
			if len(val) >= 256 {
				c.out = resp.AppendError(c.out, fmt.Sprintf("ERR REPLCONF ip-address provided by replica instance is too long: %d bytes", len(val)))
				return
			}
			c.announceIP = val
		case "capa":
			switch strings.ToLower(val) {
			case "eof":
				c.capaEOF = true
			case "psync2":
				c.capaPSYNC2 = true
			case wire.CapaZstd:
				c.capaZstd = true
			}
		case wire.ZstdLevelOption:
			level, on, err := settings.CompressionLevel(val)
			if err != nil || !on {
				c.out = resp.AppendError(c.out, "ERR unknown compression level")
				return
			}
			c.zstdLevel = level
		case "ack", "getack":
			return // never answered
		case "rdb-only":
			switch val {
			case "0":
				c.rdbOnly = false
			case "1":
				c.rdbOnly = true
			default:
				c.out = resp.AppendError(c.out, "ERR value is not an integer or out of range")
				return
			}
		case wire.RDBCurrentOption:
			switch val {
			case "0", "1":
				c.rdbCurrent = val == "1"
			default:
				c.out = resp.AppendError(c.out, "ERR value is not an integer or out of range")
				return
			}
		case "rdb-filter-only":
			functions, unknown := parseRDBFilter(val)
			if unknown != "" {
				c.out = resp.AppendError(c.out, fmt.Sprintf("ERR Unsupported rdb-filter-only option: %s", resp.Excerpt([]byte(unknown), 64)))
				return
			}
			c.filtered, c.filterFunctions = true, functions
		case "version":
		default:
			c.out = resp.AppendError(c.out, fmt.Sprintf("ERR Unrecognized REPLCONF option: %s", resp.Excerpt(args[i], 64)))
			return
		}
	}
	c.out = resp.AppendSimple(c.out, "OK")
}

// ClientInfos describes every downstream connection, oldest first. A
// replica's omem is the part of the history the relay holds for it and
// has not sent: the rest of the snapshot during a full sync, then the log
// past what it was sent.
func (srv *Server) ClientInfos() []ClientInfo {
	var next int64 = -1
	if log := srv.hist.CurrentLog(); log != nil {
		_, next = log.Range()
	}
	srv.clientsMu.Lock()
	unsent := make(map[*client]int64, len(srv.sessions))
	for s := range srv.sessions {
		switch sent, total := s.sent.Load(), s.bulkTotal.Load(); {
		case sent > 0 && next >= 0:
			unsent[s.c] = max(next-sent, 0)
		case total > 0:
			unsent[s.c] = max(total-s.bulkSent.Load(), 0)
		}
	}
	list := make([]ClientInfo, 0, len(srv.clients))
	for o := range srv.clients {
		ci := *o.shown.Load()
		if n, ok := unsent[o]; ok {
			ci.Omem = n
			ci.TotMem += n
		}
		list = append(list, ci)
	}
	srv.clientsMu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	return list
}

// KillClient closes the downstream connection with that id. With
// endSession, a replica session on it is first ended as killed by an
// operator, so that its close reason says so.
func (srv *Server) KillClient(id int64, endSession bool) {
	srv.clientsMu.Lock()
	var o *client
	for c := range srv.clients {
		if c.id == id {
			o = c
			break
		}
	}
	var sess *session
	if o != nil && endSession && o.replica.Load() {
		for s := range srv.sessions {
			if s.c == o {
				sess = s
				break
			}
		}
	}
	srv.clientsMu.Unlock()
	if o == nil {
		return
	}
	if sess != nil {
		sess.end(ReasonKilled)
	}
	o.nc.Close()
}

// addSession and removeSession register a replica session.
func (srv *Server) addSession(s *session) {
	srv.clientsMu.Lock()
	srv.sessions[s] = struct{}{}
	srv.clientsMu.Unlock()
}

func (srv *Server) removeSession(s *session) {
	srv.clientsMu.Lock()
	delete(srv.sessions, s)
	srv.clientsMu.Unlock()
}

// eachSession calls f for every replica session, under clientsMu: f must
// not block or take a lock.
func (srv *Server) eachSession(f func(*session)) {
	srv.clientsMu.Lock()
	defer srv.clientsMu.Unlock()
	for s := range srv.sessions {
		f(s)
	}
}

// DownstreamAcks is the server as the upstream link's AckSource: the
// offset each online replica last ACKed, replicas on SYNC left out.
func (srv *Server) DownstreamAcks() []int64 {
	var acks []int64
	srv.eachSession(func(s *session) {
		if s.Online() && !s.legacy {
			acks = append(acks, s.ack.Load())
		}
	})
	return acks
}

// ClientCount is the number of downstream connections that are not
// replicas: connected_clients, which leaves replicas out in Redis too
// (connected_slaves counts them).
func (srv *Server) ClientCount() int {
	srv.clientsMu.Lock()
	defer srv.clientsMu.Unlock()
	n := 0
	for c := range srv.clients {
		if !c.replica.Load() {
			n++
		}
	}
	return n
}

// handler returns the handler of the command name, or nil.
func (srv *Server) handler(name string) Handler {
	if srv.commands == nil {
		return nil
	}
	return srv.commands(name)
}

// PubSub is the server's registry of subscriptions, which the SUBSCRIBE,
// UNSUBSCRIBE and PUBLISH handlers answer through.
func (srv *Server) PubSub() *PubSub { return srv.ps }

// Status is the downstream server's part of the relay's status.
type Status struct {
	FullSyncsRunning    int // full syncs sending their snapshot now
	FullSyncsQueued     int // waiting for a slot (full-sync-max-concurrent)
	FullSyncsServed     int64
	PartialSyncsServed  int64
	PartialSyncsErr     int64
	BytesToReplicas     int64
	Disconnects         map[CloseReason]int64 // replica sessions ended, by reason
	Connections         int64
	RejectedConns       int64
	ProtocolErrors      int64 // malformed requests from clients
	FullSyncPacedBytes  int64 // snapshot bytes sent under a bandwidth limit
	FullSyncPaceWait    time.Duration
	CompressedOutStream int64
	CompressedOutWire   int64
	ClientCommands      map[string]CommandStat // commands clients sent, by lower-case name; those sent at least once
	UnknownCommands     int64                  // commands clients sent that neither the server nor a handler knows
	ClientBytesIn       int64                  // bytes read from connections: requests, replicas' ACKs
	ClientBytesOut      int64                  // replies and published messages written to connections
}

// Status reports the server's state.
func (srv *Server) Status() Status {
	var st Status
	st.FullSyncsRunning, st.FullSyncsQueued = srv.slots.counts()
	c := srv.stats
	st.FullSyncsServed = c.fullSyncsServed.Load()
	st.PartialSyncsServed = c.partialSyncsServed.Load()
	st.PartialSyncsErr = c.partialSyncsErr.Load()
	st.BytesToReplicas = c.bytesToReplicas.Load()
	st.Disconnects = make(map[CloseReason]int64, len(c.disconnects))
	for k, n := range c.disconnects {
		st.Disconnects[k] = n.Load()
	}
	st.Connections = c.connections.Load()
	st.RejectedConns = c.rejectedConns.Load()
	st.ProtocolErrors = c.protocolErrors.Load()
	st.FullSyncPacedBytes, st.FullSyncPaceWait = c.pacedBytes.Load(), time.Duration(c.paceWait.Load())
	st.CompressedOutStream, st.CompressedOutWire = c.zOut.Stream.Load(), c.zOut.Wire.Load()
	st.ClientCommands, st.UnknownCommands = srv.cmdStats.snapshot(), srv.unknown.Load()
	st.ClientBytesIn, st.ClientBytesOut = c.clientBytesIn.Load(), c.clientBytesOut.Load()
	return st
}

// Counts reads, without a lock, what the relay samples rates of: the
// commands clients sent, the bytes read from and written to connections
// (replies), and the bytes sent to replicas.
func (srv *Server) Counts() (commands, bytesIn, bytesOut, toReplicas int64) {
	c := srv.stats
	return srv.cmdStats.total(), c.clientBytesIn.Load(), c.clientBytesOut.Load(), c.bytesToReplicas.Load()
}

// counters are the server's monotonic counts, read without locks.
type counters struct {
	fullSyncsServed    atomic.Int64
	partialSyncsServed atomic.Int64
	partialSyncsErr    atomic.Int64
	bytesToReplicas    atomic.Int64
	disconnects        map[CloseReason]*atomic.Int64 // keys fixed at start
	connections        atomic.Int64
	rejectedConns      atomic.Int64
	protocolErrors     atomic.Int64
	zOut               wire.LinkBytes // compressed links to replicas
	pacedBytes         atomic.Int64   // snapshot bytes sent under a full-sync bandwidth limit
	paceWait           atomic.Int64   // nanoseconds full syncs waited for the bandwidth limits
	clientBytesIn      atomic.Int64   // bytes read from connections: requests, replicas' ACKs
	clientBytesOut     atomic.Int64   // replies and published messages written to connections
}

func newCounters() *counters {
	c := &counters{disconnects: make(map[CloseReason]*atomic.Int64)}
	for _, r := range CloseReasons() {
		c.disconnects[r] = new(atomic.Int64)
	}
	return c
}

// at marks a step where a test may stop the relay (Config.CrashPoint):
// "hold-lookup", a session has read bytes of the log and has not yet
// looked up the command tripwire's hold for them. The history marks its
// own steps.
func (srv *Server) at(point string) {
	if f := srv.cfg.Fixed().CrashPoint; f != nil {
		f(point)
	}
}

// ReplicaInfo describes one downstream replica session.
type ReplicaInfo struct {
	Addr      string // remote address
	IP        string // announced or peer IP
	Port      int    // REPLCONF listening-port
	State     string // wait_bgsave, send_bulk, online
	AckOffset int64
	AckAge    time.Duration // since the last ACK (0 while not online)
	Since     time.Time
	BulkSent  int64 // during a full sync: snapshot bytes sent so far
	BulkTotal int64 // during a full sync: the snapshot's size; -1 while unknown (online: all that was sent)
}

// Replicas lists the downstream replica sessions, sorted by address.
func (srv *Server) Replicas() []ReplicaInfo {
	var list []ReplicaInfo
	srv.eachSession(func(s *session) {
		ip := s.c.announceIP
		if ip == "" {
			ip, _, _ = net.SplitHostPort(s.c.addr)
		}
		ri := ReplicaInfo{Addr: s.c.addr, IP: ip, Port: s.c.listeningPort, State: s.state.Load().(string), AckOffset: s.ack.Load(), Since: s.started,
			BulkSent: s.bulkSent.Load(), BulkTotal: s.bulkTotal.Load()}
		if ri.State == StateOnline {
			ri.AckAge = time.Since(time.Unix(0, s.ackTime.Load()))
			if ri.BulkTotal < 0 {
				// The snapshot was still arriving when its transfer
				// began; an online replica has been sent all of it.
				ri.BulkTotal = ri.BulkSent
			}
		}
		list = append(list, ri)
	})
	sort.Slice(list, func(i, j int) bool { return list[i].Addr < list[j].Addr })
	return list
}
