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
	"log/slog"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"

	"github.com/stepwise-run/stepwise/core"
)

// Deliverer runs one delivery; *core.Engine implements it.
type Deliverer interface {
	Deliver(ctx context.Context, m core.QueueMessage, opts core.DeliverOptions, obs core.Observer) (core.DeliverResult, error)
}

// Config holds the worker's dependencies.
type Config struct {
	// Engine delivers messages. Required.
	Engine Deliverer
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
	return &Handler{cfg: cfg}
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
		return err
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < h.cfg.Margin {
		return core.Errorf(core.ETIMEOUT, "no time left in this invocation for execution %s", m.ExecutionID)
	}
	_, err = h.cfg.Engine.Deliver(ctx, m, core.DeliverOptions{MaxSteps: h.cfg.MaxSteps, Margin: h.cfg.Margin}, nil)
	return err
}
