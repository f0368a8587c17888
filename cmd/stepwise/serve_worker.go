package main

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/infra/localq"
)

// worker is the local twin of the AWS worker function: an in-process
// queue whose deliveries run the engine's Deliver, and a sweeper that
// re-sends executions nobody carries on (after a crash, or when a process
// stopped with work in its queue).
type worker struct {
	queue  *localq.Queue
	engine *core.Engine
	keys   *access.Keys // nil without keys
	log    *slog.Logger
	o      *serveOptions
	// events runs the triggers of KindEvent messages.
	events *eventsWiring
	// incarnation starts the lease owner of every delivery of this
	// process: at start every other owner is a dead process's (or another
	// process's on the same file, which renews its leases).
	incarnation string
}

// newWorker returns the queue and worker; the engine is set by attach
// once it exists (the engine needs the queue, the queue's handler the
// engine).
func newWorker(o *serveOptions, log *slog.Logger) *worker {
	w := &worker{log: log, o: o, incarnation: uuid.NewString()}
	w.queue = localq.New(localq.Config{Workers: o.workers, Logger: log, Handle: w.handle})
	return w
}

// attach gives the worker the engine its deliveries run and the keys
// whose tenants it sweeps (nil: the default tenant only).
func (w *worker) attach(e *core.Engine, keys *access.Keys) { w.engine, w.keys = e, keys }

// handle runs one delivery within the per-delivery budget. A failed
// delivery is retried by the queue; the engine counts failures on the
// execution and ends it as poison work after core.MaxFailedDeliveries.
func (w *worker) handle(ctx context.Context, d core.Delivery) error {
	dctx, cancel := context.WithTimeout(ctx, w.o.deliveryTimeout)
	defer cancel()
	if d.Message.Kind == core.KindEvent {
		if err := w.events.bus.HandleID(dctx, d.Message.Tenant, d.Message.EventID); err != nil {
			w.log.Warn("an event's triggers failed; they will be retried", "event", d.Message.EventID, "attempt", d.Attempts, "error", err.Error())
			return err
		}
		return nil
	}
	owner := w.incarnation + "/" + uuid.NewString()
	res, err := w.engine.Deliver(dctx, d.Message, core.DeliverOptions{MaxSteps: w.o.deliverySteps, Owner: owner}, nil)
	if err != nil {
		w.log.Warn("delivery failed; it will be retried", "execution", d.Message.ExecutionID, "attempt", d.Attempts, "error", err.Error())
		return err
	}
	w.log.Debug("delivered", "execution", d.Message.ExecutionID, "outcome", string(res.Outcome), "steps", res.Steps, "continued", res.Continued)
	return nil
}

// run runs the queue's workers and the sweeper until ctx ends. It sends
// every runnable execution once at start: the previous process may have
// stopped with them in its in-memory queue.
func (w *worker) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := w.queue.Run(ctx); err != nil {
			w.log.Error("queue stopped", "error", err.Error())
		}
	})
	wg.Go(func() {
		w.sweep(ctx, 0)
		w.recover(ctx)
		t := time.NewTicker(w.o.sweepInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				w.sweep(ctx, w.o.sweepInterval)
			}
		}
	})
	wg.Wait()
}

// tenants are the default tenant and every tenant with a key.
func (w *worker) tenants(ctx context.Context) []string {
	tenants := []string{core.DefaultTenant}
	if w.keys != nil {
		more, err := w.keys.Tenants(ctx)
		if err != nil && ctx.Err() == nil {
			w.log.Warn("list the tenants to sweep", "error", err.Error())
		}
		for _, t := range more {
			if t != core.DefaultTenant {
				tenants = append(tenants, t)
			}
		}
	}
	return tenants
}

// recover sends, at start, the executions an earlier process held, to
// run the moment its leases lapse: a restarted server carries on within
// -lease-ttl.
func (w *worker) recover(ctx context.Context) {
	mine := func(owner string) bool { return strings.HasPrefix(owner, w.incarnation+"/") }
	for _, tenant := range w.tenants(ctx) {
		n, err := w.engine.Recover(ctx, tenant, mine)
		if err != nil && ctx.Err() == nil {
			w.log.Warn("recover the executions of an earlier process", "tenant", tenant, "error", err.Error())
		}
		if n > 0 {
			w.log.Info("executions of an earlier process resume when their leases lapse", "tenant", tenant, "count", n)
		}
	}
}

// sweep re-sends the executions that have not moved for stuckAfter, of
// the default tenant and of every tenant with a key.
func (w *worker) sweep(ctx context.Context, stuckAfter time.Duration) {
	for _, tenant := range w.tenants(ctx) {
		n, err := w.engine.Sweep(ctx, tenant, stuckAfter)
		if err != nil && ctx.Err() == nil {
			w.log.Warn("sweep failed", "tenant", tenant, "error", err.Error())
		}
		if n > 0 {
			w.log.Info("re-sent executions nobody carried on", "tenant", tenant, "count", n)
		}
	}
}

// failpointFromEnv returns the engine failpoint STEPWISE_FAILPOINT names:
// the process exits at once (as a crash would) when it is reached. Only
// the fault tests set it.
func failpointFromEnv(e env, log *slog.Logger) func(string) {
	want := e.getenv("STEPWISE_FAILPOINT")
	if want == "" {
		return nil
	}
	log.Warn("failpoint armed: the process will exit when it is reached", "failpoint", want)
	return func(name string) {
		if name == want {
			log.Warn("failpoint reached; exiting", "failpoint", name)
			os.Exit(137)
		}
	}
}
