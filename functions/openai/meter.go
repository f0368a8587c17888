package openai

import (
	"net/http"

	"github.com/stepwise-run/stepwise/core/meter"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// CostHeader is what a whole answer cost, in US dollars, at the tenant's
// price of its model.
const CostHeader = webapi.CostHeader

// admit admits a call of model with tokensIn in and at most maxOut out
// against the limits of the request's key and tenant (see meter.Admit).
// A refusal is answered (429 with Retry-After) and ok is false.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request, model string, tokensIn, maxOut int) (t *meter.Ticket, ok bool) {
	t, err := webapi.Admit(r, h.cfg.Meter, model, tokensIn, maxOut)
	if err != nil {
		writeError(w, r, err)
		return nil, false
	}
	return t, true
}
