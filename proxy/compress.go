package proxy

import (
	"net"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/redis-relay/redis-relay/proxy/settings"
)

// deadlineWriter writes to a connection with a write deadline per write.
type deadlineWriter struct {
	nc      net.Conn
	timeout func() time.Duration
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.nc.SetWriteDeadline(time.Now().Add(d.timeout()))
	return d.nc.Write(p)
}

// ParseCompression checks an upstream-compression value: whether it asks
// for compression, and at which zstd level.
func ParseCompression(v string) (level zstd.EncoderLevel, on bool, err error) {
	return settings.CompressionLevel(v)
}
