package api

import (
	"net/http"

	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// Cloud provider keys go in through /configure and never come out: the
// catalog seals them before storing and answers only a masked form.
func (a *API) providerRoutes() {
	a.handle(http.MethodPost, "/providers/{providerType}/configure", a.configureProvider)
	a.handle(http.MethodGet, "/providers/{providerType}/status", a.providerStatus)
	a.handle(http.MethodGet, "/providers/{providerType}/config", a.providerConfig)
	a.handle(http.MethodDelete, "/providers/{providerType}/config", a.deleteProviderConfig)
	a.handle(http.MethodGet, "/providers/configs", a.listProviderConfigs)
}

// configureRequest is the body of POST /providers/{providerType}/configure.
type configureRequest struct {
	APIKey string `json:"apiKey"`
	// Upsert allows replacing an existing key.
	Upsert bool `json:"upsert"`
}

// configureProvider stores a provider's key and registers its backend
// (id and name are the provider type).
func (a *API) configureProvider(w http.ResponseWriter, r *http.Request) {
	var req configureRequest
	if err := decodeInto(r, &req, nil); err != nil {
		writeError(w, r, err)
		return
	}
	st, err := a.cfg.Catalog.ConfigureProvider(r.Context(), webapi.Tenant(r.Context()), r.PathValue("providerType"), req.APIKey, req.Upsert)
	if err != nil {
		writeError(w, r, err)
		return
	}
	a.refresh(r.Context())
	webapi.WriteJSON(w, http.StatusOK, st)
}

func (a *API) providerStatus(w http.ResponseWriter, r *http.Request) {
	st, err := a.cfg.Catalog.ProviderStatus(r.Context(), webapi.Tenant(r.Context()), r.PathValue("providerType"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, st)
}

// providerConfig answers the configuration with the key masked.
func (a *API) providerConfig(w http.ResponseWriter, r *http.Request) {
	c, err := a.cfg.Catalog.GetProviderConfig(r.Context(), webapi.Tenant(r.Context()), r.PathValue("providerType"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, c)
}

// deleteProviderConfig forgets the key and removes the provider's backend.
func (a *API) deleteProviderConfig(w http.ResponseWriter, r *http.Request) {
	if err := a.cfg.Catalog.DeleteProviderConfig(r.Context(), webapi.Tenant(r.Context()), r.PathValue("providerType")); err != nil {
		writeError(w, r, err)
		return
	}
	a.refresh(r.Context())
	webapi.WriteJSON(w, http.StatusOK, "Provider config deleted successfully")
}

func (a *API) listProviderConfigs(w http.ResponseWriter, r *http.Request) {
	q, err := listQuery(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	configs, next, err := a.cfg.Catalog.ListProviderConfigs(r.Context(), webapi.Tenant(r.Context()), q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeList(w, configs, next)
}
