//go:build unix

package replstream

import "syscall"

// allocRing returns n bytes for the memory ring, mapped outside the Go heap:
// the pages are resident only once written, the garbage collector neither
// scans them nor counts them towards its next goal, and the ring is
// returned to the system when the log closes. free must be called at most
// once, with no reader or writer left in the ring.
func allocRing(n int) (ring []byte, free func()) {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]byte, n), func() {}
	}
	return b, func() { syscall.Munmap(b) }
}
