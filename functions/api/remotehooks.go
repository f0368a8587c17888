package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/core/hooks/remote"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// hookListWait bounds how long a listing of hooks waits for the documents
// of remote hooks: one unreachable service must not hold the listing.
const hookListWait = 10 * time.Second

func (a *API) hookRoutes() {
	for _, k := range []hookKind{openAPIHooks(a), mcpServers(a)} {
		a.handle(http.MethodPost, k.path, k.create)
		a.handle(http.MethodGet, k.path, k.list)
		a.handle(http.MethodGet, k.path+"/{id}", k.get)
		a.handle(http.MethodGet, k.path+"/by-name/{name}", k.byName)
		a.handle(http.MethodPut, k.path+"/{id}", k.put)
		a.handle(http.MethodDelete, k.path+"/{id}", k.delete)
		a.handle(http.MethodPost, k.path+"/{id}/refresh", k.refresh)
	}
	a.handle(http.MethodGet, "/hooks/local", a.listHooks)
	a.handle(http.MethodGet, "/hooks/schemas", a.hookSchemas)
}

// hookKind is the routes of one sort of remote hook: OpenAPI services
// under /hooks/remote, MCP servers under /mcp-servers. Both are kept
// alike; they differ in their payloads.
type hookKind struct {
	a    *API
	path string
	// defs is the sort's store.
	defs func(*remote.Source) *remote.Hooks
	// decode reads a definition from a request body.
	decode func(*http.Request) (remote.Hook, error)
	// show is a definition as answers show it, its secrets sealed.
	show func(*remote.Hook) any
	// viewType is the type GET /hooks/local and refresh give its hooks.
	viewType string
}

func openAPIHooks(a *API) hookKind {
	return hookKind{a: a, path: "/hooks/remote", defs: (*remote.Source).Definitions, decode: a.decodeHook, viewType: "remote",
		show: func(h *remote.Hook) any { return h.Shown() }}
}

// hookBody is a remote hook as POST and PUT take it. properties is one
// property (the reference's shape) or a list of them; id and the times
// are accepted, so that what GET answered can be sent back, and ignored.
type hookBody struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	EndpointURL  string            `json:"endpointUrl"`
	SpecURL      string            `json:"specUrl"`
	TimeoutMs    int64             `json:"timeoutMs"`
	Headers      map[string]string `json:"headers"`
	Properties   json.RawMessage   `json:"properties"`
	AllowPrivate bool              `json:"allowPrivate"`
	CreatedAt    *time.Time        `json:"createdAt"`
	UpdatedAt    *time.Time        `json:"updatedAt"`
}

func hookAliases() map[string]string {
	return map[string]string{"endpoint_url": "endpointUrl", "spec_url": "specUrl", "timeout_ms": "timeoutMs", "allow_private": "allowPrivate"}
}

// decodeHook reads a remote hook's body.
func (a *API) decodeHook(r *http.Request) (remote.Hook, error) {
	var b hookBody
	if err := decodeInto(r, &b, hookAliases()); err != nil {
		return remote.Hook{}, err
	}
	h := remote.Hook{Name: b.Name, EndpointURL: b.EndpointURL, SpecURL: b.SpecURL, TimeoutMs: b.TimeoutMs, Headers: b.Headers, AllowPrivate: b.AllowPrivate}
	if raw := bytes.TrimSpace(b.Properties); len(raw) > 0 && string(raw) != "null" {
		var err error
		if raw[0] == '[' {
			err = json.Unmarshal(raw, &h.Properties)
		} else {
			var p remote.Property
			err = json.Unmarshal(raw, &p)
			h.Properties = []remote.Property{p}
		}
		if err != nil {
			return remote.Hook{}, invalid("properties", "properties: want {name, value, in} or a list of them")
		}
	}
	return h, a.mayAllowPrivate(r, h)
}

// mayAllowPrivate refuses allowPrivate to any but an operator key where
// keys are required.
func (a *API) mayAllowPrivate(r *http.Request, h remote.Hook) error {
	if h.AllowPrivate && a.cfg.Keys != nil {
		if k := webapi.Key(r.Context()); k == nil || !k.Has(access.ScopeOperator) {
			return &requestError{status: http.StatusForbidden, code: core.EFORBIDDEN, param: "allowPrivate",
				msg: "allowPrivate: only an operator key may let a hook reach private addresses"}
		}
	}
	return nil
}

// store is the sort's store, or an error when the API has no remote
// hooks.
func (k hookKind) store() (*remote.Hooks, error) {
	if k.a.cfg.Remote == nil {
		return nil, core.Errorf(core.EUNAVAILABLE, "remote hooks and MCP servers are not configured on this server")
	}
	return k.defs(k.a.cfg.Remote), nil
}

func (k hookKind) create(w http.ResponseWriter, r *http.Request) {
	k.save(w, r, http.StatusCreated, func(ctx context.Context, defs *remote.Hooks, tenant string, h remote.Hook) (*remote.Hook, error) {
		return defs.Create(ctx, tenant, h)
	})
}

func (k hookKind) put(w http.ResponseWriter, r *http.Request) {
	k.save(w, r, http.StatusOK, func(ctx context.Context, defs *remote.Hooks, tenant string, h remote.Hook) (*remote.Hook, error) {
		return defs.Update(ctx, tenant, r.PathValue("id"), h)
	})
}

