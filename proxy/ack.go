package proxy

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/replstream"
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

// ackOffset applies the ACK policy to received, the last offset the relay
// holds durably.
func (u *upstreamLink) ackOffset(received int64) int64 {
	pol := u.cfg.get().AckPolicy
	if pol.Kind == "" || pol.Kind == "received" {
		return received
	}
	var acks []int64
	u.hist.eachReader(func(s *session) {
		if s.state.Load() == stateOnline && !s.legacy {
			acks = append(acks, s.ack.Load())
		}
	})
	need := 1
	if pol.Kind == "downstream-quorum" {
		need = pol.Quorum
	} else {
		need = max(len(acks), 1)
	}
	if len(acks) < need {
		return u.hist.ackFloor()
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i] > acks[j] })
	return min(acks[need-1], received)
}

// noteDownstreamAck wakes the upstream ACK loop after a replica ACKed more.
func (u *upstreamLink) noteDownstreamAck() {
	select {
	case u.downstreamAcked <- struct{}{}:
	default:
	}
}

// ackLoop sends REPLCONF ACK every second, on request (GETACK), and with a
// downstream ACK policy whenever downstream replicas acknowledge more. The
// offset is what the policy allows, never more than the relay has fsynced.
func (u *upstreamLink) ackLoop(ctx context.Context, c *upstreamConn, log *replstream.Log, req <-chan struct{}) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	sent := int64(-1)
	for {
		periodic := false
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			periodic = true
		case <-req:
		case <-u.downstreamAcked:
			if pol := u.cfg.get().AckPolicy; pol.Kind == "" || pol.Kind == "received" {
				continue
			}
		}
		synced, err := log.Sync()
		if err != nil {
			c.nc.Close()
			return fmt.Errorf("sync log: %w", err)
		}
		off := u.ackOffset(synced - 1)
		if off == sent && !periodic {
			continue // nothing new to tell; the 1 s ACK keeps the link alive
		}
		if err := c.write(resp.AppendCommand(nil, "REPLCONF", "ACK", strconv.FormatInt(off, 10))); err != nil {
			return nil // the reader sees the broken connection
		}
		sent = off
		u.status.acked.Store(off)
	}
}
