// Package awsbus is the core.Publisher on an Amazon EventBridge bus,
// where rules route the events (the SAM template's rule delivers the
// ingest function's events to the work queue; users add their own rules,
// such as one on execution lifecycle events). It is the EventBridge half
// of the AWS adapters; awssqs is the other.
//
// Each events.Envelope becomes one EventBridge entry: the envelope's
// source and type become the entry's source and detail type, its time the
// entry's time, and the whole envelope (id, tenant, subject and data
// included) the entry's detail, so a consumer reads the same envelope
// whichever bus carried it.
//
// Publish sends events with PutEvents, at most MaxEntries per request and at
// most MaxRequestSize bytes per request, counted as EventBridge counts them
// (see entrySize). Invalid events (core.ValidateEvents) are rejected as
// EINVALID before anything is sent. PutEvents answers per entry: entries
// that failed for a reason that may pass later (throttling, an internal
// failure) are resent with a doubling wait, a few times; the ones that still
// fail, and the ones EventBridge rejects as malformed (not resent: they
// would fail again), are returned in a *core.PublishError naming each by
// its index and type. Publish is not atomic: when it fails, the events it
// does not name were published.
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
//   - moto delivers to the rule's SQS target synchronously, inside
//     PutEvents; EventBridge delivers asynchronously, so the tests poll the
//     queue rather than reading it once.
package awsbus

import (
	"context"
	"encoding/json"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/events"
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

// api is the part of the EventBridge client the bus uses; tests substitute
// a wrapper that fails entries the way EventBridge's servers can.
type api interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// Bus publishes events on one EventBridge bus. It is safe for concurrent
// use, as the EventBridge client is.
type Bus struct {
	client api
	bus    string
	// retryWait is the wait before the first resend of failed entries; it
	// doubles for each further resend.
	retryWait time.Duration
}

// New returns a Bus publishing through client on the bus named bus (a name
// or an ARN). It does no I/O: a missing bus shows on the first Publish, as
// EUNAVAILABLE naming it.
func New(client *eventbridge.Client, bus string) *Bus {
	return newBus(client, bus)
}

func newBus(client api, bus string) *Bus {
	return &Bus{client: client, bus: bus, retryWait: 100 * time.Millisecond}
}

// entry is one event ready to send: its request entry, its index in the
// caller's slice and its size as EventBridge counts it.
type entry struct {
	index int
	req   types.PutEventsRequestEntry
	size  int
}

// Publish publishes evs in order, in as few PutEvents requests as the
// limits allow. It fails with EINVALID, sending nothing, when the bus is
// empty or an event is invalid. Entries that still fail after the resends
// are returned in a *core.PublishError wrapped in a *core.Error: EINVALID
// if EventBridge rejected any as malformed, else EUNAVAILABLE for
// throttling and internal failures, ETIMEOUT if ctx ended first, EINTERNAL
// for the rest (such as access denied).
func (b *Bus) Publish(ctx context.Context, evs []events.Envelope) error {
	entries, err := b.entries(evs)
	if err != nil {
		return err
	}
	chunks := chunk(entries)
	var failed []core.PublishFailure
	for k, c := range chunks {
		f, err := b.put(ctx, c)
		failed = append(failed, f...)
		if err != nil {
			for _, later := range chunks[k+1:] {
				failed = append(failed, unsent(later, "an earlier request failed")...)
			}
			return core.WrapError(core.ErrorCode(err), &core.PublishError{Failed: failed, Cause: err},
				"awsbus: publish %d events on bus %s", len(evs), b.bus)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return core.WrapError(failureCode(ctx, failed), &core.PublishError{Failed: failed},
		"awsbus: publish %d events on bus %s", len(evs), b.bus)
}

// entries validates evs and turns them into request entries.
func (b *Bus) entries(evs []events.Envelope) ([]entry, error) {
	if b.bus == "" {
		return nil, core.Errorf(core.EINVALID, "awsbus: bus: empty")
	}
	if err := core.ValidateEvents(evs); err != nil {
		return nil, err
	}
	entries := make([]entry, len(evs))
	for i, ev := range evs {
		detail, err := json.Marshal(ev)
		if err != nil {
			return nil, core.WrapError(core.EINVALID, err, "awsbus: event %d (%s)", i, ev.Type)
		}
		req := types.PutEventsRequestEntry{
			EventBusName: aws.String(b.bus),
			Source:       aws.String(ev.Source),
			DetailType:   aws.String(ev.Type),
			Detail:       aws.String(string(detail)),
			Time:         aws.Time(ev.Time),
		}
		size := entrySize(req)
		if size > MaxRequestSize {
			// Validate's MaxSize leaves room for this; reaching it is a bug.
			return nil, core.Errorf(core.EINTERNAL, "awsbus: event %d (%s): %d bytes, over EventBridge's %d-byte request limit",
				i, ev.Type, size, MaxRequestSize)
		}
		entries[i] = entry{index: i, req: req, size: size}
	}
	return entries, nil
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
func (b *Bus) put(ctx context.Context, pending []entry) ([]core.PublishFailure, error) {
	var failed []core.PublishFailure
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
			failed = append(failed, core.PublishFailure{Index: pending[k].index, Type: aws.ToString(pending[k].req.DetailType),
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
func unsent(entries []entry, reason string) []core.PublishFailure {
	fs := make([]core.PublishFailure, len(entries))
	for k, e := range entries {
		fs[k] = core.PublishFailure{Index: e.index, Type: aws.ToString(e.req.DetailType), Code: core.NotSent, Message: reason}
	}
	return fs
}
