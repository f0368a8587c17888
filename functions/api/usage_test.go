package api_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/core/meter"
	"github.com/stepwise-run/stepwise/functions/api"
	"github.com/stepwise-run/stepwise/infra/mem"
)

// meteredEnv is an env with keys and a meter, and an operator key.
func meteredEnv(t *testing.T) (*env, *access.Keys, string) {
	t.Helper()
	var keys *access.Keys
	e := newEnv(t, options{cfg: func(c *api.Config) {
		store := c.Executions.(*mem.Store)
		keys = access.New(access.Config{Store: store})
		c.Keys, c.Meter = keys, meter.New(store, store, nil)
	}})
	_, root, err := keys.Create(t.Context(), core.DefaultTenant, access.Spec{Name: "root", Scopes: []access.Scope{access.ScopeOperator, access.ScopeAdmin}})
	if err != nil {
		t.Fatal(err)
	}
	return e, keys, root
}

// TestModelRoutesAreMetered: /execute, /tasks and /embed are held to the
// key's limits like the OpenAI routes, and the ledger counts their tokens
// as the executions' steps did.
func TestModelRoutesAreMetered(t *testing.T) {
	e, _, root := meteredEnv(t)
	if res := e.do(req{method: http.MethodPost, path: "/backends", header: bearer(root),
		body: map[string]any{"name": "local-ollama", "baseURL": e.llm.URL(), "type": "ollama"}}); res.status != http.StatusCreated {
		t.Fatalf("POST /backends = %d %s", res.status, res.body)
	}
	var k struct{ ID, Secret string }
	e.do(req{method: http.MethodPost, path: "/keys", header: bearer(root),
		body: map[string]any{"name": "runner", "scopes": []string{"executions"}, "limits": map[string]any{"requestsPerMinute": 3}}}).decode(t, &k)
	as := bearer(k.Secret)
	var exec struct{ ID string }
	res := e.do(req{method: http.MethodPost, path: "/execute", body: map[string]any{"prompt": "Summarise this"}, header: as})
	if res.status != http.StatusOK {
		t.Fatalf("/execute = %d %s", res.status, res.body)
	}
	res.decode(t, &exec)
	if res := e.do(req{method: http.MethodPost, path: "/embed", body: map[string]any{"text": "embed me"}, header: as}); res.status != http.StatusOK {
		t.Fatalf("/embed = %d %s", res.status, res.body)
	}
	if res := e.do(req{method: http.MethodPost, path: "/tasks", body: map[string]any{"input": "x", "chain": noops("quick", 1)}, header: as}); res.status != http.StatusOK {
		t.Fatalf("/tasks = %d %s", res.status, res.body)
	}
	res = e.do(req{method: http.MethodPost, path: "/execute", body: map[string]any{"prompt": "once more"}, header: as})
	if res.status != http.StatusTooManyRequests || res.header.Get("Retry-After") == "" {
		t.Fatalf("fourth call in a minute = %d (Retry-After %q) %s, want 429", res.status, res.header.Get("Retry-After"), res.body)
	}
	var ex struct {
		TokensIn  int `json:"tokensIn"`
		TokensOut int `json:"tokensOut"`
	}
	e.do(req{method: http.MethodGet, path: "/executions/" + exec.ID, header: bearer(root)}).decode(t, &ex)
	// The ledger is written after each answer has left.
	var sum meter.Summary
	eventually(t, func() string {
		e.do(req{method: http.MethodGet, path: "/usage?key=" + k.ID, header: bearer(root)}).decode(t, &sum)
		if sum.Total.Requests < 3 {
			return fmt.Sprintf("the ledger holds %d of the 3 calls", sum.Total.Requests)
		}
		return ""
	})
	if sum.Total.Requests != 3 || sum.Total.TokensIn < ex.TokensIn || ex.TokensIn == 0 {
		t.Errorf("usage %+v; the /execute execution alone used %+v", sum.Total, ex)
	}
}

// TestLimitsAndPrices: a tenant's admin reads its limits but only an
// operator sets them; prices are kept per tenant.
func TestLimitsAndPrices(t *testing.T) {
	e, _, root := meteredEnv(t)
	var other struct{ Secret string }
	e.do(req{method: http.MethodPost, path: "/keys", header: bearer(root),
		body: map[string]any{"name": "globex admin", "scopes": []string{"admin"}, "tenant": "globex"}}).decode(t, &other)
	limits := map[string]any{"spend": []any{map[string]any{"window": "day", "usd": 5}}, "requestsPerMinute": 60}
	if res := e.do(req{method: http.MethodPut, path: "/limits?tenant=globex", body: limits, header: bearer(root)}); res.status != http.StatusOK {
		t.Fatalf("operator PUT /limits = %d %s", res.status, res.body)
	}
	if res := e.do(req{method: http.MethodPut, path: "/limits", body: map[string]any{"requestsPerMinute": 1e6}, header: bearer(other.Secret)}); res.status != http.StatusForbidden {
		t.Errorf("a tenant's admin raising its own limits = %d %s, want 403", res.status, res.body)
	}
	var got access.Limits
	e.do(req{method: http.MethodGet, path: "/limits", header: bearer(other.Secret)}).decode(t, &got)
	if got.RequestsPerMinute != 60 || len(got.Spend) != 1 || got.Spend[0].USD != 5 {
		t.Errorf("globex's limits %+v", got)
	}
	e.do(req{method: http.MethodPut, path: "/limits", body: map[string]any{"spend": []any{map[string]any{"window": "fortnight", "usd": 1}}}, header: bearer(root)}).
		wantError(t, http.StatusUnprocessableEntity, "limits.spend[0].window")
	if res := e.do(req{method: http.MethodPut, path: "/prices/org/model:1b", body: map[string]any{"inputPerMTok": 0.5, "outputPerMTok": 1.5}, header: bearer(root)}); res.status != http.StatusOK {
		t.Fatalf("PUT /prices = %d %s", res.status, res.body)
	}
	if res := e.do(req{method: http.MethodGet, path: "/prices/org/model:1b", header: bearer(other.Secret)}); res.status != http.StatusNotFound {
		t.Errorf("another tenant's price = %d, want 404", res.status)
	}
	e.do(req{method: http.MethodPut, path: "/prices/org/model:1b", body: map[string]any{"inputPerMTok": -1}, header: bearer(root)}).
		wantError(t, http.StatusUnprocessableEntity, "inputPerMTok")
	if res := e.do(req{method: http.MethodGet, path: "/usage?tenant=globex", header: bearer(root)}); res.status != http.StatusOK {
		t.Errorf("an operator reading globex's usage = %d %s", res.status, res.body)
	}
	if res := e.do(req{method: http.MethodGet, path: "/usage?tenant=default", header: bearer(other.Secret)}); res.status != http.StatusForbidden {
		t.Errorf("globex's admin reading default's usage = %d %s, want 403", res.status, res.body)
	}
	if res := e.do(req{method: http.MethodGet, path: "/usage?from=2026-13-01", header: bearer(root)}); res.status != http.StatusBadRequest {
		t.Errorf("a bad day = %d", res.status)
	}
}
