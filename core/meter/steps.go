package meter

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
)

// kindKeyLimits caches the limits of the key that started an execution.
const kindKeyLimits = "key-limits"

// AdmitStep refuses a step of ex that would call a model once a budget or
// a token rate of its key or its tenant is used up (core.StepMeter). It
// reserves nothing: a step's use is counted when it is done (MeterStep),
// so the executions running at once can pass a limit by at most the step
// each has in flight, where a request reserves its worst case before its
// call.
func (m *Meter) AdmitStep(ctx context.Context, ex *core.Execution) error {
	scopes, err := m.executionScopes(ctx, ex)
	if err != nil || len(scopes) == 0 {
		return err
	}
	now := m.now()
	for _, h := range holdsOf(scopes, now, 0, 0, false) {
		used, err := m.counters.GetCounter(ctx, ex.Tenant, h.add.ID)
		if err != nil {
			return err
		}
		if used >= h.add.Limit {
			return h.refusal(now)
		}
	}
	return nil
}

// MeterStep writes the ledger record of st, a step of ex that used a model,
// and counts its use on the budgets of ex's key and tenant
// (core.StepMeter). The record's id is the execution's and the step's
// index, under the day the step started: the same step run again (after a
// crash, or by a worker that took over) finds its record there and
// counts nothing more. The budgets are counted only by the call that
// wrote the record.
func (m *Meter) MeterStep(ctx context.Context, ex *core.Execution, st *core.Step) error {
	ctx = context.WithoutCancel(ctx)
	u := Usage{
		ID:   fmt.Sprintf("%s/x-%s-%06d", st.StartedAt.UTC().Format(time.DateOnly), ex.ID, st.Index),
		Kind: KindStepUsage, Key: ex.Key, Model: st.Model, Backend: st.Backend, ExecutionID: ex.ID, Step: st.Index,
		TokensIn: st.TokensIn, TokensOut: st.TokensOut, CachedTokens: st.CachedTokens, ReasoningTokens: st.ReasoningTokens,
		LatencyMS: st.Duration.Milliseconds(), Status: "ok", At: st.StartedAt.UTC(),
	}
	if st.Error != nil {
		u.Status = st.Error.Code
	}
	if p, err := m.GetPrice(ctx, ex.Tenant, st.Model); err == nil {
		u.CostMicros = p.cost(u.TokensIn, u.CachedTokens, u.TokensOut)
	} else if core.ErrorCode(err) != core.ENOTFOUND {
		return err
	}
	created, err := m.create(ctx, ex.Tenant, u)
	if err != nil || !created {
		return err
	}
	scopes, err := m.executionScopes(ctx, ex)
	if err != nil || len(scopes) == 0 {
		return err
	}
	holds := holdsOf(scopes, m.now(), int64(u.CostMicros), int64(u.TokensIn+u.TokensOut), false)
	adds := make([]core.CounterAdd, len(holds))
	for i, h := range holds {
		adds[i] = h.add
		adds[i].Limit = core.NoLimit // what is done is counted
	}
	return m.counters.AddCounters(ctx, ex.Tenant, adds)
}

// executionScopes are the limits that bound ex's steps: those of the key
// that started it, while the key exists, and its tenant's.
func (m *Meter) executionScopes(ctx context.Context, ex *core.Execution) ([]scope, error) {
	var key *access.Key
	if ex.Key != "" && m.keys != nil {
		var limits *access.Limits
		err := m.cached(cacheKey{ex.Tenant, kindKeyLimits, ex.Key}, &limits, func() ([]byte, error) {
			k, err := m.keys.Get(ctx, ex.Tenant, ex.Key)
			if err != nil {
				return nil, err
			}
			return json.Marshal(k.Limits)
		})
		switch {
		case err == nil:
			key = &access.Key{ID: ex.Key, Limits: limits}
		case core.ErrorCode(err) != core.ENOTFOUND:
			return nil, err
		}
	}
	return m.scopes(ctx, ex.Tenant, key)
}
