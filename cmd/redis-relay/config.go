package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/redis-relay/redis-relay/proxy/acl"
	"github.com/redis-relay/redis-relay/proxy/settings"
)

// The relay reads a redis.conf-style file: one directive per line, the
// directive name first (case-insensitive), then its arguments separated by
// spaces. Arguments may be quoted as Redis's config loader allows:
//
//	"double quoted" with \n \r \t \b \a \\ \" and \xHH escapes
//	'single quoted' with \' as the only escape
//
// Lines are trimmed; empty lines and lines starting with # are skipped.
// Every directive has a flag of the same name on `run` and an environment
// twin, REDIS_RELAY_<NAME>. Settings are applied in the order built-in
// default, config file, environment, command line; the last one wins.

// Settings is the relay's configuration as the run command assembles it:
// every setting of proxy's table, and where each value came from.
type Settings struct {
	settings.Config

	// origin says where each setting's value came from: "relay.conf:12",
	// "--port" or "REDIS_RELAY_PORT". Settings left at their default are
	// absent.
	origin map[string]string
}

// defaultSettings returns the built-in defaults.
func defaultSettings() Settings {
	return Settings{Config: settings.Default()}
}

// ConfigError is a config file line that could not be used.
type ConfigError struct {
	File      string
	Line      int    // 1-based
	Directive string // "" when the line could not be split into arguments
	Err       error
}

func (e *ConfigError) Error() string {
	if e.Directive == "" {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s:%d: %s: %v", e.File, e.Line, e.Directive, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

var (
	errUnbalancedQuotes = errors.New("unbalanced quotes")
	errQuoteNotEnded    = errors.New("a closing quote must be followed by a space or the end of the line")
	errNUL              = errors.New("line holds a NUL byte")
)

// isSpace is C's isspace in the "C" locale, which Redis uses to skip the
// blanks between arguments.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// splitArgs splits a line into arguments by the rules of Redis's
// sdssplitargs. A quote inside an unquoted argument opens a quoted part of
// the same argument (ab"c d" is one argument, "abc d"); a closing quote must
// be followed by a blank or the end of the line.
func splitArgs(line string) ([]string, error) {
	if strings.IndexByte(line, 0) >= 0 {
		return nil, errNUL
	}
	var args []string
	i, n := 0, len(line)
	for {
		for i < n && isSpace(line[i]) {
			i++
		}
		if i == n {
			return args, nil
		}
		var arg strings.Builder
		inDouble, inSingle := false, false
	token:
		for {
			switch {
			case inDouble:
				if i == n {
					return nil, errUnbalancedQuotes
				}
				c := line[i]
				switch {
				case c == '\\' && i+3 < n && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]):
					arg.WriteByte(unhex(line[i+2])<<4 | unhex(line[i+3]))
					i += 4
				case c == '\\' && i+1 < n:
					i++
					switch e := line[i]; e {
					case 'n':
						arg.WriteByte('\n')
					case 'r':
						arg.WriteByte('\r')
					case 't':
						arg.WriteByte('\t')
					case 'b':
						arg.WriteByte('\b')
					case 'a':
						arg.WriteByte('\a')
					default:
						arg.WriteByte(e)
					}
					i++
				case c == '"':
					if i+1 < n && !isSpace(line[i+1]) {
						return nil, errQuoteNotEnded
					}
					i++
					break token
				default:
					arg.WriteByte(c)
					i++
				}
			case inSingle:
				if i == n {
					return nil, errUnbalancedQuotes
				}
				c := line[i]
				switch {
				case c == '\\' && i+1 < n && line[i+1] == '\'':
					arg.WriteByte('\'')
					i += 2
				case c == '\'':
					if i+1 < n && !isSpace(line[i+1]) {
						return nil, errQuoteNotEnded
					}
					i++
					break token
				default:
					arg.WriteByte(c)
					i++
				}
			default:
				if i == n {
					break token
				}
				switch c := line[i]; c {
				case ' ', '\n', '\r', '\t':
					break token
				case '"':
					inDouble = true
				case '\'':
					inSingle = true
				default:
					arg.WriteByte(c)
				}
				i++
			}
		}
		args = append(args, arg.String())
	}
}

