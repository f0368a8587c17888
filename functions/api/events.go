package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/functions/internal/inline"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// executionEvents streams an execution's progress as server-sent events:
// first every committed step after Last-Event-ID (all of them when it is
// absent), then each new one as it commits, as `event: step` with the
// step's index as the event id; then `event: end` with the execution once
// it is final or waiting, and the stream ends. A client that reconnects
// with Last-Event-ID misses nothing and sees nothing twice. Store failures
// end the stream with `event: error` (the error object), never silently.
func (a *API) executionEvents(w http.ResponseWriter, r *http.Request) {
	ctx, tenant, id := r.Context(), webapi.Tenant(r.Context()), r.PathValue("id")
	after := 0
	if h := r.Header.Get("Last-Event-ID"); h != "" {
		n, err := strconv.Atoi(h)
		if err != nil || n < 0 {
			writeError(w, r, badRequest("Last-Event-ID", "Last-Event-ID %q: want the index of the last step received", h))
			return
		}
		after = n
	}
	ex, err := a.cfg.Executions.GetExecution(ctx, tenant, id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	stream, err := a.startStream(w)
	if err != nil {
		webapi.Logger(ctx).Warn("event stream cannot flush", "error", err.Error())
		return
	}
	wrote := time.Now()
	step := func(s *core.Step) error {
		wrote = time.Now()
		if err := stream.Event(s.Index, "step", newStepRecord(ex.Chain, s)); err != nil {
			return errClientGone
		}
		return nil
	}
	idle := func() error {
		if time.Since(wrote) < a.cfg.Heartbeat {
			return nil
		}
		wrote = time.Now()
		if err := stream.Heartbeat(); err != nil {
			return errClientGone
		}
		return nil
	}
	last, err := a.runner().Follow(ctx, tenant, id, after, step, idle)
	switch {
	case err == nil:
		_ = stream.Event(0, "end", newExecutionView(last))
	case ctx.Err() != nil, errors.Is(err, inline.ErrClosing), errors.Is(err, errClientGone):
		// The client went or the server is closing: nobody to tell.
	default:
		_, obj := describeError(r, err)
		_ = stream.Event(0, "error", webapi.Envelope{Error: obj})
	}
}

// errClientGone stops a stream whose client no longer reads it.
var errClientGone = errors.New("event stream client gone")
