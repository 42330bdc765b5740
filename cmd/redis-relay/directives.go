package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/redis-relay/redis-relay/proxy"
)

// directive is one config file directive and its flag.
type directive struct {
	name     string
	aliases  []string // older names Redis still accepts, such as slaveof
	synopsis string   // the arguments, for help: "<host> <port>"
	category string   // groups the flags in --help
	usage    string
	ignored  string // non-empty: accepted for compatibility but not used, and why
	secret   bool   // a password: never printed
	nargs    int    // arguments after the name (the least, when variadic)
	variadic bool   // takes nargs or more arguments

	// parse stores the arguments in s, or says why they are not a value.
	parse func(s *Settings, args []string) error
	// format returns the value in s as the arguments parse reads; nil
	// when there is nothing to write.
	format func(s *Settings) []string
	// check holds the rules on a parsed value (ranges); nil when every
	// value parse accepts is fine.
	check func(s *Settings) error
	// flagArgs turns a flag's single value into arguments; nil: the value
	// is the one argument.
	flagArgs func(v string) ([]string, error)
}

// apply parses args into s and checks the result.
func (d *directive) apply(s *Settings, args []string) error {
	if len(args) != d.nargs && !(d.variadic && len(args) > d.nargs) {
		want := strconv.Itoa(d.nargs)
		if d.variadic {
			want += " or more"
		}
		return fmt.Errorf("wrong number of arguments (want %s: %s %s; got %d)", want, d.name, d.synopsis, len(args))
	}
	if err := d.parse(s, args); err != nil {
		return err
	}
	if d.check != nil {
		return d.check(s)
	}
	return nil
}

// argsFromValue turns one value, as a flag, the environment or CONFIG
// REWRITE gives it, into the directive's arguments.
func (d *directive) argsFromValue(v string) ([]string, error) {
	if d.flagArgs != nil {
		return d.flagArgs(v)
	}
	return []string{v}, nil
}

func (d *directive) envVar() string {
	return "REDIS_RELAY_" + strings.ToUpper(strings.ReplaceAll(d.name, "-", "_"))
}

const (
	catUpstream   = "upstream"
	catDownstream = "downstream"
	catStorage    = "storage"
	catRefresh    = "snapshot refresh and retention"
	catGuard      = "empty-master guard"
	catOps        = "logging and metrics"
	catTLS        = "tls"
)

