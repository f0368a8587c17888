package api_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestProviders(t *testing.T) {
	e := newEnv(t)
	const key = "sk-test-0123456789-SECRET-abcd"
	const other = "AIza-test-9876543210-SECRET-wxyz"

	t.Run("configure", func(t *testing.T) {
		var st struct {
			Configured bool
			Provider   string
		}
		res := e.do(req{method: "POST", path: "/providers/openai/configure", body: map[string]any{"apiKey": key, "upsert": false}})
		if res.status != http.StatusOK {
			t.Fatalf("configure = %d %s", res.status, res.body)
		}
		if res.decode(t, &st); !st.Configured || st.Provider != "openai" {
			t.Errorf("status %+v", st)
		}
		e.do(req{method: "POST", path: "/providers/openai/configure", body: map[string]any{"apiKey": key}}).wantError(t, http.StatusUnprocessableEntity, "upsert")
		res = e.do(req{method: "POST", path: "/providers/openai/configure", body: map[string]any{"apiKey": key + "2", "upsert": true}})
		if res.status != http.StatusOK {
			t.Errorf("upsert = %d %s", res.status, res.body)
		}
		res = e.do(req{method: "POST", path: "/providers/gemini/configure", body: map[string]any{"apiKey": other}})
		if res.status != http.StatusOK {
			t.Errorf("configure gemini = %d %s", res.status, res.body)
		}
	})
	t.Run("status", func(t *testing.T) {
		var st struct{ Configured bool }
		e.do(req{method: "GET", path: "/providers/openai/status"}).decode(t, &st)
		if !st.Configured {
			t.Error("openai is not configured")
		}
	})
	t.Run("config is masked", func(t *testing.T) {
		var c struct{ APIKey, Type string }
		e.do(req{method: "GET", path: "/providers/openai/config"}).decode(t, &c)
		if c.Type != "openai" || c.APIKey != "…bcd2" {
			t.Errorf("config %+v", c)
		}
		var all []struct{ APIKey, Type string }
		e.do(req{method: "GET", path: "/providers/configs"}).decode(t, &all)
		if len(all) != 2 {
			t.Errorf("configs %+v", all)
		}
	})
	t.Run("provider backend is managed", func(t *testing.T) {
		body := map[string]any{"name": "openai", "baseUrl": "http://127.0.0.1:9/v1", "type": "openai"}
		got := e.do(req{method: "PUT", path: "/backends/openai", body: body}).wantError(t, http.StatusForbidden, "")
		if !strings.Contains(got.Error.Message, "/providers/openai") {
			t.Errorf("message %q does not point to /providers/openai", got.Error.Message)
		}
		e.do(req{method: "DELETE", path: "/backends/openai"}).wantError(t, http.StatusForbidden, "")
	})
	t.Run("backend registered", func(t *testing.T) {
		var b struct{ ID, Name, Type string }
		e.do(req{method: "GET", path: "/backends/openai"}).decode(t, &b)
		if b.Name != "openai" || b.Type != "openai" {
			t.Errorf("provider backend %+v", b)
		}
		e.do(req{method: "GET", path: "/backends"})
		e.do(req{method: "GET", path: "/state"})
	})

	tests := []struct {
		name, method, path string
		body               any
		status             int
		param              string
	}{
		{"unknown provider", "POST", "/providers/azure/configure", map[string]any{"apiKey": key}, 404, ""},
		{"no key", "POST", "/providers/openai/configure", map[string]any{"upsert": true}, 422, "apiKey"},
		{"key typo", "POST", "/providers/openai/configure", map[string]any{"api_key": key}, 422, "api_key"},
		{"unknown status", "GET", "/providers/azure/status", nil, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.do(req{method: tt.method, path: tt.path, body: tt.body}).wantError(t, tt.status, tt.param)
		})
	}

	t.Run("delete", func(t *testing.T) {
		var msg string
		e.do(req{method: "DELETE", path: "/providers/gemini/config"}).decode(t, &msg)
		if msg != "Provider config deleted successfully" {
			t.Errorf("DELETE = %q", msg)
		}
		e.do(req{method: "GET", path: "/providers/gemini/config"}).wantError(t, http.StatusNotFound, "")
		e.do(req{method: "GET", path: "/backends/gemini"}).wantError(t, http.StatusNotFound, "")
		var st struct{ Configured bool }
		e.do(req{method: "GET", path: "/providers/gemini/status"}).decode(t, &st)
		if st.Configured {
			t.Error("gemini still configured")
		}
	})

	t.Run("keys never come back", func(t *testing.T) {
		answers := e.answered()
		if len(answers) < 15 {
			t.Fatalf("only %d answers recorded", len(answers))
		}
		for _, secret := range []string{key, key + "2", other, "SECRET"} {
			for _, a := range answers {
				if strings.Contains(a, secret) {
					t.Errorf("an answer holds the key %q:\n%s", secret, a)
				}
			}
			if strings.Contains(e.logs.String(), secret) {
				t.Errorf("the log holds the key %q", secret)
			}
		}
	})
}
