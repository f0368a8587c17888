package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/functions/api"
)

// keyEnv is an env whose API requires keys, with an operator key of the
// default tenant.
func keyEnv(t *testing.T) (*env, string) {
	t.Helper()
	var keys *access.Keys
	e := newEnv(t, options{cfg: func(c *api.Config) {
		keys = access.New(access.Config{Store: c.Executions.(core.RecordStore)})
		c.Keys = keys
	}})
	_, secret, err := keys.Create(t.Context(), core.DefaultTenant, access.Spec{Name: "root", Scopes: []access.Scope{access.ScopeOperator, access.ScopeAdmin}})
	if err != nil {
		t.Fatal(err)
	}
	return e, secret
}

func bearer(secret string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + secret}
}

// makeKey makes a key with the given body and returns its secret.
func makeKey(t *testing.T, e *env, with string, body map[string]any) (id, secret string) {
	t.Helper()
	res := e.do(req{method: http.MethodPost, path: "/keys", body: body, header: bearer(with)})
	if res.status != http.StatusCreated {
		t.Fatalf("POST /keys = %d %s", res.status, res.body)
	}
	var k struct{ ID, Secret string }
	res.decode(t, &k)
	return k.ID, k.Secret
}

func TestKeysGuardRoutes(t *testing.T) {
	e, root := keyEnv(t)
	_, chat := makeKey(t, e, root, map[string]any{"name": "chat only", "scopes": []string{"chat"}})
	_, runner := makeKey(t, e, root, map[string]any{"name": "runner", "scopes": []string{"executions"}})
	for _, tt := range []struct {
		name         string
		method, path string
		header       map[string]string
		status       int
	}{
		{"health is open", http.MethodGet, "/health", nil, http.StatusOK},
		{"version is open", http.MethodGet, "/version", nil, http.StatusOK},
		{"no key", http.MethodGet, "/backends", nil, http.StatusUnauthorized},
		{"wrong scheme", http.MethodGet, "/backends", map[string]string{"Authorization": "Basic " + root}, http.StatusUnauthorized},
		{"unknown key", http.MethodGet, "/backends", bearer(access.SecretPrefix + "nosuchkeynosuchkeynosuchkey"), http.StatusUnauthorized},
		{"not our key", http.MethodGet, "/backends", bearer("sk-proj-123"), http.StatusUnauthorized},
		{"admin key", http.MethodGet, "/backends", bearer(root), http.StatusOK},
		{"key in x-api-key", http.MethodGet, "/backends", map[string]string{"x-api-key": root}, http.StatusOK},
		{"chat key on the catalog", http.MethodGet, "/backends", bearer(chat), http.StatusForbidden},
		{"chat key on executions", http.MethodGet, "/executions", bearer(chat), http.StatusForbidden},
		{"executions key on executions", http.MethodGet, "/executions", bearer(runner), http.StatusOK},
		{"executions key reads chains", http.MethodGet, "/taskchains", bearer(runner), http.StatusOK},
		{"executions key on keys", http.MethodGet, "/keys", bearer(runner), http.StatusForbidden},
		{"unknown path without a key", http.MethodGet, "/nope", nil, http.StatusUnauthorized},
		{"unknown path with a key", http.MethodGet, "/nope", bearer(chat), http.StatusNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do(req{method: tt.method, path: tt.path, header: tt.header})
			if res.status != tt.status {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, res.status, res.body, tt.status)
			}
			if tt.status == http.StatusUnauthorized && !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: %v", res.header)
			}
			for _, s := range []string{root, chat, runner} {
				if strings.Contains(string(res.body), s) {
					t.Errorf("the answer holds a secret: %s", res.body)
				}
			}
		})
	}
}