// directives lists every directive in the order --help and --check-config
// show them. It is never modified.
var directives = []directive{
	{
		name: "replicaof", aliases: []string{"slaveof"}, synopsis: "<host> <port>", category: catUpstream, nargs: 2,
		usage: `upstream master as host:port ("host port" and "no one" work too); empty: wait for REPLICAOF`,
		parse: func(s *Settings, a []string) error {
			addr, err := replicaOfAddr(a[0], a[1])
			s.ReplicaOf = addr
			return err
		},
		format: func(s *Settings) []string {
			host, port, err := net.SplitHostPort(s.ReplicaOf)
			if err != nil {
				return nil
			}
			return []string{host, port}
		},
		check: func(s *Settings) error {
			if s.ReplicaOf == "" {
				return nil
			}
			host, port, err := net.SplitHostPort(s.ReplicaOf)
			if err != nil {
				return fmt.Errorf("%q is not host:port", s.ReplicaOf)
			}
			_, err = replicaOfAddr(host, port)
			return err
		},
		flagArgs: replicaOfArgs,
	},
	stringDirective("masteruser", "<user>", catUpstream, "ACL user to AUTH with at the master", func(s *Settings) *string { return &s.MasterUser }, nil),
	secret(stringDirective("masterauth", "<password>", catUpstream, "password to AUTH with at the master", func(s *Settings) *string { return &s.MasterAuth }, nil)),
	stringDirective("masterauth-file", "<path>", catUpstream, "read masterauth from this file at start-up (one line; instead of masterauth)", func(s *Settings) *string { return &s.MasterAuthFile }, nil),
	secondsDirective("repl-timeout", catUpstream, "seconds of silence after which a link is dropped, both directions", func(s *Settings) *time.Duration { return &s.ReplTimeout }, time.Second),
	ignored(secondsDirective("repl-ping-replica-period", catUpstream, "Redis's replica ping period", func(s *Settings) *time.Duration { return &s.ReplPingReplicaPeriod }, time.Second),
		"the relay forwards the master's own PINGs", "repl-ping-slave-period"),
	ignored(secondsDirective("repl-diskless-sync-delay", catDownstream, "Redis's delay before a diskless full sync", func(s *Settings) *time.Duration { return &s.ReplDisklessSyncDelay }, 0),
		"the relay starts every full sync at once"),

	{
		name: "bind", synopsis: "<addr> [<addr> ...]", category: catDownstream, nargs: 1, variadic: true,
		usage: `addresses to listen on for replicas, space-separated; "-" before one lets start-up go on without it, * is every IPv4 address and ::* every IPv6 one`,
		parse: func(s *Settings, a []string) error {
			s.Bind = slices.Clone(a)
			return nil
		},
		format: func(s *Settings) []string { return slices.Clone(s.Bind) },
		check: func(s *Settings) error {
			if len(s.Bind) == 0 {
				return errors.New("must name at least one address")
			}
			for _, b := range s.Bind {
				if strings.TrimPrefix(b, "-") == "" {
					return fmt.Errorf("%q is not an address", b)
				}
			}
			return nil
		},
		flagArgs: func(v string) ([]string, error) {
			return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }), nil
		},
	},
	boolDirective("protected-mode", catDownstream, "while no requirepass is set, refuse clients that are not on loopback with -DENIED, as Redis does", func(s *Settings) *bool { return &s.ProtectedMode }),
	secondsDirective("timeout", catDownstream, "close a client (not a replica) idle this many seconds; 0: never", func(s *Settings) *time.Duration { return &s.IdleTimeout }, 0),
	secondsDirective("tcp-keepalive", catDownstream, "TCP keepalive period of replica connections in seconds; 0: off", func(s *Settings) *time.Duration { return &s.TCPKeepAlive }, 0),
	intDirective("port", catDownstream, "port to listen on for replicas", func(s *Settings) *int { return &s.Port }, 0, 65535),
	secret(stringDirective("requirepass", "<password>", catDownstream, "password replicas and clients must AUTH with", func(s *Settings) *string { return &s.RequirePass }, nil)),
	stringDirective("requirepass-file", "<path>", catDownstream, "read requirepass from this file at start-up (one line; instead of requirepass)", func(s *Settings) *string { return &s.RequirePassFile }, nil),
	intDirective("maxclients", catDownstream, "most downstream connections at once", func(s *Settings) *int { return &s.MaxClients }, 1, math.MaxInt32),
	withAliases(intDirective("replica-announce-port", catUpstream, "listening port announced to the master (0: the port listened on)", func(s *Settings) *int { return &s.AnnouncePort }, 0, 65535),
		"slave-announce-port"),
	{
		name: "ack-policy", synopsis: "received|downstream-min|downstream-quorum:<k>", category: catUpstream, nargs: 1,
		usage: "offset the relay acknowledges to its master: what it received, the lowest replica ACK, or the k-th highest",
		parse: func(s *Settings, a []string) error {
			p, err := proxy.ParseAckPolicy(a[0])
			if err != nil {
				return fmt.Errorf("%q is not received, downstream-min or downstream-quorum:<k>", a[0])
			}
			s.AckPolicy = p.String()
			return nil
		},
		format: func(s *Settings) []string { return []string{s.AckPolicy} },
		check: func(s *Settings) error {
			if _, err := proxy.ParseAckPolicy(s.AckPolicy); err != nil {
				return fmt.Errorf("%q is not received, downstream-min or downstream-quorum:<k>", s.AckPolicy)
			}
			return nil
		},
	},
	durationDirective("wait-ahead", catDownstream, "how long a replica ahead of the relay may wait, kept alive with newlines, for the upstream to resend what it lacks", func(s *Settings) *time.Duration { return &s.WaitAhead }, time.Millisecond),

	stringDirective("dir", "<path>", catStorage, "data directory: snapshot, log segments, state", func(s *Settings) *string { return &s.Dir }, notEmpty),
	sizeDirective("repl-backlog-size", catStorage, "memory ring of the newest stream bytes (older bytes are read from disk)", func(s *Settings) *int64 { return &s.ReplBacklogSize }, 16<<10, math.MaxInt),
	sizeDirective("segment-size", catStorage, "size at which a log segment file is closed", func(s *Settings) *int64 { return &s.SegmentSize }, 4<<10, math.MaxInt64),

	floatDirective("refresh-ratio", catRefresh, "refresh the snapshot when the log after it passes this many times its size; negative: never", func(s *Settings) *float64 { return &s.RefreshRatio }, func(f float64) error {
		if f == 0 {
			return errors.New("0 is not a ratio: use a positive number, or a negative one to never refresh")
		}
		return nil
	}),
	sizeDirective("refresh-min-size", catRefresh, "never refresh for less log than this", func(s *Settings) *int64 { return &s.RefreshMinSize }, 0, math.MaxInt64),
	durationDirective("refresh-max-age", catRefresh, "refresh a snapshot older than this; 0: no age limit", func(s *Settings) *time.Duration { return &s.RefreshMaxAge }, 0),
	sizeDirective("retain-size", catRefresh, "keep at least this much log before the head, even older than the snapshot", func(s *Settings) *int64 { return &s.RetainSize }, 0, math.MaxInt64),
	durationDirective("retain-age", catRefresh, "keep log written within this long, even older than the snapshot", func(s *Settings) *time.Duration { return &s.RetainAge }, 0),

	boolDirective("empty-master-guard", catGuard, "hold back a new history that is empty (or much smaller) until released", func(s *Settings) *bool { return &s.EmptyMasterGuard }),
	floatDirective("guard-min-keys-ratio", catGuard, "also hold back a new history with fewer than this fraction of the current keys; 0: only when empty", func(s *Settings) *float64 { return &s.GuardMinKeysRatio }, func(f float64) error {
		if f < 0 || f > 1 {
			return fmt.Errorf("%s is outside 0-1", formatFloat(f))
		}
		return nil
	}),

	stringDirective("snapshot-source", "<host:port>", catRefresh, "take the first snapshot and every refresh from this server (a stock replica of the master, or another relay) instead of the master; empty: the master", func(s *Settings) *string { return &s.SnapshotSource }, nil),
	boolDirective("snapshot-source-fallback", catRefresh, "take a snapshot from the master when the snapshot source is down", func(s *Settings) *bool { return &s.SnapshotSourceFallback }),
	stringDirective("upstream-compression", "<no|yes|fastest|default|better|best>", catUpstream, "ask an upstream relay for a zstd-compressed link at this level (a stock master ignores it)", func(s *Settings) *string { return &s.UpstreamCompression }, func(v string) error {
		_, _, err := proxy.ParseCompression(v)
		return err
	}),
	sizeDirective("full-sync-bandwidth-limit", catDownstream, "bytes per second all full syncs served together may use (online streams are never paced); 0: no limit", func(s *Settings) *int64 { return &s.FullSyncBandwidth }, 0, math.MaxInt64),
	sizeDirective("full-sync-replica-bandwidth-limit", catDownstream, "bytes per second each full sync served may use; 0: no limit", func(s *Settings) *int64 { return &s.FullSyncReplicaBandwidth }, 0, math.MaxInt64),
	intDirective("full-sync-max-concurrent", catDownstream, "full syncs served at once; the others wait their turn (kept alive with newlines); 0: no limit", func(s *Settings) *int { return &s.FullSyncMaxConcurrent }, 0, 1<<20),
	boolDirective("serve-compression", catDownstream, "give relays below a compressed link when they ask for one", func(s *Settings) *bool { return &s.ServeCompression }),
	stringDirective("hold-on-commands", "<name,...>", catGuard, "stop the stream to replicas just before the first of these commands (e.g. FLUSHALL,FLUSHDB) until RELAY GUARD RELEASE; empty: off", func(s *Settings) *string { return &s.HoldOnCommands }, nil),

	stringDirective("requireuser", "<user>", catDownstream, "ACL-style user accepted with requirepass, besides default", func(s *Settings) *string { return &s.RequireUser }, nil),
	durationDirective("command-timeout", catDownstream, "a client must send a whole command within this once it started (slow-loris clients)", func(s *Settings) *time.Duration { return &s.CommandTimeout }, time.Millisecond),

	stringDirective("sentinel-addrs", "<host:port,...>", catUpstream, "follow the master that these Sentinels name (needs sentinel-master-name)", func(s *Settings) *string { return &s.Sentinels }, checkAddrList),
	stringDirective("sentinel-master-name", "<name>", catUpstream, "the master's name in Sentinel (needs sentinel-addrs)", func(s *Settings) *string { return &s.SentinelMasterName }, nil),
	stringDirective("sentinel-user", "<user>", catUpstream, "ACL user for the Sentinels", func(s *Settings) *string { return &s.SentinelUser }, nil),
	secret(stringDirective("sentinel-password", "<password>", catUpstream, "password for the Sentinels", func(s *Settings) *string { return &s.SentinelPassword }, nil)),
	boolDirective("sentinel-tls", catTLS, "connect to the Sentinels with TLS, verified with tls-ca-cert-file, presenting tls-cert-file", func(s *Settings) *bool { return &s.SentinelTLS }),

	intDirective("tls-port", catTLS, "also accept replicas over TLS on this port; 0: off", func(s *Settings) *int { return &s.TLSPort }, 0, 65535),
	stringDirective("tls-cert-file", "<path>", catTLS, "certificate for the TLS port, and the client certificate sent upstream", func(s *Settings) *string { return &s.TLSCertFile }, nil),
	stringDirective("tls-key-file", "<path>", catTLS, "private key of tls-cert-file", func(s *Settings) *string { return &s.TLSKeyFile }, nil),
	stringDirective("tls-ca-cert-file", "<path>", catTLS, "CA certificates that sign the master's and clients' certificates", func(s *Settings) *string { return &s.TLSCACertFile }, nil),
	boolDirective("tls-replication", catTLS, "connect to the master with TLS", func(s *Settings) *bool { return &s.TLSReplication }),
	stringDirective("tls-auth-clients", "<yes|no|optional>", catTLS, "require client certificates on the TLS port", func(s *Settings) *string { return &s.TLSAuthClients }, func(v string) error {
		if v != "yes" && v != "no" && v != "optional" {
			return fmt.Errorf("%q is not yes, no or optional", v)
		}
		return nil
	}),

	stringDirective("metrics-addr", "<host:port>", catOps, "serve Prometheus metrics on this address; empty: off", func(s *Settings) *string { return &s.MetricsAddr }, checkListenAddr),
	{
		name: "log-level", aliases: []string{"loglevel"}, synopsis: "<level>", category: catOps, nargs: 1,
		usage: "debug, info, warn or error; Redis's loglevel names work too (verbose is debug, notice is info, warning is warn)",
		parse: func(s *Settings, a []string) error {
			s.LogLevel = a[0]
			if lv, ok := redisLogLevels[strings.ToLower(a[0])]; ok {
				s.LogLevel = lv
			}
			return nil
		},
		format: func(s *Settings) []string { return []string{s.LogLevel} },
		check: func(s *Settings) error {
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(s.LogLevel)); err != nil {
				return fmt.Errorf("%q is not a level (debug, info, warn or error)", s.LogLevel)
			}
			return nil
		},
	},
	stringDirective("logfile", "<path>", catOps, `append the log to this file; "": standard error`, func(s *Settings) *string { return &s.LogFile }, nil),
	stringDirective("pidfile", "<path>", catOps, "write the process ID to this file while running", func(s *Settings) *string { return &s.PidFile }, nil),
	{
		name: "daemonize", synopsis: "no", category: catOps, nargs: 1,
		usage: "only no: the relay stays in the foreground",
		parse: func(_ *Settings, a []string) error {
			on, err := parseYesNo(a[0])
			if err == nil && on {
				err = errors.New("yes does not apply: the relay never forks into the background; run it under systemd (deploy/systemd), a container runtime or a supervisor, which also restart it")
			}
			return err
		},
		format: func(*Settings) []string { return []string{"no"} },
	},
	{
		name: "replica-announce-ip", aliases: []string{"slave-announce-ip"}, synopsis: "<ip>", category: catUpstream, nargs: 1,
		usage: "not supported: the master lists the relay under the address it connects from",
		parse: func(*Settings, []string) error {
			return errors.New("is not supported yet: the relay does not send REPLCONF ip-address, so its master (and Sentinel) list it under the address it connects from; remove the line, or announce the address with NAT rules")
		},
		format: func(*Settings) []string { return nil },
	},
	stringDirective("log-format", "<format>", catOps, "text or json", func(s *Settings) *string { return &s.LogFormat }, func(v string) error {
		if v != "text" && v != "json" {
			return fmt.Errorf("%q is neither text nor json", v)
		}
		return nil
	}),
}