// quoteArg returns a so that splitArgs reads it back as one argument:
// unchanged when it is plain, otherwise in double quotes with escapes.
func quoteArg(a string) string {
	plain := a != ""
	for i := 0; plain && i < len(a); {
		r, size := utf8.DecodeRuneInString(a[i:])
		if r == utf8.RuneError && size <= 1 || r == '"' || r == '\'' || r == '\\' || !unicode.IsGraphic(r) || unicode.IsSpace(r) {
			plain = false
		}
		i += size
	}
	if plain {
		return a
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(a); {
		r, size := utf8.DecodeRuneInString(a[i:])
		switch {
		case r == '\\' || r == '"':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\a':
			b.WriteString(`\a`)
		case r == utf8.RuneError && size <= 1, !unicode.IsPrint(r) && r != ' ':
			for _, c := range []byte(a[i : i+size]) {
				fmt.Fprintf(&b, `\x%02x`, c)
			}
		default:
			b.WriteString(a[i : i+size])
		}
		i += size
	}
	b.WriteByte('"')
	return b.String()
}

// formatDirective writes one config line.
func formatDirective(name string, args []string) string {
	var b strings.Builder
	b.WriteString(name)
	for _, a := range args {
		b.WriteByte(' ')
		b.WriteString(quoteArg(a))
	}
	return b.String()
}

// loadConfigFile applies the directives of the file at path to s.
func loadConfigFile(path string, s *Settings) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	return parseConfig(path, data, s)
}

// parseConfig applies the directives in data to s, stopping at the first
// line it cannot use. name is the file name errors carry.
func parseConfig(name string, data []byte, s *Settings) error {
	return parseConfigDepth(name, data, s, 0)
}

// maxIncludeDepth bounds nested include lines (and stops include cycles).
const maxIncludeDepth = 8

func parseConfigDepth(name string, data []byte, s *Settings, depth int) error {
	for i, line := range strings.Split(string(data), "\n") {
		args, err := configLineArgs(line)
		if err != nil {
			return &ConfigError{File: name, Line: i + 1, Err: err}
		}
		if len(args) == 0 {
			continue
		}
		if strings.EqualFold(args[0], "include") {
			if err := includeFiles(args[1:], s, depth+1); err != nil {
				return &ConfigError{File: name, Line: i + 1, Directive: "include", Err: err}
			}
			continue
		}
		d := settings.Lookup(args[0])
		if d == nil {
			return &ConfigError{File: name, Line: i + 1, Directive: args[0], Err: errors.New("unknown directive")}
		}
		if err := d.Apply(&s.Config, args[1:]); err != nil {
			return &ConfigError{File: name, Line: i + 1, Directive: d.Name, Err: err}
		}
		s.setOrigin(d.Name, fmt.Sprintf("%s:%d", name, i+1))
	}
	return nil
}

// includeFiles applies the files an include line names, as Redis does: a
// path (relative to the working directory) or a glob pattern, whose
// matches are read in name order. Later lines of the including file still
// override what an included file set.
func includeFiles(args []string, s *Settings, depth int) error {
	if len(args) != 1 {
		return fmt.Errorf("wrong number of arguments (want 1: include <path>; got %d)", len(args))
	}
	if depth > maxIncludeDepth {
		return fmt.Errorf("more than %d nested includes (does a file include itself?)", maxIncludeDepth)
	}
	paths := []string{args[0]}
	if strings.ContainsAny(args[0], "*?[") {
		m, err := filepath.Glob(args[0])
		if err != nil {
			return fmt.Errorf("pattern %q: %w", args[0], err)
		}
		paths = m // sorted; none is fine, as in Redis
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := parseConfigDepth(p, data, s, depth); err != nil {
			return err
		}
	}
	return nil
}

// configLineArgs splits one line of a config file: nothing for a blank line
// or a comment.
func configLineArgs(line string) ([]string, error) {
	line = strings.Trim(line, " \t\r\n")
	if line == "" || line[0] == '#' {
		return nil, nil
	}
	return splitArgs(line)
}

