//go:build !unix

package admin

import "time"

// cpuTimes is unknown where there is no getrusage: INFO cpu shows zeros.
func cpuTimes() (user, sys time.Duration) { return 0, 0 }
