package downstream

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis-relay/redis-relay/internal/resp"
)

// The commands clients send, counted for INFO commandstats and
// total_commands_processed, which add them to the commands the upstream
// link relays (as a stock replica counts both its master's commands and
// its clients').

// commandStat counts one command name that clients send.
type commandStat struct {
	calls    atomic.Int64 // handled, including those that answered an error
	usec     atomic.Int64 // microseconds spent answering them
	rejected atomic.Int64 // refused before running: NOAUTH, the ACL, wrong context
	failed   atomic.Int64 // ran and answered an error
}

// commandStats counts the commands clients send, by lower-case name. Only
// names the server or a handler answers get an entry, so they are bounded
// by the command table; an unknown command is counted apart, as Redis
// counts none.
type commandStats struct {
	m sync.Map // string -> *commandStat
}

// CommandStat is one line of INFO commandstats for commands clients sent.
type CommandStat struct {
	Calls, Usec, Rejected, Failed int64
}

// serverCommands are the commands the server answers itself.
var serverCommands = map[string]bool{"replconf": true, "psync": true, "sync": true, "multi": true, "exec": true, "discard": true}

// stat is the entry for name, or nil for a command no one answers.
func (srv *Server) stat(name string) *commandStat {
	if s, ok := srv.cmdStats.m.Load(name); ok {
		return s.(*commandStat)
	}
	if !serverCommands[name] && srv.handler(name) == nil {
		return nil
	}
	s, _ := srv.cmdStats.m.LoadOrStore(name, new(commandStat))
	return s.(*commandStat)
}

// total is the number of commands counted.
func (m *commandStats) total() int64 {
	var n int64
	m.m.Range(func(_, v any) bool {
		n += v.(*commandStat).calls.Load()
		return true
	})
	return n
}

// snapshot reads the counts of the commands sent at least once.
func (m *commandStats) snapshot() map[string]CommandStat {
	out := make(map[string]CommandStat)
	m.m.Range(func(k, v any) bool {
		s := v.(*commandStat)
		out[k.(string)] = CommandStat{Calls: s.calls.Load(), Usec: s.usec.Load(), Rejected: s.rejected.Load(), Failed: s.failed.Load()}
		return true
	})
	return out
}

// reject answers a command refused before it ran, and counts it so.
func (c *client) reject(name, msg string) {
	if s := c.srv.stat(name); s != nil {
		s.rejected.Add(1)
	}
	c.out = resp.AppendError(c.out, msg)
}

// count counts one call of a command that ran; failed when it answered an
// error.
func (c *client) count(name string, took time.Duration, failed bool) {
	s := c.srv.stat(name)
	if s == nil {
		return
	}
	s.calls.Add(1)
	s.usec.Add(took.Microseconds())
	if failed {
		s.failed.Add(1)
	}
}
