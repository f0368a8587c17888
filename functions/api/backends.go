package api

import (
	"context"
	"net/http"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/fleet"
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

// backendView is a backend with what the fleet knows of it now.
type backendView struct {
	catalog.Backend
	// Models are the models it serves by declaration.
	Models []string `json:"models"`
	// PulledModels are the models it lists now.
	PulledModels []fleet.ModelStatus `json:"pulledModels"`
	// Reachable tells whether its model list could be read just now.
	Reachable bool `json:"reachable"`
	// Error is its last listing or download error.
	Error string `json:"error,omitempty"`
	// Pull is the last progress of a download running on it.
	Pull *fleet.Progress `json:"pull,omitempty"`
}

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
	states := a.cfg.Fleet.States(ctx)
	out := make(map[string]fleet.BackendState, len(states))
	for _, s := range states {
		out[s.ID] = s
	}
	return out
}

func withState(b catalog.Backend, s fleet.BackendState) backendView {
	v := backendView{Backend: b, Models: s.Models, PulledModels: s.PulledModels, Reachable: s.Reachable, Error: s.Error, Pull: s.Pull}
	if v.Models == nil {
		v.Models = []string{}
	}
	if v.PulledModels == nil {
		v.PulledModels = []fleet.ModelStatus{}
	}
	return v
}

// createBackend registers a backend; its id is always made by the server.
func (a *API) createBackend(w http.ResponseWriter, r *http.Request) {
	var b catalog.Backend
	if err := decodeInto(r, &b, backendAliases()); err != nil {
		writeError(w, r, err)
		return
	}
	created, err := a.cfg.Catalog.CreateBackend(r.Context(), Tenant(r.Context()), b)
	if err != nil {
		writeError(w, r, err)
		return
	}
	a.refresh(r.Context())
	writeJSON(w, http.StatusCreated, created)
}

func (a *API) listBackends(w http.ResponseWriter, r *http.Request) {
	q, err := listQuery(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	backends, next, err := a.cfg.Catalog.ListBackends(r.Context(), Tenant(r.Context()), q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	live := a.liveStates(r.Context())
	views := make([]backendView, len(backends))
	for i, b := range backends {
		views[i] = withState(b, live[b.ID])
	}
	writeList(w, views, next)
}

func (a *API) getBackend(w http.ResponseWriter, r *http.Request) {
	b, err := a.cfg.Catalog.GetBackend(r.Context(), Tenant(r.Context()), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, withState(b, a.liveStates(r.Context())[b.ID]))
}

// putBackend replaces a backend's name, URL and type; the body's id may be
// left out and must equal the path's when given.
func (a *API) putBackend(w http.ResponseWriter, r *http.Request) {
	var b catalog.Backend
	if err := decodeInto(r, &b, backendAliases()); err != nil {
		writeError(w, r, err)
		return
	}
	updated, err := a.cfg.Catalog.UpdateBackend(r.Context(), Tenant(r.Context()), r.PathValue("id"), b)
	if err != nil {
		writeError(w, r, err)
		return
	}
	a.refresh(r.Context())
	writeJSON(w, http.StatusOK, updated)
}

func (a *API) deleteBackend(w http.ResponseWriter, r *http.Request) {
	if err := a.cfg.Catalog.DeleteBackend(r.Context(), Tenant(r.Context()), r.PathValue("id")); err != nil {
		writeError(w, r, err)
		return
	}
	a.refresh(r.Context())
	writeJSON(w, http.StatusOK, "backend removed")
}

// state lists every backend's runtime state, oldest backend first.
func (a *API) state(w http.ResponseWriter, r *http.Request) {
	tenant := Tenant(r.Context())
	var all []catalog.Backend
	q := core.ListQuery{Limit: core.MaxPageSize}
	for {
		page, next, err := a.cfg.Catalog.ListBackends(r.Context(), tenant, q)
		if err != nil {
			writeError(w, r, err)
			return
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		q.Cursor = next
	}
	live := a.liveStates(r.Context())
	out := make([]stateView, 0, len(all))
	for i := len(all) - 1; i >= 0; i-- {
		b := all[i]
		v := withState(b, live[b.ID])
		out = append(out, stateView{ID: b.ID, Name: b.Name, Models: v.Models, PulledModels: v.PulledModels, Backend: b, Reachable: v.Reachable, Error: v.Error, Pull: v.Pull})
	}
	writeJSON(w, http.StatusOK, out)
}
