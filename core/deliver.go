package core

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
)

// Failpoint names: places where a test build makes a worker die, to prove
// that nothing is lost when a real one does (see EngineConfig.Failpoint).
const (
	// FailAfterStepBeforeCommit: a step ran (its model or hook calls were
	// made) and its result is not committed yet.
	FailAfterStepBeforeCommit = "after_llm_before_commit"
	// FailAfterCommitBeforeEnqueue: a delivery committed its last step and
	// has not sent the continuation yet.
	FailAfterCommitBeforeEnqueue = "after_commit_before_enqueue"
	// FailAfterHookBeforeRecord: a hook call returned and the step that
	// made it is not recorded yet.
	FailAfterHookBeforeRecord = "after_hook_before_record"
)

// Delivery defaults.
const (
	// DefaultLeaseTTL is how long a worker's claim on an execution lasts
	// without a commit renewing it. A step that runs longer than this may
	// be taken over by another worker once the sweeper notices; the first
	// worker's commit then loses its compare-and-swap and is dropped.
	DefaultLeaseTTL = 5 * time.Minute
	// DefaultMaxHops bounds the continuations of one execution: each
	// delivery runs many steps, so only a bug or a loop that waits forever
	// gets near it.
	DefaultMaxHops = 1000
	// DefaultDeadlineMargin is the time a delivery keeps in hand before its
	// context's deadline to commit and send the continuation.
	DefaultDeadlineMargin = 2 * time.Second
	// MaxFailedDeliveries is how many deliveries in a row may fail while
	// running an execution before it is failed as poison work (reason
	// dead_letter).
	MaxFailedDeliveries = 5
)

// ReasonMaxHops: the execution was continued more times than the engine's
// MaxHops allows.
const ReasonMaxHops = "max_hops"

// Outcome says what a delivery did.
type Outcome string

// Delivery outcomes.
const (
	// OutcomeRan: the delivery ran steps (or ended the execution).
	OutcomeRan Outcome = "ran"
	// OutcomeGone: the execution does not exist (any more).
	OutcomeGone Outcome = "gone"
	// OutcomeDone: the execution is final or waiting; nothing to run.
	OutcomeDone Outcome = "done"
	// OutcomeLeased: another worker holds the execution.
	OutcomeLeased Outcome = "leased"
	// OutcomeStale: the message is older than the execution (a duplicate
	// or a superseded continuation).
	OutcomeStale Outcome = "stale"
)

// DeliverOptions bound one delivery.
type DeliverOptions struct {
	// Owner names the worker in the lease; empty means a new unique id.
	Owner string
	// MaxSteps is how many steps the delivery runs before it hands the
	// execution on with a continuation (0 = no limit).
	MaxSteps int
	// Margin is the time kept in hand before ctx's deadline (default
	// DefaultDeadlineMargin).
	Margin time.Duration
}

// DeliverResult reports a delivery.
type DeliverResult struct {
	Outcome Outcome
	// Execution is the execution as the delivery left it (nil when gone).
	Execution *Execution
	// Steps is the number of steps the delivery committed.
	Steps int
	// Continued tells whether a continuation was sent.
	Continued bool
}

