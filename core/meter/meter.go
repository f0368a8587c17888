// Package meter counts what model calls cost and holds them to budgets:
// the price table, the usage ledger, and the admission of a call against
// the limits of its key and its tenant.
//
// A call is admitted by reserving its worst case (the most tokens it may
// use, and what they would cost) on every counter that bounds it, each with
// an atomic add under the limit (core.Counters), and settled after it with
// what it really used: so callers racing for the end of a budget cannot
// together pass it. The ledger keeps one record per call, written once
// under an id of its own, so a retried write never counts twice.
package meter

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
)

// Record kinds.
const (
	KindPrice  = "price"
	KindUsage  = "usage"
	KindLimits = "limits"
)

// DefaultMaxOutput is the output a call that sets no max_tokens is
// reserved for.
const DefaultMaxOutput = 4096

// Price is what a model costs, in US dollars per million tokens.
type Price struct {
	Model              string    `json:"model"`
	InputPerMTok       float64   `json:"inputPerMTok"`
	OutputPerMTok      float64   `json:"outputPerMTok"`
	CachedInputPerMTok float64   `json:"cachedInputPerMTok,omitempty"`
	UpdatedAt          time.Time `json:"updatedAt"`
}

// Micros is an amount in millionths of a US dollar: a price per million
// tokens is the cost of one token in micros, so costs add up exactly.
type Micros int64

// USD is m in dollars.
func (m Micros) USD() float64 { return float64(m) / 1e6 }

// String is m in dollars with six decimals.
func (m Micros) String() string { return fmt.Sprintf("%d.%06d", m/1e6, m%1e6) }

// cost is what tokens cost at p (cached input tokens at the cached price
// when one is set).
func (p *Price) cost(in, cached, out int) Micros {
	if p == nil {
		return 0
	}
	cachedPrice := p.CachedInputPerMTok
	if cachedPrice == 0 {
		cachedPrice = p.InputPerMTok
	}
	c := float64(in-cached)*p.InputPerMTok + float64(cached)*cachedPrice + float64(out)*p.OutputPerMTok
	return Micros(math.Ceil(c))
}

// Kinds of ledger records.
const (
	// KindRequestUsage: a request of the API. One that ran an execution
	// names it; its steps have records of their own.
	KindRequestUsage = "request"
	// KindStepUsage: a step of an execution that used a model, wherever
	// it ran (in a request, in a worker, after a resume).
	KindStepUsage = "step"
)

// Usage is one record of the ledger: a request or a step, what it used and
// what it cost.
type Usage struct {
	ID          string `json:"id"`
	Kind        string `json:"kind"` // KindRequestUsage or KindStepUsage
	Route       string `json:"route,omitempty"`
	Key         string `json:"key,omitempty"`
	Model       string `json:"model,omitempty"`
	Backend     string `json:"backend,omitempty"`
	ExecutionID string `json:"executionId,omitempty"`
	// Step is a step record's index in its execution.
	Step      int `json:"step,omitempty"`
	TokensIn  int `json:"tokensIn"`
	TokensOut int `json:"tokensOut"`
	// CachedTokens and ReasoningTokens are what the backend reported of
	// them; 0 when it reports none.
	CachedTokens    int       `json:"cachedTokens,omitempty"`
	ReasoningTokens int       `json:"reasoningTokens,omitempty"`
	LatencyMS       int64     `json:"latencyMs"`
	CostMicros      Micros    `json:"costMicros"`
	Status          string    `json:"status"` // "ok", or the error code
	At              time.Time `json:"at"`
}

// CacheTTL is how long a Meter trusts a price or a tenant's limits it has
// read: a change made through another process applies within it, one made
// through this Meter at once.
const CacheTTL = 5 * time.Second

// maxCached bounds the cached prices and limits, found or not.
const maxCached = 10_000

// Meter keeps prices, limits and the ledger in a RecordStore and the
// budgets' counters in Counters. It is safe for concurrent use.
type Meter struct {
	records  core.RecordStore
	counters core.Counters
	keys     KeySource
	now      func() time.Time

	mu    sync.Mutex
	cache map[cacheKey]cachedRecord
}

type cacheKey struct{ tenant, kind, id string }

// cachedRecord is a record's body as read, nil when there was none.
type cachedRecord struct {
	body    []byte
	fetched time.Time
}

// KeySource finds an API key by its id: the limits of the key that
// started an execution bound its steps. *access.Keys is one.
type KeySource interface {
	Get(ctx context.Context, tenant, id string) (*access.Key, error)
}

// New returns a Meter. keys may be nil on a server without keys; now nil
// means time.Now.
func New(records core.RecordStore, counters core.Counters, keys KeySource, now func() time.Time) *Meter {
	if now == nil {
		now = time.Now
	}
	return &Meter{records: records, counters: counters, keys: keys, now: now, cache: map[cacheKey]cachedRecord{}}
}

// SetPrice stores the price of p.Model for tenant.
func (m *Meter) SetPrice(ctx context.Context, tenant string, p Price) (Price, error) {
	if strings.TrimSpace(p.Model) == "" {
		return p, core.Errorf(core.EINVALID, "model: empty")
	}
	for name, v := range map[string]float64{"inputPerMTok": p.InputPerMTok, "outputPerMTok": p.OutputPerMTok, "cachedInputPerMTok": p.CachedInputPerMTok} {
		if v < 0 || v > 1e6 || math.IsNaN(v) {
			return p, core.Errorf(core.EINVALID, "%s: want 0 to 1e6 dollars per million tokens", name)
		}
	}
	p.UpdatedAt = m.now().UTC()
	return p, m.put(ctx, tenant, KindPrice, p.Model, p)
}

