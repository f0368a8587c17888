package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/stepwise-run/stepwise/core/hooks/remote"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

// mcpToolServer is an MCP server made with the SDK's own server, over
// streamable HTTP on loopback, with one tool that records what it got and
// echoes the header it was sent, as a careless server would.
type mcpToolServer struct {
	*httptest.Server
	mu    sync.Mutex
	calls []mcpSeen
}

type mcpSeen struct {
	id, apiKey, idemHeader, idemMeta string
}

type petArgs struct {
	ID string `json:"id"`
}

func newMCPToolServer(t *testing.T) *mcpToolServer {
	t.Helper()
	s := &mcpToolServer{}
	server := sdk.NewServer(&sdk.Implementation{Name: "pets", Version: "1"}, nil)
	sdk.AddTool(server, &sdk.Tool{Name: "get_pet", Description: "Read a pet by id."},
		func(_ context.Context, req *sdk.CallToolRequest, in petArgs) (*sdk.CallToolResult, any, error) {
			seen := mcpSeen{id: in.ID, apiKey: req.Extra.Header.Get("X-Api-Key"), idemHeader: req.Extra.Header.Get("Idempotency-Key")}
			seen.idemMeta, _ = req.Params.Meta[remote.IdempotencyMetaKey].(string)
			s.mu.Lock()
			s.calls = append(s.calls, seen)
			s.mu.Unlock()
			text := "pet " + in.ID + " is Rex the dog (key " + seen.apiKey + ")"
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: text}}}, nil, nil
		})
	s.Server = httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return server }, nil))
	t.Cleanup(s.Close)
	return s
}

// TestMCPServerAgentLoop is the show case with an MCP server: the
// model calls the server's tool; the server gets the injected header, the
// idempotency key and the arguments; the model gets the answer; the
// secret shows in no answer, log or step record.
func TestMCPServerAgentLoop(t *testing.T) {
	e := newEnv(t)
	e.addOllama("local-ollama")
	svc := newMCPToolServer(t)
	res := e.do(req{method: http.MethodPost, path: "/mcp-servers", body: map[string]any{
		"name": "pets", "url": svc.URL, "transport": "streamable-http", "timeoutMs": 5000, "allowPrivate": true,
		"headers": map[string]string{"X-Api-Key": toolSecret},
	}})
	if res.status != http.StatusCreated {
		t.Fatalf("POST /mcp-servers = %d %s", res.status, res.body)
	}
	var server struct {
		ID, URL, Transport string
		Headers            map[string]string
	}
	res.decode(t, &server)
	if server.Headers["X-Api-Key"] != remote.SealedValue || server.URL != svc.URL || server.Transport != "streamable-http" {
		t.Errorf("the created server shows %+v", server)
	}

	res, runID, toolResult := e.askForPet(t, "pets_get_pet")
	svc.mu.Lock()
	calls := append([]mcpSeen(nil), svc.calls...)
	svc.mu.Unlock()
	if len(calls) != 1 {
		t.Fatalf("the server saw %d calls, want 1", len(calls))
	}
	if c := calls[0]; c.id != "42" || c.apiKey != toolSecret || !strings.HasPrefix(c.idemHeader, runID+"/") || c.idemMeta != c.idemHeader {
		t.Errorf("the server got %+v", c)
	}
	e.noSecrets(t, []string{string(res.body), toolResult}, []string{"/mcp-servers", "/mcp-servers/" + server.ID,
		"/mcp-servers/by-name/pets", "/hooks/local"}, runID, toolSecret)
}