// redisLogLevels maps Redis's loglevel names onto the relay's levels.
var redisLogLevels = map[string]string{
	"verbose": "debug",
	"notice":  "info",
	"warning": "warn",
	"nothing": "error",
}

// directiveIndex finds a directive by its lower-case name or alias.
var directiveIndex = func() map[string]*directive {
	m := make(map[string]*directive)
	for i := range directives {
		d := &directives[i]
		for _, n := range append([]string{d.name}, d.aliases...) {
			if m[n] != nil {
				panic("directive " + n + " defined twice")
			}
			m[n] = d
		}
	}
	return m
}()

func lookupDirective(name string) *directive { return directiveIndex[strings.ToLower(name)] }

func secret(d directive) directive { d.secret = true; return d }

func withAliases(d directive, aliases ...string) directive {
	d.aliases = append(d.aliases, aliases...)
	return d
}

func ignored(d directive, why string, aliases ...string) directive {
	d.ignored = why
	return withAliases(d, aliases...)
}

func notEmpty(v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	return nil
}

func stringDirective(name, synopsis, cat, usage string, field func(*Settings) *string, check func(string) error) directive {
	d := directive{
		name: name, synopsis: synopsis, category: cat, usage: usage, nargs: 1,
		parse:  func(s *Settings, a []string) error { *field(s) = a[0]; return nil },
		format: func(s *Settings) []string { return []string{*field(s)} },
	}
	if check != nil {
		d.check = func(s *Settings) error { return check(*field(s)) }
	}
	return d
}