// GetPrice returns tenant's price of model; ENOTFOUND if it has none.
func (m *Meter) GetPrice(ctx context.Context, tenant, model string) (Price, error) {
	var p Price
	err := m.get(ctx, tenant, KindPrice, model, &p)
	return p, err
}

// DeletePrice forgets tenant's price of model.
func (m *Meter) DeletePrice(ctx context.Context, tenant, model string) error {
	defer m.forget(tenant, KindPrice, model)
	err := m.records.DeleteRecord(ctx, tenant, KindPrice, model)
	if core.ErrorCode(err) == core.ENOTFOUND {
		return core.Errorf(core.ENOTFOUND, "no price of model %q", model)
	}
	return err
}

// ListPrices returns tenant's price table.
func (m *Meter) ListPrices(ctx context.Context, tenant string, q core.ListQuery) ([]Price, string, error) {
	page, err := m.records.ListRecords(ctx, tenant, KindPrice, q)
	if err != nil {
		return nil, "", err
	}
	out := make([]Price, 0, len(page.Records))
	for _, r := range page.Records {
		var p Price
		if err := json.Unmarshal(r.Body, &p); err != nil {
			return nil, "", core.WrapError(core.EINTERNAL, err, "decode price %s", r.ID)
		}
		out = append(out, p)
	}
	return out, page.Next, nil
}

// SetLimits stores tenant's own limits (nil: none).
func (m *Meter) SetLimits(ctx context.Context, tenant string, l *access.Limits) error {
	defer m.forget(tenant, KindLimits, "tenant")
	if l == nil {
		err := m.records.DeleteRecord(ctx, tenant, KindLimits, "tenant")
		if core.ErrorCode(err) == core.ENOTFOUND {
			return nil
		}
		return err
	}
	if err := l.Check("limits"); err != nil {
		return err
	}
	return m.put(ctx, tenant, KindLimits, "tenant", l)
}

// Limits returns tenant's own limits, nil when it has none.
func (m *Meter) Limits(ctx context.Context, tenant string) (*access.Limits, error) {
	var l access.Limits
	err := m.get(ctx, tenant, KindLimits, "tenant", &l)
	if core.ErrorCode(err) == core.ENOTFOUND {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &l, nil
}

// put creates or replaces one record.
func (m *Meter) put(ctx context.Context, tenant, kind, id string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return core.WrapError(core.EINTERNAL, err, "encode %s %s", kind, id)
	}
	defer m.forget(tenant, kind, id)
	now := m.now().UTC()
	for attempt := 0; ; attempt++ {
		old, err := m.records.GetRecord(ctx, tenant, kind, id)
		switch {
		case core.ErrorCode(err) == core.ENOTFOUND:
			err = m.records.CreateRecord(ctx, tenant, &core.Record{Kind: kind, ID: id, Body: body, CreatedAt: now, UpdatedAt: now})
		case err == nil:
			old.Body, old.UpdatedAt = body, now
			err = m.records.UpdateRecord(ctx, tenant, old)
		}
		if core.ErrorCode(err) == core.ECONFLICT && attempt < 5 {
			continue
		}
		return err
	}
}

// get reads one record into v, from the cache while it is fresh.
func (m *Meter) get(ctx context.Context, tenant, kind, id string, v any) error {
	return m.cached(cacheKey{tenant, kind, id}, v, func() ([]byte, error) {
		r, err := m.records.GetRecord(ctx, tenant, kind, id)
		if err != nil {
			return nil, err
		}
		return r.Body, nil
	})
}

// cached decodes into v what load reads (ENOTFOUND: nothing), from the
// cache while it is fresh.
func (m *Meter) cached(k cacheKey, v any, load func() ([]byte, error)) error {
	now := m.now()
	m.mu.Lock()
	c, ok := m.cache[k]
	m.mu.Unlock()
	if !ok || now.Sub(c.fetched) >= CacheTTL {
		body, err := load()
		switch {
		case core.ErrorCode(err) == core.ENOTFOUND:
			c = cachedRecord{fetched: now}
		case err != nil:
			return err
		default:
			c = cachedRecord{body: body, fetched: now}
		}
		m.mu.Lock()
		if len(m.cache) >= maxCached {
			// Model names come from requests: made-up ones must not grow
			// the cache without end.
			clear(m.cache)
		}
		m.cache[k] = c
		m.mu.Unlock()
	}
	if c.body == nil {
		return core.Errorf(core.ENOTFOUND, "no %s %q", k.kind, k.id)
	}
	if err := json.Unmarshal(c.body, v); err != nil {
		return core.WrapError(core.EINTERNAL, err, "decode %s %s", k.kind, k.id)
	}
	return nil
}

// forget drops a cached record this Meter has changed.
func (m *Meter) forget(tenant, kind, id string) {
	m.mu.Lock()
	delete(m.cache, cacheKey{tenant, kind, id})
	m.mu.Unlock()
}
