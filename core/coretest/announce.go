package coretest

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/events"
)

// recordingPublisher keeps what is published; while down is set, Publish
// fails with EUNAVAILABLE and publishes nothing.
type recordingPublisher struct {
	mu   sync.Mutex
	evs  []events.Envelope
	down bool
}

func (p *recordingPublisher) Publish(_ context.Context, evs []events.Envelope) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return core.Errorf(core.EUNAVAILABLE, "bus down")
	}
	if err := core.ValidateEvents(evs); err != nil {
		return err
	}
	p.evs = append(p.evs, evs...)
	return nil
}

func (p *recordingPublisher) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

// types returns the types of the events published so far.
func (p *recordingPublisher) types() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ts []string
	for _, ev := range p.evs {
		ts = append(ts, ev.Type)
	}
	return ts
}

func (p *recordingPublisher) last() events.Envelope {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.evs[len(p.evs)-1]
}

// announceFixture is a deliverFixture whose engine publishes lifecycle
// events.
func announceFixture(t *testing.T, newStore func(t *testing.T) core.ExecutionStore) (*deliverFixture, *recordingPublisher) {
	f := newDeliverFixture(t, newStore, "", 0)
	pub := &recordingPublisher{}
	f.engine = core.NewEngine(core.EngineConfig{Store: f.store, LLM: f.llm, Tools: f.hook, Queue: f.queue, Now: f.clock.now, Publisher: pub})
	return f, pub
}

// run starts the chain (JSON) on the input "go", enqueues it and delivers
// until the queue is empty; it returns the execution as started.
func (f *deliverFixture) run(t *testing.T, chainJSON string) *core.Execution {
	t.Helper()
	ctx := context.Background()
	chain, _, err := core.ParseChain([]byte(chainJSON))
	if err != nil {
		t.Fatal(err)
	}
	ex, err := f.engine.Start(ctx, core.StartRequest{Chain: chain, Input: core.String("go")})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.engine.Enqueue(ctx, ex); err != nil {
		t.Fatal(err)
	}
	f.drain(t, core.DeliverOptions{})
	return ex
}