// Deliver handles one queue message: it continues the execution the
// message names, if the message is current and nobody else runs it. It
// takes the execution's lease with a compare-and-swap commit, runs steps
// (each committed with compare-and-swap, renewing the lease) until the
// execution ends or waits, the step budget is used, or ctx's deadline is
// near; then it releases the lease and, when the execution is still
// runnable, sends one continuation.
//
// A message that finds the execution final, leased by another worker, or
// at another version is dropped: that is how duplicates and races are made
// harmless. An error means the message should be delivered again (a store
// or queue failure); the redelivery finds the execution moved on and is
// dropped as stale, and Sweep re-sends an execution no message carries.
func (e *Engine) Deliver(ctx context.Context, m QueueMessage, opts DeliverOptions, obs Observer) (DeliverResult, error) {
	if obs == nil {
		obs = ObserverFunc(func(Event) {})
	}
	ex, err := e.store.GetExecution(ctx, m.Tenant, m.ExecutionID)
	if ErrorCode(err) == ENOTFOUND {
		return DeliverResult{Outcome: OutcomeGone}, nil
	}
	if err != nil {
		return DeliverResult{}, err
	}
	now := e.now()
	switch {
	case ex.Status.Final() || ex.Status == StatusWaiting:
		// Nothing to run, but the lifecycle event may still be owed: a
		// crash or a failed publish after the commit that changed the
		// status brings the execution back here.
		ex, err = e.announce(ctx, ex)
		return DeliverResult{Outcome: OutcomeDone, Execution: ex}, err
	case ex.Lease.Held(now):
		return DeliverResult{Outcome: OutcomeLeased, Execution: ex}, nil
	case m.Version != ex.Version:
		return DeliverResult{Outcome: OutcomeStale, Execution: ex}, nil
	}
	owner := opts.Owner
	if owner == "" {
		owner = uuid.NewString()
	}
	margin := opts.Margin
	if margin <= 0 {
		margin = DefaultDeadlineMargin
	}
	ex.Status = StatusRunning
	ex.Lease = Lease{Owner: owner, Until: now.Add(e.leaseTTL)}
	ex.UpdatedAt = now.UTC()
	if err := e.store.CommitExecution(ctx, ex, nil); err != nil {
		return dropOnConflict(ex, err)
	}

	res := DeliverResult{Outcome: OutcomeRan, Execution: ex}
	for !ex.Status.Final() && ex.Status != StatusWaiting {
		if opts.MaxSteps > 0 && res.Steps >= opts.MaxSteps {
			break
		}
		// The deadline is wall-clock time, whatever the engine's clock.
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < margin {
			break
		}
		if ex.Cursor.NotBefore.After(e.now()) {
			break // a retry's backoff: hand on with a delayed continuation
		}
		next, err := e.runOneRecovered(ctx, ex, obs, owner)
		if ErrorCode(err) == ECONFLICT {
			// Another worker took the execution over (this one stalled past
			// its lease, or it was cancelled): its step is not committed
			// and this delivery has nothing more to do.
			res.Outcome = OutcomeLeased
			return res, nil
		}
		if err != nil {
			switch code := ErrorCode(err); {
			case ctx.Err() != nil, code == EUNAVAILABLE, code == ETIMEOUT:
				// Out of time, or a store that is busy or down: an outage,
				// not poison; the queue or the sweeper tries again.
				e.releaseAfterInterruption(ctx, ex)
			default:
				res.Execution = e.recordFailedDelivery(ctx, ex, err)
			}
			return res, err
		}
		ex, res.Execution = next, next
		res.Steps++
	}
	if ex.Status.Final() || ex.Status == StatusWaiting {
		obs.Observe(Event{Kind: EventFinished, ExecutionID: ex.ID, StepIndex: ex.StepCount, Execution: ex, At: e.now()})
		res.Execution, err = e.announce(ctx, ex)
		return res, err
	}
	// Hand on: release the lease, then send the continuation — unless the
	// execution has been handed on too often, which only a loop that never
	// ends can do.
	ex.Lease = Lease{}
	ex.UpdatedAt = e.now().UTC()
	ex.Continuations++
	if ex.Continuations > e.maxHops {
		e.finish(ex, StatusFailed, Nil, &ExecError{
			Code: EINVALID, Reason: ReasonMaxHops, Task: ex.Cursor.Task,
			Message: fmt.Sprintf("execution stopped after %d continuations (the engine's limit) before task %q", e.maxHops, ex.Cursor.Task),
		})
	}
	if err := e.store.CommitExecution(ctx, ex, nil); err != nil {
		return dropOnConflict(ex, err)
	}
	if ex.Status.Final() {
		obs.Observe(Event{Kind: EventFinished, ExecutionID: ex.ID, StepIndex: ex.StepCount, Execution: ex, At: e.now()})
		res.Execution, err = e.announce(ctx, ex)
		return res, err
	}
	e.failpoint(FailAfterCommitBeforeEnqueue)
	if err := e.send(ctx, ex, max(ex.Cursor.NotBefore.Sub(e.now()), 0)); err != nil {
		return res, err
	}
	res.Continued = true
	return res, nil
}

// dropOnConflict turns a lost compare-and-swap into a dropped delivery:
// another worker moved the execution on.
func dropOnConflict(ex *Execution, err error) (DeliverResult, error) {
	if ErrorCode(err) == ECONFLICT {
		return DeliverResult{Outcome: OutcomeLeased, Execution: ex}, nil
	}
	return DeliverResult{}, err
}

// runOneRecovered is runOne with a panic of the engine itself (not of a
// handler: those are step failures) turned into an EINTERNAL error, so that
// it counts as a failed delivery instead of killing the worker.
func (e *Engine) runOneRecovered(ctx context.Context, ex *Execution, obs Observer, owner string) (next *Execution, err error) {
	defer func() {
		if r := recover(); r != nil {
			next, err = ex, Errorf(EINTERNAL, "execution %s: engine panic during task %q: %v", ex.ID, ex.Cursor.Task, r)
		}
	}()
	return e.runOne(ctx, ex, obs, owner)
}

