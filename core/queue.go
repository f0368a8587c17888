package core

import (
	"bytes"
	"context"
	"encoding/json"
	"time"
)

// Message kinds.
const (
	// KindContinue asks a worker to run an execution's next steps.
	KindContinue = "continue"
	// KindEvent asks a worker to run the triggers of a stored event.
	KindEvent = "event"
)

// QueueMessage is a unit of work on the queue: continue an execution. It
// is small on purpose (an SQS message, an in-process struct): the
// execution itself is in the store.
type QueueMessage struct {
	// ID identifies the message for deduplication and logs; the queue sets
	// it when it is empty.
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Tenant string `json:"tenant"`
	// ExecutionID is the execution to continue.
	ExecutionID string `json:"execution_id"`
	// Version is the execution's version when the message was sent. A
	// worker that finds the execution at another version knows the message
	// is stale (a duplicate, or superseded) and drops it.
	Version int64 `json:"version"`
	// EventID is the event whose triggers to run (KindEvent).
	EventID string `json:"event_id,omitempty"`
}

// Queue is the port that sends work: the in-process queue locally, SQS on
// AWS (where Lambda's event source mapping receives). Delivery is at least
// once: a message may arrive more than once, and the worker must cope.
type Queue interface {
	// Send enqueues m, to be delivered no sooner than delay from now.
	Send(ctx context.Context, m QueueMessage, delay time.Duration) error
}

// Delivery is a received message and how many times it has been delivered
// (1 the first time).
type Delivery struct {
	Message  QueueMessage
	Attempts int
}

// QueueHolder is implemented by a queue that can tell whether it still
// holds undelivered work for an execution (the in-process queue can; SQS
// cannot). Sweep uses it to leave alone executions whose message is merely
// waiting for a free worker, instead of sending them again every sweep.
type QueueHolder interface {
	Holds(tenant, executionID string) bool
}

// EncodeQueueMessage is the JSON body of a message on a queue that carries
// bytes (SQS, EventBridge targets).
func EncodeQueueMessage(m QueueMessage) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, WrapError(EINTERNAL, err, "encode queue message for execution %s", m.ExecutionID)
	}
	return b, nil
}

// DecodeQueueMessage reads a body made by EncodeQueueMessage, as a queue
// consumer (the Lambda worker) receives it. EINVALID for a body that is
// not a stepwise message: not one JSON object, an unknown kind, no tenant
// or execution — an EventBridge event, for one. Unknown fields are
// ignored, so an older worker reads a newer sender's messages.
func DecodeQueueMessage(body []byte) (QueueMessage, error) {
	var m QueueMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		return QueueMessage{}, WrapError(EINVALID, err, "queue message is not a stepwise message")
	}
	if dec.More() {
		return QueueMessage{}, Errorf(EINVALID, "queue message is not a stepwise message: data after the JSON object")
	}
	switch {
	case m.Kind == KindEvent:
		if m.EventID == "" || m.Tenant == "" {
			return QueueMessage{}, Errorf(EINVALID, "event message names no tenant or event")
		}
		return m, nil
	case m.Kind != KindContinue:
		return QueueMessage{}, Errorf(EINVALID, "queue message has unknown kind %q", m.Kind)
	}
	if m.ExecutionID == "" || m.Tenant == "" {
		return QueueMessage{}, Errorf(EINVALID, "queue message names no tenant or execution")
	}
	return m, nil
}
