//go:build !unix

package replstream

// allocRing returns n bytes for the memory ring from the Go heap.
func allocRing(n int) (ring []byte, free func()) { return make([]byte, n), func() {} }
