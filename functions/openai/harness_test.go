package openai_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	goopenai "github.com/sashabaranov/go-openai"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/fleet"
	"github.com/stepwise-run/stepwise/core/hooks"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/core/meter"
	"github.com/stepwise-run/stepwise/docs"
	"github.com/stepwise-run/stepwise/functions/api"
	"github.com/stepwise-run/stepwise/functions/internal/functest"
	"github.com/stepwise-run/stepwise/functions/openai"
	"github.com/stepwise-run/stepwise/infra/mem"
)

// Models of the test servers: the Ollama fake has fakellm's defaults, the
// OpenAI-protocol fake one model of its own.
const (
	ollamaModel = "llama3.2:1b"
	openaiModel = "gpt-4o-mini"
	embedModel  = "nomic-embed-text:latest"
	ghostModel  = "ghost:1b" // assigned to a backend that is down
)

// env is the OpenAI function mounted with the management API over the
// in-memory store, a real catalog, fleet and engine, and two fake model
// servers: one speaking Ollama's protocol, one OpenAI's.
type env struct {
	t      testing.TB
	srv    *httptest.Server
	ollama *fakellm.Server
	oai    *fakellm.Server
	cat    *catalog.Catalog
	store  *mem.Store
	client *goopenai.Client
	logs   *functest.Logs
	router routers.Router
	keys   *access.Keys // set with envOptions.keys
	meter  *meter.Meter // set with envOptions.meter
}

// envOptions adjust an env before it starts.
type envOptions struct {
	chainTimeout time.Duration
	heartbeat    time.Duration
	// keys, when set, makes the function require API keys.
	keys bool
	// meter, when set, meters every call (e.meter).
	meter bool
}

func newEnv(t testing.TB, opts ...envOptions) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, ollama: fakellm.Start(), oai: fakellm.Start(), store: mem.New(), logs: &functest.Logs{}}
	t.Cleanup(e.ollama.Close)
	t.Cleanup(e.oai.Close)
	e.oai.SetModels(fakellm.Model{Name: openaiModel, ContextLength: 128000})

	e.cat = catalog.New(catalog.Config{Store: e.store, Defaults: catalog.Defaults{
		Chat: catalog.DefaultModel{Name: ollamaModel, ContextLength: 8192},
	}})
	if err := e.cat.Bootstrap(ctx, core.DefaultTenant, catalog.BootstrapConfig{}); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	e.addBackend(catalog.Backend{Name: "fake-ollama", BaseURL: e.ollama.URL(), Type: catalog.TypeOllama})
	e.addBackend(catalog.Backend{Name: "fake-openai", BaseURL: e.oai.URL() + "/v1", Type: catalog.TypeOpenAI})
	// A backend that is down, the only one assigned the ghost model.
	dead := e.addBackend(catalog.Backend{Name: "dead", BaseURL: "http://127.0.0.1:1", Type: catalog.TypeOllama})
	g, err := e.cat.CreateGroup(ctx, core.DefaultTenant, catalog.Group{Name: "ghosts", PurposeType: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cat.CreateModel(ctx, core.DefaultTenant, catalog.Model{Model: ghostModel, ContextLength: 2048, CanChat: true, CanPrompt: true}); err != nil {
		t.Fatal(err)
	}
	if err := e.cat.AssignBackend(ctx, core.DefaultTenant, g.ID, dead.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.cat.AssignModel(ctx, core.DefaultTenant, g.ID, ghostModel); err != nil {
		t.Fatal(err)
	}

	fleets := fleet.NewTenants(fleet.Config{Source: e.cat, NewProvider: fleet.NewProvider, SyncInterval: time.Hour})
	if err := fleets.For(core.DefaultTenant).Reload(ctx); err != nil {
		t.Fatal(err)
	}
	tools := hooks.NewRegistry(nil, hooks.Echo(), hooks.Print())
	log := slog.New(slog.NewJSONHandler(e.logs, nil))
	cfg := openai.Config{Catalog: e.cat, Models: func(tenant string) openai.Models { return fleets.For(tenant) }, Executions: e.store, Records: e.store, Logger: log}
	for _, o := range opts {
		if o.chainTimeout > 0 {
			cfg.ChainTimeout = o.chainTimeout
		}
		if o.heartbeat > 0 {
			cfg.Heartbeat = o.heartbeat
		}
		if o.keys {
			e.keys = access.New(access.Config{Store: e.store})
			cfg.Keys = e.keys
		}
		if o.meter {
			var keys meter.KeySource // an untyped nil without keys
			if e.keys != nil {
				keys = e.keys
			}
			e.meter = meter.New(e.store, e.store, keys, nil)
			cfg.Meter = e.meter
		}
	}
	engine := functest.StartWorkers(t, core.EngineConfig{Store: e.store, LLM: fleets.LLM(), Tools: tools, Meter: functest.StepMeter(e.meter)})
	cfg.Engine = engine
	oa := openai.New(cfg)
	mgmt := api.New(api.Config{Catalog: e.cat, Fleets: func(tenant string) api.Fleet { return fleets.For(tenant) }, Engine: engine, Executions: e.store, Hooks: tools, Logger: log})
	e.srv = httptest.NewServer(openai.Mount(oa, mgmt))
	t.Cleanup(e.srv.Close)
	t.Cleanup(oa.Close)
	t.Cleanup(mgmt.Close)
	e.client = e.clientAt("/v1")
	doc, err := openapi3.NewLoader().LoadFromData([]byte(docs.OpenAPI))
	if err != nil {
		t.Fatal(err)
	}
	if e.router, err = gorillamux.NewRouter(doc); err != nil {
		t.Fatal(err)
	}
	return e
}

// clientAt is a go-openai client whose base URL is the server's path.
func (e *env) clientAt(path string) *goopenai.Client {
	cfg := goopenai.DefaultConfig("sk-anything")
	cfg.BaseURL = e.srv.URL + path
	return goopenai.NewClientWithConfig(cfg)
}

func (e *env) addBackend(b catalog.Backend) catalog.Backend {
	e.t.Helper()
	out, err := e.cat.CreateBackend(context.Background(), core.DefaultTenant, b)
	if err != nil {
		e.t.Fatalf("create backend %s: %v", b.Name, err)
	}
	return out
}

// chain stores a chain given as JSON.
func (e *env) chain(doc string) {
	e.t.Helper()
	res := e.post("/taskchains", doc)
	if res.status != http.StatusCreated {
		e.t.Fatalf("POST /taskchains = %d %s", res.status, res.body)
	}
}

// response is an answer read in full.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) send(method, path, body string) *response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read: %v", method, path, err)
	}
	out := &response{status: res.StatusCode, header: res.Header, body: b}
	if openai.Owns(path) {
		e.checkDocument(method, path, body, out)
	}
	return out
}

