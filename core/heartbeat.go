package core

import (
	"context"
	"sync"
	"time"
)

// heartbeat keeps a delivery's lease alive while one step runs: a step
// may take longer than the lease (a slow model, a long hook call), and a
// lease that lapsed mid-step would let the sweeper hand the execution to
// another worker, which would run the same step again, and lose its lease
// the same way, without end. Every third of the lease it commits the
// execution as it was before the step, with the lease renewed; that
// commit moves the version, which the step's own commit then starts from.
// If a renewal loses its compare-and-swap, another worker or a cancel has
// taken the execution: the step's context is cancelled and the step is not
// committed.
type heartbeat struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	cur    *Execution // the last committed renewal
	lost   bool
}

// startHeartbeat starts renewing ex's lease (held by owner) and returns
// the heartbeat and the context the step must run on.
func (e *Engine) startHeartbeat(ctx context.Context, ex *Execution, owner string) (*heartbeat, context.Context) {
	stepCtx, cancel := context.WithCancel(ctx)
	hb := &heartbeat{cancel: cancel, done: make(chan struct{}), cur: ex.clone()}
	hb.cur.Lease.Owner = owner
	go func() {
		defer close(hb.done)
		t := time.NewTicker(max(e.leaseTTL/3, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-stepCtx.Done():
				return
			case <-t.C:
			}
			next := hb.cur.clone()
			next.Lease.Until = e.now().Add(e.leaseTTL)
			next.UpdatedAt = e.now().UTC()
			// A renewal in flight is seen through even when the step ends
			// meanwhile: with a remote store, a commit applied but whose
			// answer was abandoned would leave the step's own commit a
			// version behind. stop waits for it.
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(stepCtx), max(e.leaseTTL/3, time.Second))
			err := e.store.CommitExecution(rctx, next, nil)
			rcancel()
			switch {
			case err == nil:
				hb.mu.Lock()
				hb.cur = next
				hb.mu.Unlock()
			case ErrorCode(err) == ECONFLICT:
				hb.mu.Lock()
				hb.lost = true
				hb.mu.Unlock()
				cancel()
				return
			}
			// Any other failure (the store is slow or down) is retried at
			// the next tick; the lease still has two thirds of its time.
		}
	}()
	return hb, stepCtx
}

// stop ends the heartbeat and reports the version the step's commit must
// start from, and whether the lease was lost.
func (hb *heartbeat) stop() (version int64, lost bool) {
	hb.cancel()
	<-hb.done
	hb.mu.Lock()
	defer hb.mu.Unlock()
	return hb.cur.Version, hb.lost
}
