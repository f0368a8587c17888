package remote_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/hooks/remote"
)

// mcpCall is what the test server saw of one tools/call.
type mcpCall struct {
	tool, apiKey, idemHeader, idemMeta string
	args                               map[string]any
}

// mcpService is an MCP server made with the SDK's own server package,
// over streamable HTTP on loopback. restart drops every session, as a
// restarted server would.
type mcpService struct {
	srv     *httptest.Server
	handler atomic.Pointer[sdk.StreamableHTTPHandler]
	server  *sdk.Server

	mu      sync.Mutex
	calls   []mcpCall
	methods map[string]int
}

type lookupArgs struct {
	ID string `json:"id" jsonschema:"the pet's id"`
}

type lookupOut struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// newMCPServer returns the SDK server with the tools the tests call;
// record, if not nil, is told of every call.
func newMCPServer(record func(req *sdk.CallToolRequest, args map[string]any)) *sdk.Server {
	server := sdk.NewServer(&sdk.Implementation{Name: "pets-mcp", Version: "1"}, nil)
	sdk.AddTool(server, &sdk.Tool{Name: "lookup.pet", Description: "Look a pet up."},
		func(_ context.Context, req *sdk.CallToolRequest, in lookupArgs) (*sdk.CallToolResult, lookupOut, error) {
			if record != nil {
				record(req, map[string]any{"id": in.ID})
			}
			return nil, lookupOut{ID: in.ID, Name: "Rex"}, nil
		})
	server.AddTool(&sdk.Tool{Name: "say", Description: "Says the text back.", InputSchema: map[string]any{
		"type": "object", "properties": map[string]any{"text": map[string]any{"type": "string"}}, "required": []any{"text"},
	}}, func(_ context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		text := string(req.Params.Arguments)
		if record != nil {
			record(req, map[string]any{"raw": text})
		}
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "you said " + text}}}, nil
	})
	server.AddTool(&sdk.Tool{Name: "fail", InputSchema: map[string]any{"type": "object"}},
		func(_ context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
			key := req.Extra.Header.Get("X-Api-Key")
			return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: "no such pet; your key " + key + " is fine"}}}, nil
		})
	return server
}

func newMCPService(t *testing.T) *mcpService {
	t.Helper()
	s := &mcpService{methods: map[string]int{}}
	s.server = newMCPServer(func(req *sdk.CallToolRequest, args map[string]any) {
		c := mcpCall{tool: req.Params.Name, args: args}
		if req.Extra != nil {
			c.apiKey = req.Extra.Header.Get("X-Api-Key")
			c.idemHeader = req.Extra.Header.Get("Idempotency-Key")
		}
		c.idemMeta, _ = req.Params.Meta[remote.IdempotencyMetaKey].(string)
		s.mu.Lock()
		s.calls = append(s.calls, c)
		s.mu.Unlock()
	})
	s.server.AddReceivingMiddleware(func(next sdk.MethodHandler) sdk.MethodHandler {
		return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
			s.mu.Lock()
			s.methods[method]++
			s.mu.Unlock()
			return next(ctx, method, req)
		}
	})
	s.restart()
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.handler.Load().ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *mcpService) restart() {
	s.handler.Store(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s.server }, nil))
}

func (s *mcpService) count(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.methods[method]
}

func (s *mcpService) seen() []mcpCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mcpCall(nil), s.calls...)
}

