package settings

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Live is the configuration as it is now. CONFIG SET replaces it whole;
// every part reads it through Get, never keeping a copy across a wait.
// What the hot path reads (repl-timeout, the hold-on-commands set) is
// derived once per change and loaded without the lock.
//
// mu is a leaf lock.
type Live struct {
	mu     sync.RWMutex
	cfg    Config                          // guarded by mu
	fixed  Config                          // a copy taken at start, for the fields that never change (DataDir, RingSize, SegmentSize, Limits, AnnouncePort)
	replTO atomic.Int64                    // cfg.ReplTimeout
	hold   atomic.Pointer[map[string]bool] // cfg.HoldOnCommands as a set of lower-case names
}

// NewLive holds cfg as the current configuration.
func NewLive(cfg Config) *Live {
	l := &Live{cfg: cfg, fixed: cfg}
	l.derive(&cfg)
	return l
}

// Get returns the current configuration.
func (l *Live) Get() Config {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.cfg
}

// Fixed returns the configuration as it was at start, for the settings
// CONFIG SET cannot change. It never changes; the caller must not modify
// it.
func (l *Live) Fixed() *Config { return &l.fixed }

// Update applies change to a copy of the configuration and, when it
// returns nil, makes the copy current. change runs under mu: it must not
// block.
func (l *Live) Update(change func(next *Config) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := l.cfg
	if err := change(&next); err != nil {
		return err
	}
	l.cfg = next
	l.derive(&next)
	return nil
}

// derive stores what the hot path reads of c.
func (l *Live) derive(c *Config) {
	l.replTO.Store(int64(c.ReplTimeout))
	set := make(map[string]bool, len(c.HoldOnCommands))
	for _, n := range c.HoldOnCommands {
		if n = strings.ToLower(strings.TrimSpace(n)); n != "" {
			set[n] = true
		}
	}
	l.hold.Store(&set)
}

// Timeout is repl-timeout.
func (l *Live) Timeout() time.Duration { return time.Duration(l.replTO.Load()) }

// HoldCommands is hold-on-commands as a set of lower-case command names;
// the caller must not modify it.
func (l *Live) HoldCommands() map[string]bool { return *l.hold.Load() }
