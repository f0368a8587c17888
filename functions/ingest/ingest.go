// Package ingest is the webhook ingest function: POST /ingest?path=...
// (the reference's route; also /ingest/{path}) stores the delivery as a
// raw event before it answers, then maps it to a domain event whose
// triggers run elsewhere (the local worker, or the functions queue on
// AWS). A delivery whose id was seen before answers the raw event stored
// then and does nothing more.
//
// Who may ingest: where keys are required, a request with an API key
// acts for the key's tenant; one without needs ?tenant= (default: the
// default tenant) and a mapping whose signature it carries, since the
// signature is then what authenticates it. Where keys are off, every
// request acts for the default tenant.
package ingest

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/eventing"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// Config holds the function's dependencies.
type Config struct {
	// Bus ingests. Required.
	Bus *eventing.Bus
	// Keys, when set, decides the tenant of a request that carries a key
	// and makes signatures required of those that do not.
	Keys   webapi.Authenticator
	Logger *slog.Logger
}

// Handler serves /ingest.
type Handler struct {
	cfg     Config
	handler http.Handler
}

// New returns the function's handler.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg}
	h.handler = webapi.Wrap(http.HandlerFunc(h.ingest), cfg.Logger, eventing.MaxPayload+1)
	return h
}

// Owns reports whether a path is the function's.
func Owns(path string) bool { return path == "/ingest" || strings.HasPrefix(path, "/ingest/") }

// Mount serves the function's paths with h and every other with other:
// how the local server puts every function on one port.
func Mount(h *Handler, other http.Handler) http.Handler {
	return webapi.Mount(Owns, h, other)
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.handler.ServeHTTP(w, r) }

func (h *Handler) ingest(w http.ResponseWriter, r *http.Request) {
	if !Owns(r.URL.Path) {
		writeError(w, r, core.Errorf(core.ENOTFOUND, "no route %s", r.URL.Path))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, r, errStatus(http.StatusMethodNotAllowed, "method_not_allowed", "%s needs POST", r.URL.Path))
		return
	}
	path := r.URL.Query().Get("path")
	if p, ok := strings.CutPrefix(r.URL.Path, "/ingest/"); ok && path == "" {
		path = p
	}
	if path == "" {
		// 400 as the reference answers it: the request names no mapping.
		writeError(w, r, errStatus(http.StatusBadRequest, core.EINVALID, "path: required (?path= or /ingest/{path})"))
		return
	}
	tenant, signed, err := h.tenant(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, r, errStatus(http.StatusRequestEntityTooLarge, "payload_too_large", "the body is over the %d-byte limit of a webhook", eventing.MaxPayload))
			return
		}
		writeError(w, r, core.WrapError(core.EINVALID, err, "read the body"))
		return
	}
	if signed {
		// Without a key, only a mapping that checks signatures is open.
		m, err := h.cfg.Bus.Store().Mapping(r.Context(), tenant, path)
		if err != nil {
			writeError(w, r, err)
			return
		}
		if m.Signature == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="stepwise"`)
			writeError(w, r, core.Errorf(core.EUNAUTHORIZED, "mapping %s checks no signature: send an API key", path))
			return
		}
	}
	raw, dup, err := h.cfg.Bus.Ingest(r.Context(), tenant, path, r.Header, body)
	switch {
	case raw != nil && err != nil:
		// Stored, but no event could be derived: the raw event says why.
		webapi.Logger(r.Context()).Info("raw event stored without an event", "path", path, "error", err.Error())
		writeError(w, r, err)
	case err != nil:
		writeError(w, r, err)
	case dup:
		w.Header().Set("X-Stepwise-Duplicate", "true")
		webapi.WriteJSON(w, http.StatusOK, raw)
	default:
		webapi.WriteJSON(w, http.StatusCreated, raw)
	}
}

// tenant decides whom a delivery is for, and whether it must be signed.
func (h *Handler) tenant(r *http.Request) (tenant string, mustSign bool, err error) {
	if h.cfg.Keys == nil {
		return core.DefaultTenant, false, nil
	}
	if secret := webapi.Bearer(r); secret != "" {
		key, err := h.cfg.Keys.Authenticate(r.Context(), secret)
		if err != nil {
			return "", false, err
		}
		return key.Tenant, false, nil
	}
	if t := r.URL.Query().Get("tenant"); t != "" {
		return t, true, nil
	}
	return core.DefaultTenant, true, nil
}

// statusError is an error answered with its own status and code.
type statusError struct {
	status int
	code   string
	msg    string
}

func (e *statusError) Error() string { return e.msg }

func errStatus(status int, code, format string, args ...any) error {
	return &statusError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// writeError answers err in the error envelope every function uses.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var se *statusError
	if errors.As(err, &se) {
		param := ""
		if name, _, ok := strings.Cut(se.msg, ": "); ok && !strings.ContainsAny(name, " ({") {
			param = name
		}
		webapi.WriteJSON(w, se.status, webapi.Envelope{Error: webapi.ErrorObject{Message: se.msg, Type: webapi.ErrorType(se.status), Code: se.code, Param: webapi.Param(param)}})
		return
	}
	code := core.ErrorCode(err)
	status := webapi.Status(code, false)
	msg := err.Error()
	if status == http.StatusInternalServerError {
		webapi.Logger(r.Context()).Error("internal error", "error", msg)
		msg = "internal error; the server log has the detail under request id " + webapi.RequestID(r.Context())
	}
	webapi.WriteJSON(w, status, webapi.Envelope{Error: webapi.ErrorObject{Message: msg, Type: webapi.ErrorType(status), Code: code}})
}
