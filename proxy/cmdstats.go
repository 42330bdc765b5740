package proxy

import (
	"context"
	"math"
	"sync/atomic"
	"time"
)

// What INFO stats and INFO commandstats count. A stock replica counts both
// the commands it applies from its master and the ones its clients send;
// the relay counts the same two kinds: every command in the stream it
// relays (commandsRelayed, and by name the upstream link's commandCounts),
// and every command a downstream connection sends it (clientCommandStats).
// total_commands_processed is their sum, and so is the sum of the calls in
// INFO commandstats.

// commandStat counts one command name that clients send.
type commandStat struct {
	calls    atomic.Int64 // handled, including those that answered an error
	usec     atomic.Int64 // microseconds spent answering them
	rejected atomic.Int64 // refused before running: NOAUTH, wrong context
	failed   atomic.Int64 // ran and answered an error
}

// clientCommandStats counts the commands downstream connections send, by
// lower-case name. Its keys, every command the relay answers, are fixed
// when it is made, so it is read and counted without a lock; a name not in
// it (an unknown command) is not counted, as Redis counts none.
type clientCommandStats map[string]*commandStat

// serverCommands are the commands the server answers itself rather than
// through adminCommands.
var serverCommands = []string{"replconf", "psync", "sync", "multi", "exec", "discard"}

func newClientCommandStats() clientCommandStats {
	m := make(clientCommandStats, len(adminCommands)+len(serverCommands))
	for name := range adminCommands {
		m[name] = new(commandStat)
	}
	for _, name := range serverCommands {
		m[name] = new(commandStat)
	}
	return m
}

// total is the number of commands counted.
func (m clientCommandStats) total() int64 {
	var n int64
	for _, s := range m {
		n += s.calls.Load()
	}
	return n
}

// snapshot reads the counts of the commands sent at least once.
func (m clientCommandStats) snapshot() map[string]CommandStat {
	out := make(map[string]CommandStat)
	for name, s := range m {
		st := CommandStat{Calls: s.calls.Load(), Usec: s.usec.Load(), Rejected: s.rejected.Load(), Failed: s.failed.Load()}
		if st.Calls > 0 || st.Rejected > 0 {
			out[name] = st
		}
	}
	return out
}

// CommandStat is one line of INFO commandstats.
type CommandStat struct {
	Calls, Usec, Rejected, Failed int64
}

// The instantaneous figures of INFO stats, sampled as Redis samples them:
// every 100 ms, and averaged over the last 16 samples (1.6 s).
const (
	rateSampleEvery = 100 * time.Millisecond
	rateSamples     = 16
)

// rates holds the latest instantaneous figures as float64 bits. Only
// sampleRates writes them.
type rates struct {
	opsPerSec   atomic.Uint64 // commands relayed and commands from clients, per second
	inputKbps   atomic.Uint64 // KiB/s read: stream from upstream, requests and ACKs from clients
	outputKbps  atomic.Uint64 // KiB/s written: stream and snapshots to replicas, replies to clients
	replInKbps  atomic.Uint64 // the replication part of inputKbps
	replOutKbps atomic.Uint64 // the replication part of outputKbps
}

func loadFloat(v *atomic.Uint64) float64 { return math.Float64frombits(v.Load()) }

// rateCounters are the counters the rates are taken of, at one instant.
type rateCounters struct {
	at                            time.Time
	ops, in, out, replIn, replOut int64
}

func (r *Relay) readRateCounters() rateCounters {
	c := r.stats
	relayed, replIn := r.up.Relayed()
	replOut := c.bytesToReplicas.Load()
	return rateCounters{
		at:      time.Now(),
		ops:     relayed + r.srv.cmdStats.total(),
		in:      replIn + c.clientBytesIn.Load(),
		out:     replOut + c.clientBytesOut.Load(),
		replIn:  replIn,
		replOut: replOut,
	}
}

// sampleRates updates r.rates every rateSampleEvery until ctx ends.
func (r *Relay) sampleRates(ctx context.Context) {
	var ring [rateSamples + 1]rateCounters
	n := 0
	tick := time.NewTicker(rateSampleEvery)
	defer tick.Stop()
	for {
		ring[n%len(ring)] = r.readRateCounters()
		n++
		if n > 1 {
			oldest := ring[max(n-len(ring), 0)%len(ring)]
			now := ring[(n-1)%len(ring)]
			secs := now.at.Sub(oldest.at).Seconds()
			per := func(a, b int64, scale float64) uint64 {
				if secs <= 0 {
					return 0
				}
				return math.Float64bits(float64(b-a) / secs / scale)
			}
			r.rates.opsPerSec.Store(per(oldest.ops, now.ops, 1))
			r.rates.inputKbps.Store(per(oldest.in, now.in, 1024))
			r.rates.outputKbps.Store(per(oldest.out, now.out, 1024))
			r.rates.replInKbps.Store(per(oldest.replIn, now.replIn, 1024))
			r.rates.replOutKbps.Store(per(oldest.replOut, now.replOut, 1024))
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}
