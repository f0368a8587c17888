package api

import (
	"context"
	"net/http"
	"time"

	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/fleet"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

func (a *API) backendRoutes() {
	a.handle(http.MethodPost, "/backends", a.createBackend)
	a.handle(http.MethodGet, "/backends", a.listBackends)
	a.handle(http.MethodGet, "/backends/{id}", a.getBackend)
	a.handle(http.MethodPut, "/backends/{id}", a.putBackend)
	a.handle(http.MethodDelete, "/backends/{id}", a.deleteBackend)
	a.handle(http.MethodGet, "/state", a.state)
}

// backendAliases maps the seed's bootstrap.sh spelling to the field name.
func backendAliases() map[string]string { return map[string]string{"baseURL": "baseUrl"} }

// stateView is one backend's runtime state, as GET /state shows it.
type stateView struct {
	ID           string              `json:"id"`
	Name         string              `json:"name"`
	Models       []string            `json:"models"`
	PulledModels []fleet.ModelStatus `json:"pulledModels"`
	Backend      catalog.Backend     `json:"backend"`
	Reachable    bool                `json:"reachable"`
	Error        string              `json:"error,omitempty"`
	Pull         *fleet.Progress     `json:"pull,omitempty"`
}

// stateWait bounds how long a listing route waits for backends that have
// not answered yet: an unreachable host that drops packets must not hold
// the request for the whole listing timeout.
const stateWait = 5 * time.Second

// liveStates returns the fleet's states by backend id.
func (a *API) liveStates(ctx context.Context) map[string]fleet.BackendState {
	ctx, cancel := context.WithTimeout(ctx, stateWait)
	defer cancel()
	states := a.fleet(ctx).States(ctx)
	out := make(map[string]fleet.BackendState, len(states))
	for _, s := range states {
		out[s.ID] = s
	}
	return out
}

// withState is a backend as the catalog has it, with what the fleet knows
// of it now (nothing yet for one the fleet has not loaded), lists never
// null.
func withState(b catalog.Backend, s fleet.BackendState) fleet.BackendState {
	s.Backend = b
	if s.Models == nil {
		s.Models = []string{}
	}
	if s.PulledModels == nil {
		s.PulledModels = []fleet.ModelStatus{}
	}
	return s
}

// createBackend registers a backend; its id is always made by the server.
func (a *API) createBackend(w http.ResponseWriter, r *http.Request) {
	var b catalog.Backend
	if err := decodeInto(r, &b, backendAliases()); err != nil {
		writeError(w, r, err)
		return
	}
	created, err := a.cfg.Catalog.CreateBackend(r.Context(), webapi.Tenant(r.Context()), b)
	if err != nil {
		writeError(w, r, err)
		return
	}
	a.refresh(r.Context())
	webapi.WriteJSON(w, http.StatusCreated, created)
}

func (a *API) listBackends(w http.ResponseWriter, r *http.Request) {
	q, err := listQuery(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	backends, next, err := a.cfg.Catalog.ListBackends(r.Context(), webapi.Tenant(r.Context()), q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	live := a.liveStates(r.Context())
	views := make([]fleet.BackendState, len(backends))
	for i, b := range backends {
		views[i] = withState(b, live[b.ID])
	}
	writeList(w, views, next)
}

func (a *API) getBackend(w http.ResponseWriter, r *http.Request) {
	b, err := a.cfg.Catalog.GetBackend(r.Context(), webapi.Tenant(r.Context()), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, withState(b, a.liveStates(r.Context())[b.ID]))
}

// putBackend replaces a backend's name, URL and type; the body's id may be
// left out and must equal the path's when given.
func (a *API) putBackend(w http.ResponseWriter, r *http.Request) {
	var b catalog.Backend
	if err := decodeInto(r, &b, backendAliases()); err != nil {
		writeError(w, r, err)
		return
	}
	updated, err := a.cfg.Catalog.UpdateBackend(r.Context(), webapi.Tenant(r.Context()), r.PathValue("id"), b)
	if err != nil {
		writeError(w, r, err)
		return
	}
	a.refresh(r.Context())
	webapi.WriteJSON(w, http.StatusOK, updated)
}

func (a *API) deleteBackend(w http.ResponseWriter, r *http.Request) {
	if err := a.cfg.Catalog.DeleteBackend(r.Context(), webapi.Tenant(r.Context()), r.PathValue("id")); err != nil {
		writeError(w, r, err)
		return
	}
	a.refresh(r.Context())
	webapi.WriteJSON(w, http.StatusOK, "backend removed")
}

// state lists every backend's runtime state, oldest backend first, as
// the fleet has it (it reloads the catalog on every write).
func (a *API) state(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), stateWait)
	defer cancel()
	states := a.fleet(ctx).States(ctx)
	out := make([]stateView, 0, len(states))
	for _, st := range states {
		v := withState(st.Backend, st)
		out = append(out, stateView{ID: v.ID, Name: v.Name, Models: v.Models, PulledModels: v.PulledModels, Backend: v.Backend, Reachable: v.Reachable, Error: v.Error, Pull: v.Pull})
	}
	webapi.WriteJSON(w, http.StatusOK, out)
}
