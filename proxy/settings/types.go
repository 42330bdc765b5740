package settings

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// The value types of the settings table (table.go): how each reads a
// value as redis.conf writes it, and writes it back so that it reads the
// same. Every constructor takes the field it works on as a function of the
// Config, so one entry serves the config file, flags, the environment and
// CONFIG GET/SET alike.

// Kinds of setting, for help and for tests that derive sample values.
const (
	KindString   = "string"
	KindInt      = "int"
	KindSize     = "size"     // bytes, with redis.conf units
	KindSeconds  = "seconds"  // a whole number of seconds (or a Go duration)
	KindDuration = "duration" // a Go duration or a number of seconds
	KindFloat    = "number"
	KindBool     = "bool"
)

func stringSetting(name, synopsis, cat string, def string, usage string, field func(*Config) *string, check func(string) error) Setting {
	s := Setting{
		Name: name, Synopsis: synopsis, Category: cat, Usage: usage, Default: def, Kind: KindString, NArgs: 1,
		parse:  func(c *Config, a []string) error { *field(c) = a[0]; return nil },
		format: func(c *Config) []string { return []string{*field(c)} },
	}
	if check != nil {
		s.check = func(c *Config) error { return check(*field(c)) }
	}
	return s
}

func intSetting(name, cat, def, usage string, field func(*Config) *int, lo, hi int) Setting {
	return Setting{
		Name: name, Synopsis: "<n>", Category: cat, Usage: usage, Default: def, Kind: KindInt, NArgs: 1,
		parse: func(c *Config, a []string) error {
			n, err := parseInt(a[0])
			*field(c) = n
			return err
		},
		format: func(c *Config) []string { return []string{strconv.Itoa(*field(c))} },
		check: func(c *Config) error {
			if n := *field(c); n < lo || n > hi {
				return fmt.Errorf("%d is outside %d-%d", n, lo, hi)
			}
			return nil
		},
	}
}

// sizeSetting is a size in bytes. CONFIG GET answers it in bytes, as
// Redis does; the config file gets it in the largest unit that divides it.
func sizeSetting(name, cat, def, usage string, field func(*Config) *int64, lo, hi int64) Setting {
	return Setting{
		Name: name, Synopsis: "<size>", Category: cat, Usage: usage, Default: def, Kind: KindSize, NArgs: 1,
		parse: func(c *Config, a []string) error {
			n, err := ParseSize(a[0])
			*field(c) = n
			return err
		},
		format: func(c *Config) []string { return []string{FormatSize(*field(c))} },
		get:    func(c *Config) string { return strconv.FormatInt(*field(c), 10) },
		check: func(c *Config) error {
			if n := *field(c); n < lo {
				return fmt.Errorf("%s is below the minimum of %s", FormatSize(n), FormatSize(lo))
			} else if n > hi {
				return fmt.Errorf("%s is above the maximum of %s", FormatSize(n), FormatSize(hi))
			}
			return nil
		},
	}
}

func secondsSetting(name, cat, def, usage string, field func(*Config) *time.Duration, lo time.Duration) Setting {
	return Setting{
		Name: name, Synopsis: "<seconds>", Category: cat, Usage: usage, Default: def, Kind: KindSeconds, NArgs: 1,
		parse: func(c *Config, a []string) error {
			d, err := parseSeconds(a[0])
			*field(c) = d
			return err
		},
		format: func(c *Config) []string { return []string{formatSeconds(*field(c))} },
		check: func(c *Config) error {
			if d := *field(c); d < lo {
				return fmt.Errorf("%s is below the minimum of %s", formatSeconds(d), formatSeconds(lo))
			}
			return nil
		},
	}
}

