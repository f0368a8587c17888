// Package worker is the queue-consuming function: it receives batches of
// continuation messages (an SQS batch on Lambda) and delivers each to the
// engine, which runs the execution's steps until the invocation's deadline
// minus a margin, then commits and sends one continuation. It reports
// partial batch failures, so that only the messages that failed are
// retried — but a crash of the whole invocation fails the whole batch, so
// batches should be small (the SAM template uses one to a few messages).
//
// Loops are bounded twice: by the engine's cap on continuations per
// execution (core.DefaultMaxHops), and on AWS by Lambda's recursive-loop
// detection, which stops an SQS → Lambda → same-queue chain after about 16
// hops unless the function allows it; the template allows it, because a
// long agent loop is exactly such a chain, and relies on the engine's cap.
package worker

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/events"
)

// Deliverer runs one delivery; *core.Engine implements it.
type Deliverer interface {
	Deliver(ctx context.Context, m core.QueueMessage, opts core.DeliverOptions, obs core.Observer) (core.DeliverResult, error)
}

// Sweeper re-sends executions nobody carries on; *core.Engine implements
// it.
type Sweeper interface {
	// Sweep sends the runnable executions nobody holds that have not
	// moved for stuckAfter.
	Sweep(ctx context.Context, tenant string, stuckAfter time.Duration) (int, error)
	// Recover sends the leased ones to run when their leases end: those
	// of a worker that died run again then; a live worker's renewed lease
	// drops the message.
	Recover(ctx context.Context, tenant string, mine func(owner string) bool) (int, error)
}

// DefaultStuckAfter is how long a runnable, unleased execution may sit
// unchanged before a scheduled sweep sends it again: comfortably more than
// a message takes to reach a worker.
const DefaultStuckAfter = 5 * time.Minute

// EventHandler runs the triggers of events; *eventing.Bus implements
// it.
type EventHandler interface {
	// Handle runs an event's triggers (an event the bus's rule delivered).
	Handle(ctx context.Context, ev events.Envelope) error
	// HandleID runs a stored event's triggers (a KindEvent message).
	HandleID(ctx context.Context, tenant, id string) error
}

// Config holds the worker's dependencies.
type Config struct {
	// Engine delivers messages. Required.
	Engine Deliverer
	// Events runs the triggers of the events that reach the queue; nil
	// acknowledges them without running anything.
	Events EventHandler
	// Sweeper runs the scheduled sweeps (HandleEvent); nil refuses them.
	Sweeper Sweeper
	// StuckAfter is the sweep's threshold (default DefaultStuckAfter).
	StuckAfter time.Duration
	// Tenants lists the tenants a sweep covers besides the default one
	// (those with API keys); nil sweeps the default tenant only.
	Tenants func(ctx context.Context) ([]string, error)
	// Margin is the time kept before the invocation's deadline to commit
	// and send the continuation (default core.DefaultDeadlineMargin, 2 s;
	// Lambda also needs a moment to return the batch response).
	Margin time.Duration
	// MaxSteps bounds one delivery's steps (0: only the deadline).
	MaxSteps int
	// Logger receives one line per failed message (default: discard).
	Logger *slog.Logger
}

// Handler consumes message batches.
type Handler struct {
	cfg Config
}

// New returns a Handler.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Margin <= 0 {
		cfg.Margin = core.DefaultDeadlineMargin
	}
	if cfg.StuckAfter <= 0 {
		cfg.StuckAfter = DefaultStuckAfter
	}
	return &Handler{cfg: cfg}
}