func TestMCPServerRoutes(t *testing.T) {
	e := newEnv(t)
	svc := newMCPToolServer(t)
	create := func(body map[string]any) *response {
		return e.do(req{method: http.MethodPost, path: "/mcp-servers", body: body})
	}
	res := create(map[string]any{"name": "pets", "url": svc.URL, "allowPrivate": true, "headers": map[string]string{"X-Api-Key": toolSecret}})
	if res.status != http.StatusCreated {
		t.Fatalf("POST = %d %s", res.status, res.body)
	}
	var created map[string]any
	res.decode(t, &created)
	id := str(created, "id")

	t.Run("listed with its tools", func(t *testing.T) {
		var hooks []struct {
			Name, Type, Error string
			Tools             []struct{ Function struct{ Name string } }
		}
		e.do(req{method: http.MethodGet, path: "/hooks/local"}).decode(t, &hooks)
		found := false
		for _, x := range hooks {
			found = found || x.Name == "pets" && x.Type == "mcp" && len(x.Tools) == 1 && x.Tools[0].Function.Name == "get_pet" && x.Error == ""
		}
		if !found {
			t.Errorf("/hooks/local: %+v", hooks)
		}
		var page []map[string]any
		e.do(req{method: http.MethodGet, path: "/mcp-servers"}).decode(t, &page)
		if len(page) != 1 || page[0]["name"] != "pets" {
			t.Errorf("GET /mcp-servers: %v", page)
		}
		var remotes []map[string]any
		e.do(req{method: http.MethodGet, path: "/hooks/remote"}).decode(t, &remotes)
		if len(remotes) != 0 {
			t.Errorf("GET /hooks/remote lists the MCP server: %v", remotes)
		}
		res := e.do(req{method: http.MethodPost, path: "/mcp-servers/" + id + "/refresh"})
		if res.status != http.StatusOK || !strings.Contains(string(res.body), "get_pet") {
			t.Errorf("refresh = %d %s", res.status, res.body)
		}
	})
	t.Run("hide_tools hides its tools", func(t *testing.T) {
		e.addOllama("local-ollama")
		e.llm.Script(fakellm.Reply{Match: "hidden tools", Text: "none"})
		res := e.do(req{method: http.MethodPost, path: "/tasks", body: map[string]any{"input": "hidden tools?", "inputType": "string",
			"chain": map[string]any{"id": "hide", "tasks": []any{map[string]any{"id": "chat", "handler": "chat_completion",
				"execute_config": map[string]any{"hooks": []string{"pets"}, "hide_tools": []string{"pets_get_pet"}},
				"transition":     map[string]any{"branches": []any{map[string]any{"operator": "default", "goto": "end"}}}}}}}})
		reqs := e.llm.Requests()
		if res.status != http.StatusOK || len(reqs) == 0 || len(reqs[len(reqs)-1].Tools) != 0 {
			t.Errorf("POST /tasks = %d %s; the model was offered %v", res.status, res.body, reqs[len(reqs)-1].Tools)
		}
	})
	t.Run("a PUT of what GET showed keeps the secret", func(t *testing.T) {
		var shown map[string]any
		e.do(req{method: http.MethodGet, path: "/mcp-servers/" + id}).decode(t, &shown)
		shown["timeoutMs"] = 2000
		if res := e.do(req{method: http.MethodPut, path: "/mcp-servers/" + id, body: shown}); res.status != http.StatusOK {
			t.Fatalf("PUT = %d %s", res.status, res.body)
		}
		got, err := e.store.GetRecord(t.Context(), "default", remote.KindMCPServer, id)
		if err != nil || strings.Contains(string(got.Body), toolSecret) || !strings.Contains(string(got.Body), `"timeoutMs":2000`) {
			t.Errorf("stored %s, %v", got.Body, err)
		}
		svc.mu.Lock()
		n := len(svc.calls)
		svc.mu.Unlock()
		res := e.do(req{method: http.MethodPost, path: "/tasks", body: map[string]any{"input": map[string]any{"id": "7"}, "inputType": "json",
			"chain": map[string]any{"id": "direct", "tasks": []any{map[string]any{"id": "call", "handler": "hook",
				"hook": map[string]any{"name": "pets", "tool_name": "get_pet"}, "transition": map[string]any{"branches": []any{map[string]any{"operator": "default", "goto": "end"}}}}}}}})
		svc.mu.Lock()
		calls := svc.calls[n:]
		svc.mu.Unlock()
		if res.status != http.StatusOK || len(calls) != 1 || calls[0].apiKey != toolSecret {
			t.Errorf("a hook task after the PUT: %d %s; the server saw %+v", res.status, res.body, calls)
		}
	})
	for _, tt := range []struct {
		name   string
		body   map[string]any
		status int
		param  string
	}{
		{"stdio", map[string]any{"name": "x", "transport": "stdio", "command": []string{"/bin/sh"}}, http.StatusUnprocessableEntity, "command"},
		{"stdio without a command", map[string]any{"name": "x", "transport": "stdio"}, http.StatusUnprocessableEntity, "transport"},
		{"an unknown transport", map[string]any{"name": "x", "url": svc.URL, "transport": "sse"}, http.StatusUnprocessableEntity, "transport"},
		{"no url", map[string]any{"name": "x"}, http.StatusUnprocessableEntity, "url"},
		{"a taken name", map[string]any{"name": "pets", "url": svc.URL}, http.StatusConflict, "name"},
		{"a built-in's name", map[string]any{"name": "echo", "url": svc.URL}, http.StatusConflict, "name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := create(tt.body)
			var body struct{ Error struct{ Param string } }
			res.decode(t, &body)
			if res.status != tt.status || body.Error.Param != tt.param {
				t.Errorf("POST = %d %s, want %d naming %s", res.status, res.body, tt.status, tt.param)
			}
		})
	}
	t.Run("a remote hook cannot take its name", func(t *testing.T) {
		res := e.do(req{method: http.MethodPost, path: "/hooks/remote", body: map[string]any{"name": "pets", "endpointUrl": "https://example.com"}})
		if res.status != http.StatusConflict {
			t.Errorf("POST /hooks/remote = %d %s, want 409", res.status, res.body)
		}
	})
	t.Run("deleted", func(t *testing.T) {
		if res := e.do(req{method: http.MethodDelete, path: "/mcp-servers/" + id}); res.status != http.StatusOK {
			t.Fatalf("DELETE = %d %s", res.status, res.body)
		}
		if res := e.do(req{method: http.MethodGet, path: "/mcp-servers/" + id}); res.status != http.StatusNotFound {
			t.Errorf("GET after DELETE = %d", res.status)
		}
	})
}
