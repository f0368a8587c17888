package api

import (
	"net/http"

	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// startStream starts an event stream whose writes each wait at most two
// heartbeats for a client that stopped reading.
func (a *API) startStream(w http.ResponseWriter) (*webapi.Stream, error) {
	return webapi.StartStream(w, 2*a.cfg.Heartbeat)
}
