package settings

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/redis-relay/redis-relay/proxy/acl"
)

// The settings table: every setting of the relay, once. The config file,
// the run command's flags and their REDIS_RELAY_* environment twins,
// --check-config, and CONFIG GET/SET/REWRITE all read and write settings
// through it, so each value is parsed, checked and written back one way.
//
// A setting has two forms: its arguments, as a config file line holds them
// after the name ("replicaof 10.0.0.5 6379"), and its value, one string as
// a flag, an environment variable or CONFIG SET gives it ("10.0.0.5:6379"
// or "10.0.0.5 6379"). Setting.Args turns a value into arguments.

// Setting is one configuration parameter.
type Setting struct {
	Name     string
	Aliases  []string // older names Redis still accepts, such as slaveof
	Synopsis string   // the arguments, for help: "<host> <port>"
	Category string   // groups the flags in --help
	Usage    string
	Kind     string // KindInt, KindSize, ...: the type of its value
	// Default is the value a setting has when nothing sets it, as a config
	// file would write it; "" leaves the Config field at its zero value.
	Default  string
	Ignored  string  // non-empty: accepted for compatibility but not used, and why
	Secret   bool    // a password: never shown by CONFIG GET or --check-config
	Runtime  bool    // CONFIG SET may change it while the relay runs
	NArgs    int     // arguments after the name (the least, when variadic)
	Variadic bool    // takes NArgs or more arguments
	Rewrite  Rewrite // what CONFIG REWRITE writes of it
	// Repeatable: every line (flag, variable) adds a value rather than
	// replacing it, as redis.conf's user lines do; FormatLines writes
	// one line per value.
	Repeatable bool

	// parse stores the arguments in c, or says why they are not a value.
	parse func(c *Config, args []string) error
	// format returns the value in c as the arguments parse reads; nil
	// when there is nothing to write.
	format func(c *Config) []string
	// lines, for a Repeatable setting, returns every line's arguments.
	lines func(c *Config) [][]string
	// get answers CONFIG GET; nil: the arguments joined by spaces.
	get func(c *Config) string
	// check holds the rules on a parsed value (ranges); nil when every
	// value parse accepts is fine.
	check func(c *Config) error
	// args turns one value into arguments; nil: the value is the one
	// argument.
	args func(v string) ([]string, error)
	// unset, for a setting whose Config field a Config written in code may
	// leave at zero to mean the default, says it is so (FillDefaults).
	unset func(c *Config) bool
}

// Apply parses args into c and checks the result.
func (s *Setting) Apply(c *Config, args []string) error {
	if len(args) != s.NArgs && !(s.Variadic && len(args) > s.NArgs) {
		want := strconv.Itoa(s.NArgs)
		if s.Variadic {
			want += " or more"
		}
		return fmt.Errorf("wrong number of arguments (want %s: %s %s; got %d)", want, s.Name, s.Synopsis, len(args))
	}
	if err := s.parse(c, args); err != nil {
		return err
	}
	return s.Check(c)
}

// Args turns one value, as a flag, the environment, CONFIG SET or CONFIG
// REWRITE gives it, into the setting's arguments.
func (s *Setting) Args(v string) ([]string, error) {
	if s.args != nil {
		return s.args(v)
	}
	return []string{v}, nil
}

// Set reads one value into c: Args, then Apply.
func (s *Setting) Set(c *Config, v string) error {
	args, err := s.Args(v)
	if err != nil {
		return err
	}
	return s.Apply(c, args)
}

// Format returns the setting's value in c as config file arguments; nil
// when there is nothing to write.
func (s *Setting) Format(c *Config) []string { return s.format(c) }

// FormatLines returns the config file lines (their arguments) that give
// the setting's value in c: Format's one line, or one per value of a
// Repeatable setting; nil when there is nothing to write.
func (s *Setting) FormatLines(c *Config) [][]string {
	if s.lines != nil {
		return s.lines(c)
	}
	if args := s.format(c); args != nil {
		return [][]string{args}
	}
	return nil
}

// Value returns the setting's value in c as one string that Set reads
// back, as CONFIG REWRITE hands it over.
func (s *Setting) Value(c *Config) string { return strings.Join(s.format(c), " ") }