func (f *fixture) mcpServer(t *testing.T, s *mcpService) *remote.Hook {
	t.Helper()
	h, err := f.src.MCPServers().Create(context.Background(), "acme", remote.Hook{
		Name: "petsmcp", EndpointURL: s.srv.URL, TimeoutMs: 5000, AllowPrivate: true,
		Headers: map[string]string{"X-Api-Key": secret},
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestMCPTools(t *testing.T) {
	f := newFixture(t)
	s := newMCPService(t)
	f.mcpServer(t, s)
	ctx := context.Background()
	tools, err := f.reg.ToolsOf(ctx, "acme", "petsmcp")
	if err != nil {
		t.Fatal(err)
	}
	valid := regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	names := map[string]core.Tool{}
	for _, tool := range tools {
		if !valid.MatchString(tool.Function.Name) {
			t.Errorf("tool name %q", tool.Function.Name)
		}
		names[tool.Function.Name] = tool
	}
	if len(tools) != 3 || names["lookup_pet"].Function.Name == "" || names["say"].Function.Name == "" || names["fail"].Function.Name == "" {
		t.Fatalf("tools %v, want lookup_pet (from lookup.pet), say and fail", keys(names))
	}
	props, _ := names["lookup_pet"].Function.Parameters["properties"].(map[string]any)
	if props["id"] == nil {
		t.Errorf("lookup_pet's parameters %v: want its id", names["lookup_pet"].Function.Parameters)
	}
	if p := names["fail"].Function.Parameters; p["type"] != "object" || p["properties"] == nil {
		t.Errorf("fail's parameters %v: want an object with properties", p)
	}
	// The list is kept: asking again, and calling, lists nothing more.
	if _, err := f.reg.ToolsOf(ctx, "acme", "petsmcp"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.reg.Call(ctx, core.HookCall{Tenant: "acme", Hook: "petsmcp", Tool: "say", Input: jsonInput(map[string]any{"text": "hi"})}); err != nil {
		t.Fatal(err)
	}
	if n := s.count("tools/list"); n != 1 {
		t.Errorf("tools/list asked %d times, want once", n)
	}
	if n := s.count("initialize"); n != 1 {
		t.Errorf("%d sessions opened, want one shared", n)
	}
	// After the TTL the list is asked for again.
	f.clock.add(remote.SpecTTL + 1)
	if _, err := f.reg.ToolsOf(ctx, "acme", "petsmcp"); err != nil {
		t.Fatal(err)
	}
	if n := s.count("tools/list"); n != 2 {
		t.Errorf("tools/list asked %d times after the TTL, want twice", n)
	}
	// The names are the registry's too, beside the built-ins.
	all, err := f.reg.Hooks(ctx, "acme")
	if err != nil || !strings.Contains(strings.Join(all, ","), "petsmcp") {
		t.Errorf("hooks %v (%v): want petsmcp", all, err)
	}
}

func jsonInput(m map[string]any) core.Value { return core.Value{Type: core.TypeJSON, Data: m} }

func TestMCPCall(t *testing.T) {
	f := newFixture(t)
	s := newMCPService(t)
	f.mcpServer(t, s)
	ctx := context.Background()

	t.Run("structured content comes back as JSON", func(t *testing.T) {
		out, err := f.reg.Call(ctx, core.HookCall{Tenant: "acme", Hook: "petsmcp", Tool: "lookup_pet",
			Input: jsonInput(map[string]any{"id": "p-7"}), IdempotencyKey: "ex-1/3/1"})
		if err != nil {
			t.Fatal(err)
		}
		m, ok := out.Data.(map[string]any)
		if out.Type != core.TypeJSON || !ok || m["name"] != "Rex" || m["id"] != "p-7" {
			t.Errorf("answer %s %v, want {id: p-7, name: Rex}", out.Type, out.Data)
		}
		calls := s.seen()
		last := calls[len(calls)-1]
		if last.tool != "lookup.pet" || last.args["id"] != "p-7" {
			t.Errorf("server saw %+v, want lookup.pet with id p-7", last)
		}
		if last.apiKey != secret || last.idemHeader != "ex-1/3/1" || last.idemMeta != "ex-1/3/1" {
			t.Errorf("server saw key %q, Idempotency-Key %q, _meta key %q", last.apiKey, last.idemHeader, last.idemMeta)
		}
	})
	t.Run("a hook task's input and static args are the arguments", func(t *testing.T) {
		out, err := f.reg.Call(ctx, core.HookCall{Tenant: "acme", Hook: "petsmcp", Tool: "say",
			Input: core.String("hello"), Args: map[string]string{"text": "static"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := out.Display(); !strings.Contains(got, `"input":"hello"`) || !strings.Contains(got, `"text":"static"`) {
			t.Errorf("answer %q: want the input and the static text", got)
		}
	})
	t.Run("an error answer is an error, the secret scrubbed", func(t *testing.T) {
		_, err := f.reg.Call(ctx, core.HookCall{Tenant: "acme", Hook: "petsmcp", Tool: "fail", Input: jsonInput(map[string]any{})})
		if err == nil || !strings.Contains(err.Error(), "no such pet") || strings.Contains(err.Error(), secret) {
			t.Errorf("error %v: want the server's text without the secret", err)
		}
	})
	t.Run("an unknown tool", func(t *testing.T) {
		_, err := f.reg.Call(ctx, core.HookCall{Tenant: "acme", Hook: "petsmcp", Tool: "nope"})
		if core.ErrorCode(err) != core.ENOTFOUND {
			t.Errorf("error %v, want ENOTFOUND", err)
		}
	})
	t.Run("a restarted server gets a new session and the call once", func(t *testing.T) {
		before := len(s.seen())
		s.restart()
		out, err := f.reg.Call(ctx, core.HookCall{Tenant: "acme", Hook: "petsmcp", Tool: "lookup_pet", Input: jsonInput(map[string]any{"id": "p-8"})})
		if err != nil {
			t.Fatal(err)
		}
		if m, _ := out.Data.(map[string]any); m["id"] != "p-8" {
			t.Errorf("answer %v", out.Data)
		}
		if n := len(s.seen()) - before; n != 1 {
			t.Errorf("the tool ran %d times, want once", n)
		}
	})
	t.Run("a server that is gone is unavailable", func(t *testing.T) {
		g := newFixture(t)
		dead := newMCPService(t)
		g.mcpServer(t, dead)
		dead.srv.Close()
		_, err := g.reg.ToolsOf(ctx, "acme", "petsmcp")
		if core.ErrorCode(err) != core.EUNAVAILABLE {
			t.Errorf("error %v, want EUNAVAILABLE", err)
		}
	})
}

func TestMCPDefinitions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	servers := f.src.MCPServers()
	if _, err := f.hooks.Create(ctx, "acme", remote.Hook{Name: "taken", EndpointURL: "https://example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := servers.Create(ctx, "acme", remote.Hook{Name: "mine", EndpointURL: "https://example.com/mcp"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		in    remote.Hook
		code  string
		field string
	}{
		{"a remote hook's name", remote.Hook{Name: "taken", EndpointURL: "https://example.com/mcp"}, core.ECONFLICT, "name"},
		{"a built-in's name", remote.Hook{Name: "echo", EndpointURL: "https://example.com/mcp"}, core.ECONFLICT, "name"},
		{"a taken name", remote.Hook{Name: "mine", EndpointURL: "https://example.com/mcp"}, core.ECONFLICT, "name"},
		{"no url", remote.Hook{Name: "x"}, core.EINVALID, "url"},
		{"a command on the server", remote.Hook{Name: "x", Command: []string{"/bin/sh"}}, core.EINVALID, "command"},
		{"a spec URL", remote.Hook{Name: "x", EndpointURL: "https://example.com/mcp", SpecURL: "https://example.com/o.json"}, core.EINVALID, "specUrl"},
		{"properties", remote.Hook{Name: "x", EndpointURL: "https://example.com/mcp", Properties: []remote.Property{{Name: "a", Value: "b"}}}, core.EINVALID, "properties"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := servers.Create(ctx, "acme", tc.in)
			if core.ErrorCode(err) != tc.code || !strings.HasPrefix(err.Error(), tc.field+":") {
				t.Errorf("error %v, want %s naming %s", err, tc.code, tc.field)
			}
		})
	}
	// A remote hook cannot take an MCP server's name either.
	if _, err := f.hooks.Create(ctx, "acme", remote.Hook{Name: "mine", EndpointURL: "https://example.com"}); core.ErrorCode(err) != core.ECONFLICT {
		t.Errorf("a remote hook named as an MCP server: %v, want ECONFLICT", err)
	}
	// The two lists hold their own sort only.
	list, _, err := servers.List(ctx, "acme", core.ListQuery{})
	if err != nil || len(list) != 1 || list[0].Name != "mine" || list[0].Protocol != remote.ProtocolMCP {
		t.Errorf("MCP servers %v (%v), want [mine]", list, err)
	}
	if _, err := f.hooks.Get(ctx, "acme", list[0].ID); core.ErrorCode(err) != core.ENOTFOUND {
		t.Errorf("the MCP server read as a remote hook: %v, want ENOTFOUND", err)
	}
}

// TestMCPEgress tries the SSRF table of TestEgress on MCP servers, and a
// redirect from an allowed server to the metadata address.
func TestMCPEgress(t *testing.T) {
	f := newFixture(t)
	s := newMCPService(t)
	ctx := context.Background()
	reg, src := remote.NewRegistry(remote.SourceConfig{Store: f.store, Sealer: f.box, Resolve: ssrfResolver})
	for i, endpoint := range ssrfTargets(s.srv.URL, "/mcp") {
		t.Run(endpoint, func(t *testing.T) {
			name := fmt.Sprintf("m%d", i)
			if _, err := src.MCPServers().Create(ctx, "acme", remote.Hook{Name: name, EndpointURL: endpoint, TimeoutMs: 2000}); err != nil {
				t.Fatal(err)
			}
			_, err := reg.ToolsOf(ctx, "acme", name)
			if code := core.ErrorCode(err); code != core.EFORBIDDEN && code != core.EUNAVAILABLE || err == nil {
				t.Errorf("ToolsOf: %v, want the connection refused", err)
			}
			if err != nil && !strings.Contains(err.Error(), "egress") && !strings.Contains(err.Error(), "no such host") && !strings.Contains(err.Error(), "refused") {
				t.Errorf("ToolsOf: %v, want the egress guard's refusal", err)
			}
		})
	}
	if n := s.count("initialize"); n != 0 {
		t.Errorf("the server was reached %d times", n)
	}
	t.Run("a redirect is not followed", func(t *testing.T) {
		moved := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusTemporaryRedirect)
		}))
		t.Cleanup(moved.Close)
		if _, err := src.MCPServers().Create(ctx, "acme", remote.Hook{Name: "moved", EndpointURL: moved.URL, TimeoutMs: 2000, AllowPrivate: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := reg.ToolsOf(ctx, "acme", "moved"); core.ErrorCode(err) != core.EUNAVAILABLE {
			t.Errorf("ToolsOf: %v, want a failure", err)
		}
	})
}

// TestMCPStdio runs this test binary as an MCP server over its standard
// input and output, as the CLI runs a configured command.
func TestMCPStdio(t *testing.T) {
	if os.Getenv("STEPWISE_MCP_STDIO_HELPER") == "1" {
		if err := newMCPServer(nil).Run(context.Background(), &sdk.StdioTransport{}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	t.Setenv("STEPWISE_MCP_STDIO_HELPER", "1")
	f := newFixture(t)
	reg, src := remote.NewRegistry(remote.SourceConfig{Store: f.store, AllowStdio: true})
	t.Cleanup(func() { _ = src.Close() })
	ctx := context.Background()
	if _, err := src.MCPServers().Create(ctx, "local", remote.Hook{Name: "pets", Command: []string{os.Args[0], "-test.run=^TestMCPStdio$"}}); err != nil {
		t.Fatal(err)
	}
	out, err := reg.Call(ctx, core.HookCall{Tenant: "local", Hook: "pets", Tool: "lookup_pet", Input: jsonInput(map[string]any{"id": "p-1"})})
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := out.Data.(map[string]any); m["name"] != "Rex" {
		t.Errorf("answer %v, want Rex", out.Data)
	}
}

// BenchmarkMCPCall compares a tool call through the registry (lookup,
// cached tool list, shared session, result conversion) with the same
// call on a session of the SDK's own client.
func BenchmarkMCPCall(b *testing.B) {
	s := &mcpService{methods: map[string]int{}}
	s.server = newMCPServer(nil)
	s.restart()
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.handler.Load().ServeHTTP(w, r) }))
	b.Cleanup(s.srv.Close)
	ctx := context.Background()
	args := map[string]any{"id": "p-1"}
	b.Run("direct", func(b *testing.B) {
		sess, err := sdk.NewClient(&sdk.Implementation{Name: "bench"}, nil).Connect(ctx, &sdk.StreamableClientTransport{Endpoint: s.srv.URL, DisableStandaloneSSE: true}, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = sess.Close() }()
		for b.Loop() {
			if _, err := sess.CallTool(ctx, &sdk.CallToolParams{Name: "lookup.pet", Arguments: args}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("registry", func(b *testing.B) {
		f := newFixture(b)
		if _, err := f.src.MCPServers().Create(ctx, "acme", remote.Hook{Name: "petsmcp", EndpointURL: s.srv.URL, AllowPrivate: true}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = f.src.Close() })
		call := core.HookCall{Tenant: "acme", Hook: "petsmcp", Tool: "lookup_pet", Input: jsonInput(args), IdempotencyKey: "ex/1/1"}
		for b.Loop() {
			if _, err := f.reg.Call(ctx, call); err != nil {
				b.Fatal(err)
			}
		}
	})
}
