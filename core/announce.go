package core

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/stepwise-run/stepwise/events"
)

// announceRetry is how long a failed lifecycle event waits before the
// queue brings its execution back to publish it again.
const announceRetry = 10 * time.Second

// maxEventOutput is the most bytes of output (or of the waiting prompt and
// calls) an execution event carries; a larger one is left out, and the
// consumer reads it with the execution.
const maxEventOutput = 64 * 1024

// lifecycleType is the event type of reaching status s, or "" for a
// status that is not announced (queued, running).
func lifecycleType(s Status) string {
	switch s {
	case StatusWaiting:
		return events.TypeExecutionWaiting
	case StatusSucceeded:
		return events.TypeExecutionSucceeded
	case StatusFailed:
		return events.TypeExecutionFailed
	case StatusCancelled:
		return events.TypeExecutionCancelled
	}
	return ""
}

// owe records on ex, in the commit that moves it to its new status, that
// the status's lifecycle event is due, so that the event survives a crash
// between that commit and the publish: whoever finds the execution next
// (a redelivered message, a retry) publishes it.
func (e *Engine) owe(ex *Execution) {
	if e.pub != nil {
		ex.PendingEvent = lifecycleType(ex.Status)
	}
}

// ExecutionEventData is the data of an execution lifecycle event.
type ExecutionEventData struct {
	ExecutionID string     `json:"execution_id"`
	ChainID     string     `json:"chain_id,omitempty"`
	Status      Status     `json:"status"`
	StepCount   int        `json:"step_count"`
	TokensIn    int        `json:"tokens_in"`
	TokensOut   int        `json:"tokens_out"`
	Output      *Value     `json:"output,omitempty"`
	Error       *ExecError `json:"error,omitempty"`
	Waiting     *Waiting   `json:"waiting,omitempty"`
	// Omitted says the output or the waiting details were too large for
	// an event and are left out: read them with the execution.
	Omitted   bool      `json:"omitted,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// ExecutionEvent is the lifecycle event ex owes: its type is
// ex.PendingEvent and its ID is the same however often it is built, so
// that consumers can drop the copies at-least-once delivery makes.
func ExecutionEvent(ex *Execution) (events.Envelope, error) {
	d := ExecutionEventData{
		ExecutionID: ex.ID, Status: ex.Status, StepCount: ex.StepCount,
		TokensIn: ex.TokensIn, TokensOut: ex.TokensOut, Error: ex.Error, Waiting: ex.Waiting, CreatedAt: ex.CreatedAt,
	}
	if ex.Chain != nil {
		d.ChainID = ex.Chain.ID
	}
	if ex.Status == StatusSucceeded {
		out := ex.Output
		d.Output = &out
	}
	data, err := json.Marshal(d)
	if err == nil && len(data) > maxEventOutput {
		d.Output, d.Waiting, d.Omitted = nil, nil, true
		data, err = json.Marshal(d)
	}
	if err != nil {
		return events.Envelope{}, WrapError(EINTERNAL, err, "execution %s: encode its %s event", ex.ID, ex.PendingEvent)
	}
	return events.Envelope{
		ID:      ex.ID + "/" + ex.PendingEvent + "/" + strconv.Itoa(ex.StepCount),
		Tenant:  ex.Tenant,
		Source:  events.SourceExecutions,
		Type:    ex.PendingEvent,
		Subject: ex.ID,
		Time:    ex.UpdatedAt,
		Data:    data,
		// An execution a function started tells of its end at the
		// function's depth, so that a trigger on its end is bounded too.
		Hop: ex.EventHop,
	}, nil
}

// announce publishes the lifecycle event ex owes, if any, and commits
// that it is paid. On failure the event stays owed and a message to the
// queue brings the execution back after announceRetry to try again; an
// error means even that message could not be sent (the caller's queue
// delivery is then retried, or the caller reports it). It returns the
// execution as it now stands.
func (e *Engine) announce(ctx context.Context, ex *Execution) (*Execution, error) {
	if e.pub == nil || ex.PendingEvent == "" {
		return ex, nil
	}
	ev, err := ExecutionEvent(ex)
	if err == nil {
		err = e.pub.Publish(ctx, []events.Envelope{ev})
	}
	if err != nil && ErrorCode(err) != EINVALID {
		// Not now: the execution comes back through the queue. (An invalid
		// event would never pass; it is dropped below like a sent one.)
		return ex, e.send(ctx, ex, announceRetry)
	}
	next := ex.clone()
	next.PendingEvent = ""
	if err := e.store.CommitExecution(ctx, next, nil); err != nil {
		// Someone moved the execution on (a resume, another delivery that
		// published the same event): the event went out; at worst it goes
		// out again, which its ID makes harmless.
		return ex, nil
	}
	return next, nil
}
