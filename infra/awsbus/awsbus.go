// Package awsbus publishes stepwise's events on an Amazon EventBridge bus,
// where rules route them (the SAM template's rule delivers them to the work
// queue). It is the EventBridge half of the AWS adapters; awssqs is the
// other.
//
// Publish sends events with PutEvents, at most MaxEntries per request and at
// most MaxRequestSize bytes per request, counted as EventBridge counts them
// (source, detail type and detail; see entrySize). An event too large to go
// alone is rejected as EINVALID before anything is sent. PutEvents answers
// per entry: entries that failed for a reason that may pass later
// (throttling, an internal failure) are resent with a doubling wait, a few
// times; the ones that still fail, and the ones EventBridge rejects as
// malformed (not resent: they would fail again), are returned in a
// *PublishError naming each by its index and detail type. Publish is not
// atomic: when it fails, the events it does not name were published.
//
// Errors of the whole request are mapped to core codes (see mapError); the
// SDK's own retryer has already retried the retryable ones.
//
// The tests run on moto (infra/awsmoto), which diverges from EventBridge
// here:
//   - moto does not enforce the 256 KB request limit, so the size check is
//     tested on its own, against a counting fake;
//   - moto never fails an entry for throttling or an internal failure, so
//     partial failures are produced by a fake wrapping the moto client;
//   - moto accepts a Detail that is JSON but not an object (with a Python
//     warning) where EventBridge rejects it; Publish rejects it first, so
//     the difference does not show;
//   - moto delivers to the rule's SQS target synchronously, inside
//     PutEvents; EventBridge delivers asynchronously, so the test polls the
//     queue rather than reading it once.
package awsbus

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/stepwise-run/stepwise/core"
)

// EventBridge's PutEvents limits.
const (
	// MaxEntries is the most entries one PutEvents request may carry.
	MaxEntries = 10
	// MaxRequestSize is the most bytes one PutEvents request may carry,
	// summed over its entries as entrySize counts them.
	MaxRequestSize = 256 * 1024
)

// attempts is how many times an entry is offered to PutEvents before its
// failure is reported.
const attempts = 4

// Event is one event to publish. It is this package's own small type
// because core has no domain-event type yet.
type Event struct {
	// DetailType is EventBridge's detail-type, what rules match on to tell
	// events apart (such as "ExecutionSucceeded"). Required.
	DetailType string
	// Detail is the event's body: a JSON object, as EventBridge requires.
	Detail json.RawMessage
}

// api is the part of the EventBridge client the bus uses; tests substitute
// a wrapper that fails entries the way EventBridge's servers can.
type api interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// Bus publishes Events on one EventBridge bus under one source. It is safe
// for concurrent use, as the EventBridge client is.
type Bus struct {
	client api
	bus    string
	source string
	// retryWait is the wait before the first resend of failed entries; it
	// doubles for each further resend.
	retryWait time.Duration
}

// New returns a Bus publishing through client on the bus named bus (a name
// or an ARN) with source as every event's source, which rules match on
// (the template's rule matches the prefix "stepwise"). It does no I/O: a
// missing bus shows on the first Publish, as EUNAVAILABLE naming it.
func New(client *eventbridge.Client, bus, source string) *Bus {
	return newBus(client, bus, source)
}

func newBus(client api, bus, source string) *Bus {
	return &Bus{client: client, bus: bus, source: source, retryWait: 100 * time.Millisecond}
}

// entry is one event ready to send: its request entry, its index in the
// caller's slice and its size as EventBridge counts it.
type entry struct {
	index int
	req   types.PutEventsRequestEntry
	size  int
}