func intDirective(name, cat, usage string, field func(*Settings) *int, lo, hi int) directive {
	return directive{
		name: name, synopsis: "<n>", category: cat, usage: usage, nargs: 1,
		parse: func(s *Settings, a []string) error {
			n, err := parseInt(a[0])
			*field(s) = n
			return err
		},
		format: func(s *Settings) []string { return []string{strconv.Itoa(*field(s))} },
		check: func(s *Settings) error {
			if n := *field(s); n < lo || n > hi {
				return fmt.Errorf("%d is outside %d-%d", n, lo, hi)
			}
			return nil
		},
	}
}

func sizeDirective(name, cat, usage string, field func(*Settings) *int64, lo, hi int64) directive {
	return directive{
		name: name, synopsis: "<size>", category: cat, usage: usage, nargs: 1,
		parse: func(s *Settings, a []string) error {
			n, err := parseSize(a[0])
			*field(s) = n
			return err
		},
		format: func(s *Settings) []string { return []string{formatSize(*field(s))} },
		check: func(s *Settings) error {
			if n := *field(s); n < lo {
				return fmt.Errorf("%s is below the minimum of %s", formatSize(n), formatSize(lo))
			} else if n > hi {
				return fmt.Errorf("%s is above the maximum of %s", formatSize(n), formatSize(hi))
			}
			return nil
		},
	}
}

