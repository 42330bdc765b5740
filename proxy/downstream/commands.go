package downstream

import (
	"fmt"
	"time"
)

// The commands the server does not answer itself (INFO, CONFIG, CLIENT,
// AUTH, pub/sub, ...) go to handlers the relay wires in (SetCommands),
// which the admin commands provide. A handler gets what it may know of
// the calling connection (a ClientInfo) and a buffer; it appends its reply
// and returns it, with an Effect for what the connection itself must
// change, which the server applies. No handler writes to a connection.

// Handler answers one command: args[0] is the command name as sent. It
// appends the reply to out and returns it.
type Handler func(out []byte, who ClientInfo, args [][]byte) ([]byte, Effect)

// ClientInfo is what a command handler sees of one connection: the one
// that sent the command, or one listed by ClientInfos. The fields are
// CLIENT LIST's.
type ClientInfo struct {
	ID            int64
	Addr          string
	LocalAddr     string
	FD            int    // the socket's file descriptor; -1 when it has none
	Name          string // CLIENT SETNAME
	User          string // the ACL user it runs as; "" before AUTH
	LibName       string // CLIENT SETINFO
	LibVer        string
	RESP3         bool // HELLO 3: replies in RESP3
	LastCmd       string
	LastAt        time.Time // zero before the first command
	Created       time.Time
	Replica       bool       // became a replica session
	Subscriptions int        // channels it listens to
	Multi         int        // commands queued after MULTI; -1 outside a transaction
	MultiMem      int64      // bytes of those commands
	ArgvMem       int64      // bytes of the arguments of the command it is running
	Qbuf          int        // request bytes read and not yet handled
	QbufFree      int        // room left in the read buffer
	Obl           int        // reply bytes not yet written
	Omem          int64      // a replica: snapshot and stream bytes it has not been sent yet
	TotMem        int64      // its buffers: read buffer, reply buffer, queued commands, arguments, omem
	Sub           Subscriber // where PUBLISH delivers this connection's messages; nil in a listing
}

// Describe renders the connection as a CLIENT LIST line, which ACL LOG
// shows too: Redis 7.2's fields in its order. What the relay has no use
// for is Redis's value for a client without it: db=0, psub=0, ssub=0,
// redir=-1, oll=0, events=r.
func (c ClientInfo) Describe() string {
	flags := ""
	if c.Replica {
		flags += "S"
	}
	if c.Subscriptions > 0 {
		flags += "P"
	}
	if c.Multi >= 0 {
		flags += "x"
	}
	if flags == "" {
		flags = "N"
	}
	idle := 0
	if !c.LastAt.IsZero() {
		idle = int(time.Since(c.LastAt).Seconds())
	}
	proto := 2
	if c.RESP3 {
		proto = 3
	}
	cmd := c.LastCmd
	if cmd == "" {
		cmd = "NULL"
	}
	return fmt.Sprintf("id=%d addr=%s laddr=%s fd=%d name=%s age=%d idle=%d flags=%s db=0 sub=%d psub=0 ssub=0 multi=%d "+
		"qbuf=%d qbuf-free=%d argv-mem=%d multi-mem=%d obl=%d oll=0 omem=%d tot-mem=%d events=r cmd=%s user=%s redir=-1 resp=%d lib-name=%s lib-ver=%s",
		c.ID, c.Addr, c.LocalAddr, c.FD, c.Name, int(time.Since(c.Created).Seconds()), idle, flags, c.Subscriptions, c.Multi,
		c.Qbuf, c.QbufFree, c.ArgvMem, c.MultiMem, c.Obl, c.Omem, c.TotMem, cmd, c.User, proto, c.LibName, c.LibVer)
}

// Effect is a change to the calling connection that a handler asks the
// server to make after appending the reply. The zero Effect changes
// nothing.
type Effect struct {
	Quit          bool    // close the connection after the reply (QUIT, SHUTDOWN)
	Authenticated bool    // AUTH or HELLO AUTH matched: the connection runs as User from now on
	User          string  // the ACL user AUTH or HELLO AUTH authenticated
	SetName       *string // CLIENT SETNAME, HELLO SETNAME
	LibName       *string // CLIENT SETINFO lib-name
	LibVer        *string // CLIENT SETINFO lib-ver
	Proto         int     // HELLO: 2 or 3 from now on; 0 leaves it
	Subscriptions int     // the channels the connection now listens to, when Subscribed is set
	Subscribed    bool    // SUBSCRIBE or UNSUBSCRIBE ran: Subscriptions holds the count
}

// SetCommands wires in the handlers: lookup returns the handler of a
// command by its lower-case name, or nil; other answers every command that
// neither lookup nor the server knows (nil: an unknown-command error).
// Call it before Serve.
func (srv *Server) SetCommands(lookup func(name string) Handler, other Handler) {
	srv.commands, srv.other = lookup, other
}
