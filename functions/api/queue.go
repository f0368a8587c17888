package api

import (
	"net/http"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/fleet"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

func (a *API) queueRoutes() {
	a.handle(http.MethodGet, "/queue", a.listQueue)
	a.handle(http.MethodDelete, "/queue/{model...}", a.removeQueued)
	a.handle(http.MethodGet, "/queue/inProgress", a.progress)
	a.handle(http.MethodDelete, "/queue/cancel", a.cancelDownloads)
}

func (a *API) listQueue(w http.ResponseWriter, r *http.Request) {
	jobs := a.fleet(r.Context()).Queue()
	if jobs == nil {
		jobs = []fleet.Job{}
	}
	webapi.WriteJSON(w, http.StatusOK, jobs)
}

// removeQueued drops the queued downloads of a model. A model name may
// hold '/' (the path's tail is the name).
func (a *API) removeQueued(w http.ResponseWriter, r *http.Request) {
	model := r.PathValue("model")
	if a.fleet(r.Context()).RemoveQueued(model) == 0 {
		writeError(w, r, core.Errorf(core.ENOTFOUND, "no queued download of model %q", model))
		return
	}
	webapi.WriteJSON(w, http.StatusOK, "Model removed from queue")
}

// cancelDownloads stops the running downloads onto a backend URL or of a
// model.
func (a *API) cancelDownloads(w http.ResponseWriter, r *http.Request) {
	url, model := r.URL.Query().Get("url"), r.URL.Query().Get("model")
	if url == "" && model == "" {
		writeError(w, r, badRequest("url", "give url (a backend's base URL) or model"))
		return
	}
	a.fleet(r.Context()).Cancel(url, model)
	webapi.WriteJSON(w, http.StatusOK, "Model download cancellation initiated")
}

// progress streams download progress as server-sent events, one
// `data: {status,digest,total,completed,model,baseUrl}` event per update,
// with a comment line every Heartbeat while nothing happens. The stream
// ends when the client goes or the API is closed; a client that stops
// reading is dropped when a write has waited two heartbeats.
func (a *API) progress(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	updates := a.fleet(ctx).Subscribe(ctx)
	stream, err := a.startStream(w)
	if err != nil {
		webapi.Logger(ctx).Warn("event stream cannot flush", "error", err.Error())
		return
	}
	beat := time.NewTicker(a.cfg.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.closing:
			return
		case p, ok := <-updates:
			if !ok {
				return
			}
			if err := stream.Event(0, "", p); err != nil {
				return
			}
		case <-beat.C:
			if err := stream.Heartbeat(); err != nil {
				return
			}
		}
	}
}
