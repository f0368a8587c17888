package api

import (
	"net/http"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/core/meter"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// usageRoutes serve the usage ledger, the price table and the tenant's
// limits. They exist only on a server with a meter (Config.Meter).
func (a *API) usageRoutes() {
	if a.cfg.Meter == nil {
		return
	}
	a.handle(http.MethodGet, "/usage", a.usage)
	a.handle(http.MethodGet, "/prices", a.listPrices)
	a.handle(http.MethodGet, "/prices/{model...}", a.getPrice)
	a.handle(http.MethodPut, "/prices/{model...}", a.putPrice)
	a.handle(http.MethodDelete, "/prices/{model...}", a.deletePrice)
	a.handle(http.MethodGet, "/limits", a.getLimits)
	a.handle(http.MethodPut, "/limits", a.putLimits)
}

// usage sums the ledger by day, key and model: from and to are days
// (YYYY-MM-DD, UTC; default today), key and model filter, tenant (for an
// operator key) names another tenant.
func (a *API) usage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	today := time.Now().UTC()
	day := func(name string) (time.Time, error) {
		s := q.Get(name)
		if s == "" {
			return today, nil
		}
		t, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return t, badRequest(name, "%s %q: want a day as YYYY-MM-DD", name, s)
		}
		return t, nil
	}
	from, err := day("from")
	if err != nil {
		writeError(w, r, err)
		return
	}
	to, err := day("to")
	if err != nil {
		writeError(w, r, err)
		return
	}
	if q.Get("from") != "" && q.Get("to") == "" && from.After(today) {
		to = from
	}
	tenant, err := tenantParam(r, "usage")
	if err != nil {
		writeError(w, r, err)
		return
	}
	sum, err := a.cfg.Meter.Summarize(r.Context(), tenant, meter.Query{From: from, To: to, Key: q.Get("key"), Model: q.Get("model")})
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, sum)
}

func (a *API) listPrices(w http.ResponseWriter, r *http.Request) {
	q, err := listQuery(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	prices, next, err := a.cfg.Meter.ListPrices(r.Context(), webapi.Tenant(r.Context()), q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeList(w, prices, next)
}

func (a *API) getPrice(w http.ResponseWriter, r *http.Request) {
	p, err := a.cfg.Meter.GetPrice(r.Context(), webapi.Tenant(r.Context()), r.PathValue("model"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, p)
}

// priceBody is the body of PUT /prices/{model}: the model is the path's.
type priceBody struct {
	InputPerMTok       float64 `json:"inputPerMTok"`
	OutputPerMTok      float64 `json:"outputPerMTok"`
	CachedInputPerMTok float64 `json:"cachedInputPerMTok,omitempty"`
}

func (a *API) putPrice(w http.ResponseWriter, r *http.Request) {
	var b priceBody
	if err := decodeInto(r, &b, nil); err != nil {
		writeError(w, r, err)
		return
	}
	p, err := a.cfg.Meter.SetPrice(r.Context(), webapi.Tenant(r.Context()), meter.Price{Model: r.PathValue("model"),
		InputPerMTok: b.InputPerMTok, OutputPerMTok: b.OutputPerMTok, CachedInputPerMTok: b.CachedInputPerMTok})
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, p)
}

func (a *API) deletePrice(w http.ResponseWriter, r *http.Request) {
	if err := a.cfg.Meter.DeletePrice(r.Context(), webapi.Tenant(r.Context()), r.PathValue("model")); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// tenantParam is the tenant /usage and /limits read or set: the
// request's, or ?tenant= for an operator key.
func tenantParam(r *http.Request, what string) (string, error) {
	tenant, other := webapi.Tenant(r.Context()), r.URL.Query().Get("tenant")
	if other == "" || other == tenant {
		return tenant, nil
	}
	if k := webapi.Key(r.Context()); k == nil || !k.Has(access.ScopeOperator) {
		return "", core.Errorf(core.EFORBIDDEN, "tenant: only an operator key reads another tenant's %s", what)
	}
	return other, access.CheckTenant(other)
}

func (a *API) getLimits(w http.ResponseWriter, r *http.Request) {
	tenant, err := tenantParam(r, "limits")
	if err != nil {
		writeError(w, r, err)
		return
	}
	l, err := a.cfg.Meter.Limits(r.Context(), tenant)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if l == nil {
		l = &access.Limits{}
	}
	webapi.WriteJSON(w, http.StatusOK, l)
}

// putLimits sets a tenant's limits. On a server with keys only an
// operator key may: a tenant's admin must not raise its own budget.
func (a *API) putLimits(w http.ResponseWriter, r *http.Request) {
	tenant, err := tenantParam(r, "limits")
	if err != nil {
		writeError(w, r, err)
		return
	}
	if k := webapi.Key(r.Context()); k != nil && !k.Has(access.ScopeOperator) {
		writeError(w, r, core.Errorf(core.EFORBIDDEN, "only an operator key sets a tenant's limits"))
		return
	}
	var l access.Limits
	if err := decodeInto(r, &l, nil); err != nil {
		writeError(w, r, err)
		return
	}
	if err := a.cfg.Meter.SetLimits(r.Context(), tenant, &l); err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, l)
}