// save decodes a definition, stores it with store and answers what was
// stored with status.
func (k hookKind) save(w http.ResponseWriter, r *http.Request, status int, store func(context.Context, *remote.Hooks, string, remote.Hook) (*remote.Hook, error)) {
	defs, err := k.store()
	if err != nil {
		writeError(w, r, err)
		return
	}
	h, err := k.decode(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	saved, err := store(r.Context(), defs, webapi.Tenant(r.Context()), h)
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, status, k.show(saved))
}

func (k hookKind) list(w http.ResponseWriter, r *http.Request) {
	defs, err := k.store()
	if err != nil {
		writeError(w, r, err)
		return
	}
	q, err := listQuery(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	list, next, err := defs.List(r.Context(), webapi.Tenant(r.Context()), q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	shown := make([]any, len(list))
	for i, h := range list {
		shown[i] = k.show(h)
	}
	writeList(w, shown, next)
}

func (k hookKind) get(w http.ResponseWriter, r *http.Request) {
	k.answer(w, r, func(ctx context.Context, defs *remote.Hooks, tenant string) (*remote.Hook, error) {
		return defs.Get(ctx, tenant, r.PathValue("id"))
	})
}

func (k hookKind) byName(w http.ResponseWriter, r *http.Request) {
	k.answer(w, r, func(ctx context.Context, defs *remote.Hooks, tenant string) (*remote.Hook, error) {
		return defs.ByName(ctx, tenant, r.PathValue("name"))
	})
}

func (k hookKind) answer(w http.ResponseWriter, r *http.Request, find func(context.Context, *remote.Hooks, string) (*remote.Hook, error)) {
	defs, err := k.store()
	if err != nil {
		writeError(w, r, err)
		return
	}
	h, err := find(r.Context(), defs, webapi.Tenant(r.Context()))
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, k.show(h))
}

func (k hookKind) delete(w http.ResponseWriter, r *http.Request) {
	defs, err := k.store()
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := defs.Delete(r.Context(), webapi.Tenant(r.Context()), r.PathValue("id")); err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, "deleted")
}

// refresh fetches the hook's document (lists the server's tools) now and
// answers the tools.
func (k hookKind) refresh(w http.ResponseWriter, r *http.Request) {
	defs, err := k.store()
	if err != nil {
		writeError(w, r, err)
		return
	}
	tenant := webapi.Tenant(r.Context())
	h, err := defs.Get(r.Context(), tenant, r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	tools, err := k.a.cfg.Remote.Tools(r.Context(), tenant, h, true)
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, hookView{Name: h.Name, Type: k.viewType, Tools: nonNil(tools)})
}

// hookView is one hook as GET /hooks/local lists it.
type hookView struct {
	Name        string      `json:"name"`
	Description string      `json:"description"`
	Type        string      `json:"type"` // "local", "remote" or "mcp"
	Tools       []core.Tool `json:"tools"`
	// Error says why a remote hook's tools could not be listed.
	Error string `json:"error,omitempty"`
}

func nonNil(t []core.Tool) []core.Tool {
	if t == nil {
		return []core.Tool{}
	}
	return t
}

// listHooks lists every hook the tenant's chains can call with its tools:
// the built-in ones, labelled local, and its remote ones. A remote hook
// whose tools cannot be listed is shown with the error, not left out and
// not failing the rest.
func (a *API) listHooks(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), hookListWait)
	defer cancel()
	tenant := webapi.Tenant(r.Context())
	names, err := a.cfg.Hooks.Hooks(ctx, tenant)
	if err != nil {
		writeError(w, r, err)
		return
	}
	mcp, err := a.mcpServerNames(ctx, tenant)
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := make([]hookView, 0, len(names))
	for _, name := range names {
		v := hookView{Name: name, Type: "local", Description: "built-in hook " + name}
		switch {
		case a.cfg.Hooks.Builtin(name):
		case mcp[name]:
			v.Type, v.Description = "mcp", "MCP server "+name
		default:
			v.Type, v.Description = "remote", "remote hook "+name
		}
		tools, err := a.cfg.Hooks.ToolsOf(ctx, tenant, name)
		if err != nil {
			v.Error = err.Error()
		}
		v.Tools = nonNil(tools)
		out = append(out, v)
	}
	webapi.WriteJSON(w, http.StatusOK, out)
}

// mcpServerNames is the set of the tenant's MCP servers, read once for a
// listing rather than once a hook.
func (a *API) mcpServerNames(ctx context.Context, tenant string) (map[string]bool, error) {
	set := map[string]bool{}
	if a.cfg.Remote == nil {
		return set, nil
	}
	names, err := a.cfg.Remote.MCPServers().Names(ctx, tenant)
	for _, n := range names {
		set[n] = true
	}
	return set, err
}

// hookSchemas answers the OpenAPI document of every remote hook of the
// tenant, by name; documents that cannot be fetched are left out.
func (a *API) hookSchemas(w http.ResponseWriter, r *http.Request) {
	out := map[string]json.RawMessage{}
	if a.cfg.Remote == nil {
		webapi.WriteJSON(w, http.StatusOK, out)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), hookListWait)
	defer cancel()
	tenant := webapi.Tenant(r.Context())
	q := core.ListQuery{Limit: core.MaxPageSize}
	for {
		list, next, err := a.cfg.Remote.Definitions().List(ctx, tenant, q)
		if err != nil {
			writeError(w, r, err)
			return
		}
		for _, h := range list {
			if doc, err := a.cfg.Remote.Document(ctx, tenant, h); err == nil {
				out[h.Name] = doc
			}
		}
		if next == "" {
			break
		}
		q.Cursor = next
	}
	webapi.WriteJSON(w, http.StatusOK, out)
}
