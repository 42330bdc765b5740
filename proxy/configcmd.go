package proxy

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// CONFIG GET, SET and REWRITE, answered from the settings table.

// currentConfig is the running configuration with the upstream that
// REPLICAOF (or Sentinel) last named as replicaof.
func (r *Relay) currentConfig() Config {
	cfg := r.conf()
	cfg.MasterAddr, _ = r.masterAddr()
	return cfg
}

// Settings returns every setting CONFIG REWRITE may write with its current
// value, as Setting.Set reads it back. Passwords are in clear: the caller
// decides which of them may reach a file.
func (r *Relay) Settings() map[string]string {
	cfg := r.currentConfig()
	out := make(map[string]string, len(settingTable))
	for _, s := range SettingTable() {
		if s.Rewrite == RewriteNever {
			continue
		}
		if args := s.Format(&cfg); len(args) > 0 {
			out[s.Name] = strings.Join(args, " ")
		}
	}
	return out
}

func (c *client) configCommand(args [][]byte) {
	if len(args) < 2 {
		c.wrongArgs("config")
		return
	}
	r := c.r
	switch strings.ToLower(string(args[1])) {
	case "get":
		if len(args) < 3 {
			c.wrongArgs("config|get")
			return
		}
		c.configGet(args[2:])
	case "set":
		if len(args) < 4 || len(args)%2 != 0 {
			c.wrongArgs("config|set")
			return
		}
		c.configSet(args[2:])
	case "rewrite":
		rewrite := r.conf().Rewrite
		if rewrite == nil {
			c.out = appendError(c.out, "ERR The server is running without a config file")
			return
		}
		if err := rewrite(r.Settings()); err != nil {
			r.logger.Warn("CONFIG REWRITE failed", "err", err)
			c.out = appendError(c.out, "ERR Rewriting config file: "+err.Error())
			return
		}
		c.out = appendSimple(c.out, "OK")
	case "resetstat":
		c.out = appendSimple(c.out, "OK")
	default:
		c.out = appendError(c.out, fmt.Sprintf("ERR unknown subcommand '%s'. Try CONFIG GET, SET, REWRITE.", truncateText(args[1], 64)))
	}
}

// configGet answers CONFIG GET pattern [pattern ...]: every setting whose
// name or alias matches a glob pattern, as name/value pairs sorted by name.
func (c *client) configGet(patterns [][]byte) {
	cfg := c.r.currentConfig()
	found := map[string]string{}
	for _, pat := range patterns {
		p := strings.ToLower(string(pat))
		for _, s := range SettingTable() {
			for _, name := range append([]string{s.Name}, s.Aliases...) {
				if ok, _ := path.Match(p, name); ok {
					found[name] = s.Get(&cfg)
				}
			}
		}
		for name, v := range fixedReplies {
			if ok, _ := path.Match(p, name); ok {
				found[name] = v
			}
		}
	}
	names := make([]string, 0, len(found))
	for n := range found {
		names = append(names, n)
	}
	sort.Strings(names)
	c.out = appendArray(c.out, 2*len(names))
	for _, n := range names {
		c.out = appendBulk(c.out, n)
		c.out = appendBulk(c.out, found[n])
	}
}

// configSet applies CONFIG SET name value [name value ...]: all of them or,
// when one is unknown, immutable or not a value, none.
func (c *client) configSet(pairs [][]byte) {
	r := c.r
	r.cfgMu.Lock()
	next := r.cfg
	for i := 0; i < len(pairs); i += 2 {
		name := strings.ToLower(string(pairs[i]))
		s := LookupSetting(name)
		_, fixed := fixedReplies[name]
		var reply string
		switch {
		case s == nil && !fixed:
			reply = fmt.Sprintf("ERR Unknown option or number of arguments for CONFIG SET - '%s'", truncateText(pairs[i], 64))
		case s == nil || !s.Runtime:
			reply = fmt.Sprintf("ERR CONFIG SET failed (possibly related to argument '%s') - can't set immutable config", name)
		default:
			if err := s.Set(&next, string(pairs[i+1])); err != nil {
				reply = fmt.Sprintf("ERR CONFIG SET failed (possibly related to argument '%s') - %v", name, err)
			}
		}
		if reply != "" {
			r.cfgMu.Unlock()
			c.out = appendError(c.out, reply)
			return
		}
	}
	r.cfg = next
	r.replTO.Store(int64(next.ReplTimeout))
	set := holdCommands(next.HoldOnCommands)
	r.holdSet.Store(&set)
	r.cfgMu.Unlock()
	c.out = appendSimple(c.out, "OK")
}