// Get returns the answer CONFIG GET gives: sizes in bytes, a secret that
// is set as SecretShown.
func (s *Setting) Get(c *Config) string {
	v := s.Value(c)
	if s.get != nil {
		v = s.get(c)
	}
	if s.Secret && v != "" {
		return SecretShown
	}
	return v
}

// Check applies the setting's rules to its value in c.
func (s *Setting) Check(c *Config) error {
	if s.check == nil {
		return nil
	}
	return s.check(c)
}

// EnvVar is the setting's environment twin: REDIS_RELAY_REPL_TIMEOUT.
func (s *Setting) EnvVar() string {
	return "REDIS_RELAY_" + strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
}

// Rewrite says what CONFIG REWRITE writes of a setting.
type Rewrite int

const (
	// RewriteValue writes the running value: the line the file has is
	// updated, and a missing one appended unless the value is the default.
	RewriteValue Rewrite = iota
	// RewriteIfFromFile writes the value only where the config file gave
	// it: a password (or the file it is read from) that came from the
	// environment or a flag never reaches the file.
	RewriteIfFromFile
	// RewriteNever writes nothing: there is no value to keep
	// (daemonize).
	RewriteNever
)

// SecretShown is what CONFIG GET answers for a password that is set.
const SecretShown = "(set, not shown)"

// ProcessConfig holds the settings the run command applies around the
// relay (listeners, TLS files, logging, metrics, password files) and those
// accepted only for compatibility. The relay does not act on them; it
// holds them so that CONFIG GET answers for every setting.
type ProcessConfig struct {
	Port           int      // port; 0: no plain TCP listener
	Bind           []string // addresses to listen on; a leading "-" marks one that may be missing
	TCPKeepAlive   time.Duration
	TLSPort        int // 0: off
	TLSCertFile    string
	TLSKeyFile     string
	TLSCACertFile  string
	TLSReplication bool   // connect to the master with TLS
	TLSAuthClients string // yes, no or optional
	SentinelTLS    bool   // connect to the Sentinels with TLS
	SourceTLS      bool   // connect to the snapshot source with TLS
	MetricsAddr    string // "": no metrics server
	LogLevel       string // debug, info, warn or error
	LogFormat      string // text or json
	LogFile        string // "": standard error
	PidFile        string // "": none

	// Files holding a password, read once at start-up; each excludes its
	// plain twin.
	RequirePassFile    string
	MasterAuthFile     string
	SourcePasswordFile string

	// Redis's, checked and otherwise ignored.
	ReplPingReplicaPeriod time.Duration
	ReplDisklessSyncDelay time.Duration
}

// Setting categories, for --help.
const (
	catUpstream   = "upstream"
	catDownstream = "downstream"
	catStorage    = "storage"
	catRefresh    = "snapshot refresh and retention"
	catGuard      = "empty-master guard"
	catOps        = "logging and metrics"
	catTLS        = "tls"
)

