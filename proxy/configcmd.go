package proxy

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/redis-relay/redis-relay/internal/resp"
)

// CONFIG GET, SET and REWRITE, answered from the settings table.

func (a *admin) configCommand(c *client, args [][]byte) {
	if len(args) < 2 {
		c.wrongArgs("config")
		return
	}
	r := a.r
	switch strings.ToLower(string(args[1])) {
	case "get":
		if len(args) < 3 {
			c.wrongArgs("config|get")
			return
		}
		a.configGet(c, args[2:])
	case "set":
		if len(args) < 4 || len(args)%2 != 0 {
			c.wrongArgs("config|set")
			return
		}
		a.configSet(c, args[2:])
	case "rewrite":
		rewrite := r.cfg.get().Rewrite
		if rewrite == nil {
			c.out = resp.AppendError(c.out, "ERR The server is running without a config file")
			return
		}
		if err := rewrite(r.Settings()); err != nil {
			r.logger.Warn("CONFIG REWRITE failed", "err", err)
			c.out = resp.AppendError(c.out, "ERR Rewriting config file: "+err.Error())
			return
		}
		c.out = resp.AppendSimple(c.out, "OK")
	case "resetstat":
		c.out = resp.AppendSimple(c.out, "OK")
	default:
		c.out = resp.AppendError(c.out, fmt.Sprintf("ERR unknown subcommand '%s'. Try CONFIG GET, SET, REWRITE.", resp.Excerpt(args[1], 64)))
	}
}

// configGet answers CONFIG GET pattern [pattern ...]: every setting whose
// name or alias matches a glob pattern, as name/value pairs sorted by name.
func (a *admin) configGet(c *client, patterns [][]byte) {
	cfg := a.r.currentConfig()
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
	c.out = resp.AppendArray(c.out, 2*len(names))
	for _, n := range names {
		c.out = resp.AppendBulk(c.out, n)
		c.out = resp.AppendBulk(c.out, found[n])
	}
}

// configSet applies CONFIG SET name value [name value ...]: all of them or,
// when one is unknown, immutable or not a value, none.
func (a *admin) configSet(c *client, pairs [][]byte) {
	r := a.r
	err := r.cfg.update(func(next *Config) error {
		for i := 0; i < len(pairs); i += 2 {
			name := strings.ToLower(string(pairs[i]))
			s := LookupSetting(name)
			_, fixed := fixedReplies[name]
			switch {
			case s == nil && !fixed:
				return fmt.Errorf("ERR Unknown option or number of arguments for CONFIG SET - '%s'", resp.Excerpt(pairs[i], 64))
			case s == nil || !s.Runtime:
				return fmt.Errorf("ERR CONFIG SET failed (possibly related to argument '%s') - can't set immutable config", name)
			case s.Secret && string(pairs[i+1]) == secretShown:
				return fmt.Errorf("ERR CONFIG SET failed (possibly related to argument '%s') - that is what CONFIG GET shows for a password, not a password", name)
			}
			if err := s.Set(next, string(pairs[i+1])); err != nil {
				return fmt.Errorf("ERR CONFIG SET failed (possibly related to argument '%s') - %v", name, err)
			}
		}
		r.hist.setHoldCommands(next.HoldOnCommands)
		return nil
	})
	if err != nil {
		c.out = resp.AppendError(c.out, err.Error())
		return
	}
	c.out = resp.AppendSimple(c.out, "OK")
}
