package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/egress"
	"github.com/stepwise-run/stepwise/core/eventing"
	"github.com/stepwise-run/stepwise/core/fleet"
	"github.com/stepwise-run/stepwise/core/hooks"
	"github.com/stepwise-run/stepwise/core/hooks/remote"
	"github.com/stepwise-run/stepwise/core/jsfunc"
	"github.com/stepwise-run/stepwise/core/llm"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/core/llm/ollama"
	"github.com/stepwise-run/stepwise/core/llm/openai"
	"github.com/stepwise-run/stepwise/core/seal"
	"github.com/stepwise-run/stepwise/docs"
	"github.com/stepwise-run/stepwise/functions/api"
	"github.com/stepwise-run/stepwise/functions/ingest"
	"github.com/stepwise-run/stepwise/functions/internal/functest"
	"github.com/stepwise-run/stepwise/infra/mem"
)

// The default models of every test server; fakellm has all three.
const (
	embedModel = "nomic-embed-text:latest"
	taskModel  = "llama3.2:1b"
	chatModel  = "qwen2.5:7b"
)

// env is one API over the in-memory store, a real catalog and fleet, and a
// fake model server, with every request and response checked against
// docs/openapi.yaml.
type env struct {
	t      *testing.T
	api    *api.API
	srv    *httptest.Server
	llm    *fakellm.Server
	cat    *catalog.Catalog
	store  *mem.Store
	logs   *functest.Logs
	doc    *openapi3.T
	router routers.Router

	mu     sync.Mutex
	bodies []string // every response's headers and body, for leak checks
}

// options adjust an env before it starts.
type options struct {
	cfg  func(*api.Config)
	wrap func(http.Handler) http.Handler
	// noDefaults starts the server with no default models configured.
	noDefaults bool
}

// The request validator gets the YAML forms the API accepts: kin-openapi
// knows only application/yaml and application/x-yaml, and no base64.
func init() {
	decode := func(body io.Reader, h http.Header, schema *openapi3.SchemaRef, enc openapi3filter.EncodingFn) (any, error) {
		data, err := io.ReadAll(body)
		if err != nil {
			return nil, err
		}
		mt, params, _ := mime.ParseMediaType(h.Get("Content-Type"))
		if mt == "application/x-yaml-base64" || params["encoding"] == "base64" {
			if data, err = base64.StdEncoding.DecodeString(strings.TrimSpace(string(data))); err != nil {
				return nil, err
			}
		}
		return openapi3filter.YamlBodyDecoder(bytes.NewReader(data), h, schema, enc)
	}
	for _, ct := range []string{"application/yaml", "application/x-yaml", "text/yaml", "application/x-yaml-base64"} {
		openapi3filter.RegisterBodyDecoder(ct, decode)
	}
}

