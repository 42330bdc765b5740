package upstream

import (
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/redis-relay/redis-relay/proxy/history"
)

// Errors that decide how the upstream loop retries.
var (
	errTryLater = errors.New("upstream asked to retry later")
	errAuth     = errors.New("upstream authentication failed")
	// errLocalWrite: the relay could not store what the master sent (a
	// full disk). Reconnecting at once would only fail again.
	errLocalWrite     = errors.New("append to log")
	errPSYNCRefused   = errors.New("PSYNC refused")
	errStreamProtocol = errors.New("malformed stream from master")
	errMasterClosed   = errors.New("master closed the connection")
)

// LinkDownReason says why the upstream link went down. The same value
// appears in the log line, the metric label and INFO.
type LinkDownReason string

const (
	LinkDownConnect      LinkDownReason = "connect_failed"   // no TCP (or TLS) connection
	LinkDownHandshake    LinkDownReason = "handshake_failed" // PING, REPLCONF or the PSYNC reply failed
	LinkDownAuth         LinkDownReason = "auth_failed"
	LinkDownNotReady     LinkDownReason = "master_not_ready" // -LOADING, -NOMASTERLINK
	LinkDownRefused      LinkDownReason = "psync_refused"
	LinkDownSync         LinkDownReason = "sync_failed" // the snapshot transfer broke, or the snapshot was rejected
	LinkDownGuard        LinkDownReason = "guard_tripped"
	LinkDownSourceDown   LinkDownReason = "snapshot_source_down"
	LinkDownTimeout      LinkDownReason = "timeout" // repl-timeout without a byte
	LinkDownMasterClosed LinkDownReason = "master_closed"
	LinkDownProtocol     LinkDownReason = "protocol_error" // the stream did not parse; the next sync is a full one
	LinkDownLocalWrite   LinkDownReason = "local_write_error"
	LinkDownIO           LinkDownReason = "io_error"
	LinkDownRepointed    LinkDownReason = "repointed" // REPLICAOF or Sentinel named another master
)

// LinkDownReasons lists every LinkDownReason, for metrics.
func LinkDownReasons() []LinkDownReason {
	return []LinkDownReason{LinkDownConnect, LinkDownHandshake, LinkDownAuth, LinkDownNotReady, LinkDownRefused,
		LinkDownSync, LinkDownGuard, LinkDownSourceDown, LinkDownTimeout, LinkDownMasterClosed, LinkDownProtocol,
		LinkDownLocalWrite, LinkDownIO, LinkDownRepointed}
}

// linkDownReason classifies the error that ended a connection in phase (the
// link state it was in).
func linkDownReason(err error, phase string) LinkDownReason {
	var ne net.Error
	switch {
	case errors.Is(err, errAuth):
		return LinkDownAuth
	case errors.Is(err, errTryLater):
		return LinkDownNotReady
	case errors.Is(err, errLocalWrite):
		return LinkDownLocalWrite
	case errors.Is(err, history.ErrGuardTripped):
		return LinkDownGuard
	case errors.Is(err, errSourceDown):
		return LinkDownSourceDown
	case errors.Is(err, errStreamProtocol):
		return LinkDownProtocol
	case errors.Is(err, errPSYNCRefused):
		return LinkDownRefused
	case errors.As(err, &ne) && ne.Timeout():
		return LinkDownTimeout
	case errors.Is(err, errMasterClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return LinkDownMasterClosed
	case phase == LinkConnecting:
		return LinkDownConnect
	case phase == LinkHandshake:
		return LinkDownHandshake
	case phase == LinkSync:
		return LinkDownSync
	}
	return LinkDownIO
}
