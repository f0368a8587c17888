package coretest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/events"
)

// PublisherHarness is a core.Publisher under test plus the consumer side
// the port leaves to each adapter (subscribers locally, a rule's SQS
// target on EventBridge), so that PublisherSuite can see what arrives.
type PublisherHarness struct {
	// Publisher is the publisher under test.
	Publisher core.Publisher
	// Receive returns the events that arrived since its last call, waiting
	// until at least n have or ctx ends (then it returns what it has).
	Receive func(ctx context.Context, n int) ([]events.Envelope, error)
}

// PublisherSuite checks a core.Publisher through its harness: an event
// arrives with every field intact, a batch larger than one request
// arrives whole, concurrent publishers lose nothing, an invalid event (of
// every kind Validate names) fails the whole call with EINVALID naming its
// index and field and publishes nothing, and a cancelled context
// publishes nothing. newHarness must return a harness on a bus where
// nothing has been published, and clean up with t.Cleanup.
func PublisherSuite(t *testing.T, newHarness func(t *testing.T) PublisherHarness) {
	ctx := context.Background()
	at := time.Date(2026, 11, 21, 9, 30, 15, 123456789, time.UTC)
	event := func(id string) events.Envelope {
		return events.Envelope{ID: id, Tenant: "acme", Source: "stepwise.test", Type: "test.happened",
			Subject: "thing-" + id, Time: at, Data: json.RawMessage(`{"id":"` + id + `","n":[1,2,{"deep":true}]}`)}
	}

	t.Run("RoundTripsEveryField", func(t *testing.T) {
		h := newHarness(t)
		want := event("ev-1")
		want.Data = json.RawMessage(`{ "text": "héllo \u2603", "nested": {"a": [1, 2.5, null]} }`)
		mustPublish(t, h, want)
		got := receiveN(t, h, 1)
		if len(got) != 1 {
			t.Fatalf("received %d events, want 1: %+v", len(got), got)
		}
		assertSameEvent(t, got[0], want)
	})

	t.Run("ManyEventsInOneCall", func(t *testing.T) {
		h := newHarness(t)
		var evs []events.Envelope
		for i := range 25 { // more than one EventBridge request holds
			evs = append(evs, event(fmt.Sprintf("ev-%02d", i)))
		}
		mustPublish(t, h, evs...)
		assertIDs(t, receiveN(t, h, len(evs)), evs)
	})

	t.Run("ConcurrentPublishers", func(t *testing.T) {
		h := newHarness(t)
		var all []events.Envelope
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for g := range 8 {
			var evs []events.Envelope
			for i := range 4 {
				evs = append(evs, event(fmt.Sprintf("g%d-ev%d", g, i)))
			}
			all = append(all, evs...)
			wg.Go(func() {
				if err := h.Publisher.Publish(ctx, evs); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("Publish: %v", err)
		}
		assertIDs(t, receiveN(t, h, len(all)), all)
	})

	t.Run("NothingToPublish", func(t *testing.T) {
		h := newHarness(t)
		if err := h.Publisher.Publish(ctx, nil); err != nil {
			t.Fatalf("Publish(nil) = %v, want nil", err)
		}
		assertOnlyMarker(t, h)
	})

	t.Run("RejectsInvalidEvents", func(t *testing.T) {
		tests := []struct {
			name   string
			change func(*events.Envelope)
			wantIn string
		}{
			{"no id", func(e *events.Envelope) { e.ID = "" }, "id: empty"},
			{"no tenant", func(e *events.Envelope) { e.Tenant = "" }, "tenant: empty"},
			{"no source", func(e *events.Envelope) { e.Source = "" }, "source: empty"},
			{"no type", func(e *events.Envelope) { e.Type = "" }, "type: empty"},
			{"no time", func(e *events.Envelope) { e.Time = time.Time{} }, "time: empty"},
			{"type too long", func(e *events.Envelope) { e.Type = strings.Repeat("t", events.MaxNameLen+1) }, "type:"},
			{"data not an object", func(e *events.Envelope) { e.Data = json.RawMessage(`[1,2]`) }, "data: not a JSON object"},
			{"data not JSON", func(e *events.Envelope) { e.Data = json.RawMessage(`{"a":`) }, "data: not a JSON object"},
			{"no data", func(e *events.Envelope) { e.Data = nil }, "data: not a JSON object"},
			{"too large", func(e *events.Envelope) {
				e.Data = json.RawMessage(`{"s":"` + strings.Repeat("x", events.MaxSize) + `"}`)
			}, "over the"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h := newHarness(t)
				bad := event("bad")
				tt.change(&bad)
				// The valid event before the bad one must not go out either.
				err := h.Publisher.Publish(ctx, []events.Envelope{event("good"), bad})
				if core.ErrorCode(err) != core.EINVALID {
					t.Fatalf("Publish = %v, want EINVALID", err)
				}
				if !strings.Contains(err.Error(), "event 1") || !strings.Contains(err.Error(), tt.wantIn) {
					t.Errorf("error %q does not name event 1 and %q", err, tt.wantIn)
				}
				assertOnlyMarker(t, h)
			})
		}
	})

	t.Run("CancelledContext", func(t *testing.T) {
		h := newHarness(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		err := h.Publisher.Publish(cctx, []events.Envelope{event("late")})
		if core.ErrorCode(err) != core.ETIMEOUT {
			t.Fatalf("Publish with a cancelled context = %v, want ETIMEOUT", err)
		}
		assertOnlyMarker(t, h)
	})
}

// receiveWindow bounds a Receive; like receiveWait it is a safety net for
// a publisher that loses events, not a timing assertion.
const receiveWindow = 30 * time.Second

func mustPublish(t *testing.T, h PublisherHarness, evs ...events.Envelope) {
	t.Helper()
	if err := h.Publisher.Publish(context.Background(), evs); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

// receiveN receives until n events have arrived, failing the test if they
// do not within receiveWindow.
func receiveN(t *testing.T, h PublisherHarness, n int) []events.Envelope {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), receiveWindow)
	defer cancel()
	got, err := h.Receive(ctx, n)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if len(got) < n {
		t.Fatalf("received %d events, want %d", len(got), n)
	}
	return got
}

// assertOnlyMarker publishes a marker event and checks that it is the
// only thing that arrives: whatever an earlier failed call published
// would be there too (buses deliver what they accept; EventBridge's order
// is not guaranteed, but moto and the in-process bus deliver inside the
// call, and the marker goes out after it).
func assertOnlyMarker(t *testing.T, h PublisherHarness) {
	t.Helper()
	marker := events.Envelope{ID: "marker", Tenant: "acme", Source: "stepwise.test", Type: "test.marker",
		Time: time.Now().UTC(), Data: json.RawMessage(`{}`)}
	mustPublish(t, h, marker)
	got := receiveN(t, h, 1)
	for _, ev := range got {
		if ev.ID != marker.ID {
			t.Errorf("event %s (%s) arrived; the failed call should have published nothing", ev.ID, ev.Type)
		}
	}
}

// assertIDs checks that got holds every event of want and nothing else;
// a copy of one is allowed (delivery is at least once).
func assertIDs(t *testing.T, got, want []events.Envelope) {
	t.Helper()
	wanted := map[string]events.Envelope{}
	for _, ev := range want {
		wanted[ev.ID] = ev
	}
	seen := map[string]bool{}
	for _, ev := range got {
		w, ok := wanted[ev.ID]
		if !ok {
			t.Errorf("unexpected event %s arrived", ev.ID)
			continue
		}
		seen[ev.ID] = true
		assertSameEvent(t, ev, w)
	}
	for id := range wanted {
		if !seen[id] {
			t.Errorf("event %s did not arrive", id)
		}
	}
}

// assertSameEvent compares every field; data as compacted JSON, since a
// bus may re-encode it.
func assertSameEvent(t *testing.T, got, want events.Envelope) {
	t.Helper()
	if got.ID != want.ID || got.Tenant != want.Tenant || got.Source != want.Source || got.Type != want.Type ||
		got.Subject != want.Subject || !got.Time.Equal(want.Time) {
		t.Errorf("event arrived as %+v, want %+v", got, want)
	}
	if g, w := compactJSON(t, got.Data), compactJSON(t, want.Data); g != w {
		t.Errorf("event %s data arrived as %s, want %s", want.ID, g, w)
	}
}

func compactJSON(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("data %s: %v", raw, err)
	}
	b := new(bytes.Buffer)
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatalf("data %s: %v", raw, err)
	}
	return b.String()
}
