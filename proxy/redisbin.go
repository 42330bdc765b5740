package proxy

import (
	"os/exec"
	"strconv"
	"strings"
)

// DebugCommandArgs are the arguments that let a redis-server binary answer
// DEBUG (DEBUG DIGEST, DEBUG POPULATE) on loopback: Redis 7 and later need
// --enable-debug-command, which Redis 6 (DEBUG always on) rejects. An
// unknown version is taken as 7 or later.
func DebugCommandArgs(bin string) []string {
	out, err := exec.Command(bin, "--version").Output()
	if err == nil {
		if _, v, ok := strings.Cut(string(out), " v="); ok {
			if major, err := strconv.Atoi(strings.SplitN(v, ".", 2)[0]); err == nil && major < 7 {
				return nil
			}
		}
	}
	return []string{"--enable-debug-command", "local"}
}
