package upstream

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/replstream"
)

// AckSource gives a downstream ACK policy what it counts: the offset each
// online downstream replica last ACKed (a replica on SYNC sends no ACKs
// and is not counted). The server implements it from its sessions.
type AckSource interface {
	DownstreamAcks() []int64
}

// ackOffset applies the ACK policy to received, the last offset the relay
// holds durably.
func (u *Link) ackOffset(received int64) int64 {
	pol := u.cfg.Get().AckPolicy
	if pol.Kind == "" || pol.Kind == "received" {
		return received
	}
	acks := u.acks.DownstreamAcks()
	need := 1
	if pol.Kind == "downstream-quorum" {
		need = pol.Quorum
	} else {
		need = max(len(acks), 1)
	}
	if len(acks) < need {
		return u.hist.AckFloor()
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i] > acks[j] })
	return min(acks[need-1], received)
}

// NoteDownstreamAck wakes the upstream ACK loop after a replica ACKed more.
func (u *Link) NoteDownstreamAck() {
	select {
	case u.downstreamAcked <- struct{}{}:
	default:
	}
}

// ackLoop sends REPLCONF ACK every second, on request (GETACK), and with a
// downstream ACK policy whenever downstream replicas acknowledge more. The
// offset is what the policy allows, never more than the relay has fsynced.
func (u *Link) ackLoop(ctx context.Context, c *upstreamConn, log *replstream.Log, req <-chan struct{}) error {
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
			if pol := u.cfg.Get().AckPolicy; pol.Kind == "" || pol.Kind == "received" {
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

// SetAckSource names where the downstream replicas' ACKs come from, for
// the downstream ACK policies. Call it before Run.
func (u *Link) SetAckSource(a AckSource) { u.acks = a }
