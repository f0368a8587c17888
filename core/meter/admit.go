package meter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
)

// Call is a model call to admit.
type Call struct {
	Tenant string
	// Key is the caller's key; nil on a server without keys.
	Key   *access.Key
	Route string
	Model string
	// TokensIn is the input's size in tokens, estimated before the call.
	TokensIn int
	// MaxOut is the most the answer may use (0: DefaultMaxOutput; less
	// than 0: nothing, for an embedding).
	MaxOut int
}

// LimitError is a call refused by a budget or a rate limit: ELIMIT, with
// the time after which the window that refused it has moved on.
type LimitError struct {
	Err        error
	RetryAfter time.Duration
}

func (e *LimitError) Error() string { return e.Err.Error() }
func (e *LimitError) Unwrap() error { return e.Err }

// Ticket is an admitted call: what it reserved, to settle once it is done.
// Settle or Cancel it exactly once.
type Ticket struct {
	m     *Meter
	call  Call
	price *Price
	start time.Time
	holds []hold
}

// hold is one reservation on a counter, and what a refusal of it says.
type hold struct {
	add    core.CounterAdd
	what   string // "spend", "tokens" or "requests"
	window string
	prefix string
	end    time.Time // of the window
}

// Admit reserves c's worst case on every limit of its key and its tenant,
// and returns the ticket to settle. A limit it would pass refuses it with a
// *LimitError (ELIMIT) and reserves nothing.
func (m *Meter) Admit(ctx context.Context, c Call) (*Ticket, error) {
	now := m.now()
	t := &Ticket{m: m, call: c, start: now}
	if p, err := m.GetPrice(ctx, c.Tenant, c.Model); err == nil {
		t.price = &p
	} else if core.ErrorCode(err) != core.ENOTFOUND {
		return nil, err
	}
	maxOut := c.MaxOut
	switch {
	case maxOut == 0:
		maxOut = DefaultMaxOutput
	case maxOut < 0:
		maxOut = 0
	}
	worstTokens := int64(c.TokensIn + maxOut)
	worstCost := int64(t.price.cost(c.TokensIn, 0, maxOut))

	scopes, err := m.scopes(ctx, c.Tenant, c.Key)
	if err != nil {
		return nil, err
	}
	t.holds = holdsOf(scopes, now, worstCost, worstTokens, true)
	if len(t.holds) == 0 {
		return t, nil
	}
	// Every reservation in one write: all of them or, when a limit
	// refuses one, none.
	adds := make([]core.CounterAdd, len(t.holds))
	for i, h := range t.holds {
		adds[i] = h.add
	}
	if err := m.counters.AddCounters(ctx, c.Tenant, adds); err != nil {
		var cl *core.CounterLimit
		if !errors.As(err, &cl) {
			return nil, err
		}
		return nil, t.holds[cl.Index].refusal(now)
	}
	return t, nil
}

// scope is the limits of a key or of its tenant, and the name their
// counters go under.
type scope struct {
	name   string
	limits *access.Limits
}

// scopes are the limits that bound a call of key (nil for none) in
// tenant: the key's, then the tenant's.
func (m *Meter) scopes(ctx context.Context, tenant string, key *access.Key) ([]scope, error) {
	tenantLimits, err := m.Limits(ctx, tenant)
	if err != nil {
		return nil, err
	}
	var all []scope
	if key != nil && key.Limits != nil {
		all = append(all, scope{"key:" + key.ID, key.Limits})
	}
	if tenantLimits != nil {
		all = append(all, scope{"tenant", tenantLimits})
	}
	return all, nil
}

// holdsOf are the adds that count cost and tokens (and a request, when
// requests is set) on every counter of scopes whose window holds now.
func holdsOf(scopes []scope, now time.Time, cost, tokens int64, requests bool) []hold {
	var holds []hold
	minute := access.MustWindow("minute")
	add := func(w access.Window, prefix, what string, amount, limit int64) {
		start, end := w.Bounds(now)
		id := prefix + "/" + w.Name() + "/" + strconv.FormatInt(start.Unix(), 10)
		holds = append(holds, hold{add: core.CounterAdd{ID: id, Delta: amount, Limit: limit, Expires: end.Add(time.Hour)},
			what: what, window: w.Name(), prefix: prefix, end: end})
	}
	for _, s := range scopes {
		for _, sp := range s.limits.Spend {
			add(access.MustWindow(sp.Window), "spend/"+s.name, "spend", cost, int64(sp.USD*1e6))
		}
		if requests && s.limits.RequestsPerMinute > 0 {
			add(minute, "requests/"+s.name, "requests", 1, s.limits.RequestsPerMinute)
		}
		if s.limits.TokensPerMinute > 0 {
			add(minute, "tokens/"+s.name, "tokens", tokens, s.limits.TokensPerMinute)
		}
	}
	return holds
}

