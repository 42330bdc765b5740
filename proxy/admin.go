package proxy

import (
	"errors"
	"fmt"
	"math"
	"net"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// admin answers the commands an operator, a monitoring tool or Redis
// Sentinel sends to the relay's port: INFO, ROLE, CONFIG, CLIENT,
// REPLICAOF, SHUTDOWN, LATENCY, RELAY, and pub/sub (Sentinel's hello
// channel). It reads the other parts through the Relay and owns only the
// pub/sub subscriptions.
//
// psMu is a leaf lock.
type admin struct {
	r *Relay

	psMu     sync.Mutex
	channels map[string]map[*client]struct{} // pub/sub subscribers; guarded by psMu (as is client.subs)
}

// replicaof re-points the upstream: REPLICAOF host port. The relay keeps
// its history and asks the new upstream for a partial resync.
func (a *admin) replicaof(c *client, args [][]byte) {
	if len(args) != 3 {
		c.wrongArgs(strings.ToLower(string(args[0])))
		return
	}
	host, port := string(args[1]), string(args[2])
	if strings.EqualFold(host, "no") && strings.EqualFold(port, "one") {
		c.out = appendError(c.out, "ERR a relay cannot become a master: it holds no dataset, only the master's stream. Promote a replica instead, then point the relay at it with REPLICAOF host port")
		return
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		c.out = appendError(c.out, "ERR Invalid master port")
		return
	}
	addr := net.JoinHostPort(host, port)
	if cur, _ := a.r.up.masterAddr(); cur == addr {
		c.out = appendSimple(c.out, "OK Already connected to specified master")
		return
	}
	a.r.logger.Info("REPLICAOF: re-pointing upstream", "upstream", addr, "client", c.addr)
	a.r.up.setMaster(addr)
	c.out = appendSimple(c.out, "OK")
}

// setting is one CONFIG GET/SET parameter.
type setting struct {
	get func(*Config) string
	set func(*Config, string) error // nil: read-only
}

var settings = map[string]setting{
	"repl-timeout": {
		get: func(c *Config) string { return strconv.Itoa(int(c.ReplTimeout / time.Second)) },
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return errors.New("argument must be a positive number of seconds")
			}
			c.ReplTimeout = time.Duration(n) * time.Second
			return nil
		},
	},
	"timeout": {
		get: func(c *Config) string { return strconv.Itoa(int(c.IdleTimeout / time.Second)) },
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return errors.New("argument must be a number of seconds, 0 for never")
			}
			c.IdleTimeout = time.Duration(n) * time.Second
			return nil
		},
	},
	"protected-mode": {
		get: func(c *Config) string { return yesNo(c.ProtectedMode) },
		set: func(c *Config, v string) error {
			on, err := parseYesNo(v)
			c.ProtectedMode = on
			return err
		},
	},
	"requirepass": stringSetting(func(c *Config) *string { return &c.RequirePass }),
	"masterauth":  stringSetting(func(c *Config) *string { return &c.MasterAuth }),
	"masteruser":  stringSetting(func(c *Config) *string { return &c.MasterUser }),
	"maxclients": {
		get: func(c *Config) string { return strconv.Itoa(c.MaxClients) },
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return errors.New("argument must be a positive integer")
			}
			c.MaxClients = n
			return nil
		},
	},
	"refresh-ratio":                     floatSetting(func(c *Config) *float64 { return &c.RefreshRatio }),
	"guard-min-keys-ratio":              floatSetting(func(c *Config) *float64 { return &c.GuardMinKeysRatio }),
	"refresh-min-size":                  sizeSetting(func(c *Config) *int64 { return &c.RefreshMinBytes }),
	"retain-size":                       sizeSetting(func(c *Config) *int64 { return &c.RetainBytes }),
	"refresh-max-age":                   durationSetting(func(c *Config) *time.Duration { return &c.RefreshMaxAge }),
	"retain-age":                        durationSetting(func(c *Config) *time.Duration { return &c.RetainAge }),
	"wait-ahead":                        durationSetting(func(c *Config) *time.Duration { return &c.WaitAhead }),
	"full-sync-bandwidth-limit":         sizeSetting(func(c *Config) *int64 { return &c.FullSyncBandwidth }),
	"full-sync-replica-bandwidth-limit": sizeSetting(func(c *Config) *int64 { return &c.FullSyncReplicaBandwidth }),
	"full-sync-max-concurrent": {
		get: func(c *Config) string { return strconv.Itoa(c.FullSyncMaxConcurrent) },
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return errors.New("argument must be 0 (no limit) or a positive integer")
			}
			c.FullSyncMaxConcurrent = n
			return nil
		},
	},
	"snapshot-source": stringSetting(func(c *Config) *string { return &c.SnapshotSource }),
	"upstream-compression": {
		get: func(c *Config) string {
			if c.UpstreamCompression == "" {
				return "no"
			}
			return c.UpstreamCompression
		},
		set: func(c *Config, v string) error {
			if _, _, err := compressionLevel(v); err != nil {
				return err
			}
			c.UpstreamCompression = strings.ToLower(v)
			return nil
		},
	},
	"serve-compression": {
		get: func(c *Config) string { return yesNo(!c.NoServeCompression) },
		set: func(c *Config, v string) error {
			on, err := parseYesNo(v)
			c.NoServeCompression = !on
			return err
		},
	},
	"snapshot-source-fallback": {
		get: func(c *Config) string { return yesNo(c.SnapshotSourceFallback) },
		set: func(c *Config, v string) error {
			on, err := parseYesNo(v)
			c.SnapshotSourceFallback = on
			return err
		},
	},
	"hold-on-commands": {
		get: func(c *Config) string { return strings.Join(c.HoldOnCommands, ",") },
		set: func(c *Config, v string) error {
			c.HoldOnCommands = nil
			for _, name := range strings.Split(v, ",") {
				if name = strings.TrimSpace(name); name != "" {
					c.HoldOnCommands = append(c.HoldOnCommands, strings.ToUpper(name))
				}
			}
			return nil
		},
	},
	"empty-master-guard": {
		get: func(c *Config) string { return yesNo(!c.DisableGuard) },
		set: func(c *Config, v string) error {
			on, err := parseYesNo(v)
			c.DisableGuard = !on
			return err
		},
	},
	"ack-policy": {
		get: func(c *Config) string { return c.AckPolicy.String() },
		set: func(c *Config, v string) error {
			p, err := ParseAckPolicy(v)
			c.AckPolicy = p
			return err
		},
	},
	"dir":                   {get: func(c *Config) string { return c.DataDir }},
	"repl-backlog-size":     {get: func(c *Config) string { return strconv.Itoa(c.RingSize) }},
	"segment-size":          {get: func(c *Config) string { return strconv.FormatInt(c.SegmentSize, 10) }},
	"replica-announce-port": {get: func(c *Config) string { return strconv.Itoa(c.AnnouncePort) }},
	"replica-priority":      {get: func(*Config) string { return "0" }},
	"slave-priority":        {get: func(*Config) string { return "0" }},
	"replica-read-only":     {get: func(*Config) string { return "yes" }},
}