// settingTable lists every setting in the order --help and --check-config
// show them. It is never modified.
var settingTable = []Setting{
	{
		Name: "replicaof", Aliases: []string{"slaveof"}, Synopsis: "<host> <port>", Category: catUpstream, Kind: KindString, NArgs: 2,
		Usage: `upstream master as host:port ("host port" and "no one" work too); empty: wait for REPLICAOF`,
		parse: func(c *Config, a []string) error {
			addr, err := ReplicaOfAddr(a[0], a[1])
			c.MasterAddr = addr
			return err
		},
		format: func(c *Config) []string {
			host, port, err := net.SplitHostPort(c.MasterAddr)
			if err != nil {
				return nil
			}
			return []string{host, port}
		},
		check: func(c *Config) error {
			if c.MasterAddr == "" {
				return nil
			}
			host, port, err := net.SplitHostPort(c.MasterAddr)
			if err != nil {
				return fmt.Errorf("%q is not host:port", c.MasterAddr)
			}
			_, err = ReplicaOfAddr(host, port)
			return err
		},
		args: replicaOfArgs,
	},
	settable(stringSetting("masteruser", "<user>", catUpstream, "", "ACL user to AUTH with at the master", func(c *Config) *string { return &c.MasterUser }, nil)),
	settable(secret(stringSetting("masterauth", "<password>", catUpstream, "", "password to AUTH with at the master", func(c *Config) *string { return &c.MasterAuth }, nil))),
	passwordSource(stringSetting("masterauth-file", "<path>", catUpstream, "", "read masterauth from this file at start-up (one line; instead of masterauth)", func(c *Config) *string { return &c.Process.MasterAuthFile }, nil)),
	unsetWhen(settable(secondsSetting("repl-timeout", catUpstream, "60", "seconds of silence after which a link is dropped, both directions", func(c *Config) *time.Duration { return &c.ReplTimeout }, time.Second)), func(c *Config) bool { return c.ReplTimeout <= 0 }),
	ignored(secondsSetting("repl-ping-replica-period", catUpstream, "10", "Redis's replica ping period", func(c *Config) *time.Duration { return &c.Process.ReplPingReplicaPeriod }, time.Second),
		"the relay forwards the master's own PINGs", "repl-ping-slave-period"),
	ignored(secondsSetting("repl-diskless-sync-delay", catDownstream, "5", "Redis's delay before a diskless full sync", func(c *Config) *time.Duration { return &c.Process.ReplDisklessSyncDelay }, 0),
		"the relay starts every full sync at once"),

	{
		Name: "bind", Synopsis: "<addr> [<addr> ...]", Category: catDownstream, Kind: KindString, Default: "127.0.0.1", NArgs: 1, Variadic: true,
		Usage: `addresses to listen on for replicas, space-separated; "-" before one lets start-up go on without it, * is every IPv4 address and ::* every IPv6 one`,
		parse: func(c *Config, a []string) error {
			c.Process.Bind = slices.Clone(a)
			return nil
		},
		format: func(c *Config) []string { return slices.Clone(c.Process.Bind) },
		check: func(c *Config) error {
			if len(c.Process.Bind) == 0 {
				return errors.New("must name at least one address")
			}
			for _, b := range c.Process.Bind {
				if strings.TrimPrefix(b, "-") == "" {
					return fmt.Errorf("%q is not an address", b)
				}
			}
			return nil
		},
		args: func(v string) ([]string, error) {
			return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }), nil
		},
	},
	settable(boolSetting("protected-mode", catDownstream, "yes", "while no requirepass is set, refuse clients that are not on loopback with -DENIED, as Redis does", func(c *Config) *bool { return &c.ProtectedMode }, false)),
	settable(secondsSetting("timeout", catDownstream, "0", "close a client (not a replica) idle this many seconds; 0: never", func(c *Config) *time.Duration { return &c.IdleTimeout }, 0)),
	secondsSetting("tcp-keepalive", catDownstream, "300", "TCP keepalive period of replica connections in seconds; 0: off", func(c *Config) *time.Duration { return &c.Process.TCPKeepAlive }, 0),
	intSetting("port", catDownstream, "6380", "port to listen on for replicas", func(c *Config) *int { return &c.Process.Port }, 0, 65535),
	settable(secret(stringSetting("requirepass", "<password>", catDownstream, "", "password replicas and clients must AUTH with", func(c *Config) *string { return &c.RequirePass }, nil))),
	passwordSource(stringSetting("requirepass-file", "<path>", catDownstream, "", "read requirepass from this file at start-up (one line; instead of requirepass)", func(c *Config) *string { return &c.Process.RequirePassFile }, nil)),
	unsetWhen(settable(intSetting("maxclients", catDownstream, "10000", "most downstream connections at once", func(c *Config) *int { return &c.MaxClients }, 1, math.MaxInt32)), func(c *Config) bool { return c.MaxClients <= 0 }),
	withAliases(intSetting("replica-announce-port", catUpstream, "0", "listening port announced to the master (REPLCONF listening-port; 0: the port listened on)", func(c *Config) *int { return &c.AnnouncePort }, 0, 65535),
		"slave-announce-port"),
	withAliases(settable(stringSetting("replica-announce-ip", "<ip>", catUpstream, "", "address announced to the master (REPLCONF ip-address), which it and Sentinel list the relay under; empty: the address the relay connects from. Taken at the next connection", func(c *Config) *string { return &c.AnnounceIP }, func(v string) error {
		if strings.ContainsFunc(v, unicode.IsSpace) {
			return fmt.Errorf("%q is not an address", v)
		}
		return nil
	})), "slave-announce-ip"),
	settable(boolSetting("replica-announced", catUpstream, "no", "show replica_announced:1 in INFO, so that Sentinel lists the relay in SENTINEL REPLICAS, where clients look for replicas to read from; with no it still reconfigures the relay on failover", func(c *Config) *bool { return &c.ReplicaAnnounced }, false)),
	{
		Name: "ack-policy", Synopsis: "received|downstream-min|downstream-quorum:<k>", Category: catUpstream, Kind: KindString, Default: "received", NArgs: 1, Runtime: true,
		Usage: "offset the relay acknowledges to its master: what it received, the lowest replica ACK, or the k-th highest",
		parse: func(c *Config, a []string) error {
			p, err := ParseAckPolicy(a[0])
			if err != nil {
				return fmt.Errorf("%q is not received, downstream-min or downstream-quorum:<k>", a[0])
			}
			c.AckPolicy = p
			return nil
		},
		format: func(c *Config) []string { return []string{c.AckPolicy.String()} },
	},
	unsetWhen(settable(durationSetting("wait-ahead", catDownstream, "60s", "how long a replica ahead of the relay may wait, kept alive with newlines, for the upstream to resend what it lacks", func(c *Config) *time.Duration { return &c.WaitAhead }, time.Millisecond)), func(c *Config) bool { return c.WaitAhead <= 0 }),

	stringSetting("dir", "<path>", catStorage, "./relay-data", "data directory: snapshot, log segments, state", func(c *Config) *string { return &c.DataDir }, notEmpty),
	{
		unset: func(c *Config) bool { return c.RingSize <= 0 },
		Name:  "repl-backlog-size", Synopsis: "<size>", Category: catStorage, Kind: KindSize, Default: "64mb", NArgs: 1,
		Usage: "memory ring of the newest stream bytes (older bytes are read from disk)",
		parse: func(c *Config, a []string) error {
			n, err := ParseSize(a[0])
			if err == nil && n > math.MaxInt {
				err = fmt.Errorf("%q is too large", a[0])
			}
			c.RingSize = int(n)
			return err
		},
		format: func(c *Config) []string { return []string{FormatSize(int64(c.RingSize))} },
		get:    func(c *Config) string { return strconv.Itoa(c.RingSize) },
		check: func(c *Config) error {
			if c.RingSize < 16<<10 {
				return fmt.Errorf("%s is below the minimum of %s", FormatSize(int64(c.RingSize)), FormatSize(16<<10))
			}
			return nil
		},
	},
	unsetWhen(sizeSetting("segment-size", catStorage, "64mb", "size at which a log segment file is closed", func(c *Config) *int64 { return &c.SegmentSize }, 4<<10, math.MaxInt64), func(c *Config) bool { return c.SegmentSize <= 0 }),

	unsetWhen(settable(floatSetting("refresh-ratio", catRefresh, "1", "refresh the snapshot when the log after it passes this many times its size; negative: never", func(c *Config) *float64 { return &c.RefreshRatio }, func(f float64) error {
		if f == 0 {
			return errors.New("0 is not a ratio: use a positive number, or a negative one to never refresh")
		}
		return nil
	})), func(c *Config) bool { return c.RefreshRatio == 0 }),
	settable(refreshMinSize),
	settable(durationSetting("refresh-max-age", catRefresh, "0", "refresh a snapshot older than this; 0: no age limit", func(c *Config) *time.Duration { return &c.RefreshMaxAge }, 0)),
	settable(durationSetting("rdb-only-max-age", catRefresh, "0", "the oldest snapshot a tool that asks for rdb-only over SYNC (redis-cli --rdb) is given; an older one is refreshed first, or the tool gets an error; 0: a snapshot holding every write the relay has received", func(c *Config) *time.Duration { return &c.RDBOnlyMaxAge }, 0)),
	settable(sizeSetting("retain-size", catRefresh, "0", "keep at least this much log before the head, even older than the snapshot", func(c *Config) *int64 { return &c.RetainBytes }, 0, math.MaxInt64)),
	settable(durationSetting("retain-age", catRefresh, "0", "keep log written within this long, even older than the snapshot", func(c *Config) *time.Duration { return &c.RetainAge }, 0)),

	settable(boolSetting("empty-master-guard", catGuard, "yes", "hold back a new history that is empty (or much smaller) until released", func(c *Config) *bool { return &c.DisableGuard }, true)),
	settable(floatSetting("guard-min-keys-ratio", catGuard, "0", "also hold back a new history with fewer than this fraction of the current keys; 0: only when empty", func(c *Config) *float64 { return &c.GuardMinKeysRatio }, func(f float64) error {
		if f < 0 || f > 1 {
			return fmt.Errorf("%s is outside 0-1", formatFloat(f))
		}
		return nil
	})),

	settable(stringSetting("snapshot-source", "<host:port>", catRefresh, "", "take the first snapshot and every refresh from this server (a stock replica of the master, or another relay) instead of the master; empty: the master", func(c *Config) *string { return &c.SnapshotSource }, nil)),
	settable(boolSetting("snapshot-source-fallback", catRefresh, "no", "take a snapshot from the master when the snapshot source is down", func(c *Config) *bool { return &c.SnapshotSourceFallback }, false)),
	settable(stringSetting("snapshot-source-user", "<user>", catRefresh, "", "ACL user to AUTH with at the snapshot source (the master's masteruser is never sent there)", func(c *Config) *string { return &c.SnapshotSourceUser }, nil)),
	settable(secret(stringSetting("snapshot-source-password", "<password>", catRefresh, "", "password to AUTH with at the snapshot source (the master's masterauth is never sent there); empty: no AUTH", func(c *Config) *string { return &c.SnapshotSourcePassword }, nil))),
	passwordSource(stringSetting("snapshot-source-password-file", "<path>", catRefresh, "", "read snapshot-source-password from this file at start-up (one line; instead of snapshot-source-password)", func(c *Config) *string { return &c.Process.SourcePasswordFile }, nil)),
	{
		Name: "upstream-compression", Synopsis: "<no|yes|fastest|default|better|best>", Category: catUpstream, Kind: KindString, Default: "no", NArgs: 1, Runtime: true,
		Usage: "ask an upstream relay for a zstd-compressed link at this level (a stock master ignores it)",
		parse: func(c *Config, a []string) error {
			if _, _, err := CompressionLevel(a[0]); err != nil {
				return err
			}
			c.UpstreamCompression = strings.ToLower(a[0])
			return nil
		},
		format: func(c *Config) []string {
			if c.UpstreamCompression == "" {
				return []string{"no"}
			}
			return []string{c.UpstreamCompression}
		},
	},
	settable(sizeSetting("full-sync-bandwidth-limit", catDownstream, "0", "bytes per second all full syncs served together may use (online streams are never paced); 0: no limit", func(c *Config) *int64 { return &c.FullSyncBandwidth }, 0, math.MaxInt64)),
	settable(sizeSetting("full-sync-replica-bandwidth-limit", catDownstream, "0", "bytes per second each full sync served may use; 0: no limit", func(c *Config) *int64 { return &c.FullSyncReplicaBandwidth }, 0, math.MaxInt64)),
	settable(intSetting("full-sync-max-concurrent", catDownstream, "0", "full syncs served at once; the others wait their turn (kept alive with newlines); 0: no limit", func(c *Config) *int { return &c.FullSyncMaxConcurrent }, 0, 1<<20)),
	settable(boolSetting("serve-compression", catDownstream, "yes", "give relays below a compressed link when they ask for one", func(c *Config) *bool { return &c.NoServeCompression }, true)),
	{
		Name: "hold-on-commands", Synopsis: "<name,...>", Category: catGuard, Kind: KindString, NArgs: 1, Runtime: true,
		Usage: "stop the stream to replicas just before the first of these commands (e.g. FLUSHALL,FLUSHDB) until RELAY GUARD RELEASE; empty: off. DEL (UNLINK with lazyfree-lazy-expire/-eviction yes) also matches every key the master expires or evicts",
		parse: func(c *Config, a []string) error {
			c.HoldOnCommands = nil
			for _, name := range splitList(a[0]) {
				c.HoldOnCommands = append(c.HoldOnCommands, strings.ToUpper(name))
			}
			return nil
		},
		format: func(c *Config) []string { return []string{strings.Join(c.HoldOnCommands, ",")} },
	},

	{
		Name: "user", Synopsis: "<name> [<rule> ...]", Category: catDownstream, Kind: KindString, NArgs: 1, Variadic: true, Repeatable: true, Rewrite: RewriteNever,
		Usage: "an ACL user as in redis.conf: user replica-user on >password +psync +replconf +ping (repeat for more users; passwords may be written as #<sha256>)",
		parse: func(c *Config, a []string) error {
			if _, err := acl.ParseUserLine(a); err != nil {
				return err
			}
			c.Users = append(slices.Clip(c.Users), slices.Clone(a))
			return nil
		},
		format: func(c *Config) []string {
			if len(c.Users) == 0 {
				return nil
			}
			return describeUser(c.Users[len(c.Users)-1])
		},
		lines: func(c *Config) [][]string {
			var out [][]string
			for _, u := range c.Users {
				out = append(out, describeUser(u))
			}
			return out
		},
		get: func(c *Config) string {
			var lines []string
			for _, u := range c.Users {
				lines = append(lines, strings.Join(describeUser(u), " "))
			}
			return strings.Join(lines, "; ")
		},
		args: func(v string) ([]string, error) { return strings.Fields(v), nil },
	},
	stringSetting("aclfile", "<path>", catDownstream, "", "load the ACL users from this file (ACL LOAD and ACL SAVE use it too); excludes user lines", func(c *Config) *string { return &c.ACLFile }, nil),
	stringSetting("requireuser", "<user>", catDownstream, "", "ACL-style user accepted with requirepass, besides default", func(c *Config) *string { return &c.RequireUser }, nil),
	unsetWhen(durationSetting("command-timeout", catDownstream, "10s", "a client must send a whole command within this once it started (slow-loris clients)", func(c *Config) *time.Duration { return &c.CommandTimeout }, time.Millisecond), func(c *Config) bool { return c.CommandTimeout <= 0 }),

	{
		Name: "sentinel-addrs", Synopsis: "<host:port,...>", Category: catUpstream, Kind: KindString, NArgs: 1,
		Usage: "follow the master that these Sentinels name (needs sentinel-master-name)",
		parse: func(c *Config, a []string) error {
			c.Sentinels = splitList(a[0])
			return nil
		},
		format: func(c *Config) []string { return []string{strings.Join(c.Sentinels, ",")} },
		check: func(c *Config) error {
			for _, a := range c.Sentinels {
				if _, _, err := net.SplitHostPort(a); err != nil {
					return fmt.Errorf("%q is not host:port", a)
				}
			}
			return nil
		},
	},
	stringSetting("sentinel-master-name", "<name>", catUpstream, "", "the master's name in Sentinel (needs sentinel-addrs)", func(c *Config) *string { return &c.MasterName }, nil),
	stringSetting("sentinel-user", "<user>", catUpstream, "", "ACL user for the Sentinels", func(c *Config) *string { return &c.SentinelUser }, nil),
	secret(stringSetting("sentinel-password", "<password>", catUpstream, "", "password for the Sentinels", func(c *Config) *string { return &c.SentinelPassword }, nil)),
	boolSetting("sentinel-tls", catTLS, "no", "connect to the Sentinels with TLS, verified with tls-ca-cert-file, presenting tls-cert-file", func(c *Config) *bool { return &c.Process.SentinelTLS }, false),

	{
		Name: "cluster-seeds", Synopsis: "<host:port,...>", Category: catUpstream, Kind: KindString, NArgs: 1,
		Usage: "follow the master of one shard of the Redis Cluster these nodes belong to (the shard that serves cluster-shard-slot); excludes replicaof and sentinel-addrs",
		parse: func(c *Config, a []string) error {
			c.ClusterSeeds = splitList(a[0])
			return nil
		},
		format: func(c *Config) []string { return []string{strings.Join(c.ClusterSeeds, ",")} },
		check: func(c *Config) error {
			for _, a := range c.ClusterSeeds {
				if _, _, err := net.SplitHostPort(a); err != nil {
					return fmt.Errorf("%q is not host:port", a)
				}
			}
			return nil
		},
	},
	intSetting("cluster-shard-slot", catUpstream, "0", "with cluster-seeds: follow the shard that serves this slot when the relay starts, and that shard's nodes through failovers and resharding after", func(c *Config) *int { return &c.ClusterShardSlot }, 0, 16383),
	unsetWhen(durationSetting("cluster-poll-interval", catUpstream, "1s", "with cluster-seeds: how often to ask the cluster which node is the shard's master (every quarter second while the link to the master is down)", func(c *Config) *time.Duration { return &c.ClusterPollInterval }, 10*time.Millisecond), func(c *Config) bool { return c.ClusterPollInterval <= 0 }),

	intSetting("tls-port", catTLS, "0", "also accept replicas over TLS on this port; 0: off", func(c *Config) *int { return &c.Process.TLSPort }, 0, 65535),
	stringSetting("tls-cert-file", "<path>", catTLS, "", "certificate for the TLS port, and the client certificate sent upstream", func(c *Config) *string { return &c.Process.TLSCertFile }, nil),
	stringSetting("tls-key-file", "<path>", catTLS, "", "private key of tls-cert-file", func(c *Config) *string { return &c.Process.TLSKeyFile }, nil),
	stringSetting("tls-ca-cert-file", "<path>", catTLS, "", "CA certificates that sign the master's and clients' certificates", func(c *Config) *string { return &c.Process.TLSCACertFile }, nil),
	boolSetting("tls-replication", catTLS, "no", "connect to the master with TLS", func(c *Config) *bool { return &c.Process.TLSReplication }, false),
	boolSetting("snapshot-source-tls", catTLS, "no", "connect to the snapshot source with TLS, verified with tls-ca-cert-file, presenting tls-cert-file", func(c *Config) *bool { return &c.Process.SourceTLS }, false),
	stringSetting("tls-auth-clients", "<yes|no|optional>", catTLS, "yes", "require client certificates on the TLS port", func(c *Config) *string { return &c.Process.TLSAuthClients }, func(v string) error {
		if v != "yes" && v != "no" && v != "optional" {
			return fmt.Errorf("%q is not yes, no or optional", v)
		}
		return nil
	}),

	stringSetting("metrics-addr", "<host:port>", catOps, "", "serve Prometheus metrics on this address; empty: off", func(c *Config) *string { return &c.Process.MetricsAddr }, checkListenAddr),
	{
		Name: "log-level", Aliases: []string{"loglevel"}, Synopsis: "<level>", Category: catOps, Kind: KindString, Default: "info", NArgs: 1,
		Usage: "debug, info, warn or error; Redis's loglevel names work too (verbose is debug, notice is info, warning is warn)",
		parse: func(c *Config, a []string) error {
			c.Process.LogLevel = a[0]
			if lv, ok := redisLogLevels[strings.ToLower(a[0])]; ok {
				c.Process.LogLevel = lv
			}
			return nil
		},
		format: func(c *Config) []string { return []string{c.Process.LogLevel} },
		check: func(c *Config) error {
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(c.Process.LogLevel)); err != nil {
				return fmt.Errorf("%q is not a level (debug, info, warn or error)", c.Process.LogLevel)
			}
			return nil
		},
	},
	stringSetting("logfile", "<path>", catOps, "", `append the log to this file; "": standard error`, func(c *Config) *string { return &c.Process.LogFile }, nil),
	stringSetting("pidfile", "<path>", catOps, "", "write the process ID to this file while running", func(c *Config) *string { return &c.Process.PidFile }, nil),
	{
		Name: "daemonize", Synopsis: "no", Category: catOps, Kind: KindBool, Default: "no", NArgs: 1, Rewrite: RewriteNever,
		Usage: "only no: the relay stays in the foreground",
		parse: func(_ *Config, a []string) error {
			on, err := ParseYesNo(a[0])
			if err == nil && on {
				err = errors.New("yes does not apply: the relay never forks into the background; run it under systemd (deploy/systemd), a container runtime or a supervisor, which also restart it")
			}
			return err
		},
		format: func(*Config) []string { return []string{"no"} },
	},
	stringSetting("log-format", "<format>", catOps, "text", "text or json", func(c *Config) *string { return &c.Process.LogFormat }, func(v string) error {
		if v != "text" && v != "json" {
			return fmt.Errorf("%q is neither text nor json", v)
		}
		return nil
	}),
}

