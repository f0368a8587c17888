package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/infra/mem"
)

// downQueue is a queue that refuses every message.
type downQueue struct{}

func (downQueue) Send(context.Context, core.QueueMessage, time.Duration) error {
	return core.Errorf(core.EUNAVAILABLE, "queue down")
}

func TestWorkerFailsPoisonWorkVisibly(t *testing.T) {
	ctx := context.Background()
	store := mem.New()
	o := &serveOptions{deliverySteps: 1, deliveryTimeout: time.Minute}
	w := newWorker(o, slog.New(slog.DiscardHandler))
	// Every delivery runs one step, then cannot send its continuation.
	engine := core.NewEngine(core.EngineConfig{Store: store, Queue: downQueue{}})
	w.attach(engine)
	chain, _, err := core.ParseChain([]byte(`{"id":"c","tasks":[
	  {"id":"a","handler":"noop","transition":{"branches":[{"operator":"default","goto":"b"}]}},
	  {"id":"b","handler":"noop","transition":{"branches":[{"operator":"default","goto":"c"}]}},
	  {"id":"c","handler":"noop"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	ex, err := engine.Start(ctx, core.StartRequest{Chain: chain, Input: core.String("x")})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		attempts int
		want     core.Status
	}{
		{"EarlierFailuresAreRetried", 1, core.StatusRunning},
		{"TheLastFailureFailsTheExecution", maxDeliveries, core.StatusFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur, err := store.GetExecution(ctx, ex.Tenant, ex.ID)
			if err != nil {
				t.Fatal(err)
			}
			m := core.QueueMessage{Kind: core.KindContinue, Tenant: ex.Tenant, ExecutionID: ex.ID, Version: cur.Version}
			if err := w.handle(ctx, core.Delivery{Message: m, Attempts: tt.attempts}); err == nil {
				t.Fatal("handle succeeded; want the queue's error, so that the queue retries or dead-letters")
			}
			got, _ := store.GetExecution(ctx, ex.Tenant, ex.ID)
			if got.Status != tt.want {
				t.Errorf("status %s, want %s", got.Status, tt.want)
			}
			if tt.want == core.StatusFailed && (got.Error == nil || got.Error.Reason != core.ReasonDeadLetter) {
				t.Errorf("error %+v, want reason %s", got.Error, core.ReasonDeadLetter)
			}
		})
	}
}
