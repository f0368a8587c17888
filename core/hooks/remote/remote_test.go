package remote_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/hooks"
	"github.com/stepwise-run/stepwise/core/hooks/remote"
	"github.com/stepwise-run/stepwise/core/seal"
	"github.com/stepwise-run/stepwise/infra/mem"
)

// petsSpec is the document the test service serves: a path parameter, a
// query and a header parameter, a JSON body, a schema that refers to
// itself, an operation without an operationId, and a health path.
const petsSpec = `{
  "openapi": "3.0.3",
  "info": {"title": "pets", "version": "1"},
  "servers": [{"url": "/api"}],
  "paths": {
    "/pets/{id}": {
      "get": {
        "operationId": "getPet",
        "summary": "Read a pet.",
        "parameters": [
          {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
          {"name": "verbose", "in": "query", "schema": {"type": "boolean"}},
          {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
          {"name": "account", "in": "query", "schema": {"type": "string"}}
        ],
        "responses": {"200": {"description": "ok"}}
      }
    },
    "/pets": {
      "post": {
        "operationId": "add pet!",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}},
        "responses": {"201": {"description": "made"}}
      }
    },
    "/echo": {
      "get": {"responses": {"200": {"description": "the request's headers"}}}
    },
    "/moved": {
      "get": {"operationId": "moved", "responses": {"302": {"description": "elsewhere"}}}
    },
    "/health": {"get": {"responses": {"200": {"description": "up"}}}}
  },
  "components": {
    "schemas": {
      "Pet": {
        "type": "object",
        "required": ["name"],
        "properties": {
          "name": {"type": "string"},
          "tag": {"type": "string"},
          "family": {"$ref": "#/components/schemas/Node"}
        }
      },
      "Node": {
        "type": "object",
        "properties": {"children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}}
      }
    }
  }
}`

// service is the hook's HTTP service: it serves petsSpec and records the
// calls.
type service struct {
	srv *httptest.Server
	// elsewhere is another host /moved redirects to.
	elsewhere *httptest.Server

	mu         sync.Mutex
	calls      []*http.Request
	bodies     []string
	specFetch  int
	notChanged int
	down       bool
}

func newService(t *testing.T) *service {
	t.Helper()
	s := &service{}
	s.elsewhere = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the redirect was followed to %s with headers %v", r.URL, r.Header)
	}))
	t.Cleanup(s.elsewhere.Close)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path == "/openapi.json" {
			s.specFetch++
			if r.Header.Get("If-None-Match") == `"v1"` {
				s.notChanged++
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, petsSpec)
			return
		}
		body, _ := io.ReadAll(r.Body)
		s.calls = append(s.calls, r.Clone(context.Background()))
		s.bodies = append(s.bodies, string(body))
		switch {
		case r.URL.Path == "/api/moved":
			http.Redirect(w, r, s.elsewhere.URL+"/steal", http.StatusFound)
		case r.URL.Path == "/api/echo":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"key": r.Header.Get("X-Api-Key")})
		default:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"path": r.URL.EscapedPath(), "query": r.URL.RawQuery, "n": 7})
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *service) last(t *testing.T) (*http.Request, string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.calls) == 0 {
		t.Fatal("the service saw no call")
	}
	return s.calls[len(s.calls)-1], s.bodies[len(s.bodies)-1]
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	hooks *remote.Hooks
	src   *remote.Source
	reg   *hooks.Registry
	store *mem.Store
	clock *clock
	box   *seal.Box
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	box, err := seal.New(seal.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: mem.New(), clock: &clock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}}
	f.box = box
	f.reg, f.src = remote.NewRegistry(remote.SourceConfig{Store: f.store, Sealer: box, Now: f.clock.now}, hooks.Echo())
	f.hooks = f.src.Definitions()
	return f
}

const secret = "secret-key-123"

