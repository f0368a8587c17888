package api

import (
	"fmt"
	"net/http"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// RequestIDHeader carries the request id, in both directions.
const RequestIDHeader = webapi.RequestIDHeader

// route dispatches to the mux, answering an unknown path (404) and a wrong
// method (405, with Allow) in the error envelope rather than the mux's
// plain text. Redirects the mux makes (to a cleaned path) pass through.
func (a *API) route(w http.ResponseWriter, r *http.Request) {
	if _, pattern := a.mux.Handler(r); pattern != "" {
		a.mux.ServeHTTP(w, r)
		return
	}
	probe := &probeWriter{header: http.Header{}}
	a.mux.ServeHTTP(probe, r)
	switch probe.code {
	case http.StatusNotFound:
		writeError(w, r, core.Errorf(core.ENOTFOUND, "no route %s %s", r.Method, r.URL.Path))
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", probe.Header().Get("Allow"))
		writeError(w, r, &requestError{status: http.StatusMethodNotAllowed, code: core.EINVALID,
			msg: fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, probe.Header().Get("Allow"))})
	default:
		for k, v := range probe.header {
			w.Header()[k] = v
		}
		w.WriteHeader(probe.code)
		_, _ = w.Write(probe.body)
	}
}

// probeWriter keeps what the mux answers for a request no route matches,
// so that route can answer it in the envelope instead.
type probeWriter struct {
	header http.Header
	code   int
	body   []byte
}

func (p *probeWriter) Header() http.Header { return p.header }

func (p *probeWriter) WriteHeader(code int) {
	if p.code == 0 {
		p.code = code
	}
}

func (p *probeWriter) Write(b []byte) (int, error) {
	if p.code == 0 {
		p.code = http.StatusOK
	}
	p.body = append(p.body, b...)
	return len(b), nil
}
