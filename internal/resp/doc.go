// Package resp reads the requests clients send in RESP and writes the
// replies and commands the relay sends back: the one encoding every part
// of the daemon speaks to its peers with.
//
// Readers bound memory per request whatever the peer claims (MaxArgs,
// MaxBulk, MaxInline); a malformed request is a ProtocolError, which
// Redis answers with -ERR and a closed connection. Writers append to a
// caller's buffer, so a whole reply, or a batch of commands, goes out in
// one write.
package resp