func (f *fixture) petsHook(t *testing.T, s *service) *remote.Hook {
	t.Helper()
	h, err := f.hooks.Create(context.Background(), "acme", remote.Hook{
		Name: "pets", EndpointURL: s.srv.URL, TimeoutMs: 5000, AllowPrivate: true,
		Headers:    map[string]string{"X-Api-Key": secret},
		Properties: []remote.Property{{Name: "account", Value: "acct-9", In: "query"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestTools(t *testing.T) {
	f := newFixture(t)
	s := newService(t)
	f.petsHook(t, s)
	tools, err := f.reg.ToolsOf(context.Background(), "acme", "pets")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]core.Tool{}
	valid := regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	for _, tool := range tools {
		if !valid.MatchString(tool.Function.Name) {
			t.Errorf("tool name %q", tool.Function.Name)
		}
		byName[tool.Function.Name] = tool
	}
	for _, name := range []string{"getPet", "add_pet", "get_echo", "moved"} {
		if _, ok := byName[name]; !ok {
			t.Errorf("no tool %s in %v", name, keys(byName))
		}
	}
	if len(tools) != 4 {
		t.Errorf("%d tools (%v), want 4: /health is not a tool", len(tools), keys(byName))
	}
	get := byName["getPet"].Function.Parameters
	props := get["properties"].(map[string]any)
	if props["id"] == nil || props["verbose"] == nil || props["X-Trace"] == nil || props["account"] != nil {
		t.Errorf("getPet's parameters %v: want id, verbose and X-Trace, and not the injected account", props)
	}
	add := byName["add_pet"].Function.Parameters
	if req, _ := add["required"].([]string); len(req) != 1 || req[0] != "name" {
		t.Errorf("add_pet requires %v, want [name]", add["required"])
	}
	// The self-referring schema is written out a few levels deep, then
	// stops.
	b, err := json.Marshal(add)
	if err != nil || !strings.Contains(string(b), "children") || len(b) > 4000 {
		t.Errorf("add_pet's parameters (%d bytes, %v): %s", len(b), err, b)
	}
	// Another tenant has no such hook.
	if _, err := f.reg.ToolsOf(context.Background(), "globex", "pets"); core.ErrorCode(err) != core.ENOTFOUND {
		t.Errorf("globex's pets: %v, want ENOTFOUND", err)
	}
}

func keys(m map[string]core.Tool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func call(f *fixture, tool string, args map[string]any) (core.Value, error) {
	return f.reg.Call(context.Background(), core.HookCall{Tenant: "acme", Hook: "pets", Tool: tool,
		Input: core.Value{Type: core.TypeJSON, Data: args}, IdempotencyKey: "ex1/2/1"})
}

func TestCall(t *testing.T) {
	f := newFixture(t)
	s := newService(t)
	f.petsHook(t, s)
	t.Run("path, query and header parameters", func(t *testing.T) {
		out, err := call(f, "getPet", map[string]any{"id": "a b/c", "verbose": true, "X-Trace": "t1"})
		if err != nil {
			t.Fatal(err)
		}
		r, _ := s.last(t)
		if r.URL.EscapedPath() != "/api/pets/a%20b%2Fc" || r.URL.Query().Get("verbose") != "true" || r.URL.Query().Get("account") != "acct-9" {
			t.Errorf("request %s ?%s", r.URL.EscapedPath(), r.URL.RawQuery)
		}
		if r.Header.Get("X-Api-Key") != secret || r.Header.Get("X-Trace") != "t1" || r.Header.Get("Idempotency-Key") != "ex1/2/1" {
			t.Errorf("headers %v", r.Header)
		}
		if m, ok := out.Data.(map[string]any); out.Type != core.TypeJSON || !ok || m["n"] != json.Number("7") {
			t.Errorf("answer %+v", out)
		}
	})
	t.Run("JSON body", func(t *testing.T) {
		if _, err := call(f, "add_pet", map[string]any{"name": "Rex", "tag": "dog", "stray": 1}); err != nil {
			t.Fatal(err)
		}
		r, body := s.last(t)
		var got map[string]any
		if err := json.Unmarshal([]byte(body), &got); err != nil || r.Method != http.MethodPost || got["name"] != "Rex" || got["tag"] != "dog" || got["stray"] != nil {
			t.Errorf("%s body %s", r.Method, body)
		}
	})
	t.Run("an echoed secret is scrubbed", func(t *testing.T) {
		out, err := call(f, "get_echo", nil)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := json.Marshal(out.Data); strings.Contains(string(b), secret) || !strings.Contains(string(b), remote.SealedValue) {
			t.Errorf("answer %s shows the secret", b)
		}
	})
	for _, tt := range []struct {
		name string
		tool string
		args map[string]any
		code string
		msg  string
	}{
		{"a dot-dot path segment", "getPet", map[string]any{"id": ".."}, core.EINVALID, "not a path segment"},
		{"a missing path parameter", "getPet", map[string]any{}, core.EINVALID, "id: required"},
		{"a header with a line break", "getPet", map[string]any{"id": "1", "X-Trace": "a\r\nX-Evil: 1"}, core.EINVALID, "X-Trace"},
		{"an unknown tool", "nope", nil, core.ENOTFOUND, "no tool"},
		{"a redirect elsewhere", "moved", nil, core.EINVALID, "redirect"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := call(f, tt.tool, tt.args)
			if core.ErrorCode(err) != tt.code || err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %v, want %s saying %q", err, tt.code, tt.msg)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
}

func TestSpecCache(t *testing.T) {
	f := newFixture(t)
	s := newService(t)
	h := f.petsHook(t, s)
	ctx := context.Background()
	fetches := func() (int, int) { s.mu.Lock(); defer s.mu.Unlock(); return s.specFetch, s.notChanged }
	for range 3 {
		if _, err := call(f, "getPet", map[string]any{"id": "1"}); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := fetches(); n != 1 {
		t.Errorf("%d fetches of the document for three calls, want 1", n)
	}
	f.clock.add(remote.SpecTTL + time.Second)
	if _, err := f.src.Tools(ctx, "acme", h, false); err != nil {
		t.Fatal(err)
	}
	if n, same := fetches(); n != 2 || same != 1 {
		t.Errorf("after the TTL: %d fetches, %d answered 304; want 2 and 1", n, same)
	}
	// While the service is down, the last good document serves; a
	// refresh asked for says it failed.
	s.mu.Lock()
	s.down = true
	s.mu.Unlock()
	f.clock.add(remote.SpecTTL + time.Second)
	if tools, err := f.src.Tools(ctx, "acme", h, false); err != nil || len(tools) != 4 {
		t.Errorf("with the service down: %d tools, %v", len(tools), err)
	}
	if _, err := f.src.Tools(ctx, "acme", h, true); core.ErrorCode(err) != core.EUNAVAILABLE {
		t.Errorf("refresh with the service down: %v, want EUNAVAILABLE", err)
	}
}

func TestDefinitions(t *testing.T) {
	f := newFixture(t)
	s := newService(t)
	ctx := context.Background()
	h := f.petsHook(t, s)
	t.Run("sealed at rest", func(t *testing.T) {
		r, err := f.store.GetRecord(ctx, "acme", remote.KindHook, h.ID)
		if err != nil || strings.Contains(string(r.Body), secret) || strings.Contains(string(r.Body), "acct-9") {
			t.Errorf("stored record %s, %v", r.Body, err)
		}
		shown := h.Shown()
		if shown.Headers["X-Api-Key"] != remote.SealedValue || shown.Properties[0].Value != remote.SealedValue {
			t.Errorf("shown %+v", shown)
		}
	})
	t.Run("an update that sends the sealed value back keeps it", func(t *testing.T) {
		next := *h.Shown()
		next.TimeoutMs = 1000
		if _, err := f.hooks.Update(ctx, "acme", h.ID, next); err != nil {
			t.Fatal(err)
		}
		got, err := f.hooks.Get(ctx, "acme", h.ID)
		if err != nil || got.Headers["X-Api-Key"] != secret || got.Properties[0].Value != "acct-9" || got.TimeoutMs != 1000 {
			t.Errorf("after the update %+v, %v", got, err)
		}
	})
	for _, tt := range []struct {
		name string
		hook remote.Hook
		code string
		msg  string
	}{
		{"a taken name", remote.Hook{Name: "pets", EndpointURL: "https://example.com"}, core.ECONFLICT, "name"},
		{"a built-in's name", remote.Hook{Name: "echo", EndpointURL: "https://example.com"}, core.ECONFLICT, "name"},
		{"a bad name", remote.Hook{Name: "a.b", EndpointURL: "https://example.com"}, core.EINVALID, "name"},
		{"no endpoint", remote.Hook{Name: "x"}, core.EINVALID, "endpointUrl"},
		{"credentials in the URL", remote.Hook{Name: "x", EndpointURL: "https://u:p@example.com"}, core.EINVALID, "endpointUrl"},
		{"a file URL", remote.Hook{Name: "x", EndpointURL: "file:///etc/passwd"}, core.EINVALID, "endpointUrl"},
		{"a long timeout", remote.Hook{Name: "x", EndpointURL: "https://example.com", TimeoutMs: 3_600_000}, core.EINVALID, "timeoutMs"},
		{"a bad header", remote.Hook{Name: "x", EndpointURL: "https://example.com", Headers: map[string]string{"X": "a\nb"}}, core.EINVALID, "headers.X"},
		{"a bad property place", remote.Hook{Name: "x", EndpointURL: "https://example.com", Properties: []remote.Property{{Name: "a", In: "cookie"}}}, core.EINVALID, "properties[0].in"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.hooks.Create(ctx, "acme", tt.hook)
			if core.ErrorCode(err) != tt.code || !strings.HasPrefix(err.Error(), tt.msg) {
				t.Errorf("Create: %v, want %s naming %s", err, tt.code, tt.msg)
			}
		})
	}
	// The same name is free in another tenant.
	if _, err := f.hooks.Create(ctx, "globex", remote.Hook{Name: "pets", EndpointURL: "https://example.com"}); err != nil {
		t.Errorf("globex's pets: %v", err)
	}
}

// TestEgress: a hook not allowed private addresses reaches none of the
// places an attacker would point it at, however the address is spelled.
// ssrfResolver points the test names of ssrfTargets at forbidden
// addresses.
func ssrfResolver(_ context.Context, host string) ([]netip.Addr, error) {
	addrs := map[string]string{"metadata.test": "169.254.169.254", "loopback.test": "127.0.0.1", "mapped.test": "::ffff:127.0.0.1", "v6.test": "::1"}
	if a, ok := addrs[host]; ok {
		return []netip.Addr{netip.MustParseAddr(a)}, nil
	}
	return nil, core.Errorf(core.ENOTFOUND, "no such host %s", host)
}

// ssrfTargets are the ways to name a forbidden address, those on
// loopback at the port of serverURL, each followed by path.
func ssrfTargets(serverURL, path string) []string {
	port := serverURL[strings.LastIndex(serverURL, ":"):]
	var out []string
	for _, u := range []string{
		"http://169.254.169.254", "http://127.0.0.1" + port, "http://[::1]" + port, "http://[::ffff:127.0.0.1]" + port,
		"http://2130706433" + port, "http://0x7f000001" + port,
		"http://metadata.test", "http://loopback.test" + port, "http://mapped.test" + port, "http://v6.test" + port,
	} {
		out = append(out, u+path)
	}
	return out
}

func TestEgress(t *testing.T) {
	f := newFixture(t)
	s := newService(t)
	ctx := context.Background()
	f.src = remote.NewSource(remote.SourceConfig{Store: f.store, Sealer: f.box, Now: f.clock.now, Resolve: ssrfResolver})
	for i, endpoint := range ssrfTargets(s.srv.URL, "") {
		t.Run(endpoint, func(t *testing.T) {
			h, err := f.hooks.Create(ctx, "acme", remote.Hook{Name: "h" + string(rune('a'+i)), EndpointURL: endpoint, TimeoutMs: 2000})
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.src.Tools(ctx, "acme", h, true)
			if code := core.ErrorCode(err); code != core.EFORBIDDEN && code != core.EUNAVAILABLE || err == nil {
				t.Errorf("Tools: %v, want the fetch refused", err)
			}
			if err != nil && core.ErrorCode(err) == core.EUNAVAILABLE && !strings.Contains(err.Error(), "egress") && !strings.Contains(err.Error(), "no such host") {
				t.Errorf("Tools: %v, want the egress guard's refusal", err)
			}
		})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.specFetch != 0 {
		t.Errorf("the service was reached %d times", s.specFetch)
	}
}
