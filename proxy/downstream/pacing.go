package downstream

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Paced full syncs. A fan-out of full syncs can fill a link or a NIC and
// starve the online replicas' stream; the relay can cap the bandwidth its
// full syncs use, in total and per replica (full-sync-bandwidth-limit,
// full-sync-replica-bandwidth-limit), and how many run at once
// (full-sync-max-concurrent; the others wait in a queue and are served
// first come, first served). A queued replica is kept alive with newlines
// before its +FULLRESYNC: Redis's replica reads each one as a reply line
// and counts it as traffic against its repl-timeout. Online streams are
// never paced.

// pacer is a token bucket of rate bytes per second with a burst of a tenth
// of a second. A zero rate never waits.
type pacer struct {
	mu     sync.Mutex
	rate   int64
	tokens float64
	last   time.Time
}

// wait takes n bytes from the bucket and blocks until they fit under the
// rate, and returns how long it waited. Bytes taken and then not sent go
// back with refund.
func (p *pacer) wait(ctx context.Context, rate int64, n int64) (time.Duration, error) {
	if rate <= 0 {
		return 0, nil
	}
	p.mu.Lock()
	now := time.Now()
	if p.rate != rate || p.last.IsZero() {
		p.rate, p.tokens, p.last = rate, float64(rate)/10, now
	}
	burst := float64(rate) / 10
	p.tokens = min(burst, p.tokens+now.Sub(p.last).Seconds()*float64(rate))
	p.last = now
	p.tokens -= float64(n)
	var d time.Duration
	if p.tokens < 0 {
		d = time.Duration(-p.tokens / float64(rate) * float64(time.Second))
	}
	p.mu.Unlock()
	if d == 0 {
		return 0, nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return d, nil
	case <-ctx.Done():
		p.refund(rate, n)
		return 0, context.Cause(ctx)
	}
}

// refund gives back n bytes taken by wait at rate and not sent, up to the
// burst. After a change of rate there is nothing to give back to.
func (p *pacer) refund(rate int64, n int64) {
	if rate <= 0 || n <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rate == rate {
		p.tokens = min(float64(rate)/10, p.tokens+float64(n))
	}
}

// nonZero is v, or no limit for 0.
func nonZero(v int64) int64 {
	if v <= 0 {
		return 1 << 62
	}
	return v
}

// paced sends up to n snapshot bytes with send under the full-sync
// bandwidth limits: the total one shared by every full sync and the
// replica's own (own). A step is at most a tenth of a second at the lower
// limit (at least 64 KiB) and at most step, what one send can send; both
// buckets are charged exactly the bytes send reports sent.
func (srv *Server) paced(ctx context.Context, own *pacer, n, step int64, send func(n int64) (int64, error)) (int64, error) {
	cfg := srv.cfg.Get()
	total, each := cfg.FullSyncBandwidth, cfg.FullSyncReplicaBandwidth
	if total <= 0 && each <= 0 {
		return send(n)
	}
	n = min(n, step, max(64<<10, min(nonZero(total), nonZero(each))/10))
	w1, err := srv.syncPace.wait(ctx, total, n)
	if err != nil {
		return 0, err
	}
	w2, err := own.wait(ctx, each, n)
	if err != nil {
		srv.syncPace.refund(total, n)
		return 0, err
	}
	srv.stats.paceWait.Add(int64(w1 + w2))
	k, err := send(n)
	srv.syncPace.refund(total, n-k)
	own.refund(each, n-k)
	srv.stats.pacedBytes.Add(k)
	return k, err
}

// syncSlots bounds the full syncs served at once. Those that find no free
// slot queue, and take slots in the order they came.
type syncSlots struct {
	mu      sync.Mutex
	running int
	queue   []uint64      // tickets of the waiting full syncs, oldest first
	issued  uint64        // the last ticket given out
	changed chan struct{} // closed and replaced when a slot frees or the queue moves
}

// acquire waits for a slot under max (0: no limit), behind every full sync
// that asked before, calling keepalive every second meanwhile. The returned
// release must be called.
func (q *syncSlots) acquire(ctx context.Context, max func() int, keepalive func() error) (release func(), err error) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	q.mu.Lock()
	q.issued++
	ticket := q.issued
	q.queue = append(q.queue, ticket)
	for {
		if m := max(); q.queue[0] == ticket && (m <= 0 || q.running < m) {
			q.queue = q.queue[1:]
			q.running++
			q.wake() // the next in line may fit as well
			q.mu.Unlock()
			return q.release, nil
		}
		if q.changed == nil {
			q.changed = make(chan struct{})
		}
		changed := q.changed
		q.mu.Unlock()
		select {
		case <-changed:
		case <-t.C:
			err = keepalive()
		case <-ctx.Done():
			err = context.Cause(ctx)
		}
		q.mu.Lock()
		if err != nil {
			i := slices.Index(q.queue, ticket)
			q.queue = slices.Delete(q.queue, i, i+1)
			q.wake()
			q.mu.Unlock()
			return nil, err
		}
	}
}

func (q *syncSlots) release() {
	q.mu.Lock()
	q.running--
	q.wake()
	q.mu.Unlock()
}

// wake tells the waiting full syncs to look again. q.mu is held.
func (q *syncSlots) wake() {
	if q.changed != nil {
		close(q.changed)
		q.changed = nil
	}
}

// counts returns the full syncs running and queued.
func (q *syncSlots) counts() (running, waiting int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.running, len(q.queue)
}