// loadDoc loads and validates the OpenAPI document.
func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData([]byte(docs.OpenAPI))
	if err != nil {
		t.Fatalf("load docs/openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("docs/openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	return doc
}

// providers builds backends' clients as `stepwise serve` does, except
// that a cloud provider's backend talks to the fake server: tests never
// leave the machine.
func providers(fake *fakellm.Server) func(b catalog.Backend, apiKey string) (llm.Provider, error) {
	return func(b catalog.Backend, apiKey string) (llm.Provider, error) {
		if b.Type == catalog.TypeOllama {
			return ollama.New(b.BaseURL, nil)
		}
		return openai.New(openai.Config{BaseURL: fake.URL() + "/v1", APIKey: apiKey})
	}
}

func newEnv(t *testing.T, opts ...options) *env {
	t.Helper()
	ctx := context.Background()
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	key := make([]byte, seal.KeySize)
	_, _ = rand.Read(key)
	box, err := seal.New(key)
	if err != nil {
		t.Fatal(err)
	}
	store := mem.New()
	defaults := catalog.Defaults{
		Embed: catalog.DefaultModel{Name: embedModel, ContextLength: 8192},
		Task:  catalog.DefaultModel{Name: taskModel, ContextLength: 4096},
		Chat:  catalog.DefaultModel{Name: chatModel, ContextLength: 4096},
	}
	for _, o := range opts {
		if o.noDefaults {
			defaults = catalog.Defaults{}
		}
	}
	cat := catalog.New(catalog.Config{Store: store, Sealer: box, Defaults: defaults})
	if err := cat.Bootstrap(ctx, core.DefaultTenant, catalog.BootstrapConfig{}); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	fleets := fleet.NewTenants(fleet.Config{Source: cat, NewProvider: providers(fake), SyncInterval: 50 * time.Millisecond})
	if err := fleets.For(core.DefaultTenant).Reload(ctx); err != nil {
		t.Fatalf("reload: %v", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); fleets.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })

	tools, remoteHooks := remote.NewRegistry(remote.SourceConfig{Store: store, Sealer: box}, hooks.Echo(), hooks.Print())
	logs := &functest.Logs{}
	cfg := api.Config{
		Catalog:    cat,
		Fleets:     func(tenant string) api.Fleet { return fleets.For(tenant) },
		Executions: store,
		Hooks:      tools,
		Remote:     remoteHooks,
		Version:    "test",
		NodeID:     "node-1",
		Logger:     slog.New(slog.NewJSONHandler(logs, nil)),
	}
	var wrap func(http.Handler) http.Handler
	for _, o := range opts {
		if o.cfg != nil {
			o.cfg(&cfg)
		}
		if o.wrap != nil {
			wrap = o.wrap
		}
	}
	// Events run their triggers in the request (no fan-out), functions in
	// this process; the chain builtins start executions on the engine.
	execs := &eventing.EngineExecutions{Store: store}
	fns := eventing.NewFunctions(store, nil)
	bus := eventing.NewBus(eventing.Config{Store: eventing.NewStore(store, box, nil), Functions: fns,
		Runner: eventing.InProcess{Sandbox: jsfunc.New(), Functions: fns}, Executions: execs, Chains: cat.GetChain,
		HTTP: egress.NewClient(egress.Policy{})})
	if cfg.Events == nil {
		cfg.Events = bus
	}
	cfg.Engine = functest.StartWorkers(t, core.EngineConfig{Store: store, LLM: fleets.LLM(), Tools: tools, Meter: functest.StepMeter(cfg.Meter), Publisher: bus})
	execs.Engine = cfg.Engine
	a := api.New(cfg)
	var h http.Handler = ingest.Mount(ingest.New(ingest.Config{Bus: cfg.Events}), a)
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	doc := loadDoc(t)
	doc.Servers = nil // match requests on any host
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("router over the document: %v", err)
	}
	return &env{t: t, api: a, srv: srv, llm: fake, cat: cat, store: store, logs: logs, doc: doc, router: router}
}

// response is an answer read in full.
type response struct {
	status int
	header http.Header
	body   []byte
}

// decode unmarshals the body into v.
func (r *response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// errorBody is the error envelope as tests read it.
type errorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Code    string  `json:"code"`
		Param   *string `json:"param"`
	} `json:"error"`
	ID    string           `json:"id"`
	State []map[string]any `json:"state"`
}

// wantError checks the status and the param of an error answer and
// returns the envelope.
func (r *response) wantError(t *testing.T, status int, param string) errorBody {
	t.Helper()
	var e errorBody
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	r.decode(t, &e)
	got := ""
	if e.Error.Param != nil {
		got = *e.Error.Param
	}
	if got != param {
		t.Errorf("param = %q, want %q; message %q", got, param, e.Error.Message)
	}
	if e.Error.Message == "" || e.Error.Type == "" || e.Error.Code == "" {
		t.Errorf("incomplete envelope %s", r.body)
	}
	return e
}

// req is one request to send.
type req struct {
	method, path string
	// body is sent as is when it is a string or []byte, else as JSON.
	body        any
	contentType string
	header      map[string]string
}

// do sends a request and checks it and its answer against the document.
func (e *env) do(r req) *response {
	e.t.Helper()
	var data []byte
	switch b := r.body.(type) {
	case nil:
	case string:
		data = []byte(b)
	case []byte:
		data = b
	default:
		var err error
		if data, err = json.Marshal(b); err != nil {
			e.t.Fatal(err)
		}
	}
	hr, err := http.NewRequest(r.method, e.srv.URL+r.path, bytes.NewReader(data))
	if err != nil {
		e.t.Fatal(err)
	}
	if data != nil {
		ct := r.contentType
		if ct == "" {
			ct = "application/json"
		}
		hr.Header.Set("Content-Type", ct)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	res, err := e.srv.Client().Do(hr)
	if err != nil {
		e.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read: %v", r.method, r.path, err)
	}
	out := &response{status: res.StatusCode, header: res.Header, body: body}
	e.record(out)
	e.check(hr, data, out)
	return out
}

func (e *env) record(r *response) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var sb strings.Builder
	_ = r.header.Write(&sb)
	e.bodies = append(e.bodies, sb.String()+"\n"+string(r.body))
}

