package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

// toolService is a remote hook's service: an OpenAPI document and one
// operation, which records what it was sent and answers with the header it
// got, as an echoing service would.
type toolService struct {
	*httptest.Server
	mu   sync.Mutex
	seen []*http.Request
}

const toolSpec = `{"openapi": "3.0.3", "info": {"title": "pets", "version": "1"},
 "paths": {"/pets/{id}": {"get": {"operationId": "getPet", "summary": "Read a pet by id.",
   "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                  {"name": "account", "in": "query", "schema": {"type": "string"}}],
   "responses": {"200": {"description": "the pet"}}}}}}`

func newToolService(t *testing.T) *toolService {
	t.Helper()
	s := &toolService{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/openapi.json" {
			_, _ = io.WriteString(w, toolSpec)
			return
		}
		s.mu.Lock()
		s.seen = append(s.seen, r.Clone(r.Context()))
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"name": "Rex the dog", "id": r.PathValue("id"), "key": r.Header.Get("X-Api-Key")})
	}))
	t.Cleanup(s.Close)
	return s
}

const toolSecret = "sk-remote-0123456789"

// TestRemoteHookAgentLoop is the show case: a chain's model calls
// a tool of a remote hook; the service gets the injected header, the
// idempotency key and the arguments; the model gets the answer; the
// secret shows in no answer, log or step record.
func TestRemoteHookAgentLoop(t *testing.T) {
	e := newEnv(t)
	e.addOllama("local-ollama")
	svc := newToolService(t)

	res := e.do(req{method: http.MethodPost, path: "/hooks/remote", body: map[string]any{
		"name": "pets", "endpointUrl": svc.URL, "timeoutMs": 5000, "allowPrivate": true,
		"headers":    map[string]string{"X-Api-Key": toolSecret},
		"properties": map[string]any{"name": "account", "value": "acct-9", "in": "query"},
	}})
	if res.status != http.StatusCreated {
		t.Fatalf("POST /hooks/remote = %d %s", res.status, res.body)
	}
	var hook struct {
		ID      string
		Headers map[string]string
	}
	res.decode(t, &hook)
	if hook.Headers["X-Api-Key"] != "[sealed]" {
		t.Errorf("the created hook shows headers %v", hook.Headers)
	}

	res, runID, toolResult := e.askForPet(t, "pets_getPet")
	svc.mu.Lock()
	if len(svc.seen) != 1 {
		t.Fatalf("the service saw %d calls, want 1", len(svc.seen))
	}
	got := svc.seen[0]
	svc.mu.Unlock()
	if got.URL.Path != "/pets/42" || got.URL.Query().Get("account") != "acct-9" || got.Header.Get("X-Api-Key") != toolSecret ||
		!strings.HasPrefix(got.Header.Get("Idempotency-Key"), runID+"/") {
		t.Errorf("the service got %s ?%s with headers %v", got.URL.Path, got.URL.RawQuery, got.Header)
	}
	e.noSecrets(t, []string{string(res.body), toolResult}, []string{"/hooks/remote", "/hooks/remote/" + hook.ID,
		"/hooks/remote/by-name/pets", "/hooks/local", "/hooks/schemas"}, runID, toolSecret, "acct-9")
}

// askForPet runs an agent loop over the hook pets whose model calls tool
// with {"id": "42"}, reads the answer and replies; it returns the
// answer, the execution's id and the tool result the model was given.
func (e *env) askForPet(t *testing.T, tool string) (res *response, runID, toolResult string) {
	t.Helper()
	e.llm.Script(
		fakellm.Reply{Match: "which pet is 42", ToolCalls: []fakellm.Call{{ID: "call_1", Name: tool, Arguments: map[string]any{"id": "42"}}}},
		fakellm.Reply{Match: "Rex the dog", Text: "Pet 42 is Rex, a dog."},
	)
	chain := map[string]any{"id": "agent", "tasks": []any{
		map[string]any{"id": "chat", "handler": "chat_completion", "execute_config": map[string]any{"hooks": []string{"pets"}},
			"transition": map[string]any{"branches": []any{
				map[string]any{"operator": "equals", "when": "tool-call", "goto": "run"},
				map[string]any{"operator": "default", "goto": "end"}}}},
		map[string]any{"id": "run", "handler": "execute_tool_calls",
			"transition": map[string]any{"branches": []any{map[string]any{"operator": "default", "goto": "chat"}}}},
	}}
	res = e.do(req{method: http.MethodPost, path: "/tasks", body: map[string]any{"input": "which pet is 42?", "inputType": "string", "chain": chain}})
	if res.status != http.StatusOK {
		t.Fatalf("POST /tasks = %d %s", res.status, res.body)
	}
	var run struct{ ID string }
	res.decode(t, &run)
	for _, r := range e.llm.Requests() {
		for _, m := range r.Messages {
			if m.Role == "tool" {
				toolResult = m.Content
			}
		}
	}
	if !strings.Contains(toolResult, "Rex the dog") || !strings.Contains(string(res.body), "Pet 42 is Rex") {
		t.Errorf("the model was given %q as the tool's result; answer %s", toolResult, res.body)
	}
	return res, run.ID, toolResult
}

