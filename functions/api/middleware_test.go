package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core/hooks"
	"github.com/stepwise-run/stepwise/functions/api"
)

func TestRequestID(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, sent string
		kept       bool
	}{
		{"sane id is kept", "req-1.a:B_2", true},
		{"none is made", "", false},
		{"spaces are replaced", "has space", false},
		{"too long is replaced", strings.Repeat("a", 129), false},
		{"markup is replaced", "id<script>", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := req{method: "GET", path: "/health"}
			if tt.sent != "" {
				r.header = map[string]string{"X-Request-ID": tt.sent}
			}
			got := e.do(r).header.Get("X-Request-ID")
			if tt.kept && got != tt.sent || !tt.kept && (got == "" || got == tt.sent) {
				t.Errorf("X-Request-ID %q answered %q", tt.sent, got)
			}
		})
	}
}

// TestLogs checks that every line logged during a request carries its
// request id, and that each request gets one access log line.
func TestLogs(t *testing.T) {
	e := newEnv(t)
	e.do(req{method: "POST", path: "/tasks", header: map[string]string{"X-Request-ID": "log-test-1"},
		body: map[string]any{"input": "x", "chain": map[string]any{"id": "c", "tasks": []any{map[string]any{"id": "a", "handler": "noop", "triggers": []any{}}}}}})
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		if m["request_id"] == "log-test-1" {
			lines = append(lines, m)
		}
	}
	if len(lines) < 2 || lines[0]["msg"] != "chain decoded with a warning" {
		t.Fatalf("the warning and the access log do not both carry the request id:\n%s", e.logs.String())
	}
	access := lines[len(lines)-1]
	want := map[string]any{"msg": "request", "method": "POST", "path": "/tasks", "route": "POST /tasks", "status": float64(200)}
	for k, w := range want {
		if access[k] != w {
			t.Errorf("access log %s = %v, want %v", k, access[k], w)
		}
	}
	if b, _ := access["bytes"].(float64); b <= 0 {
		t.Errorf("access log bytes = %v", access["bytes"])
	}
	if _, ok := access["duration_ms"].(float64); !ok {
		t.Errorf("access log has no duration_ms: %v", access)
	}
}

// panicky is a hook lister whose listing panics, to drive the recovery.
type panicky struct{ *hooks.Registry }

func (panicky) Hooks(context.Context, string) ([]string, error) { panic("hook registry exploded") }

func TestPanicRecovery(t *testing.T) {
	e := newEnv(t, options{cfg: func(c *api.Config) { c.Hooks = panicky{hooks.NewRegistry(nil)} }})
	res := e.do(req{method: "GET", path: "/supported", header: map[string]string{"X-Request-ID": "panic-1"}})
	got := res.wantError(t, http.StatusInternalServerError, "")
	if got.Error.Code != "internal" || got.Error.Type != "api_error" || strings.Contains(got.Error.Message, "exploded") {
		t.Errorf("envelope %+v", got.Error)
	}
	if !strings.Contains(got.Error.Message, "panic-1") {
		t.Errorf("message %q does not give the request id", got.Error.Message)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "hook registry exploded") || !strings.Contains(logs, "goroutine") {
		t.Errorf("the panic and its stack are not logged:\n%s", logs)
	}
	if res := e.do(req{method: "GET", path: "/health"}); res.status != http.StatusOK {
		t.Errorf("the server does not serve after a panic: %d", res.status)
	}
}

func TestBodyLimits(t *testing.T) {
	e := newEnv(t, options{cfg: func(c *api.Config) { c.MaxBodyBytes = 1024 }})
	big := `{"prompt": "` + strings.Repeat("x", 2048) + `"}`
	deep := strings.Repeat("[", 65) + strings.Repeat("]", 65)
	deepYAML := "input:" + strings.Repeat(" [", 65) + strings.Repeat("]", 65) + "\nchain: {id: c, tasks: [{id: a, handler: noop}]}\n"
	tests := []struct {
		name, path, body, contentType string
		status                        int
		text                          string
	}{
		{"too large", "/execute", big, "", http.StatusRequestEntityTooLarge, "1024"},
		{"too deep", "/execute", `{"prompt": ` + deep + `}`, "", http.StatusBadRequest, "nested"},
		{"too deep YAML", "/tasks", deepYAML, "application/yaml", http.StatusBadRequest, "nested"},
		{"bracket in a string is no nesting", "/execute", `{"prompt": "` + strings.Repeat("[", 100) + `", "bogus": 1}`, "", http.StatusUnprocessableEntity, "bogus"},
		{"trailing data", "/execute", `{"prompt": "x"} {}`, "", http.StatusBadRequest, "after"},
		{"bad base64", "/tasks", "!!!", "application/x-yaml-base64", http.StatusBadRequest, "base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			param := ""
			if tt.status == http.StatusUnprocessableEntity {
				param = "bogus"
			}
			got := e.do(req{method: "POST", path: tt.path, body: tt.body, contentType: tt.contentType}).wantError(t, tt.status, param)
			if !strings.Contains(got.Error.Message, tt.text) {
				t.Errorf("message %q does not contain %q", got.Error.Message, tt.text)
			}
		})
	}
}

// TestTenantFromContext runs the API behind a layer that sets another
// tenant: it sees none of the default tenant's records.
func TestTenantFromContext(t *testing.T) {
	other := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Test-Tenant") != "" {
				r = r.WithContext(api.WithTenant(r.Context(), r.Header.Get("X-Test-Tenant")))
			}
			h.ServeHTTP(w, r)
		})
	}
	e := newEnv(t, options{wrap: other})
	chain := `{"id": "mine", "tasks": [{"id": "a", "handler": "noop"}]}`
	if res := e.do(req{method: "POST", path: "/taskchains", body: chain}); res.status != http.StatusCreated {
		t.Fatalf("create = %d %s", res.status, res.body)
	}
	as := map[string]string{"X-Test-Tenant": "acme"}
	e.do(req{method: "GET", path: "/taskchains/mine", header: as}).wantError(t, http.StatusNotFound, "")
	var v struct{ Tenancy string }
	e.do(req{method: "GET", path: "/version", header: as}).decode(t, &v)
	if v.Tenancy != "acme" {
		t.Errorf("tenancy = %q", v.Tenancy)
	}
	var out struct{ ID string }
	e.do(req{method: "POST", path: "/tasks", header: as, body: `{"input": "x", "chain": ` + chain + `}`}).decode(t, &out)
	if _, err := e.store.GetExecution(context.Background(), "acme", out.ID); err != nil {
		t.Errorf("the execution is not the tenant's: %v", err)
	}
	if _, err := e.store.GetExecution(context.Background(), "default", out.ID); err == nil {
		t.Error("the execution is visible to the default tenant")
	}
}
