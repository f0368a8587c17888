package api_test

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

// TestBackendErrorStatus checks the status of each way a model backend
// fails a call: a backend refusing or failing is 502 and named, a busy or
// unreachable one 503, a timeout 504; none reads as the caller's mistake.
func TestBackendErrorStatus(t *testing.T) {
	e := newEnv(t)
	e.addOllama("local-ollama")
	e.llm.Script(
		fakellm.Reply{Match: "bad key", Status: http.StatusUnauthorized, Text: "invalid api key"},
		fakellm.Reply{Match: "forbidden", Status: http.StatusForbidden, Text: "not allowed"},
		fakellm.Reply{Match: "crash", Status: http.StatusInternalServerError, Text: "out of memory"},
		fakellm.Reply{Match: "busy", Status: http.StatusServiceUnavailable, Text: "overloaded"},
		fakellm.Reply{Match: "rate", Status: http.StatusTooManyRequests, Text: "slow down"},
		fakellm.Reply{Match: "slow", Latency: 5 * time.Second},
	)
	slowTask := map[string]any{"input": "slow", "chain": map[string]any{"id": "c", "tasks": []any{
		map[string]any{"id": "a", "handler": "prompt_to_string", "timeout": "50ms"},
	}}}
	tests := []struct {
		name   string
		path   string
		body   any
		status int
		code   string
		text   []string
	}{
		{"401 on /execute", "/execute", map[string]any{"prompt": "bad key"}, http.StatusBadGateway, core.EINVALID,
			[]string{e.llm.URL(), taskModel, "invalid api key"}},
		{"403 on /execute", "/execute", map[string]any{"prompt": "forbidden"}, http.StatusBadGateway, core.EINVALID,
			[]string{e.llm.URL(), "not allowed"}},
		{"500 on /execute", "/execute", map[string]any{"prompt": "crash"}, http.StatusBadGateway, core.EUNAVAILABLE,
			[]string{"local-ollama", e.llm.URL(), "out of memory"}},
		{"503 on /execute", "/execute", map[string]any{"prompt": "busy"}, http.StatusServiceUnavailable, core.EUNAVAILABLE,
			[]string{"local-ollama", "overloaded"}},
		{"429 on /execute", "/execute", map[string]any{"prompt": "rate"}, http.StatusServiceUnavailable, core.EUNAVAILABLE,
			[]string{"local-ollama", "slow down"}},
		{"401 on /tasks", "/tasks", map[string]any{"input": "bad key", "chain": map[string]any{"id": "c", "tasks": []any{
			map[string]any{"id": "a", "handler": "prompt_to_string"},
		}}}, http.StatusBadGateway, core.EINVALID, []string{e.llm.URL(), "invalid api key"}},
		{"task timeout on /tasks", "/tasks", slowTask, http.StatusGatewayTimeout, core.ETIMEOUT,
			[]string{"timed out after 50ms"}},
		{"401 on /embed", "/embed", map[string]any{"text": "bad key"}, http.StatusBadGateway, core.EINVALID,
			[]string{e.llm.URL(), embedModel, "401"}},
		{"503 on /embed", "/embed", map[string]any{"text": "busy"}, http.StatusServiceUnavailable, core.EUNAVAILABLE,
			[]string{"local-ollama", "overloaded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.do(req{method: "POST", path: tt.path, body: tt.body}).wantError(t, tt.status, "")
			if got.Error.Code != tt.code {
				t.Errorf("code = %q, want %q", got.Error.Code, tt.code)
			}
			if tt.status >= 500 && got.Error.Type != "api_error" {
				t.Errorf("type = %q, want api_error", got.Error.Type)
			}
			for _, want := range tt.text {
				if !strings.Contains(got.Error.Message, want) {
					t.Errorf("message %q does not contain %q", got.Error.Message, want)
				}
			}
		})
	}
}

// TestUnreachableBackend checks that a backend nothing listens on is a 503
// naming it, not a 502: it never answered.
func TestUnreachableBackend(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()
	res := e.do(req{method: "POST", path: "/backends", body: map[string]any{"name": "gone", "baseURL": down, "type": "ollama"}})
	if res.status != http.StatusCreated {
		t.Fatalf("POST /backends = %d %s", res.status, res.body)
	}
	for _, path := range []string{"/execute", "/embed"} {
		t.Run(path, func(t *testing.T) {
			body := map[string]any{"prompt": "hi"}
			if path == "/embed" {
				body = map[string]any{"text": "hi"}
			}
			got := e.do(req{method: "POST", path: path, body: body}).wantError(t, http.StatusServiceUnavailable, "")
			if got.Error.Code != core.EUNAVAILABLE || !strings.Contains(got.Error.Message, "gone") {
				t.Errorf("error %+v, want unavailable naming the backend", got.Error)
			}
		})
	}
}

// TestExecutionErrorNamesTaskOnce checks that the message of a failed task
// names the task once, whether or not the engine's message already does.
func TestExecutionErrorNamesTaskOnce(t *testing.T) {
	e := newEnv(t)
	e.addOllama("local-ollama")
	e.llm.Script(fakellm.Reply{Match: "crash", Status: http.StatusInternalServerError, Text: "boom"})
	for _, tt := range []struct {
		name  string
		chain map[string]any
		want  string
	}{
		{"a task failing", map[string]any{"id": "c", "tasks": []any{map[string]any{"id": "a", "handler": "prompt_to_string"}}},
			`task "a" failed: `},
		{"a task failing after retries", map[string]any{"id": "c", "tasks": []any{
			map[string]any{"id": "a", "handler": "prompt_to_string", "retry_on_failure": 1},
		}}, `task "a" failed after 2 attempts: `},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := e.do(req{method: "POST", path: "/tasks", body: map[string]any{"input": "crash", "chain": tt.chain}}).
				wantError(t, http.StatusBadGateway, "")
			if !strings.HasPrefix(got.Error.Message, tt.want) || strings.Count(got.Error.Message, `task "a"`) != 1 {
				t.Errorf("message %q, want it to start with %q and name the task once", got.Error.Message, tt.want)
			}
		})
	}
}
