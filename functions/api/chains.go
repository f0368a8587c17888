package api

import (
	"net/http"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

func (a *API) chainRoutes() {
	a.handle(http.MethodPost, "/taskchains", a.createChain)
	a.handle(http.MethodGet, "/taskchains", a.listChains)
	a.handle(http.MethodGet, "/taskchains/{id}", a.getChain)
	a.handle(http.MethodPut, "/taskchains/{id}", a.putChain)
	a.handle(http.MethodDelete, "/taskchains/{id}", a.deleteChain)
}

// decodeChain reads a chain body, JSON or YAML, in any generation of the
// chain language, and returns it in canonical form. Unknown fields, wrong
// types and bad durations are a 422 listing every problem; the decoder's
// warnings (fields the reference dropped long ago) are logged.
func decodeChain(r *http.Request) (*core.Chain, error) {
	tree, err := parseBody(r)
	if err != nil {
		return nil, err
	}
	c, warnings, err := core.DecodeChainValue(tree)
	logWarnings(r, warnings)
	return c, err
}

// logWarnings logs what the chain decoder accepted but ignored.
func logWarnings(r *http.Request, warnings []core.Problem) {
	for _, p := range warnings {
		webapi.Logger(r.Context()).Info("chain decoded with a warning", "problem", p.String())
	}
}

// createChain stores a new chain after validating it; an existing id is a
// 409 (the reference overwrote it silently).
func (a *API) createChain(w http.ResponseWriter, r *http.Request) {
	c, err := decodeChain(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := a.cfg.Catalog.CreateChain(r.Context(), webapi.Tenant(r.Context()), c); err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusCreated, c)
}

func (a *API) listChains(w http.ResponseWriter, r *http.Request) {
	q, err := listQuery(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	chains, next, err := a.cfg.Catalog.ListChains(r.Context(), webapi.Tenant(r.Context()), q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeList(w, chains, next)
}

func (a *API) getChain(w http.ResponseWriter, r *http.Request) {
	c, err := a.cfg.Catalog.GetChain(r.Context(), webapi.Tenant(r.Context()), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, c)
}

// putChain replaces a stored chain. The body's id may be left out; when
// given it must equal the path's.
func (a *API) putChain(w http.ResponseWriter, r *http.Request) {
	c, err := decodeChain(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	if err := a.cfg.Catalog.PutChain(r.Context(), webapi.Tenant(r.Context()), id, c); err != nil {
		writeError(w, r, err)
		return
	}
	if c.ID == "" {
		c.ID = id
	}
	webapi.WriteJSON(w, http.StatusOK, c)
}

func (a *API) deleteChain(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := a.cfg.Catalog.DeleteChain(r.Context(), webapi.Tenant(r.Context()), id); err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, "task chain "+id+" deleted")
}