func (s *Settings) setOrigin(name, where string) {
	if s.origin == nil {
		s.origin = make(map[string]string)
	}
	s.origin[name] = where
}

// where names the origin of a directive's value for an error message.
func (s *Settings) where(name string) string {
	if w, ok := s.origin[name]; ok {
		if strings.HasPrefix(w, "--") || strings.HasPrefix(w, "REDIS_RELAY_") {
			return w
		}
		return w + ": " + name
	}
	return name
}

// directiveFlags returns a flag for every setting, with its env twin.
func directiveFlags() []cli.Flag {
	def := defaultSettings()
	table := settings.Table()
	flags := make([]cli.Flag, 0, len(table))
	for _, d := range table {
		usage := d.Usage
		if d.Ignored != "" {
			usage += " (accepted and ignored: " + d.Ignored + ")"
		}
		flags = append(flags, &cli.StringFlag{
			Name:        d.Name,
			Aliases:     d.Aliases,
			Category:    d.Category,
			Usage:       usage,
			EnvVars:     []string{d.EnvVar()},
			DefaultText: d.Value(&def.Config),
		})
	}
	return flags
}

// applyFlags applies every setting's flag set on the command line or in
// the environment.
func (s *Settings) applyFlags(c *cli.Context) error {
	for _, d := range settings.Table() {
		if !c.IsSet(d.Name) {
			continue
		}
		v := c.String(d.Name)
		where := "--" + d.Name
		if ev, ok := os.LookupEnv(d.EnvVar()); ok && ev == v {
			where = d.EnvVar()
		}
		if err := d.Set(&s.Config, v); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		s.setOrigin(d.Name, where)
	}
	return nil
}

// settingsFromContext assembles the run command's settings: defaults, then
// the config file, then the environment and the command line.
func settingsFromContext(c *cli.Context) (Settings, error) {
	s := defaultSettings()
	if path := c.String("config"); path != "" {
		if err := loadConfigFile(path, &s); err != nil {
			return s, err
		}
	}
	if err := s.applyFlags(c); err != nil {
		return s, err
	}
	if err := s.Validate(); err != nil {
		return s, err
	}
	if err := s.readPasswordFiles(); err != nil {
		return s, err
	}
	return s, s.checkACLFile()
}

// checkACLFile reads the aclfile, if one is set, so that --check-config
// (and start-up, before anything else) stops at a line it cannot use,
// naming the file, the line and the reason.
func (s *Settings) checkACLFile() error {
	if s.ACLFile == "" {
		return nil
	}
	data, err := os.ReadFile(s.ACLFile)
	if err == nil {
		_, err = acl.ParseFile(s.ACLFile, data)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", s.where("aclfile"), err)
	}
	return nil
}

// readPasswordFiles reads requirepass-file, masterauth-file and
// snapshot-source-password-file into the passwords they stand for. Each
// file holds the password on its first line (a trailing newline is not
// part of it). A file and the plain directive
// together are refused: which one is meant would depend on the order of
// sources. The origin of the password becomes the file directive, so
// CONFIG REWRITE never writes it.
func (s *Settings) readPasswordFiles() error {
	var errs []error
	for _, f := range []struct {
		file, plain string
		path        string
		dst         *string
	}{
		{"requirepass-file", "requirepass", s.Process.RequirePassFile, &s.RequirePass},
		{"masterauth-file", "masterauth", s.Process.MasterAuthFile, &s.MasterAuth},
		{"snapshot-source-password-file", "snapshot-source-password", s.Process.SourcePasswordFile, &s.SnapshotSourcePassword},
	} {
		if f.path == "" {
			continue
		}
		if *f.dst != "" {
			errs = append(errs, fmt.Errorf("%s and %s are both set (%s, %s): keep one", f.file, f.plain, s.where(f.file), s.where(f.plain)))
			continue
		}
		data, err := os.ReadFile(f.path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.where(f.file), err))
			continue
		}
		pw, _, _ := strings.Cut(string(data), "\n")
		pw = strings.TrimSuffix(pw, "\r")
		if pw == "" {
			errs = append(errs, fmt.Errorf("%s: %s holds no password on its first line", s.where(f.file), f.path))
			continue
		}
		*f.dst = pw
		s.setOrigin(f.plain, f.file)
	}
	return errors.Join(errs...)
}