// noSecrets checks that no secret shows in the texts, the logs, the
// execution's record and steps, or the answers of GET paths.
func (e *env) noSecrets(t *testing.T, texts, paths []string, runID string, secrets ...string) {
	t.Helper()
	shown := append(texts, e.logs.String())
	for _, path := range append([]string{"/executions/" + runID, "/executions/" + runID + "/steps"}, paths...) {
		res := e.do(req{method: http.MethodGet, path: path})
		if res.status != http.StatusOK {
			t.Errorf("GET %s = %d %s", path, res.status, res.body)
		}
		shown = append(shown, string(res.body))
	}
	for i, s := range shown {
		for _, secret := range secrets {
			if strings.Contains(s, secret) {
				t.Errorf("answer %d shows %q: %.300s", i, secret, s)
			}
		}
	}
}

func TestRemoteHookRoutes(t *testing.T) {
	e := newEnv(t)
	svc := newToolService(t)
	create := func(body map[string]any) *response {
		return e.do(req{method: http.MethodPost, path: "/hooks/remote", body: body})
	}
	res := create(map[string]any{"name": "pets", "endpointUrl": svc.URL, "timeoutMs": 5000, "allowPrivate": true,
		"headers": map[string]string{"X-Api-Key": toolSecret}})
	if res.status != http.StatusCreated {
		t.Fatalf("POST = %d %s", res.status, res.body)
	}
	var h map[string]any
	res.decode(t, &h)
	id := str(h, "id")

	t.Run("listed with its tools", func(t *testing.T) {
		var hooks []struct {
			Name, Type, Error string
			Tools             []struct{ Function struct{ Name string } }
		}
		e.do(req{method: http.MethodGet, path: "/hooks/local"}).decode(t, &hooks)
		found := false
		for _, x := range hooks {
			if x.Name == "pets" {
				found = x.Type == "remote" && len(x.Tools) == 1 && x.Tools[0].Function.Name == "getPet" && x.Error == ""
			}
			if x.Name == "echo" && x.Type != "local" {
				t.Errorf("echo is listed as %s", x.Type)
			}
		}
		if !found {
			t.Errorf("/hooks/local: %+v", hooks)
		}
		var names []string
		e.do(req{method: http.MethodGet, path: "/supported"}).decode(t, &names)
		if !strings.Contains(strings.Join(names, ","), "pets") {
			t.Errorf("/supported = %v", names)
		}
		var schemas map[string]map[string]any
		e.do(req{method: http.MethodGet, path: "/hooks/schemas"}).decode(t, &schemas)
		if schemas["pets"]["openapi"] != "3.0.3" {
			t.Errorf("/hooks/schemas = %v", schemas)
		}
		res := e.do(req{method: http.MethodPost, path: "/hooks/remote/" + id + "/refresh"})
		if res.status != http.StatusOK || !strings.Contains(string(res.body), "getPet") {
			t.Errorf("refresh = %d %s", res.status, res.body)
		}
	})
	t.Run("a PUT of what GET showed keeps the secret", func(t *testing.T) {
		var shown map[string]any
		e.do(req{method: http.MethodGet, path: "/hooks/remote/" + id}).decode(t, &shown)
		shown["timeoutMs"] = 2000
		if res := e.do(req{method: http.MethodPut, path: "/hooks/remote/" + id, body: shown}); res.status != http.StatusOK {
			t.Fatalf("PUT = %d %s", res.status, res.body)
		}
		got, err := e.store.GetRecord(t.Context(), "default", "remote_hook", id)
		if err != nil || strings.Contains(string(got.Body), toolSecret) {
			t.Errorf("stored %s, %v", got.Body, err)
		}
	})
	for _, tt := range []struct {
		name   string
		body   map[string]any
		status int
		param  string
	}{
		{"a taken name", map[string]any{"name": "pets", "endpointUrl": svc.URL}, http.StatusConflict, "name"},
		{"no endpoint", map[string]any{"name": "other"}, http.StatusUnprocessableEntity, "endpointUrl"},
		{"an unknown field", map[string]any{"name": "x", "endpointUrl": svc.URL, "color": "red"}, http.StatusUnprocessableEntity, "color"},
		{"bad properties", map[string]any{"name": "x", "endpointUrl": svc.URL, "properties": "nope"}, http.StatusUnprocessableEntity, "properties"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			create(tt.body).wantError(t, tt.status, tt.param)
		})
	}
	t.Run("a private address needs allowPrivate", func(t *testing.T) {
		res := create(map[string]any{"name": "private", "endpointUrl": svc.URL})
		if res.status != http.StatusCreated {
			t.Fatalf("POST = %d %s", res.status, res.body)
		}
		var p map[string]any
		res.decode(t, &p)
		res = e.do(req{method: http.MethodPost, path: "/hooks/remote/" + str(p, "id") + "/refresh"})
		if res.status == http.StatusOK || !strings.Contains(string(res.body), "egress") {
			t.Errorf("refresh of a loopback hook without allowPrivate = %d %s", res.status, res.body)
		}
	})
	if res := e.do(req{method: http.MethodDelete, path: "/hooks/remote/" + id}); res.status != http.StatusOK || string(res.body) != "\"deleted\"\n" && string(res.body) != "\"deleted\"" {
		t.Errorf("DELETE = %d %q", res.status, res.body)
	}
	e.do(req{method: http.MethodGet, path: "/hooks/remote/" + id}).wantError(t, http.StatusNotFound, "")
}
