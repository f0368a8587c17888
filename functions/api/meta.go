package api

import (
	"encoding/json"
	"net/http"

	"gopkg.in/yaml.v3"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/docs"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

func (a *API) metaRoutes() {
	a.handle(http.MethodGet, "/health", a.health)
	a.handle(http.MethodGet, "/version", a.version)
	a.handle(http.MethodGet, "/openapi.json", a.openAPIDoc)
}

// health answers 200 with an empty body while the process serves.
func (a *API) health(w http.ResponseWriter, _ *http.Request) {
	w.WriteHeader(http.StatusOK)
}

// versionInfo is the body of GET /version.
type versionInfo struct {
	Version        string `json:"version"`
	NodeInstanceID string `json:"nodeInstanceID"`
	// Tenancy is the tenant the request acts for.
	Tenancy string `json:"tenancy"`
}

func (a *API) version(w http.ResponseWriter, r *http.Request) {
	webapi.WriteJSON(w, http.StatusOK, versionInfo{Version: a.cfg.Version, NodeInstanceID: a.cfg.NodeID, Tenancy: webapi.Tenant(r.Context())})
}

func (a *API) openAPIDoc(w http.ResponseWriter, r *http.Request) {
	if a.openAPIErr != nil {
		writeError(w, r, a.openAPIErr)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(a.openAPI)
}

// openAPIJSON converts the embedded OpenAPI document to JSON.
func openAPIJSON() ([]byte, error) {
	var tree any
	if err := yaml.Unmarshal([]byte(docs.OpenAPI), &tree); err != nil {
		return nil, err
	}
	return json.Marshal(core.NormalizeYAML(tree))
}