// checkDocument checks a request of this function and its answer against
// docs/openapi.yaml (a stream's body is not checked).
func (e *env) checkDocument(method, path, body string, res *response) {
	e.t.Helper()
	lookup, err := http.NewRequest(method, "http://localhost:8081"+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	lookup.Header.Set("Content-Type", "application/json")
	route, params, err := e.router.FindRoute(lookup)
	if err != nil {
		if res.status != http.StatusNotFound && res.status != http.StatusMethodNotAllowed {
			e.t.Errorf("%s %s is on no documented route (%v) but answered %d", method, path, err, res.status)
		}
		return
	}
	ctx := context.Background()
	in := &openapi3filter.RequestValidationInput{Request: lookup, PathParams: params, Route: route,
		Options: &openapi3filter.Options{MultiError: true, ExcludeRequestBody: res.status >= 400}}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil && res.status < 400 {
		e.t.Errorf("%s %s: the document rejects the request but the server answered %d:\n%v", method, path, res.status, err)
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: res.status, Header: res.header,
		Body: io.NopCloser(bytes.NewReader(res.body)),
		Options: &openapi3filter.Options{MultiError: true, IncludeResponseStatus: true,
			ExcludeResponseBody: strings.HasPrefix(res.header.Get("Content-Type"), "text/event-stream")},
	}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		e.t.Errorf("%s %s: the answer (%d %s) does not match the document:\n%v", method, path, res.status, res.body, err)
	}
}

func (e *env) post(path, body string) *response { return e.send(http.MethodPost, path, body) }
func (e *env) get(path string) *response        { return e.send(http.MethodGet, path, "") }

// decode unmarshals the body into v.
func (r *response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// wantError checks an error answer's status, code and param.
func (r *response) wantError(t *testing.T, status int, code, param string) string {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	var env struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Code    string  `json:"code"`
			Param   *string `json:"param"`
		} `json:"error"`
	}
	r.decode(t, &env)
	got := ""
	if env.Error.Param != nil {
		got = *env.Error.Param
	}
	if got != param || (code != "" && env.Error.Code != code) {
		t.Errorf("code %q param %q, want %q %q; message %q", env.Error.Code, got, code, param, env.Error.Message)
	}
	if env.Error.Message == "" || env.Error.Type == "" {
		t.Errorf("incomplete envelope %s", r.body)
	}
	return env.Error.Message
}

// sseEvents splits a stream body into its data lines.
func sseEvents(body string) []string {
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			out = append(out, d)
		}
	}
	return out
}

// waitFor polls cond until it holds or the test's patience runs out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
