// Package openai is the OpenAI-compatible function: the Chat Completions,
// Responses, Embeddings and Models APIs, served to the official SDKs.
//
// Two kinds of routes:
//   - per chain, /openai/{chain}/v1/chat/completions and /models: the
//     request's messages become the chain's openai_chat input and the
//     chain runs as a durable execution (its id in X-Stepwise-Execution-Id,
//     its steps under /executions); a stream carries the tokens of the
//     chain's answering steps as the backend generates them;
//   - the plain routed proxy, /v1/chat/completions, /v1/responses,
//     /v1/embeddings and /v1/models: the model named in the request is
//     routed over the registered backends (exact name:tag, the routing
//     policies, failover to the next backend before the first byte).
//     A response of /v1/responses is stored as an execution, so that
//     previous_response_id and GET /v1/responses/{id} read it back.
//
// A stream that fails after its first byte ends with a chunk whose
// finish_reason is "error" and an error event, never with [DONE] after a
// truncated answer. Errors use OpenAI's envelope and statuses: 400 for a
// request at fault (naming the field), 404 for an unknown model or chain,
// 502/503/504 for the backends. On AWS the function runs behind a Function
// URL with InvokeMode RESPONSE_STREAM (functions/openai/lambda).
package openai

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
	"github.com/stepwise-run/stepwise/core/fleet"
	"github.com/stepwise-run/stepwise/core/meter"
	"github.com/stepwise-run/stepwise/functions/internal/inline"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// ExecutionHeader carries the id of the execution behind an answer.
const ExecutionHeader = "X-Stepwise-Execution-Id"

// DefaultMaxBodyBytes is the request body limit when Config.MaxBodyBytes
// is not set: room for a long conversation with images as data URLs.
const DefaultMaxBodyBytes = 4 << 20

// DefaultChainTimeout is how long a request runs its chain when
// Config.ChainTimeout is not set: as long as OpenAI's SDKs wait by default.
const DefaultChainTimeout = 10 * time.Minute

// defaultHeartbeat is the interval of the comment lines that keep a
// stream open while a chain's first steps run.
const defaultHeartbeat = 15 * time.Second

// Models lists what the backends serve; *fleet.Fleet implements it.
type Models interface {
	// LLM is the model router.
	LLM() core.LLM
	// States lists every backend with what it serves and has pulled.
	States(ctx context.Context) []fleet.BackendState
}

// Config holds the function's dependencies.
type Config struct {
	// Catalog holds the chains of the per-chain routes. Required.
	Catalog *catalog.Catalog
	// Models routes and lists a tenant's models: a request reaches its
	// own tenant's backends only. Required.
	Models func(tenant string) Models
	// Engine runs chains and stored responses; it needs a queue to hand
	// executions on. Required.
	Engine *core.Engine
	// Executions is the store the engine commits to. Required.
	Executions core.ExecutionStore
	// Records keeps which stored responses were deleted. Required.
	Records core.RecordStore
	// ChainTimeout bounds how long one request runs its execution
	// (default DefaultChainTimeout); what is left goes on in the
	// background and the request is answered 504 naming the execution.
	ChainTimeout time.Duration
	// Logger receives the access log and errors (default: JSON on
	// stderr).
	Logger *slog.Logger
	// MaxBodyBytes caps a request body (default DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// Heartbeat is the interval of keep-alive comments on a stream whose
	// first token is slow to come (default 15s).
	Heartbeat time.Duration
	// Keys, when set, checks the API key of every request (the chat
	// scope; a key's allowed models and chains apply) and decides its
	// tenant. Nil leaves every route open, acting for the default tenant.
	Keys *access.Keys
	// Meter, when set, holds every model call to the limits of its key
	// and its tenant and records it in the usage ledger.
	Meter *meter.Meter
}

// Route is one method and path pattern the function serves.
type Route struct {
	Method  string
	Pattern string
}

// Handler serves the routes. It is safe for concurrent use.
type Handler struct {
	cfg     Config
	mux     *http.ServeMux
	routes  []Route
	handler http.Handler
	// closing is closed by Close: followers and streams end when it is.
	closing   chan struct{}
	closeOnce sync.Once
}

// New returns the handler. It does no I/O.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.ChainTimeout <= 0 {
		cfg.ChainTimeout = DefaultChainTimeout
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = defaultHeartbeat
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), closing: make(chan struct{})}
	h.handle(http.MethodPost, "/openai/{chain}/v1/chat/completions", h.chainChat)
	h.handle(http.MethodGet, "/openai/{chain}/v1/models", h.chainModels)
	h.handle(http.MethodPost, "/v1/chat/completions", h.chat)
	h.handle(http.MethodPost, "/v1/embeddings", h.embeddings)
	h.handle(http.MethodGet, "/v1/models", h.listModels)
	h.handle(http.MethodGet, "/v1/models/{id...}", h.getModel)
	h.handle(http.MethodPost, "/v1/responses", h.createResponse)
	h.handle(http.MethodGet, "/v1/responses/{id}", h.getResponse)
	h.handle(http.MethodDelete, "/v1/responses/{id}", h.deleteResponse)
	var keys webapi.Authenticator
	if cfg.Keys != nil {
		keys = cfg.Keys
	}
	chat := func(*http.Request) webapi.Need { return webapi.Need{Scope: access.ScopeChat} }
	h.handler = webapi.Wrap(webapi.Authenticate(http.HandlerFunc(h.route), keys, chat, writeError), cfg.Logger, cfg.MaxBodyBytes)
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.handler.ServeHTTP(w, r) }

// Close ends every open stream's wait on a background execution, so that
// a server shutting down need not wait for them. It may be called more
// than once.
func (h *Handler) Close() { h.closeOnce.Do(func() { close(h.closing) }) }

// Routes returns every route, in registration order.
func (h *Handler) Routes() []Route { return append([]Route(nil), h.routes...) }

// Owns reports whether a request path is one of this function's: what
// `stepwise serve` and the API function send here rather than to the
// management API.
func Owns(path string) bool {
	return hasPrefix(path, "/v1/") || hasPrefix(path, "/openai/")
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

func (h *Handler) handle(method, pattern string, f http.HandlerFunc) {
	h.routes = append(h.routes, Route{Method: method, Pattern: pattern})
	h.mux.HandleFunc(method+" "+pattern, f)
}

// route dispatches to the mux, answering an unknown path (404) and a wrong
// method (405) in the error envelope.
func (h *Handler) route(w http.ResponseWriter, r *http.Request) {
	webapi.Dispatch(h.mux, w, r, func(status int, allow string) {
		if status == http.StatusNotFound {
			writeError(w, r, &apiError{status: http.StatusNotFound, code: "unknown_url", msg: "no route " + r.Method + " " + r.URL.Path})
			return
		}
		w.Header().Set("Allow", allow)
		writeError(w, r, &apiError{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
			msg: "method " + r.Method + " is not allowed on " + r.URL.Path + " (allowed: " + allow + ")"})
	})
}

// models are the models of the tenant ctx's request acts for.
func (h *Handler) models(ctx context.Context) Models { return h.cfg.Models(webapi.Tenant(ctx)) }

// runner runs executions in requests.
func (h *Handler) runner() inline.Runner {
	return inline.Runner{Engine: h.cfg.Engine, Store: h.cfg.Executions, Closing: h.closing}
}

// Mount returns a handler that sends the paths this function owns (see
// Owns) to h and every other path to other: how `stepwise serve` and the
// API function serve the management API and this one on one address.
func Mount(h *Handler, other http.Handler) http.Handler {
	return webapi.Mount(Owns, h, other)
}
