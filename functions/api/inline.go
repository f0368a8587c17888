package api

import (
	"context"
	"time"

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

// errClosing ends a follower when the API is closed.
var errClosing = core.Errorf(core.EUNAVAILABLE, "the server is shutting down")

// inlineRun is what runInline did: the execution as it left it, the steps
// committed meanwhile, in order, and an error when the run failed for a
// reason other than the time it had.
type inlineRun struct {
	ex    *core.Execution
	steps []*core.Step
	err   error
}

// runInline runs a started execution in the request for at most
// SyncTimeout, the request's own context still cancelling it, through the
// same delivery a queue worker makes. What is not done by then is the
// queue's: a step the deadline interrupted is not committed and runs
// again in a worker. An execution the delivery handed on before the
// deadline (to wait out a retry's backoff) is followed in the store until
// it ends or the time is up.
func (a *API) runInline(ctx context.Context, ex *core.Execution) inlineRun {
	run := inlineRun{ex: ex}
	dctx, cancel := context.WithTimeout(ctx, a.cfg.SyncTimeout)
	defer cancel()
	collect := core.ObserverFunc(func(e core.Event) {
		if e.Kind == core.EventStepCommitted && e.Step != nil {
			run.steps = append(run.steps, e.Step)
		}
	})
	msg := core.QueueMessage{Kind: core.KindContinue, Tenant: ex.Tenant, ExecutionID: ex.ID, Version: ex.Version}
	res, err := a.cfg.Engine.Deliver(dctx, msg, core.DeliverOptions{Margin: a.syncMargin()}, collect)
	if res.Execution != nil {
		run.ex = res.Execution
	}
	if err != nil {
		if dctx.Err() == nil && run.ex != nil && run.ex.Status.Final() {
			// The failure ended the execution (poison work): answer it
			// like any other failed execution.
			return run
		}
		// Out of time, or a failed delivery (the engine counted it on the
		// execution): either way the queue carries the execution on, and
		// the answer is 202 unless even that is impossible.
		cur, herr := a.handOn(ctx, run.ex)
		if herr != nil {
			run.err = err
			return run
		}
		run.ex = cur
		return run
	}
	if run.ex.Status.Final() || run.ex.Status == core.StatusWaiting {
		return run
	}
	after := run.ex.StepCount
	if n := len(run.steps); n > 0 {
		after = run.steps[n-1].Index
	}
	keep := func(s *core.Step) error {
		run.steps = append(run.steps, s)
		return nil
	}
	last, err := a.follow(dctx, ex.Tenant, ex.ID, after, keep, nil)
	if last != nil {
		run.ex = last
	}
	if err != nil && dctx.Err() == nil && err != errClosing {
		run.err = err
	}
	return run
}

// syncMargin is the time an inline delivery keeps in hand to commit and
// hand the execution on: the engine's default, but never more than a
// tenth of SyncTimeout, so that a short timeout still runs steps.
func (a *API) syncMargin() time.Duration {
	return min(core.DefaultDeadlineMargin, a.cfg.SyncTimeout/10)
}

// handOn sends a continuation for an execution whose inline delivery was
// interrupted, at the version it now has: the interruption committed
// nothing but the release of its lease. It runs after the request's
// context may have ended, so it has a context of its own.
func (a *API) handOn(ctx context.Context, ex *core.Execution) (*core.Execution, error) {
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handOnTimeout)
	defer cancel()
	cur, err := a.cfg.Executions.GetExecution(hctx, ex.Tenant, ex.ID)
	if err != nil {
		return ex, err
	}
	if cur.Status.Final() || cur.Status == core.StatusWaiting {
		return cur, nil
	}
	return cur, a.cfg.Engine.Enqueue(hctx, cur)
}

// follow reads an execution's committed steps after index after from the
// store, every pollInterval, and gives each to emit in order, until the
// execution is final or waiting, which it returns. Its steps are
// committed together with its state, so the steps read after a final
// state are all of them. idle, when not nil, is called after a poll that
// found no new step. It stops with ctx's error when ctx ends, errClosing
// when the API is closed, and the first error of the store, emit or idle.
func (a *API) follow(ctx context.Context, tenant, id string, after int, emit func(*core.Step) error, idle func() error) (*core.Execution, error) {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		ex, err := a.cfg.Executions.GetExecution(ctx, tenant, id)
		if err != nil {
			return nil, err
		}
		// Read the new steps a page at a time: a late follower of a long
		// execution must not load every step output at once.
		found := 0
		for {
			page, err := a.cfg.Executions.ListSteps(ctx, tenant, id, after, followPage)
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
		case <-a.closing:
			return ex, errClosing
		case <-tick.C:
		}
	}
}