// refusal is the *LimitError of h, refused at now.
func (h hold) refusal(now time.Time) error {
	return &LimitError{
		Err:        core.Errorf(core.ELIMIT, "%s limit of %s per %s reached (%s)", h.what, limitText(h.what, h.add.Limit), h.window, h.prefix),
		RetryAfter: h.end.Sub(now),
	}
}

func limitText(what string, limit int64) string {
	if what == "spend" {
		return "$" + Micros(limit).String()
	}
	return strconv.FormatInt(limit, 10)
}

// release gives back every reservation but the requests counted, which a
// call uses whatever becomes of it.
func (t *Ticket) release(ctx context.Context) {
	var back []core.CounterAdd
	for _, h := range t.holds {
		if h.what != "requests" {
			back = append(back, core.CounterAdd{ID: h.add.ID, Delta: -h.add.Delta, Expires: h.add.Expires})
		}
	}
	if len(back) > 0 {
		_ = t.m.counters.AddCounters(ctx, t.call.Tenant, back)
	}
	t.holds = nil
}

// Cost is what u would cost at the call's model's price, for an answer
// that shows it before it is settled.
func (t *Ticket) Cost(u Usage) Micros { return t.price.cost(u.TokensIn, u.CachedTokens, u.TokensOut) }

// Cancel gives back what the ticket reserved, for a call that used no
// model: it failed before reaching one.
func (t *Ticket) Cancel(ctx context.Context) { t.release(context.WithoutCancel(ctx)) }

// Settle replaces the ticket's reservations by what the call used and
// writes its record to the ledger, with its cost, key, model, time and
// latency filled in. It is done even when ctx has ended: the call has
// happened. A request that ran steps of an execution settles with their
// execution's id and no tokens: the steps have records of their own
// (MeterStep).
func (t *Ticket) Settle(ctx context.Context, u Usage) (Usage, error) {
	ctx = context.WithoutCancel(ctx)
	now := t.m.now()
	u.Kind, u.Route = KindRequestUsage, t.call.Route
	if u.Model == "" {
		u.Model = t.call.Model
	}
	if t.call.Key != nil {
		u.Key = t.call.Key.ID
	}
	u.At = now.UTC()
	u.LatencyMS = now.Sub(t.start).Milliseconds()
	u.CostMicros = t.price.cost(u.TokensIn, u.CachedTokens, u.TokensOut)
	if u.Status == "" {
		u.Status = "ok"
	}
	first := t.settle(ctx, u)
	id, err := usageID(u.At)
	if err != nil {
		return u, err
	}
	u.ID = id
	if _, err := t.m.create(ctx, t.call.Tenant, u); err != nil && first == nil {
		first = err
	}
	return u, first
}

// settle replaces the reservations by what u used. Settling always
// applies: a call that used more than its reservation is counted all the
// same.
func (t *Ticket) settle(ctx context.Context, u Usage) error {
	var adds []core.CounterAdd
	for _, h := range t.holds {
		var delta int64
		switch h.what {
		case "spend":
			delta = int64(u.CostMicros) - h.add.Delta
		case "tokens":
			delta = int64(u.TokensIn+u.TokensOut) - h.add.Delta
		}
		if delta != 0 {
			adds = append(adds, core.CounterAdd{ID: h.add.ID, Delta: delta, Limit: core.NoLimit, Expires: h.add.Expires})
		}
	}
	t.holds = nil
	if len(adds) == 0 {
		return nil
	}
	return t.m.counters.AddCounters(ctx, t.call.Tenant, adds)
}

// usageID is a new ledger id: the day first, so that a day's records are
// listed by prefix, then the time and some randomness.
func usageID(at time.Time) (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", core.WrapError(core.EINTERNAL, err, "read randomness")
	}
	return fmt.Sprintf("%s/%019d-%s", at.Format(time.DateOnly), at.UnixNano(), hex.EncodeToString(b)), nil
}
