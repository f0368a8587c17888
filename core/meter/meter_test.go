package meter_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/core/meter"
	"github.com/stepwise-run/stepwise/infra/mem"
)

var at = time.Date(2026, 12, 7, 10, 30, 0, 0, time.UTC)

func newMeter(t *testing.T) (*meter.Meter, *time.Time) {
	t.Helper()
	now := at
	s := mem.New()
	return meter.New(s, s, func() time.Time { return now }), &now
}

func keyWith(l access.Limits) *access.Key {
	return &access.Key{ID: "key_1", Tenant: "acme", Scopes: []access.Scope{access.ScopeChat}, Limits: &l}
}

func TestCost(t *testing.T) {
	ctx := context.Background()
	m, _ := newMeter(t)
	if _, err := m.SetPrice(ctx, "acme", meter.Price{Model: "m:1", InputPerMTok: 2.5, OutputPerMTok: 10, CachedInputPerMTok: 1.25}); err != nil {
		t.Fatal(err)
	}
	ticket, err := m.Admit(ctx, meter.Call{Tenant: "acme", Model: "m:1", TokensIn: 10})
	if err != nil {
		t.Fatal(err)
	}
	// 1000 in of which 400 cached, 200 out: 600×2.5 + 400×1.25 + 200×10.
	u, err := ticket.Settle(ctx, meter.Usage{TokensIn: 1000, CachedTokens: 400, TokensOut: 200})
	if err != nil || u.CostMicros != 1500+500+2000 || u.CostMicros.String() != "0.004000" {
		t.Fatalf("usage %+v, %v", u, err)
	}
	// A model without a price costs nothing.
	ticket, _ = m.Admit(ctx, meter.Call{Tenant: "acme", Model: "free:1"})
	if u, _ := ticket.Settle(ctx, meter.Usage{TokensIn: 1000, TokensOut: 1000}); u.CostMicros != 0 {
		t.Errorf("unpriced model cost %d", u.CostMicros)
	}
	// Another tenant's price is not this one's.
	ticket, _ = m.Admit(ctx, meter.Call{Tenant: "globex", Model: "m:1"})
	if u, _ := ticket.Settle(ctx, meter.Usage{TokensIn: 1000}); u.CostMicros != 0 {
		t.Errorf("globex paid acme's price: %d", u.CostMicros)
	}
}