// describeUser writes a user line with its passwords as hashes, so that
// --check-config and CONFIG GET never show one.
func describeUser(line []string) []string {
	u, err := acl.ParseUserLine(line)
	if err != nil {
		return slices.Clone(line) // parse refused it; never stored
	}
	return append([]string{u.Name()}, u.Rules()...)
}

// refreshMinSize is refresh-min-size. The Config field reads 0 as "the
// default" (for a Config written in code), so no minimum is held as -1.
var refreshMinSize = Setting{
	unset: func(c *Config) bool { return c.RefreshMinBytes == 0 },
	Name:  "refresh-min-size", Synopsis: "<size>", Category: catRefresh, Kind: KindSize, Default: "1gb", NArgs: 1,
	Usage: "never refresh for less log than this",
	parse: func(c *Config, a []string) error {
		n, err := ParseSize(a[0])
		c.RefreshMinBytes = n
		if n == 0 {
			c.RefreshMinBytes = -1
		}
		return err
	},
	format: func(c *Config) []string { return []string{FormatSize(max(c.RefreshMinBytes, 0))} },
	get:    func(c *Config) string { return strconv.FormatInt(max(c.RefreshMinBytes, 0), 10) },
}

// FixedReplies returns the parameters CONFIG GET answers that no one
// sets, with their answers: what Sentinel and monitoring tools read from a
// replica. The relay is never promoted and never takes writes.
func FixedReplies() map[string]string { return maps.Clone(fixedReplies) }