func TestKeyLifecycle(t *testing.T) {
	e, root := keyEnv(t)
	id, secret := makeKey(t, e, root, map[string]any{"name": "ci", "scopes": []string{"admin"}})
	if res := e.do(req{method: http.MethodGet, path: "/keys/" + id, header: bearer(secret)}); res.status != http.StatusOK || strings.Contains(string(res.body), secret) {
		t.Fatalf("GET /keys/%s = %d %s", id, res.status, res.body)
	}
	res := e.do(req{method: http.MethodPost, path: "/keys/" + id + "/rotate", header: bearer(root)})
	var rotated struct{ Secret string }
	res.decode(t, &rotated)
	if res.status != http.StatusOK || rotated.Secret == "" || rotated.Secret == secret {
		t.Fatalf("rotate = %d %s", res.status, res.body)
	}
	if res := e.do(req{method: http.MethodGet, path: "/backends", header: bearer(secret)}); res.status != http.StatusUnauthorized {
		t.Errorf("the old secret after rotation: %d, want 401", res.status)
	}
	if res := e.do(req{method: http.MethodDelete, path: "/keys/" + id, header: bearer(root)}); res.status != http.StatusOK || !strings.Contains(string(res.body), "revokedAt") {
		t.Fatalf("revoke = %d %s", res.status, res.body)
	}
	if res := e.do(req{method: http.MethodGet, path: "/backends", header: bearer(rotated.Secret)}); res.status != http.StatusUnauthorized || !strings.Contains(string(res.body), "revoked") {
		t.Errorf("a revoked key: %d %s, want 401 saying so", res.status, res.body)
	}
	e.do(req{method: http.MethodPost, path: "/keys", body: map[string]any{"name": "x", "scopes": []string{"root"}}, header: bearer(root)}).wantError(t, http.StatusUnprocessableEntity, "scopes[0]")
}

// TestTenantsAreApart: a second tenant's admin sees none of the first
// tenant's records and cannot change them: every read, write and delete
// of them is 404.
func TestTenantsAreApart(t *testing.T) {
	e, root := keyEnv(t)
	_, other := makeKey(t, e, root, map[string]any{"name": "globex admin", "scopes": []string{"admin"}, "tenant": "globex"})
	backend := e.do(req{method: http.MethodPost, path: "/backends", header: bearer(root),
		body: map[string]any{"name": "mine", "baseUrl": e.llm.URL(), "type": "ollama"}})
	if backend.status != http.StatusCreated {
		t.Fatalf("POST /backends = %d %s", backend.status, backend.body)
	}
	var b struct{ ID string }
	backend.decode(t, &b)
	chain := e.do(req{method: http.MethodPost, path: "/taskchains", header: bearer(root),
		body: map[string]any{"id": "secret-plan", "tasks": []any{map[string]any{"id": "a", "handler": "noop", "transition": map[string]any{"branches": []any{map[string]any{"operator": "default", "goto": "end"}}}}}}})
	if chain.status != http.StatusCreated {
		t.Fatalf("POST /taskchains = %d %s", chain.status, chain.body)
	}
	keyID, _ := makeKey(t, e, root, map[string]any{"name": "default's", "scopes": []string{"chat"}})
	for _, tt := range []struct{ method, path string }{
		{http.MethodGet, "/backends/" + b.ID},
		{http.MethodPut, "/backends/" + b.ID},
		{http.MethodDelete, "/backends/" + b.ID},
		{http.MethodGet, "/taskchains/secret-plan"},
		{http.MethodDelete, "/taskchains/secret-plan"},
		{http.MethodGet, "/keys/" + keyID},
		{http.MethodDelete, "/keys/" + keyID},
		{http.MethodPost, "/keys/" + keyID + "/rotate"},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			var body any
			if tt.method == http.MethodPut {
				body = map[string]any{"name": "taken", "baseUrl": e.llm.URL(), "type": "ollama"}
			}
			res := e.do(req{method: tt.method, path: tt.path, body: body, header: bearer(other)})
			if res.status != http.StatusNotFound {
				t.Errorf("= %d %s, want 404", res.status, res.body)
			}
		})
	}
	for _, path := range []string{"/backends", "/taskchains", "/keys"} {
		res := e.do(req{method: http.MethodGet, path: path, header: bearer(other)})
		for _, s := range []string{b.ID, "secret-plan", keyID} {
			if strings.Contains(string(res.body), s) {
				t.Errorf("GET %s for globex shows default's %s: %s", path, s, res.body)
			}
		}
	}
	if res := e.do(req{method: http.MethodGet, path: "/backends/" + b.ID, header: bearer(root)}); res.status != http.StatusOK {
		t.Errorf("default's own backend after globex's attempts: %d %s", res.status, res.body)
	}
}
