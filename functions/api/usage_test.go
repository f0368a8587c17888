package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
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
		c.Keys, c.Meter = keys, meter.New(store, store, keys, nil)
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

// TestBackgroundExecutionsAreMetered: the steps of an execution started by
// POST /executions run in the queue's workers, past the request; the
// ledger counts each of them once, against the key that started it, and
// the key's budget stops the execution once it is spent.
func TestBackgroundExecutionsAreMetered(t *testing.T) {
	e, _, root := meteredEnv(t)
	if res := e.do(req{method: http.MethodPost, path: "/backends", header: bearer(root),
		body: map[string]any{"name": "local-ollama", "baseURL": e.llm.URL(), "type": "ollama"}}); res.status != http.StatusCreated {
		t.Fatalf("POST /backends = %d %s", res.status, res.body)
	}
	// Every answer is 40,000 characters: 10,000 tokens, at $1 per million
	// output tokens $0.01; the prompts cost nothing.
	e.llm.Script(fakellm.Reply{Text: strings.Repeat("abcd", 10_000)})
	if res := e.do(req{method: http.MethodPut, path: "/prices/" + taskModel, body: map[string]any{"outputPerMTok": 1}, header: bearer(root)}); res.status != http.StatusOK {
		t.Fatalf("PUT /prices = %d %s", res.status, res.body)
	}
	newKey := func(name string, limits map[string]any) (id, secret string) {
		var k struct{ ID, Secret string }
		body := map[string]any{"name": name, "scopes": []string{"executions"}}
		if limits != nil {
			body["limits"] = limits
		}
		e.do(req{method: http.MethodPost, path: "/keys", header: bearer(root), body: body}).decode(t, &k)
		return k.ID, k.Secret
	}
	chain := func(n int) map[string]any {
		tasks := make([]map[string]any, n)
		for i := range tasks {
			// The prompt leaves the last answer out, which would not fit
			// the model's context.
			tasks[i] = map[string]any{"id": fmt.Sprintf("ask%d", i+1), "handler": "prompt_to_string", "prompt_template": "go on"}
		}
		return linear("asks", tasks...)
	}
	run := func(secret string, n int) execution {
		res := e.do(req{method: http.MethodPost, path: "/executions", header: bearer(secret), body: map[string]any{"input": "go", "chain": chain(n)}})
		if res.status != http.StatusAccepted {
			t.Fatalf("POST /executions = %d %s", res.status, res.body)
		}
		var started acceptedBody
		res.decode(t, &started)
		var ex execution
		eventually(t, func() string {
			e.do(req{method: http.MethodGet, path: "/executions/" + started.ID, header: bearer(root)}).decode(t, &ex)
			if ex.Status != "succeeded" && ex.Status != "failed" {
				return "execution " + ex.ID + " is " + ex.Status
			}
			return ""
		})
		return ex
	}
	usage := func(key string) meter.Summary {
		var sum meter.Summary
		e.do(req{method: http.MethodGet, path: "/usage?key=" + key, header: bearer(root)}).decode(t, &sum)
		return sum
	}

	t.Run("every step counted once", func(t *testing.T) {
		id, secret := newKey("free", nil)
		ex := run(secret, 4)
		var full struct{ TokensIn, TokensOut int }
		e.do(req{method: http.MethodGet, path: "/executions/" + ex.ID, header: bearer(root)}).decode(t, &full)
		sum := usage(id)
		if ex.Status != "succeeded" || sum.Total.Steps != 4 || sum.Total.Requests != 1 || sum.Total.TokensIn != full.TokensIn ||
			sum.Total.TokensOut != 40_000 || full.TokensOut != 40_000 || sum.Total.CostMicros != 40_000 {
			t.Errorf("execution %+v with %+v; usage %+v", ex, full, sum.Total)
		}
	})
	t.Run("the key's budget ends the execution", func(t *testing.T) {
		// $0.025 admits the request (its worst case, 4,096 tokens out, is
		// $0.004) and three steps: the fourth finds the budget spent.
		id, secret := newKey("capped", map[string]any{"spend": []any{map[string]any{"window": "day", "usd": 0.025}}})
		ex := run(secret, 6)
		if ex.Status != "failed" || ex.Error == nil || ex.Error.Code != core.ELIMIT || ex.Error.Task != "ask4" || !strings.Contains(ex.Error.Message, "spend limit") {
			t.Errorf("execution %+v, error %+v; want it failed with %s at ask4", ex, ex.Error, core.ELIMIT)
		}
		if sum := usage(id); sum.Total.Steps != 3 || sum.Total.CostMicros != 30_000 {
			t.Errorf("usage %+v, want three steps at $0.03", sum.Total)
		}
	})
}
