package coretest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/core/meter"
)

// Store is a store that keeps records and counters, as every adapter's
// does.
type Store interface {
	core.RecordStore
	core.Counters
}

// BudgetSuite races 200 calls, each admitted (its worst case reserved) and
// settled at that worst case, against a key whose daily budget is worth
// ten of them: exactly ten get through, the spend counted is exactly their
// cost, and the ledger holds exactly their records. newStore must return
// an empty store and clean up with t.Cleanup.
func BudgetSuite(t *testing.T, newStore func(t *testing.T) Store) {
	ctx := context.Background()
	s := newStore(t)
	m := meter.New(s, s, nil, nil)
	// One call: 100 tokens in, at most 100 out, at $10 and $30 per million
	// tokens: 100×10 + 100×30 = 4000 micros. The budget holds ten.
	if _, err := m.SetPrice(ctx, "acme", meter.Price{Model: "m:1", InputPerMTok: 10, OutputPerMTok: 30}); err != nil {
		t.Fatal(err)
	}
	key := &access.Key{ID: "key_budget", Tenant: "acme", Scopes: []access.Scope{access.ScopeChat},
		Limits: &access.Limits{Spend: []access.Spend{{Window: "day", USD: 0.04}}}}
	const racers, fit = 200, 10
	var (
		wg              sync.WaitGroup
		granted, denied atomic.Int64
		start           = make(chan struct{})
	)
	for range racers {
		wg.Go(func() {
			<-start
			ticket, err := m.Admit(ctx, meter.Call{Tenant: "acme", Key: key, Model: "m:1", TokensIn: 100, MaxOut: 100})
			var le *meter.LimitError
			switch {
			case errors.As(err, &le):
				if le.RetryAfter <= 0 || core.ErrorCode(err) != core.ELIMIT {
					t.Errorf("refusal %v, retry after %v", err, le.RetryAfter)
				}
				denied.Add(1)
				return
			case err != nil:
				t.Errorf("Admit: %v", err)
				return
			}
			granted.Add(1)
			if _, err := ticket.Settle(ctx, meter.Usage{TokensIn: 100, TokensOut: 100}); err != nil {
				t.Errorf("Settle: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if granted.Load() != fit || denied.Load() != racers-fit {
		t.Errorf("%d granted, %d denied; want exactly %d granted", granted.Load(), denied.Load(), fit)
	}
	sum, err := m.Summarize(ctx, "acme", meter.Query{From: time.Now(), To: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Total.Requests != fit || sum.Total.CostMicros != fit*4000 || sum.Total.TokensIn != fit*100 || sum.Total.TokensOut != fit*100 {
		t.Errorf("ledger total %+v; want %d requests costing %d micros", sum.Total, fit, fit*4000)
	}
}
