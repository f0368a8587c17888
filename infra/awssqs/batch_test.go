package awssqs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core"
)

// messages returns n valid messages with IDs prefix-0, prefix-1, ...
func messages(prefix string, n int) []core.QueueMessage {
	ms := make([]core.QueueMessage, n)
	for i := range ms {
		ms[i] = core.QueueMessage{ID: fmt.Sprintf("%s-%d", prefix, i), Kind: core.KindContinue,
			Tenant: "acme", ExecutionID: fmt.Sprintf("ex-%d", i), Version: int64(i)}
	}
	return ms
}

// receiveAll receives n messages and returns them by ID.
func receiveAll(r receiver, n int) map[string]core.QueueMessage {
	got := map[string]core.QueueMessage{}
	for range n {
		m := r.mustReceive().delivery.Message
		got[m.ID] = m
	}
	return got
}

func TestSendBatch(t *testing.T) {
	client := newClient(t)
	ctx := context.Background()

	t.Run("SendsMoreThanOneRequestHolds", func(t *testing.T) {
		url := newQueueURL(t, client)
		ms := messages("b", 25)
		if err := New(client, url).SendBatch(ctx, ms, 0); err != nil {
			t.Fatalf("SendBatch: %v", err)
		}
		got := receiveAll(receiver{t: t, client: client, url: url}, len(ms))
		for _, m := range ms {
			if got[m.ID] != m {
				t.Errorf("message %s delivered as %+v, want %+v", m.ID, got[m.ID], m)
			}
		}
	})

	t.Run("SetsMissingIDsWithoutChangingTheSlice", func(t *testing.T) {
		url := newQueueURL(t, client)
		ms := messages("x", 3)
		for i := range ms {
			ms[i].ID = ""
		}
		if err := New(client, url).SendBatch(ctx, ms, 0); err != nil {
			t.Fatalf("SendBatch: %v", err)
		}
		for i, m := range ms {
			if m.ID != "" {
				t.Errorf("ms[%d].ID = %q: SendBatch changed its argument", i, m.ID)
			}
		}
		got := receiveAll(receiver{t: t, client: client, url: url}, len(ms))
		if _, ok := got[""]; ok || len(got) != len(ms) {
			t.Errorf("received IDs %v, want %d distinct non-empty IDs", got, len(ms))
		}
	})

	t.Run("InvalidMessageSendsNothing", func(t *testing.T) {
		url := newQueueURL(t, client)
		ms := messages("v", 12)
		ms[11].Tenant = ""
		err := New(client, url).SendBatch(ctx, ms, 0)
		if core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "messages[11]") {
			t.Fatalf("SendBatch error = %v, want EINVALID naming messages[11]", err)
		}
		// Nothing of the batch was sent: the first message received is a
		// marker sent afterwards.
		marker := core.QueueMessage{ID: "marker", Kind: core.KindContinue, Tenant: "acme", ExecutionID: "ex-m"}
		if err := New(client, url).Send(ctx, marker, 0); err != nil {
			t.Fatal(err)
		}
		if got := (receiver{t: t, client: client, url: url}).mustReceive().delivery.Message; got != marker {
			t.Errorf("received %+v, want only the marker", got)
		}
	})

	t.Run("ReportsEntriesSQSRejects", func(t *testing.T) {
		url := newQueueURL(t, client)
		ms := messages("r", 15)
		// Entry Ids are the messages' indexes: SQS rejects messages 3
		// and 12, in the first and the second request, every time.
		fake := &flaky{sqs: client, fails: map[string]int{"3": batchAttempts, "12": batchAttempts},
			rejects: map[string]bool{"3": true, "12": true}, offers: map[string]int{}}
		q := newQueue(fake, url)
		q.retryWait = 0
		err := q.SendBatch(ctx, ms, 0)
		if got := core.ErrorCode(err); got != core.EINVALID {
			t.Fatalf("SendBatch error = %v (code %q), want %q", err, got, core.EINVALID)
		}
		var be *BatchError
		if !errors.As(err, &be) {
			t.Fatalf("SendBatch error = %v, want a *BatchError in it", err)
		}
		var failed []string
		for _, f := range be.Failed {
			failed = append(failed, fmt.Sprintf("%d:%s:%v", f.Index, f.ID, f.SenderFault))
		}
		if want := "3:r-3:true,12:r-12:true"; strings.Join(failed, ",") != want {
			t.Errorf("failed = %v, want %s", failed, want)
		}
		for _, id := range []string{"r-3", "r-12"} {
			if !strings.Contains(err.Error(), id) {
				t.Errorf("error %q does not name %s", err, id)
			}
		}
		got := receiveAll(receiver{t: t, client: client, url: url}, len(ms)-2)
		if fake.offers["3"] != 1 || fake.offers["12"] != 1 {
			t.Errorf("offers = %v, want the rejected entries offered once: resending cannot help them", fake.offers)
		}
		if _, ok := got["r-3"]; ok {
			t.Errorf("rejected message r-3 was delivered")
		}
		if len(got) != len(ms)-2 {
			t.Errorf("received %d distinct messages, want %d", len(got), len(ms)-2)
		}
	})

	t.Run("ResendsEntriesSQSFailedOnItsSide", func(t *testing.T) {
		url := newQueueURL(t, client)
		ms := messages("f", 12)
		fake := &flaky{sqs: client, fails: map[string]int{"0": 1, "11": batchAttempts - 1}, offers: map[string]int{}}
		q := newQueue(fake, url)
		q.retryWait = 0
		if err := q.SendBatch(ctx, ms, 0); err != nil {
			t.Fatalf("SendBatch: %v", err)
		}
		if fake.offers["0"] != 2 || fake.offers["11"] != batchAttempts || fake.offers["5"] != 1 {
			t.Errorf("offers = %v, want 0 twice, 11 %d times, 5 once", fake.offers, batchAttempts)
		}
		got := receiveAll(receiver{t: t, client: client, url: url}, len(ms))
		if len(got) != len(ms) {
			t.Errorf("received %d distinct messages, want %d", len(got), len(ms))
		}
	})

	t.Run("GivesUpAfterAFewResendsAndNamesTheEntry", func(t *testing.T) {
		url := newQueueURL(t, client)
		ms := messages("g", 4)
		fake := &flaky{sqs: client, fails: map[string]int{"2": batchAttempts}, offers: map[string]int{}}
		q := newQueue(fake, url)
		q.retryWait = 0
		err := q.SendBatch(ctx, ms, 0)
		var be *BatchError
		if core.ErrorCode(err) != core.EUNAVAILABLE || !errors.As(err, &be) {
			t.Fatalf("SendBatch error = %v, want EUNAVAILABLE with a *BatchError", err)
		}
		if len(be.Failed) != 1 || be.Failed[0].ID != "g-2" || be.Failed[0].Code != "InternalError" {
			t.Errorf("failed = %+v, want only g-2 with InternalError", be.Failed)
		}
		if fake.offers["2"] != batchAttempts {
			t.Errorf("g-2 offered %d times, want %d", fake.offers["2"], batchAttempts)
		}
	})

	t.Run("MissingQueueReportsEveryMessage", func(t *testing.T) {
		url := newQueueURL(t, client) + "-gone"
		ms := messages("m", 14)
		err := New(client, url).SendBatch(ctx, ms, 0)
		var be *BatchError
		if core.ErrorCode(err) != core.EUNAVAILABLE || !errors.As(err, &be) {
			t.Fatalf("SendBatch error = %v, want EUNAVAILABLE with a *BatchError", err)
		}
		if len(be.Failed) != len(ms) {
			t.Errorf("%d messages reported unsent, want all %d", len(be.Failed), len(ms))
		}
		if !strings.Contains(err.Error(), url) {
			t.Errorf("error %q does not name the queue %s", err, url)
		}
	})

	t.Run("CancelledContextIsTimeout", func(t *testing.T) {
		url := newQueueURL(t, client)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		err := New(client, url).SendBatch(cctx, messages("c", 3), 0)
		if core.ErrorCode(err) != core.ETIMEOUT {
			t.Errorf("SendBatch error = %v, want ETIMEOUT", err)
		}
	})
}
