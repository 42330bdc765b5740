package proxy

import (
	"context"
	"math"
	"sync/atomic"
	"time"
)

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
	relayed, replIn := r.up.Relayed()
	fromClients, clientIn, clientOut, replOut := r.srv.Counts()
	return rateCounters{
		at:      time.Now(),
		ops:     relayed + fromClients,
		in:      replIn + clientIn,
		out:     replOut + clientOut,
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
