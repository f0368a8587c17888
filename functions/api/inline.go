package api

import (
	"context"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/functions/internal/inline"
)

// runner runs executions in requests and follows them for the API.
func (a *API) runner() inline.Runner {
	return inline.Runner{Engine: a.cfg.Engine, Store: a.cfg.Executions, Closing: a.closing}
}

// runInline runs a started execution in the request for at most
// SyncTimeout (see inline.Runner.Run).
func (a *API) runInline(ctx context.Context, ex *core.Execution) inline.Result {
	return a.runner().Run(ctx, ex, a.cfg.SyncTimeout, nil)
}