// recordFailedDelivery releases the lease of an execution whose delivery
// failed for a reason that will not pass by itself (not for lack of time,
// not a store that is busy or down) and counts the failure; the
// MaxFailedDeliveries-th in a row fails the execution as poison work, so
// that it ends visibly instead of being retried forever. It is best
// effort: if the store cannot take even this commit, the lease expires
// and the sweeper tries again later.
func (e *Engine) recordFailedDelivery(ctx context.Context, ex *Execution, cause error) *Execution {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	next := ex.clone()
	next.Lease = Lease{}
	next.UpdatedAt = e.now().UTC()
	next.FailedDeliveries++
	if next.FailedDeliveries >= MaxFailedDeliveries {
		e.finish(next, StatusFailed, Nil, &ExecError{
			Code: ErrorCode(cause), Reason: ReasonDeadLetter, Task: ex.Cursor.Task,
			Message: fmt.Sprintf("gave up after %d failed deliveries: %v", next.FailedDeliveries, cause),
		})
	}
	if err := e.store.CommitExecution(rctx, next, nil); err != nil {
		return ex
	}
	// A dead-lettered execution's event is owed like any other; if even
	// this fails, the message's redelivery finds it final and owing.
	next, _ = e.announce(rctx, next)
	return next
}

// releaseAfterInterruption gives up the lease of an execution whose
// delivery was interrupted, so that it need not wait for the lease to
// expire. It is best effort: a failure leaves the lease to expire.
func (e *Engine) releaseAfterInterruption(ctx context.Context, ex *Execution) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	ex.Lease = Lease{}
	ex.UpdatedAt = e.now().UTC()
	_ = e.store.CommitExecution(rctx, ex, nil)
}

// Release gives up the lease owner holds on an execution, if it still
// holds it, and returns the execution as it then stands. A delivery whose
// last commit lost its answer (the caller's deadline cut the store call,
// which may have applied it all the same) cannot release its lease itself,
// not knowing the version it left; Release reads it and clears the lease
// with compare-and-swap, retrying while other commits come first, so that
// the continuation sent after it is not dropped as leased until the lease
// expires.
func (e *Engine) Release(ctx context.Context, tenant, id, owner string) (*Execution, error) {
	for attempt := 0; ; attempt++ {
		ex, err := e.store.GetExecution(ctx, tenant, id)
		if err != nil || owner == "" || ex.Lease.Owner != owner {
			return ex, err
		}
		ex.Lease = Lease{}
		ex.UpdatedAt = e.now().UTC()
		err = e.store.CommitExecution(ctx, ex, nil)
		if err == nil || ErrorCode(err) != ECONFLICT || attempt >= 5 {
			return ex, err
		}
	}
}

// send enqueues a continuation of ex at its current version.
func (e *Engine) send(ctx context.Context, ex *Execution, delay time.Duration) error {
	if e.queue == nil {
		return Errorf(EUNAVAILABLE, "execution %s needs a continuation and the engine has no queue", ex.ID)
	}
	return e.queue.Send(ctx, QueueMessage{Kind: KindContinue, Tenant: ex.Tenant, ExecutionID: ex.ID, Version: ex.Version}, delay)
}

// Enqueue sends the first message of an execution made by Start, so that
// a worker runs it.
func (e *Engine) Enqueue(ctx context.Context, ex *Execution) error {
	return e.send(ctx, ex, max(ex.Cursor.NotBefore.Sub(e.now()), 0))
}

// Sweep re-sends the executions of tenant that are runnable (queued or
// running), not leased, and have not changed for stuckAfter: those whose
// message was lost, such as when a worker died between its commit and its
// send, or a process stopped with work in its in-process queue. A message
// that is in fact still on its way is harmless: both carry the same
// version, and the second to arrive is dropped as stale. It returns how
// many it sent.
func (e *Engine) Sweep(ctx context.Context, tenant string, stuckAfter time.Duration) (int, error) {
	now := e.now()
	q := ExecutionQuery{Statuses: []Status{StatusQueued, StatusRunning}, UpdatedBefore: now.Add(-stuckAfter)}
	sent := 0
	for {
		page, err := e.store.ListExecutions(ctx, tenant, q)
		if err != nil {
			return sent, err
		}
		holder, _ := e.queue.(QueueHolder)
		for _, ex := range page.Executions {
			if ex.Lease.Held(now) || (holder != nil && holder.Holds(ex.Tenant, ex.ID)) {
				continue
			}
			if err := e.send(ctx, ex, max(ex.Cursor.NotBefore.Sub(now), 0)); err != nil {
				return sent, err
			}
			sent++
		}
		if page.Next == "" {
			return sent, nil
		}
		q.Cursor = page.Next
	}
}

