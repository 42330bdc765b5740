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
// that sent the command, or one listed by ClientInfos.
type ClientInfo struct {
	ID        int64
	Addr      string
	LocalAddr string
	Name      string // CLIENT SETNAME
	User      string // the ACL user it runs as; "" before AUTH
	LastCmd   string
	LastAt    time.Time // zero before the first command
	Created   time.Time
	Replica   bool       // became a replica session
	Sub       Subscriber // where PUBLISH delivers this connection's messages; nil in a listing
}

// Describe renders the connection as a CLIENT LIST line, which ACL LOG
// shows too.
func (c ClientInfo) Describe() string {
	flags := "N"
	if c.Replica {
		flags = "S"
	}
	idle := 0
	if !c.LastAt.IsZero() {
		idle = int(time.Since(c.LastAt).Seconds())
	}
	return fmt.Sprintf("id=%d addr=%s laddr=%s fd=-1 name=%s age=%d idle=%d flags=%s db=0 cmd=%s user=%s",
		c.ID, c.Addr, c.LocalAddr, c.Name, int(time.Since(c.Created).Seconds()), idle, flags, c.LastCmd, c.User)
}

// Effect is a change to the calling connection that a handler asks the
// server to make after appending the reply. The zero Effect changes
// nothing.
type Effect struct {
	Quit          bool    // close the connection after the reply (QUIT, SHUTDOWN)
	Authenticated bool    // AUTH matched: the connection runs as User from now on
	User          string  // the ACL user AUTH authenticated
	SetName       *string // CLIENT SETNAME
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
