//go:build unix

package admin

import (
	"syscall"
	"time"
)

// cpuTimes returns the user and system CPU time of the whole process, all
// threads (getrusage RUSAGE_SELF).
func cpuTimes() (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}
