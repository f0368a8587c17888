package meter_test

import (
	"context"
	"errors"
	"strconv"
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
	return meter.New(s, s, nil, func() time.Time { return now }), &now
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

// keySource is a KeySource of one key.
type keySource struct{ key *access.Key }

func (k keySource) Get(_ context.Context, tenant, id string) (*access.Key, error) {
	if k.key == nil || tenant != k.key.Tenant || id != k.key.ID {
		return nil, core.Errorf(core.ENOTFOUND, "no key %q", id)
	}
	return k.key, nil
}

func TestMeterStep(t *testing.T) {
	ctx := context.Background()
	now := at
	s := mem.New()
	// The key may spend $0.0005 a day; the tenant may use 1000 tokens a
	// minute.
	key := keyWith(access.Limits{Spend: []access.Spend{{Window: "day", USD: 0.0005}}})
	m := meter.New(s, s, keySource{key}, func() time.Time { return now })
	if _, err := m.SetPrice(ctx, "acme", meter.Price{Model: "m:1", InputPerMTok: 1, OutputPerMTok: 2}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetLimits(ctx, "acme", &access.Limits{TokensPerMinute: 1000}); err != nil {
		t.Fatal(err)
	}
	ex := &core.Execution{Tenant: "acme", ID: "ex1", Key: key.ID}
	step := &core.Step{Index: 3, StartedAt: at, Duration: 1500 * time.Millisecond, TokensIn: 100, TokensOut: 50, CachedTokens: 20, Model: "m:1", Backend: "b1"}
	if err := m.AdmitStep(ctx, ex); err != nil {
		t.Fatalf("AdmitStep before any use: %v", err)
	}
	// The same step metered twice (run again after a crash) counts once.
	for range 2 {
		if err := m.MeterStep(ctx, ex, step); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := m.Summarize(ctx, "acme", meter.Query{From: at, To: at})
	// 100×1 + 50×2 = 200 micros.
	if err != nil || sum.Total.Steps != 1 || sum.Total.Requests != 0 || sum.Total.TokensIn != 100 || sum.Total.TokensOut != 50 ||
		sum.Total.CachedTokens != 20 || sum.Total.CostMicros != 200 || len(sum.Groups) != 1 || sum.Groups[0].Key != key.ID {
		t.Fatalf("summary %+v, %v", sum, err)
	}
	for _, c := range []struct {
		id   string
		want int64
	}{
		{"spend/key:key_1/day/" + strconv.FormatInt(at.Truncate(24*time.Hour).Unix(), 10), 200},
		{"tokens/tenant/minute/" + strconv.FormatInt(at.Truncate(time.Minute).Unix(), 10), 150},
	} {
		if got, err := s.GetCounter(ctx, "acme", c.id); err != nil || got != c.want {
			t.Errorf("counter %s = %d, %v; want %d", c.id, got, err, c.want)
		}
	}
	// Two more steps put the key at $0.0006 of its $0.0005: the next step
	// is refused, until the next day.
	for i := range 2 {
		next := *step
		next.Index = 4 + i
		if err := m.MeterStep(ctx, ex, &next); err != nil {
			t.Fatal(err)
		}
	}
	err = m.AdmitStep(ctx, ex)
	var le *meter.LimitError
	if !errors.As(err, &le) || core.ErrorCode(err) != core.ELIMIT || le.RetryAfter != 13*time.Hour+30*time.Minute {
		t.Fatalf("AdmitStep over the key's budget: %v", err)
	}
	// An execution without a key is held to its tenant's limits alone.
	if err := m.AdmitStep(ctx, &core.Execution{Tenant: "acme", ID: "ex2"}); err != nil {
		t.Errorf("AdmitStep without a key: %v", err)
	}
	now = at.AddDate(0, 0, 1)
	if err := m.AdmitStep(ctx, ex); err != nil {
		t.Errorf("AdmitStep the next day: %v", err)
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