// Validate checks every value against its setting's rules (ranges,
// host:port forms, known levels and formats). Each error names where the
// value came from: "relay.conf:12: port: ...", "--port: ..." or
// "REDIS_RELAY_PORT: ...".
func (s *Settings) Validate() error {
	var errs []error
	for _, d := range settings.Table() {
		if err := d.Check(&s.Config); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.where(d.Name), err))
		}
	}
	// Rules across settings, checked once every source is applied.
	if len(s.Users) > 0 && s.ACLFile != "" {
		errs = append(errs, fmt.Errorf("%s: users are defined by user lines (%s) and by an ACL file: keep one, as Redis requires", s.where("aclfile"), s.where("user")))
	}
	switch hasSentinels := len(s.Sentinels) > 0; {
	case hasSentinels && s.MasterName == "":
		errs = append(errs, fmt.Errorf("%s: names Sentinels but sentinel-master-name is not set: which master should the relay follow?", s.where("sentinel-addrs")))
	case !hasSentinels && s.MasterName != "":
		errs = append(errs, fmt.Errorf("%s: is set but sentinel-addrs names no Sentinel to ask", s.where("sentinel-master-name")))
	}
	if len(s.ClusterSeeds) > 0 {
		if s.MasterAddr != "" {
			errs = append(errs, fmt.Errorf("%s and %s are both set (%s): the cluster names the shard's master; keep one", "cluster-seeds", "replicaof", s.where("replicaof")))
		}
		if len(s.Sentinels) > 0 {
			errs = append(errs, fmt.Errorf("%s and %s are both set (%s): a cluster fails over without Sentinel; keep one", "cluster-seeds", "sentinel-addrs", s.where("sentinel-addrs")))
		}
	}
	return errors.Join(errs...)
}

// listenAddrs returns bind's addresses joined with port, and whether each
// may be missing (Redis's "-" prefix). "*" is every IPv4 address and "::*"
// every IPv6 one, as in redis.conf.
func (s *Settings) listenAddrs(port int) (addrs []string, optional []bool) {
	for _, b := range s.Process.Bind {
		opt := strings.HasPrefix(b, "-")
		b = strings.TrimPrefix(b, "-")
		switch b {
		case "*":
			b = "0.0.0.0"
		case "::*":
			b = "::"
		}
		addrs = append(addrs, net.JoinHostPort(b, strconv.Itoa(port)))
		optional = append(optional, opt)
	}
	return addrs, optional
}

// proxyConfig returns the daemon's Config: the settings, with logger.
func (s *Settings) proxyConfig(logger *slog.Logger) settings.Config {
	cfg := s.Config
	cfg.Logger = logger
	return cfg
}

// logIgnored reports the settings that were set but have no effect.
func (s *Settings) logIgnored(logger *slog.Logger) {
	for _, d := range settings.Table() {
		if where, ok := s.origin[d.Name]; ok && d.Ignored != "" {
			logger.Info("directive accepted but ignored", "directive", d.Name, "value", d.Value(&s.Config), "from", where, "reason", d.Ignored)
		}
	}
}

// writeConfig writes the settings as a config file, one directive per line
// in the order of the settings table. Passwords are left out.
func (s *Settings) writeConfig(w io.Writer) error {
	var b strings.Builder
	for _, d := range settings.Table() {
		if d.Repeatable {
			lines := d.FormatLines(&s.Config)
			if len(lines) == 0 {
				fmt.Fprintf(&b, "# %s is not set\n", d.Name)
			}
			for _, args := range lines {
				b.WriteString(formatDirective(d.Name, args))
				b.WriteByte('\n')
			}
			continue
		}
		args := d.Format(&s.Config)
		switch {
		case args == nil || len(args) == 1 && args[0] == "":
			fmt.Fprintf(&b, "# %s is not set\n", d.Name)
		case d.Secret:
			fmt.Fprintf(&b, "# %s is set (not shown)\n", d.Name)
		default:
			b.WriteString(formatDirective(d.Name, args))
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