var fixedReplies = map[string]string{
	"replica-priority":  "0",
	"slave-priority":    "0",
	"replica-read-only": "yes",
}

// redisLogLevels maps Redis's loglevel names onto the relay's levels.
var redisLogLevels = map[string]string{
	"verbose": "debug",
	"notice":  "info",
	"warning": "warn",
	"nothing": "error",
}

// settingIndex finds a setting by its lower-case name or alias.
var settingIndex = func() map[string]*Setting {
	m := make(map[string]*Setting)
	for i := range settingTable {
		s := &settingTable[i]
		for _, n := range append([]string{s.Name}, s.Aliases...) {
			if m[n] != nil {
				panic("setting " + n + " defined twice")
			}
			m[n] = s
		}
	}
	return m
}()

// Table returns every setting, in the order help shows them. The
// caller must not modify them.
func Table() []*Setting {
	out := make([]*Setting, len(settingTable))
	for i := range settingTable {
		out[i] = &settingTable[i]
	}
	return out
}

// Lookup finds a setting by name or alias, in any case; nil when
// there is none.
func Lookup(name string) *Setting { return settingIndex[strings.ToLower(name)] }

// Default returns a Config with every setting at its default: where the
// config file and flags start.
func Default() Config {
	var c Config
	for i := range settingTable {
		s := &settingTable[i]
		if s.Default == "" {
			continue
		}
		if err := s.Set(&c, s.Default); err != nil {
			panic(fmt.Sprintf("default of %s: %v", s.Name, err)) // the table is wrong
		}
	}
	return c
}