func (f *deliverFixture) get(t *testing.T, id string) *core.Execution {
	t.Helper()
	ex, err := f.store.GetExecution(context.Background(), core.DefaultTenant, id)
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

// announceCases: every execution that waits or ends publishes its
// lifecycle event once; an event the bus refused is kept owed in the store
// and published when the queue brings the execution back, so neither a
// bus outage nor a crash after the commit loses it.
func announceCases(t *testing.T, newStore func(t *testing.T) core.ExecutionStore) {
	ctx := context.Background()

	t.Run("EndPublishesOneEvent", func(t *testing.T) {
		f, pub := announceFixture(t, newStore)
		m := f.start(t, 2)
		f.deliver(t, m, core.DeliverOptions{})
		f.deliver(t, m, core.DeliverOptions{}) // a duplicate delivery
		if got := pub.types(); len(got) != 1 || got[0] != events.TypeExecutionSucceeded {
			t.Fatalf("published %v, want one %s", got, events.TypeExecutionSucceeded)
		}
		ev := pub.last()
		var data core.ExecutionEventData
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			t.Fatal(err)
		}
		if ev.ID != m.ExecutionID+"/execution.succeeded/2" || ev.Tenant != core.DefaultTenant || ev.Source != events.SourceExecutions ||
			ev.Subject != m.ExecutionID || data.Status != core.StatusSucceeded || data.ChainID != "c" || data.StepCount != 2 ||
			data.Output == nil || data.Output.Display() != "done: step 2" {
			t.Errorf("event %+v with data %+v", ev, data)
		}
		if ex := f.get(t, m.ExecutionID); ex.PendingEvent != "" {
			t.Errorf("stored execution still owes %q", ex.PendingEvent)
		}
	})

	t.Run("BusDownRetriedThroughQueue", func(t *testing.T) {
		f, pub := announceFixture(t, newStore)
		m := f.start(t, 1)
		pub.setDown(true)
		if res, _ := f.deliver(t, m, core.DeliverOptions{}); res.Execution.Status != core.StatusSucceeded {
			t.Fatalf("delivery left %s, want succeeded", res.Execution.Status)
		}
		if ex := f.get(t, m.ExecutionID); ex.PendingEvent != events.TypeExecutionSucceeded {
			t.Fatalf("stored execution owes %q, want %s", ex.PendingEvent, events.TypeExecutionSucceeded)
		}
		// The queue brings it back; the bus is still down once, then up.
		if n := f.drainOnce(t); n != 1 {
			t.Fatalf("%d retry messages, want 1", n)
		}
		pub.setDown(false)
		f.drain(t, core.DeliverOptions{})
		if got := pub.types(); len(got) != 1 {
			t.Fatalf("published %v, want one event", got)
		}
		if ex := f.get(t, m.ExecutionID); ex.PendingEvent != "" {
			t.Errorf("stored execution still owes %q", ex.PendingEvent)
		}
	})

	t.Run("BusAndQueueDownFailsTheDelivery", func(t *testing.T) {
		f, pub := announceFixture(t, newStore)
		m := f.start(t, 1)
		pub.setDown(true)
		f.queue.fail = core.Errorf(core.EUNAVAILABLE, "queue down")
		if _, err := f.engine.Deliver(ctx, m, core.DeliverOptions{}, nil); err == nil {
			t.Fatal("Deliver = nil; want an error, so that the message is delivered again")
		}
		pub.setDown(false)
		f.queue.fail = nil
		// The message's redelivery (it was not acknowledged) pays the debt.
		if res, _ := f.deliver(t, m, core.DeliverOptions{}); res.Outcome != core.OutcomeDone {
			t.Errorf("redelivery: %s, want done", res.Outcome)
		}
		if got := pub.types(); len(got) != 1 || got[0] != events.TypeExecutionSucceeded {
			t.Fatalf("published %v, want one %s", got, events.TypeExecutionSucceeded)
		}
	})

	t.Run("WaitResumeEnd", func(t *testing.T) {
		f, pub := announceFixture(t, newStore)
		ex := f.run(t, `{"id":"approval","tasks":[
			{"id":"ask","handler":"await_input","prompt_template":"approve?","transition":{"branches":[{"operator":"default","goto":"t2"}]}},
			{"id":"t2","handler":"prompt_to_string","prompt_template":"step 2","transition":{"branches":[{"operator":"default","goto":"end"}]}}]}`)
		if got := pub.types(); len(got) != 1 || got[0] != events.TypeExecutionWaiting {
			t.Fatalf("published %v, want %s", got, events.TypeExecutionWaiting)
		}
		var data core.ExecutionEventData
		if err := json.Unmarshal(pub.last().Data, &data); err != nil || data.Waiting == nil || data.Waiting.Prompt != "approve?" {
			t.Errorf("waiting event data %s (%v), want the prompt", pub.last().Data, err)
		}
		resumed, err := f.engine.Resume(ctx, core.DefaultTenant, ex.ID, core.String("yes"))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.engine.Enqueue(ctx, resumed); err != nil {
			t.Fatal(err)
		}
		f.drain(t, core.DeliverOptions{})
		if got := pub.types(); len(got) != 2 || got[1] != events.TypeExecutionSucceeded {
			t.Fatalf("published %v, want waiting then succeeded", got)
		}
	})

	t.Run("CancelPublishes", func(t *testing.T) {
		f, pub := announceFixture(t, newStore)
		m := f.start(t, 3)
		if _, err := f.engine.Cancel(ctx, core.DefaultTenant, m.ExecutionID, "no longer needed"); err != nil {
			t.Fatal(err)
		}
		if got := pub.types(); len(got) != 1 || got[0] != events.TypeExecutionCancelled {
			t.Fatalf("published %v, want %s", got, events.TypeExecutionCancelled)
		}
		var data core.ExecutionEventData
		if err := json.Unmarshal(pub.last().Data, &data); err != nil || data.Error == nil || data.Error.Reason != core.ReasonCancelled {
			t.Errorf("cancelled event data %s (%v), want the reason", pub.last().Data, err)
		}
	})

	t.Run("LargeOutputLeftOut", func(t *testing.T) {
		f, pub := announceFixture(t, newStore)
		f.run(t, `{"id":"big","tasks":[{"id":"t1","handler":"prompt_to_string","prompt_template":"`+
			strings.Repeat("x", 100*1024)+`","transition":{"branches":[{"operator":"default","goto":"end"}]}}]}`)
		var data core.ExecutionEventData
		if err := json.Unmarshal(pub.last().Data, &data); err != nil || !data.Omitted || data.Output != nil || data.Status != core.StatusSucceeded {
			t.Errorf("event data of %d bytes: omitted %v, output %v (%v); want the output left out", len(pub.last().Data), data.Omitted, data.Output != nil, err)
		}
	})

	t.Run("NoPublisherOwesNothing", func(t *testing.T) {
		f := newDeliverFixture(t, newStore, "", 0)
		m := f.start(t, 1)
		f.deliver(t, m, core.DeliverOptions{})
		if ex := f.get(t, m.ExecutionID); ex.Status != core.StatusSucceeded || ex.PendingEvent != "" {
			t.Errorf("execution %s owing %q; want succeeded owing nothing", ex.Status, ex.PendingEvent)
		}
	})
}

// drainOnce delivers the messages sent so far, not those their delivery
// sends, and returns how many it delivered.
func (f *deliverFixture) drainOnce(t *testing.T) int {
	t.Helper()
	msgs := f.queue.take()
	for _, m := range msgs {
		f.deliver(t, m, core.DeliverOptions{})
	}
	return len(msgs)
}
