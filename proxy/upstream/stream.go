package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/redis-relay/redis-relay/replstream"
)

// The stream: once synced, the upstream link appends what the master
// sends to the history's log, command by command, and ACKs what is
// durable.

// stream appends the command stream to the log until the link fails. It
// ACKs every second, and at once on REPLCONF GETACK.
func (u *Link) stream(ctx context.Context, c *upstreamConn, addr string, ackNow []byte) error {
	log := u.hist.CurrentLog()
	_, next := log.Range()
	if u.framer == nil || u.framerLog != log || u.framer.Next() != next {
		// The log always ends on a resume point here: a full sync starts
		// after its snapshot, and cutPartialTail runs after every link.
		u.framer = replstream.NewFramer(next, u.cfg.Fixed().Limits)
		u.resume = replstream.NewResumePoint(next)
		u.framerLog = log
	}
	u.status.set(LinkConnected, addr)
	u.streamed = true
	if ackNow != nil {
		if err := c.write(ackNow); err != nil {
			return fmt.Errorf("send ACK: %w", err)
		}
	}

	ackReq := make(chan struct{}, 1)
	ackErr := make(chan error, 1)
	ackCtx, stopAcks := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ackErr <- u.ackLoop(ackCtx, c, log, ackReq)
	}()
	defer func() {
		stopAcks()
		wg.Wait()
	}()

	buf := make([]byte, 256<<10)
	getack := false
	var relayed int64 // commands framed by one Feed
	onCmd := func(cmd *replstream.Command) {
		u.hist.Tripwire(cmd, u.resume.At())
		u.resume.Add(cmd)
		u.counts.add(cmd.Name)
		relayed++
		if cmd.IsGetAck() {
			getack = true
		}
	}
	defer u.counts.publish(u)
	for {
		n, err := c.br.Read(buf)
		if n > 0 {
			valid, ferr := u.framer.Feed(buf[:n], onCmd)
			if aerr := log.Append(buf[:valid], u.resume.At() == u.framer.Next()); aerr != nil {
				return fmt.Errorf("%w: %w", errLocalWrite, aerr)
			}
			u.stats.bytesFromUpstream.Add(int64(valid))
			u.stats.commandsRelayed.Add(relayed)
			relayed = 0
			u.counts.maybePublish(u, c.br.Buffered() == 0)
			if ferr != nil {
				u.stats.protocolErrors.Add(1)
				u.forceFull = true
				u.framer = nil
				return fmt.Errorf("%w, will full resync: %w", errStreamProtocol, ferr)
			}
			if getack {
				getack = false
				select {
				case ackReq <- struct{}{}:
				default:
				}
			}
		}
		if err != nil {
			select {
			case aerr := <-ackErr:
				if aerr != nil {
					return aerr
				}
			default:
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return errMasterClosed
			}
			return fmt.Errorf("read stream: %w", err)
		}
	}
}

// cutPartialTail drops what the log holds after its last resume point once
// the link is gone: the part of a command, or of a MULTI/EXEC block, that the
// master did not finish sending. A stock replica drops it too and resumes
// from its applied offset (replicationCacheMaster keeps only
// master->reploff), which is also where a promoted replica's history
// branches (its second_repl_offset), so the next PSYNC can continue on any
// of them. Replicas that already received some of the cut bytes are
// disconnected by their cursors and come back from a resume point.
func (u *Link) cutPartialTail() {
	log := u.hist.CurrentLog()
	if log == nil {
		return
	}
	cut, err := log.CutToResumePoint()
	switch {
	case errors.Is(err, replstream.ErrClosed):
	case err != nil:
		u.logger.Error("cannot cut the partial command at the end of the log; the next sync will be a full one", "err", err)
		u.forceFull = true
	case cut > 0:
		u.stats.tailCuts.Add(1)
		_, next := log.Range()
		u.logger.Info("dropped an unfinished command from the end of the log", "bytes", cut, "next", next)
	}
}
