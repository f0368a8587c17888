// Package events is stepwise's event vocabulary: the envelope every domain
// event travels in, whichever bus carries it (in-process dispatch locally,
// EventBridge on AWS), and the event types stepwise itself emits. It is
// pure: no I/O, no AWS.
package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Limits every bus applies, so that an event accepted locally is accepted
// on AWS too.
const (
	// MaxSize is the most bytes one event may take as JSON. EventBridge
	// takes at most 256 KiB per request, counting an event's source and
	// type beside its body (which on EventBridge is the whole envelope);
	// the KiB left over covers those.
	MaxSize = 255 * 1024
	// MaxNameLen bounds Source and Type, well within EventBridge's limits
	// for source and detail type.
	MaxNameLen = 128
)

// Sources of the events stepwise emits.
const (
	// SourceExecutions is the source of execution lifecycle events.
	SourceExecutions = "stepwise.executions"
)

// Execution lifecycle event types. Each is published once an execution
// reaches the state (at least once: a consumer deduplicates by ID).
const (
	TypeExecutionWaiting   = "execution.waiting"
	TypeExecutionSucceeded = "execution.succeeded"
	TypeExecutionFailed    = "execution.failed"
	TypeExecutionCancelled = "execution.cancelled"
)

// Envelope is one domain event.
type Envelope struct {
	// ID identifies the event. It is stable across redeliveries and
	// re-publishes of the same event, so consumers deduplicate by it.
	ID string `json:"id"`
	// Tenant owns the event; consumers act for this tenant only.
	Tenant string `json:"tenant"`
	// Source names what emitted the event (SourceExecutions, an ingest
	// source); buses route on it.
	Source string `json:"source"`
	// Type says what happened (TypeExecutionSucceeded, ...); rules and
	// triggers match on it.
	Type string `json:"type"`
	// Subject is the thing the event is about, such as an execution id.
	Subject string `json:"subject,omitempty"`
	// Time is when it happened.
	Time time.Time `json:"time"`
	// Data is the event's body: a JSON object.
	Data json.RawMessage `json:"data"`
	// AggregateType, Version and Metadata carry the reference system's
	// event fields (its aggregate_id is Subject): the kind of thing the
	// event is about, the version of the mapping that made it, and
	// values a mapping picked out of the payload or its headers.
	AggregateType string          `json:"aggregate_type,omitempty"`
	Version       int             `json:"version,omitempty"`
	Metadata      json.RawMessage `json:"metadata,omitempty"`
	// Hop counts the functions between the event and the outside world:
	// 0 for an ingested or lifecycle event, one more for each event a
	// function sends. It bounds cascades (MaxHop).
	Hop int `json:"hop,omitempty"`
}

// MaxHop is the deepest cascade of events functions may make: an event a
// function sends when handling one at MaxHop is refused.
const MaxHop = 5

// Validate checks what every bus requires of an event, naming the field
// that is wrong: id, tenant, source and type present, data a JSON object,
// the whole under MaxSize.
func (e Envelope) Validate() error {
	for _, f := range []struct{ name, value string }{
		{"id", e.ID}, {"tenant", e.Tenant}, {"source", e.Source}, {"type", e.Type},
	} {
		if f.value == "" {
			return fmt.Errorf("%s: empty", f.name)
		}
	}
	for _, f := range []struct{ name, value string }{{"source", e.Source}, {"type", e.Type}} {
		if len(f.value) > MaxNameLen {
			return fmt.Errorf("%s: %d bytes, over %d", f.name, len(f.value), MaxNameLen)
		}
	}
	if strings.ContainsRune(e.Type, '#') {
		// Stores key events by type and id around a #.
		return fmt.Errorf("type: %q has a #, which no event type may", e.Type)
	}
	if e.Time.IsZero() {
		return fmt.Errorf("time: empty")
	}
	if !isObject(e.Data) {
		return fmt.Errorf("data: not a JSON object")
	}
	if len(e.Metadata) > 0 && !isObject(e.Metadata) {
		return fmt.Errorf("metadata: not a JSON object")
	}
	if e.Hop < 0 || e.Hop > MaxHop {
		return fmt.Errorf("hop: %d, over the %d functions an event may pass through", e.Hop, MaxHop)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("data: %v", err)
	}
	if len(b) > MaxSize {
		return fmt.Errorf("%d bytes, over the %d-byte limit of an event", len(b), MaxSize)
	}
	return nil
}

// isObject reports whether b is one JSON object.
func isObject(b json.RawMessage) bool {
	t := bytes.TrimLeft(b, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && json.Valid(b)
}
