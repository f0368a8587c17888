package localq

import (
	"container/heap"
	"math/rand/v2"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// item is a message waiting in memory and the delivery it will be.
type item struct {
	d core.Delivery
	// due is when a delayed item becomes deliverable; it is read on the
	// real clock because the scheduler waits for it with a timer.
	due time.Time
	// seq keeps items that fall due together in the order they were
	// scheduled.
	seq uint64
}

// delays is a min-heap of items by due time: the one timer of the
// scheduler always waits for its root.
type delays []*item

func (h delays) Len() int { return len(h) }
func (h delays) Less(i, j int) bool {
	if h[i].due.Equal(h[j].due) {
		return h[i].seq < h[j].seq
	}
	return h[i].due.Before(h[j].due)
}
func (h delays) Swap(i, j int) { h[i], h[j] = h[j], h[i] }

// Push implements heap.Interface.
func (h *delays) Push(x any) { *h = append(*h, x.(*item)) }

// Pop implements heap.Interface.
func (h *delays) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}

// popDue removes and returns, in due order, the items due at or before now.
func (h *delays) popDue(now time.Time) []*item {
	var due []*item
	for h.Len() > 0 && !(*h)[0].due.After(now) {
		due = append(due, heap.Pop(h).(*item))
	}
	return due
}

// Backoff defaults: the first retry waits about backoffBase, each next one
// twice as long, never more than backoffCap.
const (
	backoffBase = time.Second
	backoffCap  = time.Minute
)

// DefaultBackoff is the wait before redelivering a message whose attempt
// failed: exponential from one second, doubling, capped at one minute,
// with "equal jitter" (a random point in the upper half of the step) so
// that messages failing together do not come back together.
func DefaultBackoff(attempt int) time.Duration {
	d := backoffCap
	if attempt < 1 {
		attempt = 1
	}
	if attempt <= 7 { // 2^6 s already exceeds the cap
		d = min(backoffBase<<(attempt-1), backoffCap)
	}
	half := d / 2
	return half + rand.N(half+1)
}
