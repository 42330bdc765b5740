package downstream

import (
	"net"
	"time"
)

// Compressed links to relays below (see package wire for the words): a
// session that starts one writes through a zstd encoder into a
// deadlineWriter, counted as wire bytes.

// deadlineWriter writes to a connection with a write deadline per write.
type deadlineWriter struct {
	nc      net.Conn
	timeout func() time.Duration
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.nc.SetWriteDeadline(time.Now().Add(d.timeout()))
	return d.nc.Write(p)
}