func secondsDirective(name, cat, usage string, field func(*Settings) *time.Duration, lo time.Duration) directive {
	return directive{
		name: name, synopsis: "<seconds>", category: cat, usage: usage, nargs: 1,
		parse: func(s *Settings, a []string) error {
			d, err := parseSeconds(a[0])
			*field(s) = d
			return err
		},
		format: func(s *Settings) []string { return []string{formatSeconds(*field(s))} },
		check: func(s *Settings) error {
			if d := *field(s); d < lo {
				return fmt.Errorf("%s is below the minimum of %s", formatSeconds(d), formatSeconds(lo))
			}
			return nil
		},
	}
}

func durationDirective(name, cat, usage string, field func(*Settings) *time.Duration, lo time.Duration) directive {
	return directive{
		name: name, synopsis: "<duration>", category: cat, usage: usage, nargs: 1,
		parse: func(s *Settings, a []string) error {
			d, err := parseDuration(a[0])
			*field(s) = d
			return err
		},
		format: func(s *Settings) []string { return []string{formatDuration(*field(s))} },
		check: func(s *Settings) error {
			if d := *field(s); d < lo {
				return fmt.Errorf("%s is below the minimum of %s", formatDuration(d), lo)
			}
			return nil
		},
	}
}

func floatDirective(name, cat, usage string, field func(*Settings) *float64, check func(float64) error) directive {
	return directive{
		name: name, synopsis: "<number>", category: cat, usage: usage, nargs: 1,
		parse: func(s *Settings, a []string) error {
			f, err := parseFloat(a[0])
			*field(s) = f
			return err
		},
		format: func(s *Settings) []string { return []string{formatFloat(*field(s))} },
		check: func(s *Settings) error {
			f := *field(s)
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return fmt.Errorf("%v is not a number", f)
			}
			return check(f)
		},
	}
}

