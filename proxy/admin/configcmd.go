package admin

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/proxy/settings"
)

// CONFIG GET, SET and REWRITE, answered from the settings table.

func (a *Admin) configCommand(out []byte, who clientInfo, args [][]byte) ([]byte, effect) {
	if len(args) < 2 {
		return appendWrongArgs(out, "config"), effect{}
	}
	switch strings.ToLower(string(args[1])) {
	case "get":
		if len(args) < 3 {
			return appendWrongArgs(out, "config|get"), effect{}
		}
		return a.configGet(out, args[2:], who.RESP3), effect{}
	case "set":
		if len(args) < 4 || len(args)%2 != 0 {
			return appendWrongArgs(out, "config|set"), effect{}
		}
		return a.configSet(out, args[2:]), effect{}
	case "rewrite":
		rewrite := a.cfg.Get().Rewrite
		if rewrite == nil {
			return resp.AppendError(out, "ERR The server is running without a config file"), effect{}
		}
		if err := rewrite(a.relay.Settings()); err != nil {
			a.logger.Warn("CONFIG REWRITE failed", "err", err)
			return resp.AppendError(out, "ERR Rewriting config file: "+err.Error()), effect{}
		}
		return resp.AppendSimple(out, "OK"), effect{}
	case "resetstat":
		return resp.AppendSimple(out, "OK"), effect{}
	default:
		return resp.AppendError(out, fmt.Sprintf("ERR unknown subcommand '%s'. Try CONFIG GET, SET, REWRITE.", resp.Excerpt(args[1], 64))), effect{}
	}
}

// configGet answers CONFIG GET pattern [pattern ...]: every setting whose
// name or alias matches a glob pattern, as name/value pairs sorted by name
// (a map in RESP3). Settings accepted only for compatibility and ignored
// (repl-diskless-sync-delay...) are not shown: CONFIG GET shows what is
// in effect.
func (a *Admin) configGet(out []byte, patterns [][]byte, resp3 bool) []byte {
	cfg := a.relay.CurrentConfig()
	found := map[string]string{}
	for _, pat := range patterns {
		p := strings.ToLower(string(pat))
		for _, s := range settings.Table() {
			if s.Ignored != "" {
				continue
			}
			for _, name := range append([]string{s.Name}, s.Aliases...) {
				if ok, _ := path.Match(p, name); ok {
					found[name] = s.Get(&cfg)
				}
			}
		}
		for name, v := range settings.FixedReplies() {
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
	out = resp.AppendMapHeader(out, len(names), resp3)
	for _, n := range names {
		out = resp.AppendBulk(out, n)
		out = resp.AppendBulk(out, found[n])
	}
	return out
}

// configSet applies CONFIG SET name value [name value ...]: all of them or,
// when one is unknown, immutable or not a value, none.
func (a *Admin) configSet(out []byte, pairs [][]byte) []byte {
	held := a.cfg.HoldCommands()
	err := a.cfg.Update(func(next *settings.Config) error {
		for i := 0; i < len(pairs); i += 2 {
			name := strings.ToLower(string(pairs[i]))
			s := settings.Lookup(name)
			_, fixed := settings.FixedReplies()[name]
			switch {
			case s == nil && !fixed:
				return fmt.Errorf("ERR Unknown option or number of arguments for CONFIG SET - '%s'", resp.Excerpt(pairs[i], 64))
			case s == nil || !s.Runtime:
				return fmt.Errorf("ERR CONFIG SET failed (possibly related to argument '%s') - can't set immutable config", name)
			case s.Secret && string(pairs[i+1]) == settings.SecretShown:
				return fmt.Errorf("ERR CONFIG SET failed (possibly related to argument '%s') - that is what CONFIG GET shows for a password, not a password", name)
			}
			if err := s.Set(next, string(pairs[i+1])); err != nil {
				return fmt.Errorf("ERR CONFIG SET failed (possibly related to argument '%s') - %v", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return resp.AppendError(out, err.Error())
	}
	a.hist.WarnHoldCommands(held, a.cfg.HoldCommands())
	return resp.AppendSimple(out, "OK")
}