// Publish publishes events in order, in as few PutEvents requests as the
// limits allow. It fails with EINVALID, sending nothing, when the bus or
// the source is empty or an event lacks a detail type, has a detail that
// is not a JSON object, or is larger than MaxRequestSize alone. Entries
// that still fail after the resends are returned in a *PublishError
// wrapped in a *core.Error: EINVALID if EventBridge rejected any as
// malformed, else EUNAVAILABLE for throttling and internal failures,
// ETIMEOUT if ctx ended first, EINTERNAL for the rest (such as access
// denied).
func (b *Bus) Publish(ctx context.Context, events []Event) error {
	entries, err := b.entries(events)
	if err != nil {
		return err
	}
	chunks := chunk(entries)
	var failed []Failure
	for k, c := range chunks {
		f, err := b.put(ctx, c)
		failed = append(failed, f...)
		if err != nil {
			for _, later := range chunks[k+1:] {
				failed = append(failed, unsent(later, "an earlier request failed")...)
			}
			return core.WrapError(core.ErrorCode(err), &PublishError{Failed: failed, Cause: err},
				"awsbus: publish %d events on bus %s", len(events), b.bus)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return core.WrapError(failureCode(ctx, failed), &PublishError{Failed: failed},
		"awsbus: publish %d events on bus %s", len(events), b.bus)
}

// entries validates events and turns them into request entries.
func (b *Bus) entries(events []Event) ([]entry, error) {
	if b.bus == "" {
		return nil, core.Errorf(core.EINVALID, "awsbus: bus: empty")
	}
	if b.source == "" {
		return nil, core.Errorf(core.EINVALID, "awsbus: source: empty")
	}
	entries := make([]entry, len(events))
	for i, e := range events {
		if e.DetailType == "" {
			return nil, core.Errorf(core.EINVALID, "awsbus: event %d: detailType: empty", i)
		}
		if !isObject(e.Detail) {
			return nil, core.Errorf(core.EINVALID, "awsbus: event %d (%s): detail: not a JSON object", i, e.DetailType)
		}
		req := types.PutEventsRequestEntry{
			EventBusName: aws.String(b.bus),
			Source:       aws.String(b.source),
			DetailType:   aws.String(e.DetailType),
			Detail:       aws.String(string(e.Detail)),
		}
		size := entrySize(req)
		if size > MaxRequestSize {
			return nil, core.Errorf(core.EINVALID, "awsbus: event %d (%s): %d bytes, over EventBridge's %d-byte request limit",
				i, e.DetailType, size, MaxRequestSize)
		}
		entries[i] = entry{index: i, req: req, size: size}
	}
	return entries, nil
}

// isObject reports whether raw is a valid JSON object.
func isObject(raw json.RawMessage) bool {
	t := bytes.TrimLeft(raw, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && json.Valid(raw)
}

// entrySize is an entry's size as EventBridge counts it against the
// request limit: the UTF-8 bytes of the source, the detail type, the
// detail and the resources, plus 14 for a time. The bus name does not
// count.
func entrySize(e types.PutEventsRequestEntry) int {
	n := len(aws.ToString(e.Source)) + len(aws.ToString(e.DetailType)) + len(aws.ToString(e.Detail))
	for _, r := range e.Resources {
		n += len(r)
	}
	if e.Time != nil {
		n += 14
	}
	return n
}

// chunk splits entries, in order, into requests of at most MaxEntries
// entries and MaxRequestSize bytes. Every entry fits alone (entries
// checked it).
func chunk(entries []entry) [][]entry {
	var chunks [][]entry
	var cur []entry
	size := 0
	for _, e := range entries {
		if len(cur) == MaxEntries || size+e.size > MaxRequestSize {
			chunks = append(chunks, cur)
			cur, size = nil, 0
		}
		cur = append(cur, e)
		size += e.size
	}
	if len(cur) > 0 {
		chunks = append(chunks, cur)
	}
	return chunks
}

// put sends one chunk, resending the entries that failed for a reason that
// may pass, and returns the failures that remain. An error means a request
// failed as a whole; the failures then include the entries it carried.
func (b *Bus) put(ctx context.Context, pending []entry) ([]Failure, error) {
	var failed []Failure
	wait := b.retryWait
	for attempt := 1; len(pending) > 0; attempt++ {
		reqs := make([]types.PutEventsRequestEntry, len(pending))
		for k, e := range pending {
			reqs[k] = e.req
		}
		out, err := b.client.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: reqs})
		if err != nil {
			return append(failed, unsent(pending, "the request failed")...), mapError(err, b.bus, "PutEvents")
		}
		if out.FailedEntryCount == 0 {
			return failed, nil
		}
		if len(out.Entries) != len(pending) {
			return append(failed, unsent(pending, "the answer did not match the request")...),
				core.Errorf(core.EINTERNAL, "PutEvents: %d results for %d entries", len(out.Entries), len(pending))
		}
		var again []entry
		for k, r := range out.Entries {
			code := aws.ToString(r.ErrorCode)
			if code == "" {
				continue
			}
			if entryCode(code) == core.EUNAVAILABLE && attempt < attempts {
				again = append(again, pending[k])
				continue
			}
			failed = append(failed, Failure{Index: pending[k].index, DetailType: aws.ToString(pending[k].req.DetailType),
				Code: code, Message: aws.ToString(r.ErrorMessage)})
		}
		pending = again
		if len(pending) > 0 {
			if err := sleep(ctx, wait); err != nil {
				return append(failed, unsent(pending, "the context ended before a resend")...),
					core.WrapError(core.ETIMEOUT, err, "resend failed entries")
			}
			wait *= 2
		}
	}
	return failed, nil
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// unsent returns the failures of entries that were not sent, for reason.
func unsent(entries []entry, reason string) []Failure {
	fs := make([]Failure, len(entries))
	for k, e := range entries {
		fs[k] = Failure{Index: e.index, DetailType: aws.ToString(e.req.DetailType), Code: NotSent, Message: reason}
	}
	return fs
}