// maxRecoverDelay is the longest a message may wait on the queue (SQS's
// limit): a lease that ends later is seen to by a later call.
const maxRecoverDelay = 15 * time.Minute

// Recover sends the runnable executions whose lease someone else holds
// (mine reports the owners that are this process's), each delayed until
// its lease ends. At a restart every lease is a dead process's: its
// executions run again as soon as their leases lapse, instead of after a
// sweep notices them unchanged. A live holder keeps renewing its lease,
// and the delayed message then finds it held and is dropped: the cost is
// one message per execution per call. It returns how many it sent.
func (e *Engine) Recover(ctx context.Context, tenant string, mine func(owner string) bool) (int, error) {
	now := e.now()
	q := ExecutionQuery{Statuses: []Status{StatusQueued, StatusRunning}}
	sent := 0
	for {
		page, err := e.store.ListExecutions(ctx, tenant, q)
		if err != nil {
			return sent, err
		}
		for _, ex := range page.Executions {
			if !ex.Lease.Held(now) || mine != nil && mine(ex.Lease.Owner) {
				continue
			}
			delay := min(ex.Lease.Until.Sub(now)+leaseSlack, maxRecoverDelay)
			if err := e.send(ctx, ex, max(delay, ex.Cursor.NotBefore.Sub(now))); err != nil {
				return sent, err
			}
			sent++
		}
		if page.Next == "" {
			return sent, nil
		}
		q.Cursor = page.Next
	}
}

// leaseSlack is waited past a lease's end, so that a delivery sent for
// that moment does not find it held by a hair.
const leaseSlack = 50 * time.Millisecond

// failpoint calls the configured failpoint, if any.
func (e *Engine) failpoint(name string) {
	if e.failpointFn != nil {
		e.failpointFn(name)
	}
}

// ReasonCancelled: someone cancelled the execution.
const ReasonCancelled = "cancelled"

// ReasonDeadLetter: the execution's deliveries kept failing
// (MaxFailedDeliveries in a row); it is poison work, ended visibly.
const ReasonDeadLetter = "dead_letter"

// Cancel ends an execution that is not final: it commits status
// cancelled (with compare-and-swap, retried while workers commit steps
// meanwhile). A worker running it then loses its next commit and stops
// without side effects; the step in flight is not recorded. ENOTFOUND for
// no such execution, ECONFLICT when it is already final.
func (e *Engine) Cancel(ctx context.Context, tenant, id, why string) (*Execution, error) {
	msg := "cancelled"
	if why != "" {
		msg = "cancelled: " + why
	}
	return e.end(ctx, tenant, id, StatusCancelled, ExecError{Code: ECONFLICT, Reason: ReasonCancelled, Message: msg})
}

// endPatience bounds how long end keeps retrying its compare-and-swap.
const endPatience = 10 * time.Second

// end moves an execution that is not final to status with xerr,
// retrying the compare-and-swap while workers commit meanwhile. A running
// step renews its lease every third of the lease's length, so on a slow
// store a retry at once can lose to every renewal in turn: the retries
// wait a little, at random, and go on for endPatience rather than for a
// number of attempts.
func (e *Engine) end(ctx context.Context, tenant, id string, status Status, xerr ExecError) (*Execution, error) {
	giveUp := time.Now().Add(endPatience)
	for attempt := 0; ; attempt++ {
		ex, err := e.store.GetExecution(ctx, tenant, id)
		if err != nil {
			return nil, err
		}
		if ex.Status.Final() {
			return ex, Errorf(ECONFLICT, "execution %s already %s", id, ex.Status)
		}
		x := xerr
		x.Task = ex.Cursor.Task
		e.finish(ex, status, Nil, &x)
		ex.Lease = Lease{}
		err = e.store.CommitExecution(ctx, ex, nil)
		if err == nil {
			// The execution has ended whatever happens to its event; a
			// failed publish is retried through the queue (announce).
			ex, _ = e.announce(ctx, ex)
			return ex, nil
		}
		if ErrorCode(err) != ECONFLICT || time.Now().After(giveUp) {
			return ex, err
		}
		wait := time.Duration(rand.Int64N(int64(min(attempt+1, 20)) * int64(time.Millisecond)))
		select {
		case <-ctx.Done():
			return ex, WrapError(ETIMEOUT, ctx.Err(), "end execution %s", id)
		case <-time.After(wait):
		}
	}
}
