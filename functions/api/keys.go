package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// keyRoutes manage the tenant's API keys. They exist only on a server with
// keys (Config.Keys).
func (a *API) keyRoutes() {
	if a.cfg.Keys == nil {
		return
	}
	a.handle(http.MethodPost, "/keys", a.createKey)
	a.handle(http.MethodGet, "/keys", a.listKeys)
	a.handle(http.MethodGet, "/keys/{id}", a.getKey)
	a.handle(http.MethodDelete, "/keys/{id}", a.revokeKey)
	a.handle(http.MethodPost, "/keys/{id}/rotate", a.rotateKey)
}

// newKey is the body of POST /keys: an access.Spec, flat for the strict
// decoder, and the tenant.
type newKey struct {
	Name      string         `json:"name"`
	Scopes    []access.Scope `json:"scopes"`
	Chains    []string       `json:"chains,omitempty"`
	Models    []string       `json:"models,omitempty"`
	ExpiresAt *time.Time     `json:"expiresAt,omitempty"`
	Limits    *access.Limits `json:"limits,omitempty"`
	// Tenant makes the key for another tenant: only an operator key may.
	Tenant string `json:"tenant,omitempty"`
}

// keyWithSecret is a key as it is made or rotated: the only answers that
// hold its secret.
type keyWithSecret struct {
	*access.Key
	Secret string `json:"secret"`
}

func (a *API) createKey(w http.ResponseWriter, r *http.Request) {
	var body newKey
	if err := decodeInto(r, &body, nil); err != nil {
		writeError(w, r, err)
		return
	}
	tenant := webapi.Tenant(r.Context())
	if body.Tenant != "" && body.Tenant != tenant {
		if k := webapi.Key(r.Context()); k == nil || !k.Has(access.ScopeOperator) {
			writeError(w, r, core.Errorf(core.EFORBIDDEN, "tenant: only an operator key makes keys for another tenant"))
			return
		}
		tenant = body.Tenant
	}
	if k := webapi.Key(r.Context()); k != nil && !k.Has(access.ScopeOperator) {
		for _, s := range body.Scopes {
			if s == access.ScopeOperator {
				writeError(w, r, core.Errorf(core.EFORBIDDEN, "scopes: only an operator key makes operator keys"))
				return
			}
		}
	}
	spec := access.Spec{Name: body.Name, Scopes: body.Scopes, Chains: body.Chains, Models: body.Models, ExpiresAt: body.ExpiresAt, Limits: body.Limits}
	key, secret, err := a.cfg.Keys.Create(r.Context(), tenant, spec)
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusCreated, keyWithSecret{Key: key, Secret: secret})
}

func (a *API) listKeys(w http.ResponseWriter, r *http.Request) {
	q, err := listQuery(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	keys, next, err := a.cfg.Keys.List(r.Context(), webapi.Tenant(r.Context()), q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeList(w, keys, next)
}

func (a *API) getKey(w http.ResponseWriter, r *http.Request) {
	key, err := a.cfg.Keys.Get(r.Context(), webapi.Tenant(r.Context()), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, key)
}

// revokeKey answers the key, now revoked: it stays listed, so that its
// use in the usage ledger keeps a name.
func (a *API) revokeKey(w http.ResponseWriter, r *http.Request) {
	key, err := a.cfg.Keys.Revoke(r.Context(), webapi.Tenant(r.Context()), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, key)
}

func (a *API) rotateKey(w http.ResponseWriter, r *http.Request) {
	key, secret, err := a.cfg.Keys.Rotate(r.Context(), webapi.Tenant(r.Context()), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, keyWithSecret{Key: key, Secret: secret})
}

// routeNeed is what a route of the API asks of its caller's key: nothing
// for the probes and the document; the executions scope to run chains and
// read executions (and the chains and models there are to run); admin for
// the rest, which changes the tenant's catalog and keys.
func routeNeed(method, pattern string) webapi.Need {
	switch pattern {
	case "/health", "/version", "/openapi.json":
		return webapi.Need{Open: true}
	case "/execute", "/tasks", "/embed", "/defaultmodel", "/supported":
		return webapi.Need{Scope: access.ScopeExecutions}
	}
	if pattern == "/executions" || strings.HasPrefix(pattern, "/executions/") {
		return webapi.Need{Scope: access.ScopeExecutions}
	}
	if method == http.MethodGet && (pattern == "/taskchains" || pattern == "/taskchains/{id}") {
		return webapi.Need{Scope: access.ScopeExecutions}
	}
	return webapi.Need{Scope: access.ScopeAdmin}
}

// need is what r's route asks; a path no route serves takes any valid key,
// so that who has none learns nothing of which paths exist.
func (a *API) need(r *http.Request) webapi.Need {
	_, pattern := a.mux.Handler(r)
	if pattern == "" {
		return webapi.Need{}
	}
	method, path, _ := strings.Cut(pattern, " ")
	return routeNeed(method, path)
}
