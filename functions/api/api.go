// Package api is stepwise's management and execution API: one http.Handler
// serving every route of the reference system's HTTP surface (health and
// version, /execute and /tasks, task chains, backends and their live state,
// the model download queue, declared models, affinity groups and cloud
// provider keys), with the reference's paths and payloads, both generations
// of field names, and docs/openapi.yaml as its contract.
//
// Where it differs from the reference, on purpose: request bodies are
// decoded strictly (an unknown field is an error that names it) and limited
// in size; every error uses the OpenAI envelope with a status from one
// table of core error codes; a failed /tasks call keeps its step records;
// list pages carry the next cursor in the X-Next-Cursor header; provider
// keys are never returned; every request is logged with its request id.
//
// Beyond the reference: /executions starts executions in the background
// and follows them (state, step records, server-sent events), resumes
// those waiting for input and cancels them; /tasks and /execute run the
// same executions in the request, and answer 202 with the execution's id
// when one cannot finish within SyncTimeout.
//
// The handler is the same locally (`stepwise serve`) and on Lambda behind
// API Gateway; it holds no state of its own besides its configuration.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/eventing"
	"github.com/stepwise-run/stepwise/core/fleet"
	"github.com/stepwise-run/stepwise/core/hooks/remote"
	"github.com/stepwise-run/stepwise/core/meter"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// Fleet is the live side of the backends: their current model listings,
// the download queue, and the model router the engine uses. *fleet.Fleet
// implements it.
type Fleet interface {
	// Reload rebuilds the router from the catalog; called after every write
	// that changes backends, models, groups, assignments or providers.
	Reload(ctx context.Context) error
	// Kick asks for a listing and download cycle now, without waiting.
	Kick()
	// LLM is the router, for /embed.
	LLM() core.LLM
	// Defaults are the default models in use (configured, else the
	// built-in groups'), as of the last Reload.
	Defaults(ctx context.Context) (catalog.Defaults, error)
	// States lists every backend with what it serves and has pulled.
	States(ctx context.Context) []fleet.BackendState
	// Queue lists the queued model downloads.
	Queue() []fleet.Job
	// RemoveQueued drops the queued downloads of a model and says how
	// many there were; they are not queued again while their backend keeps
	// the model assigned.
	RemoveQueued(model string) int
	// Cancel stops running downloads of a backend URL or a model; they are
	// not queued again while their backend keeps the model assigned.
	Cancel(url, model string) int
	// Subscribe receives download progress until ctx ends.
	Subscribe(ctx context.Context) <-chan fleet.Progress
}

// HookLister names the hooks chains can call and their tools;
// hooks.Registry implements it.
type HookLister interface {
	Hooks(ctx context.Context, tenant string) ([]string, error)
	ToolsOf(ctx context.Context, tenant, hook string) ([]core.Tool, error)
	// Builtin reports whether a hook is built in rather than a tenant's.
	Builtin(name string) bool
}

// Config holds the API's dependencies.
type Config struct {
	// Catalog stores chains, backends, models, groups and provider keys.
	// Required.
	Catalog *catalog.Catalog
	// Fleets gives the live backend state and the router of a tenant: a
	// request works with its own tenant's only. Required.
	Fleets func(tenant string) Fleet
	// Engine runs /execute, /tasks and /executions; it needs a queue to
	// hand executions on to its workers. Required.
	Engine *core.Engine
	// Executions is the store the engine commits to: /executions reads
	// executions and their steps from it. Required.
	Executions core.ExecutionStore
	// SyncTimeout is how long /tasks and /execute run an execution in the
	// request before they answer 202 with its id and leave the rest to the
	// queue's workers (default DefaultSyncTimeout).
	SyncTimeout time.Duration
	// Hooks lists the hooks for /supported and /hooks/local. Required.
	Hooks HookLister
	// Remote serves the tenants' remote hooks (/hooks/remote); nil
	// answers those routes 503.
	Remote *remote.Source
	// Version and NodeID are reported by /version.
	Version string
	NodeID  string
	// Logger receives the access log and errors (default: JSON on
	// stderr). Every line logged during a request carries its request_id.
	Logger *slog.Logger
	// MaxBodyBytes caps a request body (default DefaultMaxBodyBytes);
	// a larger body is answered 413.
	MaxBodyBytes int64
	// Heartbeat is the interval of the comment lines that keep an idle
	// event stream open through proxies (default 15s).
	Heartbeat time.Duration
	// Keys, when set, checks the API key of every request but the open
	// ones (/health, /version, /openapi.json), decides its tenant, and
	// serves /keys. Nil leaves every route open, acting for the default
	// tenant.
	Keys *access.Keys
	// Meter, when set, serves the usage ledger (/usage), the price table
	// (/prices) and the tenant's limits (/limits).
	Meter *meter.Meter
	// Events serves raw events, mappings, events, functions and triggers;
	// nil answers those routes 503.
	Events *eventing.Bus
}