func stringSetting(field func(*Config) *string) setting {
	return setting{
		get: func(c *Config) string { return *field(c) },
		set: func(c *Config, v string) error { *field(c) = v; return nil },
	}
}

func floatSetting(field func(*Config) *float64) setting {
	return setting{
		get: func(c *Config) string { return strconv.FormatFloat(*field(c), 'g', -1, 64) },
		set: func(c *Config, v string) error {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return errors.New("argument must be a number")
			}
			*field(c) = f
			return nil
		},
	}
}

func sizeSetting(field func(*Config) *int64) setting {
	return setting{
		get: func(c *Config) string { return strconv.FormatInt(*field(c), 10) },
		set: func(c *Config, v string) error {
			n, err := ParseSize(v)
			*field(c) = n
			return err
		},
	}
}

func durationSetting(field func(*Config) *time.Duration) setting {
	return setting{
		get: func(c *Config) string { return field(c).String() },
		set: func(c *Config, v string) error {
			d, err := ParseDuration(v)
			*field(c) = d
			return err
		},
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func parseYesNo(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "yes":
		return true, nil
	case "no":
		return false, nil
	}
	return false, errors.New("argument must be 'yes' or 'no'")
}

// ParseSize reads a memory size as redis.conf writes it: bytes, or a number
// with a unit k, kb, m, mb, g, gb (k = 1000, kb = 1024).
func ParseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30}, {"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"b", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size (use bytes or a unit such as 64mb)", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

// ParseDuration reads a Go duration ("90s", "2h") or a plain number of
// seconds, which may have a fraction.
func ParseDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return 0, fmt.Errorf("%q is negative", s)
		}
		return d, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a duration (use 90s, 2h or a number of seconds)", s)
	}
	if f < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	if f*float64(time.Second) >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// Settings returns every CONFIG parameter with its current value, as a
