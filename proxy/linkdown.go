package proxy

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
	linkDownConnect      LinkDownReason = "connect_failed"   // no TCP (or TLS) connection
	linkDownHandshake    LinkDownReason = "handshake_failed" // PING, REPLCONF or the PSYNC reply failed
	linkDownAuth         LinkDownReason = "auth_failed"
	linkDownNotReady     LinkDownReason = "master_not_ready" // -LOADING, -NOMASTERLINK
	linkDownRefused      LinkDownReason = "psync_refused"
	linkDownSync         LinkDownReason = "sync_failed" // the snapshot transfer broke, or the snapshot was rejected
	linkDownGuard        LinkDownReason = "guard_tripped"
	linkDownSourceDown   LinkDownReason = "snapshot_source_down"
	linkDownTimeout      LinkDownReason = "timeout" // repl-timeout without a byte
	linkDownMasterClosed LinkDownReason = "master_closed"
	linkDownProtocol     LinkDownReason = "protocol_error" // the stream did not parse; the next sync is a full one
	linkDownLocalWrite   LinkDownReason = "local_write_error"
	linkDownIO           LinkDownReason = "io_error"
	linkDownRepointed    LinkDownReason = "repointed" // REPLICAOF or Sentinel named another master
)

// LinkDownReasons lists every LinkDownReason, for metrics.
func LinkDownReasons() []LinkDownReason {
	return []LinkDownReason{linkDownConnect, linkDownHandshake, linkDownAuth, linkDownNotReady, linkDownRefused,
		linkDownSync, linkDownGuard, linkDownSourceDown, linkDownTimeout, linkDownMasterClosed, linkDownProtocol,
		linkDownLocalWrite, linkDownIO, linkDownRepointed}
}

// linkDownReason classifies the error that ended a connection in phase (the
// link state it was in).
func linkDownReason(err error, phase string) LinkDownReason {
	var ne net.Error
	switch {
	case errors.Is(err, errAuth):
		return linkDownAuth
	case errors.Is(err, errTryLater):
		return linkDownNotReady
	case errors.Is(err, errLocalWrite):
		return linkDownLocalWrite
	case errors.Is(err, history.ErrGuardTripped):
		return linkDownGuard
	case errors.Is(err, errSourceDown):
		return linkDownSourceDown
	case errors.Is(err, errStreamProtocol):
		return linkDownProtocol
	case errors.Is(err, errPSYNCRefused):
		return linkDownRefused
	case errors.As(err, &ne) && ne.Timeout():
		return linkDownTimeout
	case errors.Is(err, errMasterClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return linkDownMasterClosed
	case phase == LinkConnecting:
		return linkDownConnect
	case phase == LinkHandshake:
		return linkDownHandshake
	case phase == LinkSync:
		return linkDownSync
	}
	return linkDownIO
}
