package api

import (
	"net/http"

	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

func (a *API) groupRoutes() {
	a.handle(http.MethodPost, "/groups", a.createGroup)
	a.handle(http.MethodGet, "/groups", a.listGroups)
	a.handle(http.MethodGet, "/groups/{id}", a.getGroup)
	a.handle(http.MethodPut, "/groups/{id}", a.putGroup)
	a.handle(http.MethodDelete, "/groups/{id}", a.deleteGroup)
	a.handle(http.MethodGet, "/group-by-name/{name}", a.groupByName)
	a.handle(http.MethodGet, "/group-by-purpose/{purpose}", a.groupsByPurpose)
}

// affinityRoutes assign backends and models to groups. A model id holding
// '/' is the path's tail where it comes last, and must be sent as %2F
// where a segment follows it (GET /model-affinity/{modelID}/groups).
func (a *API) affinityRoutes() {
	a.handle(http.MethodPost, "/backend-affinity/{groupID}/backends/{backendID}", a.assignBackend)
	a.handle(http.MethodDelete, "/backend-affinity/{groupID}/backends/{backendID}", a.unassignBackend)
	a.handle(http.MethodGet, "/backend-affinity/{groupID}/backends", a.groupBackends)
	a.handle(http.MethodGet, "/backend-affinity/{backendID}/groups", a.backendGroups)
	a.handle(http.MethodPost, "/model-affinity/{groupID}/models/{modelID...}", a.assignModel)
	a.handle(http.MethodDelete, "/model-affinity/{groupID}/models/{modelID...}", a.unassignModel)
	a.handle(http.MethodGet, "/model-affinity/{groupID}/models", a.groupModels)
	a.handle(http.MethodGet, "/model-affinity/{modelID}/groups", a.modelGroups)
}

func (a *API) createGroup(w http.ResponseWriter, r *http.Request) {
	var g catalog.Group
	if err := decodeInto(r, &g, nil); err != nil {
		writeError(w, r, err)
		return
	}
	created, err := a.cfg.Catalog.CreateGroup(r.Context(), webapi.Tenant(r.Context()), g)
	if err != nil {
		writeError(w, r, err)
		return
	}
	a.refresh(r.Context())
	webapi.WriteJSON(w, http.StatusCreated, created)
}

// listGroups answers every group, unpaged, as the reference did.
func (a *API) listGroups(w http.ResponseWriter, r *http.Request) {
	groups, err := a.cfg.Catalog.ListGroups(r.Context(), webapi.Tenant(r.Context()))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeList(w, groups, "")
}

func (a *API) getGroup(w http.ResponseWriter, r *http.Request) {
	g, err := a.cfg.Catalog.GetGroup(r.Context(), webapi.Tenant(r.Context()), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, g)
}

func (a *API) putGroup(w http.ResponseWriter, r *http.Request) {
	var g catalog.Group
	if err := decodeInto(r, &g, nil); err != nil {
		writeError(w, r, err)
		return
	}
	updated, err := a.cfg.Catalog.UpdateGroup(r.Context(), webapi.Tenant(r.Context()), r.PathValue("id"), g)
	if err != nil {
		writeError(w, r, err)
		return
	}
	a.refresh(r.Context())
	webapi.WriteJSON(w, http.StatusOK, updated)
}

func (a *API) deleteGroup(w http.ResponseWriter, r *http.Request) {
	if err := a.cfg.Catalog.DeleteGroup(r.Context(), webapi.Tenant(r.Context()), r.PathValue("id")); err != nil {
		writeError(w, r, err)
		return
	}
	a.refresh(r.Context())
	webapi.WriteJSON(w, http.StatusOK, "deleted")
}

func (a *API) groupByName(w http.ResponseWriter, r *http.Request) {
	g, err := a.cfg.Catalog.GetGroupByName(r.Context(), webapi.Tenant(r.Context()), r.PathValue("name"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, g)
}

func (a *API) groupsByPurpose(w http.ResponseWriter, r *http.Request) {
	q, err := listQuery(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	groups, next, err := a.cfg.Catalog.ListGroupsByPurpose(r.Context(), webapi.Tenant(r.Context()), r.PathValue("purpose"), q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeList(w, groups, next)
}

// assignBackend answers 201 like the reference; assigning twice is not an
// error.
func (a *API) assignBackend(w http.ResponseWriter, r *http.Request) {
	if err := a.cfg.Catalog.AssignBackend(r.Context(), webapi.Tenant(r.Context()), r.PathValue("groupID"), r.PathValue("backendID")); err != nil {
		writeError(w, r, err)
		return
	}
	a.refresh(r.Context())
	webapi.WriteJSON(w, http.StatusCreated, "backend assigned")
}

func (a *API) unassignBackend(w http.ResponseWriter, r *http.Request) {
	if err := a.cfg.Catalog.UnassignBackend(r.Context(), webapi.Tenant(r.Context()), r.PathValue("groupID"), r.PathValue("backendID")); err != nil {
		writeError(w, r, err)
		return
	}
	a.refresh(r.Context())
	webapi.WriteJSON(w, http.StatusOK, "backend removed")
}

func (a *API) groupBackends(w http.ResponseWriter, r *http.Request) {
	backends, err := a.cfg.Catalog.ListGroupBackends(r.Context(), webapi.Tenant(r.Context()), r.PathValue("groupID"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeList(w, backends, "")
}

func (a *API) backendGroups(w http.ResponseWriter, r *http.Request) {
	groups, err := a.cfg.Catalog.ListBackendGroups(r.Context(), webapi.Tenant(r.Context()), r.PathValue("backendID"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeList(w, groups, "")
}

// assignModel answers 200, unlike assignBackend, as the reference did.
func (a *API) assignModel(w http.ResponseWriter, r *http.Request) {
	if err := a.cfg.Catalog.AssignModel(r.Context(), webapi.Tenant(r.Context()), r.PathValue("groupID"), r.PathValue("modelID")); err != nil {
		writeError(w, r, err)
		return
	}
	a.refresh(r.Context())
	webapi.WriteJSON(w, http.StatusOK, "model assigned")
}

func (a *API) unassignModel(w http.ResponseWriter, r *http.Request) {
	if err := a.cfg.Catalog.UnassignModel(r.Context(), webapi.Tenant(r.Context()), r.PathValue("groupID"), r.PathValue("modelID")); err != nil {
		writeError(w, r, err)
		return
	}
	a.refresh(r.Context())
	webapi.WriteJSON(w, http.StatusOK, "model removed")
}

func (a *API) groupModels(w http.ResponseWriter, r *http.Request) {
	models, err := a.cfg.Catalog.ListGroupModels(r.Context(), webapi.Tenant(r.Context()), r.PathValue("groupID"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeList(w, models, "")
}

func (a *API) modelGroups(w http.ResponseWriter, r *http.Request) {
	groups, err := a.cfg.Catalog.ListModelGroups(r.Context(), webapi.Tenant(r.Context()), r.PathValue("modelID"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeList(w, groups, "")
}
