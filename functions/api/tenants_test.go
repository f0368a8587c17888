package api_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/core/meter"
	"github.com/stepwise-run/stepwise/functions/api"
	"github.com/stepwise-run/stepwise/functions/ingest"
	"github.com/stepwise-run/stepwise/functions/openai"
	"github.com/stepwise-run/stepwise/infra/mem"
)

// TestEveryRouteKeepsTenantsApart walks every operation of
// docs/openapi.yaml with a path parameter, filled with the default
// tenant's records, as another tenant's admin: none answers the record
// (404, or a refusal of the body before any lookup), none that lists
// shows it, and afterwards the default tenant's records are as they were.
func TestEveryRouteKeepsTenantsApart(t *testing.T) {
	var keys *access.Keys
	e := newEnv(t, options{cfg: func(c *api.Config) {
		store := c.Executions.(*mem.Store)
		keys = access.New(access.Config{Store: store})
		c.Keys, c.Meter = keys, meter.New(store, store, keys, nil)
	}})
	_, root, err := keys.Create(t.Context(), "default", access.Spec{Name: "root", Scopes: []access.Scope{access.ScopeOperator, access.ScopeAdmin}})
	if err != nil {
		t.Fatal(err)
	}
	as := bearer(root)
	made := func(method, path string, body any, status int, into any) {
		t.Helper()
		res := e.do(req{method: method, path: path, body: body, header: as})
		if res.status != status {
			t.Fatalf("%s %s = %d %s", method, path, res.status, res.body)
		}
		if into != nil {
			res.decode(t, into)
		}
	}
	// The default tenant's records, one of each kind a path names.
	var backend, group, key, execution, hook struct{ ID string }
	made("POST", "/backends", map[string]any{"name": "mine", "baseUrl": e.llm.URL(), "type": "ollama"}, http.StatusCreated, &backend)
	made("POST", "/groups", map[string]any{"name": "secret-group", "purposeType": "secret-purpose"}, http.StatusCreated, &group)
	made("POST", "/models", map[string]any{"model": "secret/model:1b", "contextLength": 2048, "canChat": true}, http.StatusCreated, nil)
	made("POST", "/backend-affinity/"+group.ID+"/backends/"+backend.ID, nil, http.StatusCreated, nil)
	made("POST", "/model-affinity/"+group.ID+"/models/secret%2Fmodel:1b", nil, http.StatusOK, nil)
	made("POST", "/taskchains", noops("secret-chain", 1), http.StatusCreated, nil)
	made("POST", "/executions", map[string]any{"input": "x", "chain": approval()}, http.StatusAccepted, &execution)
	made("POST", "/keys", map[string]any{"name": "default's", "scopes": []string{"chat"}}, http.StatusCreated, &key)
	made("PUT", "/prices/secret/model:1b", map[string]any{"inputPerMTok": 1, "outputPerMTok": 2}, http.StatusOK, nil)
	made("POST", "/providers/openai/configure", map[string]any{"apiKey": "sk-default-provider-key"}, http.StatusOK, nil)
	made("POST", "/hooks/remote", map[string]any{"name": "secret-hook", "endpointUrl": "https://hooks.example.com",
		"headers": map[string]string{"X-Api-Key": "sk-hook-secret"}}, http.StatusCreated, &hook)
	made("POST", "/mappings", map[string]any{"path": "secret-mapping", "eventType": "secret-type", "eventSource": "s", "aggregateType": "a",
		"aggregateIDField": "id", "version": 1}, http.StatusCreated, nil)
	made("POST", "/functions", map[string]any{"name": "secret-group", "script": "function f(e) { return 1 }"}, http.StatusCreated, nil)
	made("POST", "/event-triggers", map[string]any{"name": "secret-group", "listenFor": map[string]any{"type": "secret-type"}, "function": "secret-group"}, http.StatusCreated, nil)
	made("POST", "/events", map[string]any{"event_type": "secret-type", "aggregate_id": "secret-aggregate", "aggregate_type": "a", "version": 1}, http.StatusCreated, nil)
	secrets := []string{backend.ID, group.ID, "secret-group", "secret-purpose", "secret/model:1b", "secret-chain", execution.ID, key.ID, hook.ID, "secret-hook",
		"secret-mapping", "secret-type", "secret-aggregate"}

	var other struct{ Secret string }
	made("POST", "/keys", map[string]any{"name": "globex admin", "scopes": []string{"admin", "executions"}, "tenant": "globex"}, http.StatusCreated, &other)
	before := snapshot(t, e, as)

	fill := map[string]string{
		"groupID": group.ID, "backendID": backend.ID, "modelID": url.PathEscape("secret/model:1b"),
		"name": "secret-group", "purpose": "secret-purpose", "providerType": "openai", "model": "secret/model:1b",
		"eventType": "secret-type", "functionName": "secret-group",
	}
	idFor := map[string]string{
		"/backends/": backend.ID, "/groups/": group.ID, "/models/": "secret/model:1b", "/taskchains/": "secret-chain",
		"/executions/": execution.ID, "/keys/": key.ID, "/prices/": "secret/model:1b", "/hooks/remote/": hook.ID,
	}
	param := regexp.MustCompile(`\{(\w+)\}`)
	checked := 0
	// The routes without a parameter first: those with one may make the
	// other tenant's own records (a price under the same model name).
	paths := e.doc.Paths.InMatchingOrder()
	slices.SortStableFunc(paths, func(a, b string) int {
		return cmpBool(strings.Contains(a, "{"), strings.Contains(b, "{"))
	})
	for _, path := range paths {
		item := e.doc.Paths.Value(path)
		if openai.Owns(path) || ingest.Owns(path) || path == "/events/stream/{eventType}" {
			continue // other functions'; a stream that does not end
		}
		if !strings.Contains(path, "{") {
			// A route without a parameter lists or acts on the caller's
			// own tenant: its answer must hold nothing of another's.
			if item.Get == nil || path == "/queue/inProgress" || path == "/executions/{id}/events" {
				continue // inProgress is a stream that does not end
			}
			t.Run("GET "+path, func(t *testing.T) {
				res := e.do(req{method: http.MethodGet, path: path, header: bearer(other.Secret)})
				for _, s := range secrets {
					if strings.Contains(string(res.body), s) {
						t.Errorf("= %d, showing the default tenant's %q: %s", res.status, s, res.body)
					}
				}
			})
			checked++
			continue
		}
		// Reads before writes: a write may make the other tenant's own
		// record under the same name (a price), which a read would show.
		methods := slices.Collect(maps.Keys(item.Operations()))
		slices.SortFunc(methods, func(a, b string) int {
			return cmpBool(a != http.MethodGet, b != http.MethodGet)*2 + strings.Compare(a, b)
		})
		for _, method := range methods {
			concrete := param.ReplaceAllStringFunc(path, func(p string) string {
				name := p[1 : len(p)-1]
				if name == "id" {
					for prefix, id := range idFor {
						if strings.HasPrefix(path, prefix) {
							return id
						}
					}
				}
				return fill[name]
			})
			t.Run(method+" "+path, func(t *testing.T) {
				var body any
				if method == http.MethodPost || method == http.MethodPut {
					body = map[string]any{}
				}
				res := e.do(req{method: method, path: concrete, body: body, header: bearer(other.Secret)})
				if res.status >= 400 {
					return // a refusal echoes at most what the caller sent
				}
				if !listLike(method, path) && !ownRecord(method, path) {
					t.Errorf("= %d %s, want the record not found", res.status, res.body)
				}
				named, _ := url.PathUnescape(concrete)
				for _, s := range secrets {
					// An answer may echo what the request itself named.
					if strings.Contains(string(res.body), s) && !strings.Contains(named, s) {
						t.Errorf("= %d, showing the default tenant's %q: %s", res.status, s, res.body)
					}
				}
			})
			checked++
		}
	}
	if checked < 30 {
		t.Errorf("only %d operations checked", checked)
	}
	if after := snapshot(t, e, as); !slices.Equal(after, before) {
		t.Errorf("the default tenant's records changed:\nbefore %q\nafter  %q", before, after)
	}
}

