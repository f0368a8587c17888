package core

import (
	"context"
	"fmt"
	"strings"

	"github.com/stepwise-run/stepwise/events"
)

// Publisher is the port that fans domain events out: EventBridge on AWS
// (infra/awsbus), in-process dispatch locally (infra/mem). Delivery to
// consumers is at least once; an event's ID is what they deduplicate by.
type Publisher interface {
	// Publish publishes evs. It fails with EINVALID, publishing nothing,
	// when an event is invalid (events.Envelope.Validate, naming its
	// index). Otherwise an error may be partial: a *PublishError (wrapped
	// in a *Error carrying the code) names the events not published, and
	// the others were.
	Publish(ctx context.Context, evs []events.Envelope) error
}

// PublishFailure is one event a Publish call could not publish.
type PublishFailure struct {
	// Index is the event's index in the slice given to Publish.
	Index int
	// Type is the event's type.
	Type string
	// Code is the bus's reason for the entry (such as EventBridge's
	// "ThrottlingException"), or NotSent.
	Code string
	// Message says more.
	Message string
}

// NotSent is the Code of a PublishFailure whose event the bus never
// accepted: its request failed as a whole, or the context ended first.
const NotSent = "NotSent"

// String names the failure for logs and error messages.
func (f PublishFailure) String() string {
	return fmt.Sprintf("event %d (%s): %s: %s", f.Index, f.Type, f.Code, f.Message)
}

// PublishError lists the events a Publish call could not publish, so that
// a caller can publish only those again.
type PublishError struct {
	// Failed are the events not published, in order.
	Failed []PublishFailure
	// Cause is the error of a request that failed as a whole, if any.
	Cause error
}

// Error names every failed event.
func (e *PublishError) Error() string {
	parts := make([]string, len(e.Failed))
	for i, f := range e.Failed {
		parts[i] = f.String()
	}
	msg := fmt.Sprintf("%d events not published: %s", len(e.Failed), strings.Join(parts, "; "))
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

// Unwrap returns the cause.
func (e *PublishError) Unwrap() error { return e.Cause }

// ValidateEvents checks evs as every Publisher must before it sends
// anything: EINVALID naming the first invalid event's index, type and
// field.
func ValidateEvents(evs []events.Envelope) error {
	for i, ev := range evs {
		if err := ev.Validate(); err != nil {
			return Errorf(EINVALID, "event %d (%s): %v", i, ev.Type, err)
		}
	}
	return nil
}
