// Package inline runs an execution inside the HTTP request that started it
// and follows executions in the store: what /tasks and /execute do, and the
// OpenAI-compatible endpoint's chains. A run goes through the same delivery
// a queue worker makes (core.Engine.Deliver), so it is committed step by
// step; what the request cannot finish is handed to the queue, and goes
// on in the background.
package inline

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/stepwise-run/stepwise/core"
)

// pollInterval is how often a follower of an execution reads the store. A
// poll sees the commits of whichever worker runs the execution, in this
// process or another, which an in-process notification would not.
const pollInterval = 200 * time.Millisecond

// followPage is how many step records a follower reads at a time.
const followPage = 50

// handOnTimeout bounds the store read and the send that hand an
// interrupted execution to the queue after its request has ended.
const handOnTimeout = 5 * time.Second

// ErrClosing ends a follower when the Runner's Closing channel is closed.
var ErrClosing = core.Errorf(core.EUNAVAILABLE, "the server is shutting down")

// Runner runs and follows executions.
type Runner struct {
	// Engine runs the executions; it needs a queue to hand them on.
	Engine *core.Engine
	// Store is the store the engine commits to.
	Store core.ExecutionStore
	// Closing, when closed, ends every follower (the server is shutting
	// down).
	Closing <-chan struct{}
}

// Result is what Run did: the execution as it left it, the steps
// committed meanwhile, in order, and an error when the run failed for a
// reason other than the time it had.
type Result struct {
	Execution *core.Execution
	Steps     []*core.Step
	Err       error
}

// Run runs a started execution in the request for at most timeout, the
// request's own context still cancelling it, through the same delivery a
// queue worker makes, passing the engine's events to obs (nil for none).
// What is not done by then is the queue's: a step the deadline
// interrupted is not committed and runs again in a worker. An execution
// the delivery handed on before the deadline (to wait out a retry's
// backoff) is followed in the store until it ends or the time is up.
func (r Runner) Run(ctx context.Context, ex *core.Execution, timeout time.Duration, obs core.Observer) Result {
	run := Result{Execution: ex}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	collect := core.ObserverFunc(func(e core.Event) {
		if e.Kind == core.EventStepCommitted && e.Step != nil {
			run.Steps = append(run.Steps, e.Step)
		}
		if obs != nil {
			obs.Observe(e)
		}
	})
	msg := core.QueueMessage{Kind: core.KindContinue, Tenant: ex.Tenant, ExecutionID: ex.ID, Version: ex.Version}
	owner := uuid.NewString()
	res, err := r.Engine.Deliver(dctx, msg, core.DeliverOptions{Owner: owner, Margin: margin(timeout)}, collect)
	if res.Execution != nil {
		run.Execution = res.Execution
	}
	if err != nil {
		if dctx.Err() == nil && run.Execution != nil && run.Execution.Status.Final() {
			// The failure ended the execution (poison work): answer it
			// like any other failed execution.
			return run
		}
		// Out of time, or a failed delivery (the engine counted it on the
		// execution): either way the queue carries the execution on, and
		// the answer says so unless even that is impossible.
		cur, herr := r.handOn(ctx, run.Execution, owner)
		if herr != nil {
			run.Err = err
			return run
		}
		run.Execution = cur
		return run
	}
	if run.Execution.Status.Final() || run.Execution.Status == core.StatusWaiting {
		return run
	}
	after := run.Execution.StepCount
	if n := len(run.Steps); n > 0 {
		after = run.Steps[n-1].Index
	}
	keep := func(s *core.Step) error {
		run.Steps = append(run.Steps, s)
		if obs != nil {
			obs.Observe(core.Event{Kind: core.EventStepCommitted, ExecutionID: s.ExecutionID, StepIndex: s.Index,
				TaskID: s.TaskID, Handler: s.Handler, Attempt: s.Attempt, Step: s, At: time.Now()})
		}
		return nil
	}
	last, err := r.Follow(dctx, ex.Tenant, ex.ID, after, keep, nil)
	if last != nil {
		run.Execution = last
	}
	if err != nil && dctx.Err() == nil && err != ErrClosing {
		run.Err = err
	}
	return run
}

// margin is the time an inline delivery keeps in hand to commit and hand
// the execution on: the engine's default, but never more than a tenth of
// the time it has, so that a short timeout still runs steps.
func margin(timeout time.Duration) time.Duration {
	return min(core.DefaultDeadlineMargin, timeout/10)
}

// handOn sends a continuation for an execution whose inline delivery was
// interrupted, at the version it now has, after releasing the lease the
// delivery (owner) may still hold: when the deadline cut its last commit,
// the store may have applied it all the same, leaving the lease taken. It
// runs after the request's context may have ended, so it has a context of
// its own.
func (r Runner) handOn(ctx context.Context, ex *core.Execution, owner string) (*core.Execution, error) {
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handOnTimeout)
	defer cancel()
	cur, err := r.Engine.Release(hctx, ex.Tenant, ex.ID, owner)
	if err != nil {
		return ex, err
	}
	if cur.Status.Final() || cur.Status == core.StatusWaiting {
		return cur, nil
	}
	return cur, r.Engine.Enqueue(hctx, cur)
}

// Follow reads an execution's committed steps after index after from the
// store, every pollInterval, and gives each to emit in order, until the
// execution is final or waiting, which it returns. Its steps are
// committed together with its state, so the steps read after a final
// state are all of them. idle, when not nil, is called after a poll that
// found no new step. It stops with ctx's error when ctx ends, ErrClosing
// when Closing is closed, and the first error of the store, emit or idle.
func (r Runner) Follow(ctx context.Context, tenant, id string, after int, emit func(*core.Step) error, idle func() error) (*core.Execution, error) {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		ex, err := r.Store.GetExecution(ctx, tenant, id)
		if err != nil {
			return nil, err
		}
		// Read the new steps a page at a time: a late follower of a long
		// execution must not load every step output at once.
		found := 0
		for {
			page, err := r.Store.ListSteps(ctx, tenant, id, after, followPage)
			if err != nil {
				return ex, err
			}
			for _, s := range page {
				if err := emit(s); err != nil {
					return ex, err
				}
				after = s.Index
			}
			found += len(page)
			if len(page) < followPage {
				break
			}
		}
		if ex.Status.Final() || ex.Status == core.StatusWaiting {
			return ex, nil
		}
		if found == 0 && idle != nil {
			if err := idle(); err != nil {
				return ex, err
			}
		}
		select {
		case <-ctx.Done():
			return ex, ctx.Err()
		case <-r.Closing:
			return ex, ErrClosing
		case <-tick.C:
		}
	}
}
