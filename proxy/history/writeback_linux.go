package history

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to write [off, off+n) of f to disk and
// returns without waiting for it (it waits only for an earlier writeback of
// the same range). Redis's replica does the same every 8 MB of a snapshot
// it receives (rdb_fsync_range in readSyncBulkPayload), so that the final
// fsync finds little left to write.
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE)
	})
}
