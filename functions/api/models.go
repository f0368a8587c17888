package api

import (
	"net/http"
	"strconv"

	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// Model ids are model names, which hold ':' and may hold '/'
// ("library/llama3:8b"): the routes take the rest of the path as the id.
func (a *API) modelRoutes() {
	a.handle(http.MethodPost, "/models", a.createModel)
	a.handle(http.MethodGet, "/models", a.listModels)
	a.handle(http.MethodGet, "/models/{id...}", a.getModel)
	a.handle(http.MethodPut, "/models/{id...}", a.putModel)
	a.handle(http.MethodDelete, "/models/{id...}", a.deleteModel)
}

// createModel declares a model; its id is its name.
func (a *API) createModel(w http.ResponseWriter, r *http.Request) {
	var m catalog.Model
	if err := decodeInto(r, &m, nil); err != nil {
		writeError(w, r, err)
		return
	}
	created, err := a.cfg.Catalog.CreateModel(r.Context(), webapi.Tenant(r.Context()), m)
	if err != nil {
		// The reference answers a declaration it refuses 400.
		writeError(w, r, asBadRequest(err))
		return
	}
	a.refresh(r.Context())
	webapi.WriteJSON(w, http.StatusCreated, created)
}

func (a *API) listModels(w http.ResponseWriter, r *http.Request) {
	q, err := listQuery(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	models, next, err := a.cfg.Catalog.ListModels(r.Context(), webapi.Tenant(r.Context()), q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeList(w, models, next)
}

func (a *API) getModel(w http.ResponseWriter, r *http.Request) {
	m, err := a.cfg.Catalog.GetModel(r.Context(), webapi.Tenant(r.Context()), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, m)
}

// putModel replaces a model's context length and capabilities; it cannot
// rename the model.
func (a *API) putModel(w http.ResponseWriter, r *http.Request) {
	var m catalog.Model
	if err := decodeInto(r, &m, nil); err != nil {
		writeError(w, r, err)
		return
	}
	updated, err := a.cfg.Catalog.UpdateModel(r.Context(), webapi.Tenant(r.Context()), r.PathValue("id"), m)
	if err != nil {
		writeError(w, r, err)
		return
	}
	a.refresh(r.Context())
	webapi.WriteJSON(w, http.StatusOK, updated)
}

// deleteModel removes a model's declaration; with ?purge=true it also
// drops its queued downloads and cancels the running ones. Pulled copies
// stay on the backends: stepwise never deletes a model from a backend.
func (a *API) deleteModel(w http.ResponseWriter, r *http.Request) {
	purge := false
	if s := r.URL.Query().Get("purge"); s != "" {
		var err error
		if purge, err = strconv.ParseBool(s); err != nil {
			writeError(w, r, badRequest("purge", "purge %q: want true or false", s))
			return
		}
	}
	id := r.PathValue("id")
	if err := a.cfg.Catalog.DeleteModel(r.Context(), webapi.Tenant(r.Context()), id); err != nil {
		writeError(w, r, err)
		return
	}
	if purge {
		a.fleet(r.Context()).RemoveQueued(id)
		a.fleet(r.Context()).Cancel("", id)
	}
	a.refresh(r.Context())
	webapi.WriteJSON(w, http.StatusOK, "model removed")
}
