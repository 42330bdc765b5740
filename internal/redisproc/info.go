package redisproc

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
)

// ParseInfo turns an INFO reply ("key:value" lines ending in CRLF, with
// "# Section" headers and blank lines between sections) into a map of its
// fields; for a field given twice the last one wins. A value keeps
// everything after the first colon, so "slave0:ip=127.0.0.1,port=6380,..."
// maps slave0 to "ip=127.0.0.1,port=6380,...".
func ParseInfo(text string) map[string]string {
	fields := make(map[string]string)
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = v
		}
	}
	return fields
}

// DebugCommandArgs returns the options that let local clients run DEBUG
// (DEBUG DIGEST, DEBUG POPULATE) on the redis-server at bin: Redis 7 and
// later refuse DEBUG unless started with --enable-debug-command; Redis 6
// always allows it and refuses that option as unknown. A version that
// cannot be read is taken as 7 or later.
func DebugCommandArgs(bin string) []string {
	if major, err := MajorVersion(bin); err == nil && major < 7 {
		return nil
	}
	return []string{"--enable-debug-command", "local"}
}

var versions sync.Map // binary path -> major version (int)

// MajorVersion runs `bin --version` (once per binary) and returns the
// major version it reports ("Redis server v=6.2.16 ...", Valkey's
// "Valkey server v=8.0.1 ...").
func MajorVersion(bin string) (int, error) {
	if v, ok := versions.Load(bin); ok {
		return v.(int), nil
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("%s --version: %w", bin, err)
	}
	major, err := parseMajorVersion(string(out))
	if err != nil {
		return 0, fmt.Errorf("%s --version: %w", bin, err)
	}
	versions.Store(bin, major)
	return major, nil
}

func parseMajorVersion(out string) (int, error) {
	_, rest, ok := strings.Cut(out, " v=")
	if !ok {
		return 0, fmt.Errorf("no v= in %q", strings.TrimSpace(out))
	}
	major, _, _ := strings.Cut(rest, ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return 0, fmt.Errorf("version in %q: %w", strings.TrimSpace(out), err)
	}
	return n, nil
}