func TestLimits(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		key    access.Limits
		tenant *access.Limits
		call   meter.Call
		// fit is how many calls (settled at their reservation) pass.
		fit        int
		retryAfter time.Duration
	}{
		{name: "requests per minute", key: access.Limits{RequestsPerMinute: 3}, fit: 3, retryAfter: time.Minute},
		{name: "tokens per minute reserve the worst case", key: access.Limits{TokensPerMinute: 1000},
			call: meter.Call{TokensIn: 100, MaxOut: 150}, fit: 4, retryAfter: time.Minute},
		{name: "tenant's limit binds every key", tenant: &access.Limits{RequestsPerMinute: 2}, fit: 2, retryAfter: time.Minute},
		{name: "daily spend", key: access.Limits{Spend: []access.Spend{{Window: "day", USD: 0.001}}},
			call: meter.Call{TokensIn: 100, MaxOut: 100}, fit: 5, retryAfter: 13*time.Hour + 30*time.Minute},
		{name: "spend per 6h", key: access.Limits{Spend: []access.Spend{{Window: "6h", USD: 0.0004}}},
			call: meter.Call{TokensIn: 100, MaxOut: 100}, fit: 2, retryAfter: 90 * time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := newMeter(t)
			// 100 in + 100 out = 100×1 + 100×1 = 200 micros.
			if _, err := m.SetPrice(ctx, "acme", meter.Price{Model: "m:1", InputPerMTok: 1, OutputPerMTok: 1}); err != nil {
				t.Fatal(err)
			}
			if err := m.SetLimits(ctx, "acme", tt.tenant); err != nil {
				t.Fatal(err)
			}
			c := tt.call
			c.Tenant, c.Key, c.Model = "acme", keyWith(tt.key), "m:1"
			for i := range tt.fit + 1 {
				ticket, err := m.Admit(ctx, c)
				if i == tt.fit {
					var le *meter.LimitError
					if !errors.As(err, &le) || core.ErrorCode(err) != core.ELIMIT || le.RetryAfter != tt.retryAfter {
						t.Fatalf("call %d: %v (retry after %v), want ELIMIT after %v", i+1, err, le, tt.retryAfter)
					}
					return
				}
				if err != nil {
					t.Fatalf("call %d: %v", i+1, err)
				}
				if _, err := ticket.Settle(ctx, meter.Usage{TokensIn: c.TokensIn, TokensOut: c.MaxOut}); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestSettleGivesBackTheUnused: a call that used less than its worst case
// leaves the rest of the budget to the next; a cancelled one all of it.
func TestSettleGivesBackTheUnused(t *testing.T) {
	ctx := context.Background()
	m, _ := newMeter(t)
	key := keyWith(access.Limits{TokensPerMinute: 1000})
	call := meter.Call{Tenant: "acme", Key: key, Model: "m:1", TokensIn: 100, MaxOut: 900}
	first, err := m.Admit(ctx, call)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Admit(ctx, call); core.ErrorCode(err) != core.ELIMIT {
		t.Fatalf("second call while the first holds all: %v", err)
	}
	if _, err := first.Settle(ctx, meter.Usage{TokensIn: 100, TokensOut: 50}); err != nil {
		t.Fatal(err)
	}
	second, err := m.Admit(ctx, meter.Call{Tenant: "acme", Key: key, Model: "m:1", TokensIn: 100, MaxOut: 700})
	if err != nil {
		t.Fatalf("after the first settled at 150 tokens: %v", err)
	}
	second.Cancel(ctx)
	if _, err := m.Admit(ctx, meter.Call{Tenant: "acme", Key: key, Model: "m:1", TokensIn: 100, MaxOut: 750}); err != nil {
		t.Errorf("after a cancelled call: %v", err)
	}
}

func TestSettleSteps(t *testing.T) {
	ctx := context.Background()
	m, _ := newMeter(t)
	if _, err := m.SetPrice(ctx, "acme", meter.Price{Model: "m:1", InputPerMTok: 1, OutputPerMTok: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.SetPrice(ctx, "acme", meter.Price{Model: "m:2", InputPerMTok: 10, OutputPerMTok: 20}); err != nil {
		t.Fatal(err)
	}
	ticket, err := m.Admit(ctx, meter.Call{Tenant: "acme", Model: "demo-chain"})
	if err != nil {
		t.Fatal(err)
	}
	steps := []*core.Step{{TokensIn: 10, TokensOut: 2, Model: "m:1"}, {}, {TokensIn: 20, TokensOut: 10, Model: "m:2", Backend: "b"}}
	u, err := ticket.SettleSteps(ctx, meter.Usage{ExecutionID: "ex1"}, steps)
	// 10×1 + 2×2 + 20×10 + 10×20 = 414.
	if err != nil || u.CostMicros != 414 || u.TokensIn != 30 || u.TokensOut != 12 || u.Model != "m:2" || u.Backend != "b" || u.ExecutionID != "ex1" {
		t.Errorf("SettleSteps = %+v, %v", u, err)
	}
}

func TestSummarize(t *testing.T) {
	ctx := context.Background()
	m, now := newMeter(t)
	for i, c := range []struct {
		key, model string
		in         int
		day        int
	}{{"key_a", "m:1", 10, 0}, {"key_a", "m:1", 20, 0}, {"key_b", "m:1", 5, 0}, {"key_a", "m:2", 7, 0}, {"key_a", "m:1", 100, 1}} {
		*now = at.AddDate(0, 0, c.day).Add(time.Duration(i) * time.Second)
		ticket, err := m.Admit(ctx, meter.Call{Tenant: "acme", Key: &access.Key{ID: c.key}, Model: c.model})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ticket.Settle(ctx, meter.Usage{TokensIn: c.in}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name   string
		q      meter.Query
		groups int
		in     int
	}{
		{"one day", meter.Query{From: at, To: at}, 3, 42},
		{"two days", meter.Query{From: at, To: at.AddDate(0, 0, 1)}, 4, 142},
		{"by key", meter.Query{From: at, To: at.AddDate(0, 0, 1), Key: "key_b"}, 1, 5},
		{"by model", meter.Query{From: at, To: at, Model: "m:1"}, 2, 35},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sum, err := m.Summarize(ctx, "acme", tt.q)
			if err != nil || len(sum.Groups) != tt.groups || sum.Total.TokensIn != tt.in {
				t.Errorf("summary %+v, %v; want %d groups, %d tokens in", sum, err, tt.groups, tt.in)
			}
		})
	}
	if _, err := m.Summarize(ctx, "acme", meter.Query{From: at, To: at.AddDate(1, 0, 0)}); core.ErrorCode(err) != core.EINVALID {
		t.Errorf("a year at once: %v, want EINVALID", err)
	}
	if sum, _ := m.Summarize(ctx, "globex", meter.Query{From: at, To: at}); sum.Total.Requests != 0 {
		t.Errorf("globex sees acme's usage: %+v", sum.Total)
	}
}
