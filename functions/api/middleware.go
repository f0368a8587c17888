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
	webapi.Dispatch(a.mux, w, r, func(status int, allow string) {
		if status == http.StatusNotFound {
			writeError(w, r, core.Errorf(core.ENOTFOUND, "no route %s %s", r.Method, r.URL.Path))
			return
		}
		w.Header().Set("Allow", allow)
		writeError(w, r, &requestError{status: http.StatusMethodNotAllowed, code: core.EINVALID,
			msg: fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow)})
	})
}