// HandleEvent is the Lambda handler: it tells an SQS batch from the
// scheduled event that asks for a sweep (EventBridge Scheduler's
// "Scheduled Event" from aws.events) — the sweep is what rescues an
// execution whose continuation was lost, such as when a function died
// between its commit and its send.
func (h *Handler) HandleEvent(ctx context.Context, raw json.RawMessage) (any, error) {
	var probe struct {
		Records    []json.RawMessage `json:"Records"`
		DetailType string            `json:"detail-type"`
		Source     string            `json:"source"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, core.WrapError(core.EINVALID, err, "worker: event is not JSON")
	}
	switch {
	case probe.Source == "aws.events" && probe.DetailType == "Scheduled Event":
		if h.cfg.Sweeper == nil {
			return nil, core.Errorf(core.EINVALID, "worker: a scheduled sweep, and no sweeper is configured")
		}
		return h.sweep(ctx)
	case len(probe.Records) > 0:
		var ev awsevents.SQSEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, core.WrapError(core.EINVALID, err, "worker: SQS event")
		}
		return h.HandleSQS(ctx, ev)
	}
	return nil, core.Errorf(core.EINVALID, "worker: neither an SQS batch nor a scheduled sweep")
}

// sweep re-sends the stuck executions of the default tenant and of every
// tenant Tenants lists, and returns how many, with the first error.
func (h *Handler) sweep(ctx context.Context) (map[string]int, error) {
	tenants := []string{core.DefaultTenant}
	var first error
	if h.cfg.Tenants != nil {
		more, err := h.cfg.Tenants(ctx)
		first = err
		for _, t := range more {
			if t != core.DefaultTenant {
				tenants = append(tenants, t)
			}
		}
	}
	sent := 0
	for _, tenant := range tenants {
		n, err := h.cfg.Sweeper.Sweep(ctx, tenant, h.cfg.StuckAfter)
		if n > 0 {
			h.cfg.Logger.Info("re-sent executions nobody carried on", "tenant", tenant, "count", n)
		}
		if err != nil && first == nil {
			first = err
		}
		sent += n
		// Every worker is another invocation's: each leased execution gets
		// a message for when its lease ends.
		n, err = h.cfg.Sweeper.Recover(ctx, tenant, nil)
		if err != nil && first == nil {
			first = err
		}
		sent += n
	}
	return map[string]int{"sent": sent}, first
}

// HandleSQS delivers each record of an SQS batch in order and returns the
// ones to retry. A record whose body is not a stepwise message is reported
// failed too: after the queue's maxReceiveCount it lands in the
// dead-letter queue, where it can be seen, instead of vanishing.
func (h *Handler) HandleSQS(ctx context.Context, ev awsevents.SQSEvent) (awsevents.SQSEventResponse, error) {
	var resp awsevents.SQSEventResponse
	for _, rec := range ev.Records {
		if err := h.deliver(ctx, rec); err != nil {
			h.cfg.Logger.Warn("message failed; it will be retried", "message_id", rec.MessageId, "error", err.Error())
			resp.BatchItemFailures = append(resp.BatchItemFailures, awsevents.SQSBatchItemFailure{ItemIdentifier: rec.MessageId})
		}
	}
	return resp, nil
}

// deliver delivers one record. A record that cannot start because the
// invocation is nearly out of time is failed, so that SQS hands it to the
// next invocation.
func (h *Handler) deliver(ctx context.Context, rec awsevents.SQSMessage) error {
	m, err := core.DecodeQueueMessage([]byte(rec.Body))
	if err != nil {
		if ev, isEvent, ok := domainEvent(rec.Body); isEvent {
			// The bus's rule delivers every event to this queue, with the
			// batch size of one that keeps a function that crashes its
			// invocation from costing other events. One that is not a
			// stepwise envelope (another producer on the bus) is logged
			// and acknowledged, not retried into the dead-letter queue.
			if !ok || h.cfg.Events == nil {
				h.cfg.Logger.Info("event acknowledged; nothing runs on it here", "message_id", rec.MessageId, "stepwise", ok)
				return nil
			}
			return h.cfg.Events.Handle(ctx, ev)
		}
		return err
	}
	if m.Kind == core.KindEvent {
		if h.cfg.Events == nil {
			return core.Errorf(core.EUNAVAILABLE, "an event message, and no event handler is configured")
		}
		return h.cfg.Events.HandleID(ctx, m.Tenant, m.EventID)
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < h.cfg.Margin {
		return core.Errorf(core.ETIMEOUT, "no time left in this invocation for execution %s", m.ExecutionID)
	}
	_, err = h.cfg.Engine.Deliver(ctx, m, core.DeliverOptions{MaxSteps: h.cfg.MaxSteps, Margin: h.cfg.Margin}, nil)
	return err
}

// domainEvent reads a body that is an EventBridge event (isEvent) whose
// detail is a stepwise envelope (ok; awsbus publishes the whole envelope
// as detail).
func domainEvent(body string) (env events.Envelope, isEvent, ok bool) {
	var ev struct {
		DetailType string          `json:"detail-type"`
		Source     string          `json:"source"`
		Detail     json.RawMessage `json:"detail"`
	}
	if json.Unmarshal([]byte(body), &ev) != nil || ev.DetailType == "" || ev.Source == "" || len(ev.Detail) == 0 {
		return events.Envelope{}, false, false
	}
	if json.Unmarshal(ev.Detail, &env) != nil || env.Validate() != nil {
		return events.Envelope{}, true, false
	}
	return env, true, true
}