func boolDirective(name, cat, usage string, field func(*Settings) *bool) directive {
	return directive{
		name: name, synopsis: "yes|no", category: cat, usage: usage + " (yes or no)", nargs: 1,
		parse: func(s *Settings, a []string) error {
			b, err := parseYesNo(a[0])
			*field(s) = b
			return err
		},
		format: func(s *Settings) []string { return []string{formatYesNo(*field(s))} },
	}
}

// replicaOfAddr joins the arguments of replicaof; "no one" is no master.
func replicaOfAddr(host, port string) (string, error) {
	if strings.EqualFold(host, "no") && strings.EqualFold(port, "one") {
		return "", nil
	}
	if host == "" || strings.IndexFunc(host, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
		return "", fmt.Errorf("%q is not a host name or address", host)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("%q is not a port (1-65535)", port)
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

// replicaOfArgs reads the flag form of replicaof: host:port, [v6]:port,
// "host port" or "no one".
func replicaOfArgs(v string) ([]string, error) {
	f := strings.Fields(v)
	switch len(f) {
	case 2:
		return f, nil
	case 1:
		if host, port, err := net.SplitHostPort(f[0]); err == nil {
			return []string{host, port}, nil
		}
	}
	return nil, fmt.Errorf("%q is not host:port", v)
}

// checkListenAddr accepts "" or host:port with a numeric port.
func checkListenAddr(v string) error {
	if v == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("%q is not host:port", v)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q does not end in a port number", v)
	}
	return nil
}

// checkAddrList accepts a comma-separated list of host:port addresses.
func checkAddrList(v string) error {
	for _, a := range splitList(v) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("%q is not host:port", a)
		}
	}
	return nil
}
