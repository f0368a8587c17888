package openai

import (
	"net/http"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/meter"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// Headers of a metered answer.
const (
	// CostHeader is what a whole answer cost, in US dollars, at the
	// tenant's price of its model.
	CostHeader = "X-Stepwise-Cost"
)

// admit admits a call of model with tokensIn in and at most maxOut out
// against the limits of the request's key and tenant (see meter.Admit).
// A refusal is answered (429 with Retry-After) and ok is false. Without a
// meter every call is admitted, with a nil ticket.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request, model string, tokensIn, maxOut int) (t *meter.Ticket, ok bool) {
	if h.cfg.Meter == nil {
		return nil, true
	}
	ctx := r.Context()
	t, err := h.cfg.Meter.Admit(ctx, meter.Call{Tenant: webapi.Tenant(ctx), Key: webapi.Key(ctx), Route: r.URL.Path,
		Model: model, TokensIn: tokensIn, MaxOut: maxOut})
	if err != nil {
		writeError(w, r, err)
		return nil, false
	}
	return t, true
}

// usageOfCall is the ledger's view of a model call's usage and outcome.
func usageOfCall(u core.Usage, err error) meter.Usage {
	out := meter.Usage{TokensIn: u.TokensIn, TokensOut: u.TokensOut, Model: u.Model, Backend: u.Backend}
	if err != nil {
		out.Status = core.ErrorCode(err)
	}
	return out
}

// showCost puts what u costs on a whole answer, before it is written.
func showCost(w http.ResponseWriter, t *meter.Ticket, u meter.Usage) {
	if t != nil {
		w.Header().Set(CostHeader, t.Cost(u).String())
	}
}

// settle settles t with u after the answer is written, logging a failure:
// the call has happened, and its answer has gone. The answer is flushed
// first, so that the client does not wait for the ledger.
func settle(w http.ResponseWriter, r *http.Request, t *meter.Ticket, u meter.Usage) {
	if t == nil {
		return
	}
	_ = http.NewResponseController(w).Flush()
	if _, err := t.Settle(r.Context(), u); err != nil {
		webapi.Logger(r.Context()).Error("record the usage of a call", "error", err.Error())
	}
}

// estimateTokens approximates the tokens of a conversation before the
// call: a token per four bytes of text, and four per message for its
// framing. Images count as nothing here; the settled usage has them.
func estimateTokens(msgs []core.Message) int {
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

// settleSteps settles t with the steps a request ran of execution id,
// after the answer is flushed.
func settleSteps(w http.ResponseWriter, r *http.Request, t *meter.Ticket, steps []*core.Step, id string) {
	if t == nil {
		return
	}
	_ = http.NewResponseController(w).Flush()
	if _, err := t.SettleSteps(r.Context(), meter.Usage{ExecutionID: id}, steps); err != nil {
		webapi.Logger(r.Context()).Error("record the usage of a call", "error", err.Error())
	}
}

// cancel gives back t's reservations for a call that reached no model.
func cancel(r *http.Request, t *meter.Ticket) {
	if t != nil {
		t.Cancel(r.Context())
	}
}