// listLike are the routes with a path parameter that answer a list (of
// the caller's own tenant), or a status, rather than one record.
func listLike(method, path string) bool {
	return method == http.MethodGet && (strings.HasPrefix(path, "/group-by-purpose/") || strings.HasSuffix(path, "/groups") ||
		strings.HasSuffix(path, "/status") || strings.HasPrefix(path, "/event-triggers/event-type/") || strings.HasPrefix(path, "/event-triggers/function/"))
}

// ownRecord are the routes that make or drop a record of the caller's own
// tenant under the name the path gives (which the answer then echoes):
// another subtest may have made the caller's own price of that model.
func ownRecord(method, path string) bool {
	return strings.HasSuffix(path, "/configure") || (method != http.MethodGet && strings.HasPrefix(path, "/prices/"))
}

// snapshot reads the default tenant's records as its admin.
func snapshot(t *testing.T, e *env, as map[string]string) []string {
	t.Helper()
	var out []string
	for _, p := range []string{"/backends", "/groups", "/models", "/taskchains", "/keys", "/prices", "/providers/configs"} {
		res := e.do(req{method: http.MethodGet, path: p, header: as})
		if res.status != http.StatusOK {
			t.Fatalf("GET %s = %d %s", p, res.status, res.body)
		}
		// Backends come with their live state, which moves on by itself
		// (the fleet pulls models); the records' own fields do not.
		var items []map[string]any
		res.decode(t, &items)
		for _, it := range items {
			for k := range it {
				if !slices.Contains([]string{"id", "name", "model", "baseUrl", "type", "updatedAt", "purposeType", "revokedAt",
					"inputPerMTok", "outputPerMTok", "APIKey", "Type", "tasks"}, k) {
					delete(it, k)
				}
			}
		}
		b, _ := json.Marshal(items)
		body := string(b)
		out = append(out, p+" "+body)
	}
	return out
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}