func durationSetting(name, cat, def, usage string, field func(*Config) *time.Duration, lo time.Duration) Setting {
	return Setting{
		Name: name, Synopsis: "<duration>", Category: cat, Usage: usage, Default: def, Kind: KindDuration, NArgs: 1,
		parse: func(c *Config, a []string) error {
			d, err := ParseDuration(a[0])
			*field(c) = d
			return err
		},
		format: func(c *Config) []string { return []string{formatDuration(*field(c))} },
		check: func(c *Config) error {
			if d := *field(c); d < lo {
				return fmt.Errorf("%s is below the minimum of %s", formatDuration(d), lo)
			}
			return nil
		},
	}
}

func floatSetting(name, cat, def, usage string, field func(*Config) *float64, check func(float64) error) Setting {
	return Setting{
		Name: name, Synopsis: "<number>", Category: cat, Usage: usage, Default: def, Kind: KindFloat, NArgs: 1,
		parse: func(c *Config, a []string) error {
			f, err := parseFloat(a[0])
			*field(c) = f
			return err
		},
		format: func(c *Config) []string { return []string{formatFloat(*field(c))} },
		check: func(c *Config) error {
			f := *field(c)
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return fmt.Errorf("%v is not a number", f)
			}
			return check(f)
		},
	}
}

// boolSetting is yes or no. invert is for a Config field that says the
// opposite of the setting (DisableGuard for empty-master-guard).
func boolSetting(name, cat, def, usage string, field func(*Config) *bool, invert bool) Setting {
	return Setting{
		Name: name, Synopsis: "yes|no", Category: cat, Usage: usage + " (yes or no)", Default: def, Kind: KindBool, NArgs: 1,
		parse: func(c *Config, a []string) error {
			b, err := ParseYesNo(a[0])
			*field(c) = b != invert
			return err
		},
		format: func(c *Config) []string { return []string{yesNo(*field(c) != invert)} },
	}
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

// FormatSize writes n in the largest binary unit that divides it exactly,
// so that ParseSize reads it back unchanged: 67108864 is "64mb".
func FormatSize(n int64) string {
	switch {
	case n == 0:
		return "0"
	case n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "gb"
	case n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "mb"
	case n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "kb"
	}
	return strconv.FormatInt(n, 10)
}

// parseSeconds reads a redis.conf time such as repl-timeout: a whole number
// of seconds. A Go duration ("90s") is accepted too.
func parseSeconds(s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("%q is negative", s)
		}
		if n > math.MaxInt64/int64(time.Second) {
			return 0, fmt.Errorf("%q is too large", s)
		}
		return time.Duration(n) * time.Second, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return d, nil
	}
	return 0, fmt.Errorf("%q is not a number of seconds", s)
}

// formatSeconds writes d for parseSeconds: whole seconds as a plain number.
func formatSeconds(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10)
	}
	return d.String()
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

// formatDuration writes d for ParseDuration in its largest whole unit:
// "2h", "90m", "45s", else Go's own form.
func formatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

// ParseYesNo reads a redis.conf boolean.
func ParseYesNo(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "yes":
		return true, nil
	case "no":
		return false, nil
	}
	return false, fmt.Errorf("%q is neither yes nor no", s)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// parseInt reads a whole number in base 10.
func parseInt(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	return n, nil
}

// parseFloat reads a finite number.
func parseFloat(s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	return f, nil
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func notEmpty(v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	return nil
}

// splitList reads a comma-separated list, dropping blanks around and
// between the items.
func splitList(v string) []string {
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// CompressionLevel parses upstream-compression: no, yes (the default
// level), fastest, default, better, best.
func CompressionLevel(v string) (zstd.EncoderLevel, bool, error) {
	switch strings.ToLower(v) {
	case "", "no":
		return 0, false, nil
	case "yes", "default":
		return zstd.SpeedDefault, true, nil
	case "fastest":
		return zstd.SpeedFastest, true, nil
	case "better":
		return zstd.SpeedBetterCompression, true, nil
	case "best":
		return zstd.SpeedBestCompression, true, nil
	}
	return 0, false, fmt.Errorf("%q is not no, yes, fastest, default, better or best", v)
}