// DefaultMaxBodyBytes is the request body limit when Config.MaxBodyBytes
// is not set.
const DefaultMaxBodyBytes = 1 << 20

// DefaultSyncTimeout keeps a synchronous answer under API Gateway's 30 s
// limit with room to spare.
const DefaultSyncTimeout = 25 * time.Second

// defaultHeartbeat keeps an idle SSE stream alive through proxies that
// drop connections silent for a minute or so.
const defaultHeartbeat = 15 * time.Second

// Route is one method and path pattern the API serves, as registered on
// its http.ServeMux ("GET /models/{id...}").
type Route struct {
	Method  string
	Pattern string
}

// API serves the routes. It is safe for concurrent use.
type API struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	routes  []Route
	handler http.Handler
	// openAPI is docs/openapi.yaml as JSON, converted once.
	openAPI    []byte
	openAPIErr error
	// closing is closed by Close: event streams end when it is.
	closing   chan struct{}
	closeOnce sync.Once
}

// New returns the API. It does no I/O.
func New(cfg Config) *API {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = defaultHeartbeat
	}
	if cfg.SyncTimeout <= 0 {
		cfg.SyncTimeout = DefaultSyncTimeout
	}
	a := &API{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), closing: make(chan struct{})}
	a.openAPI, a.openAPIErr = openAPIJSON()
	a.register()
	var keys webapi.Authenticator
	if cfg.Keys != nil {
		keys = cfg.Keys
	}
	a.handler = webapi.Wrap(webapi.Authenticate(http.HandlerFunc(a.route), keys, a.need, writeError), a.log, cfg.MaxBodyBytes)
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.handler.ServeHTTP(w, r) }

// Close ends every open event stream, so that a server shutting down
// (http.Server.RegisterOnShutdown) need not wait for their clients to go.
// Ordinary requests are not affected. It may be called more than once.
func (a *API) Close() { a.closeOnce.Do(func() { close(a.closing) }) }

// Routes returns every route, in registration order.
func (a *API) Routes() []Route { return append([]Route(nil), a.routes...) }

// handle registers one route.
func (a *API) handle(method, pattern string, h http.HandlerFunc) {
	a.routes = append(a.routes, Route{Method: method, Pattern: pattern})
	a.mux.HandleFunc(method+" "+pattern, h)
}

// register registers every route, family by family.
func (a *API) register() {
	a.metaRoutes()
	a.execRoutes()
	a.executionRoutes()
	a.chainRoutes()
	a.backendRoutes()
	a.queueRoutes()
	a.modelRoutes()
	a.groupRoutes()
	a.affinityRoutes()
	a.providerRoutes()
	a.keyRoutes()
	a.usageRoutes()
	a.hookRoutes()
	a.eventRoutes()
}

// fleet is the Fleet of the tenant ctx's request acts for.
func (a *API) fleet(ctx context.Context) Fleet { return a.cfg.Fleets(webapi.Tenant(ctx)) }

// refresh makes the fleet see a catalog write at once. The write has
// succeeded either way, so a failed reload is logged, not answered: the
// fleet's next cycle reloads again.
func (a *API) refresh(ctx context.Context) {
	if err := a.fleet(ctx).Reload(ctx); err != nil {
		webapi.Logger(ctx).Warn("reload backends after a catalog write", "error", err.Error())
	}
	a.fleet(ctx).Kick()
}

// WithTenant returns a context whose requests act for tenant; an
// authentication layer in front of the API sets it from the caller's key.
func WithTenant(ctx context.Context, tenant string) context.Context {
	return webapi.WithTenant(ctx, tenant)
}
