package settings

import (
	"fmt"
	"strconv"
	"strings"
)

// AckPolicy decides which offset the relay acknowledges to its master.
//
//   - received: what the relay has fsynced to its log. Fast and independent of
//     downstream replicas; WAIT on the master then means "the relay has it".
//   - downstream-min: the lowest ACK among the relay's online replicas (and
//     never more than received), so WAIT and min-replicas-to-write on the
//     master mean every replica behind the relay has the write. One slow or
//     stuck replica holds the master's WAITs back.
//   - downstream-quorum:K: the K-th highest ACK among online replicas: K of
//     them have the write. Fewer than K online replicas hold ACKs back.
type AckPolicy struct {
	Kind   string // "received", "downstream-min" or "downstream-quorum"
	Quorum int    // K for downstream-quorum
}

// ParseAckPolicy reads received, downstream-min or downstream-quorum:K.
func ParseAckPolicy(s string) (AckPolicy, error) {
	switch {
	case s == "" || s == "received":
		return AckPolicy{Kind: "received"}, nil
	case s == "downstream-min":
		return AckPolicy{Kind: s}, nil
	case strings.HasPrefix(s, "downstream-quorum:"):
		k, err := strconv.Atoi(strings.TrimPrefix(s, "downstream-quorum:"))
		if err != nil || k < 1 {
			return AckPolicy{}, fmt.Errorf("ack policy %q: the quorum must be a positive integer", s)
		}
		return AckPolicy{Kind: "downstream-quorum", Quorum: k}, nil
	}
	return AckPolicy{}, fmt.Errorf("ack policy %q: want received, downstream-min or downstream-quorum:K", s)
}

func (p AckPolicy) String() string {
	if p.Kind == "downstream-quorum" {
		return fmt.Sprintf("downstream-quorum:%d", p.Quorum)
	}
	if p.Kind == "" {
		return "received"
	}
	return p.Kind
}
