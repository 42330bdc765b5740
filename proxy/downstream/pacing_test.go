package downstream

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// TestSyncSlotsOrder: full syncs that queue for a slot get it in the order
// they asked, one release at a time.
func TestSyncSlotsOrder(t *testing.T) {
	var q syncSlots
	one := func() int { return 1 }
	nothing := func() error { return nil }
	release, err := q.acquire(t.Context(), one, nothing)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	got := make(chan int, n)
	releases := make(chan func(), n)
	for i := range n {
		go func() {
			r, err := q.acquire(t.Context(), one, nothing)
			if err != nil {
				return // the test is over
			}
			got <- i
			releases <- r
		}()
		redistest.Eventually(t, 5*time.Second, func() error {
			if _, waiting := q.counts(); waiting != i+1 {
				return fmt.Errorf("%d waiting, want %d", waiting, i+1)
			}
			return nil
		})
	}
	for i := range n {
		release()
		if g := <-got; g != i {
			t.Fatalf("slot %d went to waiter %d", i, g)
		}
		release = <-releases
	}
	release()
	if running, waiting := q.counts(); running != 0 || waiting != 0 {
		t.Errorf("%d running, %d waiting after all released", running, waiting)
	}
}