// FillDefaults gives every field that a Config written in code left at
// zero (or below, where that means nothing), and whose setting reads zero
// as "the default", that default; and a nil Logger slog.Default(). A
// Config from Default has them all already.
func (c *Config) FillDefaults() {
	for i := range settingTable {
		s := &settingTable[i]
		if s.unset == nil || !s.unset(c) {
			continue
		}
		if err := s.Set(c, s.Default); err != nil {
			panic(fmt.Sprintf("default of %s: %v", s.Name, err)) // the table is wrong
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// unsetWhen marks a setting whose Config field, when unset says so, takes
// the default (FillDefaults).
func unsetWhen(s Setting, unset func(c *Config) bool) Setting { s.unset = unset; return s }

func settable(s Setting) Setting { s.Runtime = true; return s }

func secret(s Setting) Setting {
	s.Secret, s.Rewrite = true, RewriteIfFromFile
	return s
}

// passwordSource marks a setting, read once at start-up, that names where
// a password comes from: it is rewritten only where the file gave it.
func passwordSource(s Setting) Setting { s.Rewrite = RewriteIfFromFile; return s }

func withAliases(s Setting, aliases ...string) Setting {
	s.Aliases = append(s.Aliases, aliases...)
	return s
}

func ignored(s Setting, why string, aliases ...string) Setting {
	s.Ignored = why
	return withAliases(s, aliases...)
}

// ErrBadPort is a replicaof port that is not a number in 1-65535.
var ErrBadPort = errors.New("not a port (1-65535)")

// ReplicaOfAddr checks and joins the arguments of replicaof (in the config
// file, flags, CONFIG SET and the REPLICAOF command); "no one" is no
// master, "".
func ReplicaOfAddr(host, port string) (string, error) {
	if strings.EqualFold(host, "no") && strings.EqualFold(port, "one") {
		return "", nil
	}
	if host == "" || strings.IndexFunc(host, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
		return "", fmt.Errorf("%q is not a host name or address", host)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("%q is %w", port, ErrBadPort)
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

// replicaOfArgs reads the one-value form of replicaof: host:port,
// [v6]:port, "host port" or "no one".
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
