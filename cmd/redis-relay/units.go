package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis-relay/redis-relay/proxy"
)

// parseSize reads a memory size the way redis.conf does (see
// proxy.ParseSize); CONFIG SET reads sizes with the same rules.
func parseSize(s string) (int64, error) { return proxy.ParseSize(s) }

// formatSize writes n in the largest binary unit that divides it exactly,
// so that parseSize reads it back unchanged: 67108864 is "64mb".
func formatSize(n int64) string {
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
// of seconds. A Go duration ("90s") is accepted too, as earlier releases
// took one on the command line.
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

// parseDuration reads a Go duration ("90s", "2h") or a number of seconds
// (see proxy.ParseDuration).
func parseDuration(s string) (time.Duration, error) { return proxy.ParseDuration(s) }

// formatDuration writes d for parseDuration in its largest whole unit:
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

// parseYesNo reads a redis.conf boolean.
func parseYesNo(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "yes":
		return true, nil
	case "no":
		return false, nil
	}
	return false, fmt.Errorf("%q is neither yes nor no", s)
}

func formatYesNo(b bool) string {
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
