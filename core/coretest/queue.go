package coretest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// QueueHarness is a core.Queue under test plus the receive side the port
// leaves to each adapter (a worker pool locally, Lambda's event source
// mapping on AWS), so that QueueSuite can see what the queue delivers.
type QueueHarness struct {
	// Queue is the send side under test.
	Queue core.Queue
	// Receive blocks until the next delivery or until ctx ends (then it
	// returns an error). Calling the returned func with nil acknowledges
	// the delivery; calling it with an error makes the queue deliver the
	// message again later with Attempts one higher. Each delivery must be
	// settled exactly once.
	Receive func(ctx context.Context) (core.Delivery, func(err error), error)
}

// queueDelay is the delay the suite gives delayed messages: one second is
// the smallest delay SQS can express (DelaySeconds is whole seconds).
const queueDelay = time.Second

// receiveWait bounds each Receive so that a queue that loses a message
// fails the test instead of hanging it; it is a safety net, not a timing
// assertion.
const receiveWait = 30 * time.Second

// QueueSuite checks a core.Queue through its harness: messages round-trip
// every field, the queue names messages that have no ID, a nacked message
// comes back with Attempts incremented, a delay holds a message back,
// concurrent senders lose nothing, and a cancelled Send sends nothing.
// newHarness must return a harness on an empty queue, ready to deliver,
// and stop it with t.Cleanup.
func QueueSuite(t *testing.T, newHarness func(t *testing.T) QueueHarness) {
	ctx := context.Background()

	t.Run("RoundTripsEveryField", func(t *testing.T) {
		h := newHarness(t)
		m := core.QueueMessage{ID: "msg-1", Kind: core.KindContinue, Tenant: "acme",
			ExecutionID: "ex-1", Version: 42}
		mustSend(t, h, m, 0)
		d := mustReceive(t, h, nil)
		if d.Message != m {
			t.Errorf("delivered %+v, want %+v", d.Message, m)
		}
		if d.Attempts != 1 {
			t.Errorf("Attempts = %d, want 1", d.Attempts)
		}
	})

	t.Run("SetsIDWhenEmpty", func(t *testing.T) {
		h := newHarness(t)
		m := core.QueueMessage{Kind: core.KindContinue, Tenant: "acme", ExecutionID: "ex-1", Version: 1}
		mustSend(t, h, m, 0)
		mustSend(t, h, m, 0)
		ids := map[string]bool{}
		for range 2 {
			d := mustReceive(t, h, nil)
			if d.Message.ID == "" {
				t.Fatalf("delivered message has no ID: %+v", d.Message)
			}
			got := d.Message
			got.ID = ""
			if got != m {
				t.Errorf("delivered %+v, want %+v with an ID", d.Message, m)
			}
			ids[d.Message.ID] = true
		}
		if len(ids) != 2 {
			t.Errorf("two sends got IDs %v, want two distinct IDs", ids)
		}
	})

	t.Run("NackRedeliversWithAttemptsIncremented", func(t *testing.T) {
		h := newHarness(t)
		m := core.QueueMessage{ID: "msg-nack", Kind: core.KindContinue, Tenant: "acme", ExecutionID: "ex-1", Version: 3}
		mustSend(t, h, m, 0)
		first := mustReceive(t, h, errors.New("handler failed"))
		second := mustReceive(t, h, nil)
		if second.Message != m {
			t.Errorf("redelivered %+v, want %+v", second.Message, m)
		}
		if first.Attempts != 1 || second.Attempts != 2 {
			t.Errorf("Attempts = %d then %d, want 1 then 2", first.Attempts, second.Attempts)
		}
	})

	t.Run("DelayedMessageComesAfterLaterUndelayedOne", func(t *testing.T) {
		h := newHarness(t)
		delayed := core.QueueMessage{ID: "delayed", Kind: core.KindContinue, Tenant: "acme", ExecutionID: "ex-1"}
		now := core.QueueMessage{ID: "now", Kind: core.KindContinue, Tenant: "acme", ExecutionID: "ex-2"}
		mustSend(t, h, delayed, queueDelay)
		mustSend(t, h, now, 0)
		if d := mustReceive(t, h, nil); d.Message.ID != now.ID {
			t.Fatalf("first delivery = %q, want %q: the delayed message overtook one sent after it", d.Message.ID, now.ID)
		}
		if d := mustReceive(t, h, nil); d.Message != delayed {
			t.Errorf("second delivery = %+v, want the delayed %+v", d.Message, delayed)
		}
	})

	t.Run("ConcurrentSendersLoseNothing", func(t *testing.T) {
		h := newHarness(t)
		const senders, each = 8, 25
		var wg sync.WaitGroup
		errs := make(chan error, senders*each)
		for s := range senders {
			wg.Go(func() {
				for i := range each {
					m := core.QueueMessage{ID: fmt.Sprintf("s%d-m%d", s, i), Kind: core.KindContinue,
						Tenant: "acme", ExecutionID: fmt.Sprintf("ex-%d", s), Version: int64(i)}
					if err := h.Queue.Send(ctx, m, 0); err != nil {
						errs <- fmt.Errorf("Send %s: %w", m.ID, err)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for len(seen) < senders*each {
			d := mustReceive(t, h, nil)
			seen[d.Message.ID] = true
		}
		for s := range senders {
			for i := range each {
				if id := fmt.Sprintf("s%d-m%d", s, i); !seen[id] {
					t.Errorf("message %s never delivered", id)
				}
			}
		}
	})

	t.Run("CancelledSendFailsAndSendsNothing", func(t *testing.T) {
		h := newHarness(t)
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		lost := core.QueueMessage{ID: "cancelled", Kind: core.KindContinue, Tenant: "acme", ExecutionID: "ex-1"}
		if err := h.Queue.Send(cancelled, lost, 0); err == nil {
			t.Fatal("Send with a cancelled context succeeded")
		}
		// Were the cancelled message sent it would be due at once, ahead of
		// a marker held back by a delay; receiving the marker first proves
		// it was not sent, without waiting for an absence.
		marker := core.QueueMessage{ID: "marker", Kind: core.KindContinue, Tenant: "acme", ExecutionID: "ex-2"}
		mustSend(t, h, marker, queueDelay)
		if d := mustReceive(t, h, nil); d.Message.ID != marker.ID {
			t.Errorf("delivered %+v, want only the marker: the cancelled Send sent its message", d.Message)
		}
	})
}

func mustSend(t *testing.T, h QueueHarness, m core.QueueMessage, delay time.Duration) {
	t.Helper()
	if err := h.Queue.Send(context.Background(), m, delay); err != nil {
		t.Fatalf("Send %+v: %v", m, err)
	}
}

// mustReceive receives the next delivery and settles it with settle (nil
// acknowledges it).
func mustReceive(t *testing.T, h QueueHarness, settle error) core.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), receiveWait)
	defer cancel()
	d, done, err := h.Receive(ctx)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	done(settle)
	return d
}