// answered returns every response recorded so far.
func (e *env) answered() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.bodies...)
}

// check validates a request and its answer against the document. A request
// the document rejects must be rejected by the server too (4xx); every
// answer must match the document, status included. A request on no
// documented route must get the 404 or 405 envelope.
func (e *env) check(hr *http.Request, reqBody []byte, res *response) {
	e.t.Helper()
	if res.header.Get(api.RequestIDHeader) == "" {
		e.t.Errorf("%s %s: no %s in the answer", hr.Method, hr.URL.Path, api.RequestIDHeader)
	}
	lookup := hr.Clone(context.Background())
	lookup.URL = e.documentURL(hr.URL)
	lookup.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := e.router.FindRoute(lookup)
	if err != nil {
		// An unknown path is 404 or 405, or 401 to a caller without a key.
		if res.status != http.StatusNotFound && res.status != http.StatusMethodNotAllowed && res.status != http.StatusUnauthorized {
			e.t.Errorf("%s %s is on no documented route (%v) but answered %d", hr.Method, hr.URL.Path, err, res.status)
		}
		e.checkSchema("Error", res.body)
		return
	}
	ctx := context.Background()
	in := &openapi3filter.RequestValidationInput{
		Request: lookup, PathParams: params, Route: route,
		Options: &openapi3filter.Options{MultiError: true},
	}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil && res.status < 400 {
		e.t.Errorf("%s %s: the document rejects the request but the server answered %d:\n%v", hr.Method, hr.URL.Path, res.status, err)
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 res.status,
		Header:                 res.header,
		Body:                   io.NopCloser(bytes.NewReader(res.body)),
		Options: &openapi3filter.Options{
			MultiError: true, IncludeResponseStatus: true,
			ExcludeResponseBody: strings.HasPrefix(res.header.Get("Content-Type"), "text/event-stream"),
		},
	}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		e.t.Errorf("%s %s: the answer (%d %s) does not match the document:\n%v", hr.Method, hr.URL.Path, res.status, res.body, err)
	}
}

// documentURL escapes the '/' of a model name in a path whose route takes
// the rest of the path as the name: OpenAPI cannot describe a parameter
// holding '/', so the document is matched as if the client had sent %2F.
func (e *env) documentURL(u *url.URL) *url.URL {
	c := *u
	have := strings.Split(u.EscapedPath(), "/")
	for _, r := range e.api.Routes() {
		if !strings.HasSuffix(r.Pattern, "...}") {
			continue
		}
		pat := strings.Split(r.Pattern, "/")
		n := len(pat) - 1 // where the name starts
		if len(have) <= len(pat) || !segmentsMatch(pat[:n], have[:n]) {
			continue
		}
		c.RawPath = strings.Join(have[:n], "/") + "/" + strings.Join(have[n:], "%2F")
		c.Path, _ = url.PathUnescape(c.RawPath)
		return &c
	}
	return &c
}

// segmentsMatch compares path segments with pattern segments, where a
// wildcard matches anything.
func segmentsMatch(pat, have []string) bool {
	for i, p := range pat {
		if !strings.HasPrefix(p, "{") && p != have[i] {
			return false
		}
	}
	return true
}

// checkSchema validates a JSON body against a schema of the document.
func (e *env) checkSchema(name string, body []byte) {
	e.t.Helper()
	ref := e.doc.Components.Schemas[name]
	if ref == nil {
		e.t.Fatalf("no schema %s in the document", name)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		e.t.Errorf("body %q is not JSON: %v", body, err)
		return
	}
	if err := ref.Value.VisitJSON(v); err != nil {
		e.t.Errorf("body %s does not match schema %s: %v", body, name, err)
	}
}

// eventually retries check until it returns "" or the deadline passes,
// then fails with its last complaint. It waits for the fleet's background
// work, never measures it.
func eventually(t *testing.T, check func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// addOllama registers the fake model server as a backend, as bootstrap.sh
// does, and returns its id.
func (e *env) addOllama(name string) string {
	e.t.Helper()
	res := e.do(req{method: "POST", path: "/backends", body: map[string]any{"name": name, "baseURL": e.llm.URL(), "type": "ollama"}})
	if res.status != http.StatusCreated {
		e.t.Fatalf("POST /backends = %d %s", res.status, res.body)
	}
	var b struct{ ID string }
	res.decode(e.t, &b)
	return b.ID
}

// str reads a string field of a decoded object.
func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}
