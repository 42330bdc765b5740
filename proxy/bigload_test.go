package proxy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// bigValueSpace is the source of large values: a value is a slice of it.
var bigValueSpace = func() []byte {
	rng := rand.New(rand.NewPCG(42, 42))
	b := make([]byte, 600<<10)
	for i := range b {
		b[i] = byte('a' + rng.IntN(26))
	}
	return b
}()

// bigValue returns a value of least to least+300 KB.
func bigValue(rng *rand.Rand, least int) []byte {
	n := least + rng.IntN(300<<10)
	off := rng.IntN(len(bigValueSpace) - n)
	return bigValueSpace[off : off+n]
}

// bigLoadOptions shape a bigLoad.
type bigLoadOptions struct {
	Writers int           // writers of large values
	Rate    int           // bytes of large values per second and writer; 0: no limit
	Pause   time.Duration // pause between two batches of a writer
	Small   bool          // add a writer of small pipelined writes (expiring keys and deletes included)
	Seed    uint64
}

// bigLoad writes to one server until stopped: each writer sends MULTI/EXEC
// blocks of one or two 200-500 KB SETs with small writes, and plain
// pipelines of one such SET with small writes, so that a master killed
// under it dies in the middle of a command or a transaction.
type bigLoad struct {
	gate   sync.RWMutex // held by writers during a batch; a test takes it to pause them
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ops    atomic.Int64
	bytes  atomic.Int64
	mu     sync.Mutex
	err    error
}

// loadClient is a client that waits out a busy server instead of retrying.
func loadClient(s *redistest.Server) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: s.Addr(), Protocol: 2, DisableIdentity: true,
		MaxRetries: -1, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
	})
}

func startBigLoad(s *redistest.Server, o bigLoadOptions) *bigLoad {
	ctx, cancel := context.WithCancel(context.Background())
	g := &bigLoad{cancel: cancel}
	for w := range o.Writers {
		g.run(func() error { return g.bigWriter(ctx, s, o, w) })
	}
	if o.Small {
		g.run(func() error { return g.smallWriter(ctx, s, o.Seed) })
	}
	return g
}

func (g *bigLoad) run(writer func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := writer(); err != nil {
			g.mu.Lock()
			if g.err == nil {
				g.err = err
			}
			g.mu.Unlock()
		}
	}()
}

func (g *bigLoad) bigWriter(ctx context.Context, s *redistest.Server, o bigLoadOptions, w int) error {
	c := loadClient(s)
	defer c.Close()
	rng := rand.New(rand.NewPCG(o.Seed, uint64(w)))
	start := time.Now()
	var written int64
	for i := 0; ctx.Err() == nil; i++ {
		var p redis.Pipeliner
		if i%3 == 2 {
			p = c.Pipeline()
		} else {
			p = c.TxPipeline()
		}
		values := 1
		if i%3 == 1 {
			values = 2
		}
		for range values {
			v := bigValue(rng, 200<<10)
			p.Set(ctx, fmt.Sprintf("load:big:%d:%d", w, rng.IntN(16)), v, 0)
			written += int64(len(v))
			g.bytes.Add(int64(len(v)))
		}
		p.Incr(ctx, fmt.Sprintf("load:count:%d", w))
		p.HSet(ctx, fmt.Sprintf("load:hash:%d", w), strconv.Itoa(rng.IntN(100)), i)
		p.LPush(ctx, fmt.Sprintf("load:list:%d", w), i)
		p.LTrim(ctx, fmt.Sprintf("load:list:%d", w), 0, 50)
		p.Set(ctx, fmt.Sprintf("load:small:%d:%d", w, rng.IntN(500)), i, 0)
		g.gate.RLock()
		_, err := p.Exec(ctx)
		g.gate.RUnlock()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		g.ops.Add(1)
		wait := o.Pause
		if o.Rate > 0 {
			wait = max(wait, time.Duration(written)*time.Second/time.Duration(o.Rate)-time.Since(start))
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
	return nil
}

func (g *bigLoad) smallWriter(ctx context.Context, s *redistest.Server, seed uint64) error {
	c := loadClient(s)
	defer c.Close()
	rng := rand.New(rand.NewPCG(seed, 99))
	for i := 0; ctx.Err() == nil; i++ {
		p := c.Pipeline()
		for j := range 50 {
			k := fmt.Sprintf("load:small:%d", rng.IntN(3000))
			switch j % 5 {
			case 0:
				p.Set(ctx, k, rng.Int64(), 0)
			case 1:
				p.SAdd(ctx, k+":set", j, i%100)
			case 2:
				p.ZAdd(ctx, k+":z", redis.Z{Score: float64(i), Member: j})
			case 3:
				p.Set(ctx, k+":exp", i, time.Duration(100+rng.IntN(400))*time.Millisecond)
			case 4:
				p.Del(ctx, k)
			}
		}
		g.gate.RLock()
		_, err := p.Exec(ctx)
		g.gate.RUnlock()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		g.ops.Add(1)
		select {
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	return nil
}

// Stop ends the load and returns the number of batches written. A failed
// write fails the test unless the server was killed on purpose (dying).
func (g *bigLoad) Stop(t testing.TB, dying bool) int64 {
	t.Helper()
	g.cancel()
	g.wg.Wait()
	g.mu.Lock()
	err := g.err
	g.mu.Unlock()
	if err != nil && !dying {
		t.Fatalf("load: %v", err)
	}
	t.Logf("load: %d batches, %d MB of large values", g.ops.Load(), g.bytes.Load()>>20)
	return g.ops.Load()
}
