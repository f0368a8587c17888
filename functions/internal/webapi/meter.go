package webapi

import (
	"net/http"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/meter"
)

// CostHeader carries what a whole answer cost, in US dollars, at the
// tenant's price of its model.
const CostHeader = "X-Stepwise-Cost"

// Admit admits a call of model with tokensIn in and at most maxOut out
// against the limits of the request's key and tenant (see meter.Admit).
// Without a meter every call is admitted, with a nil ticket, which the
// other helpers take.
func Admit(r *http.Request, m *meter.Meter, model string, tokensIn, maxOut int) (*meter.Ticket, error) {
	if m == nil {
		return nil, nil
	}
	ctx := r.Context()
	return m.Admit(ctx, meter.Call{Tenant: Tenant(ctx), Key: Key(ctx), Route: r.URL.Path, Model: model, TokensIn: tokensIn, MaxOut: maxOut})
}

// UsageOfCall is the ledger's view of a model call's usage and outcome.
func UsageOfCall(u core.Usage, err error) meter.Usage {
	out := meter.Usage{TokensIn: u.TokensIn, TokensOut: u.TokensOut, CachedTokens: u.CachedIn, ReasoningTokens: u.Reasoning,
		Model: u.Model, Backend: u.Backend}
	if err != nil {
		out.Status = core.ErrorCode(err)
	}
	return out
}

// ShowCost puts what u costs on a whole answer, before it is written.
func ShowCost(w http.ResponseWriter, t *meter.Ticket, u meter.Usage) {
	if t != nil {
		w.Header().Set(CostHeader, t.Cost(u).String())
	}
}

// Settle settles t with u after the answer is written, logging a failure:
// the call has happened, and its answer has gone. A request that ran an
// execution settles with its id alone (see meter.Ticket.Settle). The answer is flushed
// first, so that the client does not wait for the ledger.
func Settle(w http.ResponseWriter, r *http.Request, t *meter.Ticket, u meter.Usage) {
	if t == nil {
		return
	}
	_ = http.NewResponseController(w).Flush()
	if _, err := t.Settle(r.Context(), u); err != nil {
		Logger(r.Context()).Error("record the usage of a call", "error", err.Error())
	}
}

// Cancel gives back t's reservations for a call that reached no model.
func Cancel(r *http.Request, t *meter.Ticket) {
	if t != nil {
		t.Cancel(r.Context())
	}
}

// EstimateTokens approximates the tokens of a conversation before the
// call: a token per four bytes of text, and four per message for its
// framing. Images count as nothing here; the settled usage has them.
func EstimateTokens(msgs []core.Message) int {
	n := 0
	for _, m := range msgs {
		n += 4 + len(m.Content)/4
		for _, p := range m.Parts {
			n += len(p.Text) / 4
		}
		for _, tc := range m.ToolCalls {
			n += (len(tc.Function.Name) + len(tc.Function.Arguments)) / 4
		}
	}
	return n
}