// config file would hold them, including replicaof.
func (r *Relay) Settings() map[string]string {
	cfg := r.cfg.get()
	out := make(map[string]string, len(settings)+1)
	for name, s := range settings {
		if s.set != nil || name == "dir" || name == "repl-backlog-size" {
			out[name] = s.get(&cfg)
		}
	}
	if addr, _ := r.up.masterAddr(); addr != "" {
		host, port, _ := net.SplitHostPort(addr)
		out["replicaof"] = host + " " + port
	}
	return out
}

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
		cfg := r.cfg.get()
		found := map[string]string{}
		for _, pat := range args[2:] {
			p := strings.ToLower(string(pat))
			for name, s := range settings {
				if ok, _ := path.Match(p, name); ok {
					found[name] = s.get(&cfg)
				}
			}
			if ok, _ := path.Match(p, "replicaof"); ok {
				addr, _ := r.up.masterAddr()
				host, port, _ := net.SplitHostPort(addr)
				found["replicaof"] = strings.TrimSpace(host + " " + port)
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
	case "set":
		if len(args) < 4 || len(args)%2 != 0 {
			c.wrongArgs("config|set")
			return
		}
		r.cfg.mu.Lock()
		next := r.cfg.cfg
		for i := 2; i < len(args); i += 2 {
			name := strings.ToLower(string(args[i]))
			s, ok := settings[name]
			if !ok {
				r.cfg.mu.Unlock()
				c.out = appendError(c.out, fmt.Sprintf("ERR Unknown option or number of arguments for CONFIG SET - '%s'", truncateText(args[i], 64)))
				return
			}
			if s.set == nil {
				r.cfg.mu.Unlock()
				c.out = appendError(c.out, fmt.Sprintf("ERR CONFIG SET failed (possibly related to argument '%s') - can't set immutable config", name))
				return
			}
			if err := s.set(&next, string(args[i+1])); err != nil {
				r.cfg.mu.Unlock()
				c.out = appendError(c.out, fmt.Sprintf("ERR CONFIG SET failed (possibly related to argument '%s') - %v", name, err))
				return
			}
		}
		r.cfg.cfg = next
		r.cfg.replTO.Store(int64(next.ReplTimeout))
		r.hist.setHoldCommands(next.HoldOnCommands)
		r.cfg.mu.Unlock()
		c.out = appendSimple(c.out, "OK")
	case "rewrite":
		rewrite := r.cfg.get().Rewrite
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

// clientCommand implements the CLIENT subcommands tools use.
func (a *admin) clientCommand(c *client, args [][]byte) {
	if len(args) < 2 {
		c.wrongArgs("client")
		return
	}
	switch strings.ToLower(string(args[1])) {
	case "setname":
		if len(args) != 3 {
			c.wrongArgs("client|setname")
			return
		}
		c.name.Store(string(args[2]))
		c.out = appendSimple(c.out, "OK")
	case "setinfo":
		c.out = appendSimple(c.out, "OK")
	case "getname":
		if n, _ := c.name.Load().(string); n != "" {
			c.out = appendBulk(c.out, n)
		} else {
			c.out = appendNull(c.out)
		}
	case "id":
		c.out = appendInt(c.out, c.id)
	case "list":
		var b strings.Builder
		for _, o := range a.r.srv.clientList() {
			b.WriteString(describeClient(o))
			b.WriteByte('\n')
		}
		c.out = appendBulk(c.out, b.String())
	case "info":
		c.out = appendBulk(c.out, describeClient(c)+"\n")
	case "kill":
		a.clientKill(c, args[2:])
	default:
		c.out = appendError(c.out, fmt.Sprintf("ERR unknown subcommand '%s'. Try CLIENT LIST, KILL, ID, SETNAME, GETNAME.", truncateText(args[1], 64)))
	}
}

// describeClient renders one CLIENT LIST line.
func describeClient(c *client) string {
	flags := "N"
	if c.replica.Load() {
		flags = "S"
	}
	name, _ := c.name.Load().(string)
	cmd, _ := c.lastCmd.Load().(string)
	idle := 0
	if at := c.lastAt.Load(); at > 0 {
		idle = int(time.Since(time.Unix(0, at)).Seconds())
	}
	return fmt.Sprintf("id=%d addr=%s laddr=%s fd=-1 name=%s age=%d idle=%d flags=%s db=0 cmd=%s",
		c.id, c.addr, c.nc.LocalAddr(), name, int(time.Since(c.created).Seconds()), idle, flags, cmd)
}

// clientKill handles CLIENT KILL addr and CLIENT KILL <filter> <value> ...
// (ID, ADDR, TYPE normal|replica|slave|master|pubsub, SKIPME yes|no).
func (a *admin) clientKill(c *client, args [][]byte) {
	if len(args) == 1 {
		for _, o := range a.r.srv.clientList() {
			if o.addr == string(args[0]) {
				o.nc.Close()
				c.out = appendSimple(c.out, "OK")
				return
			}
		}
		c.out = appendError(c.out, "ERR No such client")
		return
	}
	if len(args) == 0 || len(args)%2 != 0 {
		c.out = appendError(c.out, "ERR syntax error")
		return
	}
	var id int64 = -1
	addr, typ, skipMe := "", "", true
	for i := 0; i < len(args); i += 2 {
		v := string(args[i+1])
		switch strings.ToLower(string(args[i])) {
		case "id":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				c.out = appendError(c.out, "ERR client-id should be greater than 0")
				return
			}
			id = n
		case "addr":
			addr = v
		case "type":
			typ = strings.ToLower(v)
			switch typ {
			case "normal", "replica", "slave", "master", "pubsub":
			default:
				c.out = appendError(c.out, fmt.Sprintf("ERR Unknown client type '%s'", truncateText(args[i+1], 32)))
				return
			}
		case "skipme":
			on, err := parseYesNo(v)
			if err != nil {
				c.out = appendError(c.out, "ERR syntax error")
				return
			}
			skipMe = on
		default:
			c.out = appendError(c.out, "ERR syntax error")
			return
		}
	}
	killed := 0
	for _, o := range a.r.srv.clientList() {
		switch {
		case o == c && skipMe,
			id >= 0 && o.id != id,
			addr != "" && o.addr != addr,
			(typ == "normal") && o.replica.Load(),
			(typ == "replica" || typ == "slave") && !o.replica.Load(),
			typ == "master", typ == "pubsub":
			continue
		}
		if o.replica.Load() {
			a.r.srv.endSessionOf(o)
		}
		o.nc.Close()
		killed++
	}
	c.out = appendInt(c.out, int64(killed))
}

// shutdown stops the relay (SHUTDOWN [NOSAVE|SAVE|NOW|FORCE]).
func (a *admin) shutdown(c *client, args [][]byte) bool {
	for _, arg := range args[1:] {
		switch strings.ToLower(string(arg)) {
		case "nosave", "save", "now", "force":
		case "abort":
			c.out = appendError(c.out, "ERR No shutdown in progress.")
			return false
		default:
			c.out = appendError(c.out, "ERR syntax error")
			return false
		}
	}
	a.r.logger.Warn("SHUTDOWN requested", "client", c.addr)
	a.r.stop()
	return true
}

// latency answers LATENCY as a Redis server with nothing to report does.
// The relay executes no commands and samples no latency events, so every
// list is empty; monitoring tools (redis_exporter asks LATENCY LATEST and
// LATENCY HISTOGRAM on every scrape) get an answer rather than an error.
func (a *admin) latency(c *client, args [][]byte) {
	if len(args) < 2 {
		c.wrongArgs("latency")
		return
	}
	sub := strings.ToLower(string(args[1]))
	switch {
	case sub == "latest" && len(args) == 2,
		sub == "histogram", // [command ...]: no command has a histogram
		sub == "history" && len(args) == 3:
		c.out = appendArray(c.out, 0)
	case sub == "reset":
		c.out = appendInt(c.out, 0) // events reset: there were none
	case sub == "doctor" && len(args) == 2:
		c.out = appendBulk(c.out, "This is a redis-relay: it executes no commands and samples no latency events, so there is nothing to diagnose. Its replication lag is in INFO replication and in the redis_relay_replica_lag_* metrics.\n")
	case sub == "graph" && len(args) == 3:
		c.out = appendError(c.out, fmt.Sprintf("ERR No samples available for event '%s'", truncateText(args[2], 64)))
	case sub == "help" && len(args) == 2:
		help := []string{
			"LATENCY <subcommand> [<arg> ...]. A relay samples no events; every answer is empty.",
			"LATEST", "HISTORY <event>", "RESET [<event> ...]", "GRAPH <event>", "DOCTOR", "HISTOGRAM [<command> ...]", "HELP",
		}
		c.out = appendArray(c.out, len(help))
		for _, h := range help {
			c.out = appendSimple(c.out, h)
		}
	case sub == "latest" || sub == "history" || sub == "doctor" || sub == "graph" || sub == "help":
		c.wrongArgs("latency|" + sub)
	default:
		c.out = appendError(c.out, fmt.Sprintf("ERR unknown subcommand '%s'. Try LATENCY HELP.", truncateText(args[1], 64)))
	}
}

// relayCommand runs the relay's own admin commands:
//
//	RELAY GUARD RELEASE   accept the snapshot held by the empty-master guard
func (a *admin) relayCommand(c *client, args [][]byte) {
	sub := ""
	for _, a := range args[1:] {
		sub += strings.ToLower(string(a)) + " "
	}
	switch strings.TrimSpace(sub) {
	case "guard release":
		if err := a.r.ReleaseGuard(); err != nil {
			c.out = appendError(c.out, "ERR "+err.Error())
			return
		}
		c.out = appendSimple(c.out, "OK")
	default:
		c.out = appendError(c.out, "ERR unknown RELAY subcommand; try RELAY GUARD RELEASE")
	}
}
