package api

import (
	"context"
	"net/http"

	"github.com/stepwise-run/stepwise/core/eventing"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

func (a *API) functionRoutes() {
	a.handle(http.MethodPost, "/functions", a.onBus(a.createFunction))
	a.handle(http.MethodGet, "/functions", a.onBus(a.listFunctions))
	a.handle(http.MethodGet, "/functions/{name}", a.onBus(a.getFunction))
	a.handle(http.MethodPut, "/functions/{name}", a.onBus(a.putFunction))
	a.handle(http.MethodDelete, "/functions/{name}", a.onBus(a.deleteFunction))
	a.handle(http.MethodGet, "/functions/{name}/runs", a.onBus(a.functionRuns))
	a.handle(http.MethodGet, "/function-runs", a.onBus(a.functionRuns))
	a.handle(http.MethodPost, "/event-triggers", a.onBus(a.createTrigger))
	a.handle(http.MethodGet, "/event-triggers", a.onBus(a.listTriggers))
	a.handle(http.MethodGet, "/event-triggers/{name}", a.onBus(a.getTrigger))
	a.handle(http.MethodPut, "/event-triggers/{name}", a.onBus(a.putTrigger))
	a.handle(http.MethodDelete, "/event-triggers/{name}", a.onBus(a.deleteTrigger))
	a.handle(http.MethodGet, "/event-triggers/event-type/{eventType}", a.onBus(a.listTriggers))
	a.handle(http.MethodGet, "/event-triggers/function/{functionName}", a.onBus(a.listTriggers))
	a.handle(http.MethodPost, "/executor/sync", a.syncExecutor)
}

func (a *API) createFunction(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	a.saveFunction(w, r, true, bus)
}

func (a *API) putFunction(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	a.saveFunction(w, r, false, bus)
}

// saveFunction stores a function, compile-checked; on PUT the name in the
// path is the one changed.
func (a *API) saveFunction(w http.ResponseWriter, r *http.Request, create bool, bus *eventing.Bus) {
	var fn eventing.Function
	if err := decodeInto(r, &fn, map[string]string{"script_type": "scriptType", "timeout_ms": "timeoutMs"}); err != nil {
		writeError(w, r, err)
		return
	}
	status := http.StatusCreated
	if !create {
		fn.Name, status = r.PathValue("name"), http.StatusOK
	}
	saved, err := bus.Functions().SaveFunction(r.Context(), webapi.Tenant(r.Context()), fn, create)
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, status, saved)
}

func (a *API) listFunctions(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	q, err := listQuery(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	list, next, err := bus.Functions().ListFunctions(r.Context(), webapi.Tenant(r.Context()), q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeList(w, list, next)
}

func (a *API) getFunction(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	fn, err := bus.Functions().Function(r.Context(), webapi.Tenant(r.Context()), r.PathValue("name"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, fn)
}

func (a *API) deleteFunction(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	if err := bus.Functions().DeleteFunction(r.Context(), webapi.Tenant(r.Context()), r.PathValue("name")); err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, "function removed")
}

// functionRuns lists recorded runs, newest first: a function's, or all.
func (a *API) functionRuns(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	limit, err := limitParam(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	name := r.PathValue("name")
	if name != "" {
		if _, err := bus.Functions().Function(r.Context(), webapi.Tenant(r.Context()), name); err != nil {
			writeError(w, r, err)
			return
		}
	}
	runs, err := bus.Functions().Runs(r.Context(), webapi.Tenant(r.Context()), name, limit)
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, runs)
}

func (a *API) createTrigger(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	a.saveTrigger(w, r, true, bus)
}

func (a *API) putTrigger(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	a.saveTrigger(w, r, false, bus)
}

func (a *API) saveTrigger(w http.ResponseWriter, r *http.Request, create bool, bus *eventing.Bus) {
	var t eventing.Trigger
	if err := decodeInto(r, &t, map[string]string{"listen_for": "listenFor"}); err != nil {
		writeError(w, r, err)
		return
	}
	status := http.StatusCreated
	if !create {
		t.Name, status = r.PathValue("name"), http.StatusOK
	}
	exists := func(ctx context.Context, tenant, id string) error {
		_, err := a.cfg.Catalog.GetChain(ctx, tenant, id)
		return err
	}
	saved, err := bus.Functions().SaveTrigger(r.Context(), webapi.Tenant(r.Context()), t, create, exists)
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, status, saved)
}

// listTriggers lists the tenant's triggers, those of an event type or of
// a function on the routes that name one.
func (a *API) listTriggers(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	list, err := bus.Functions().Triggers(r.Context(), webapi.Tenant(r.Context()), r.PathValue("eventType"), r.PathValue("functionName"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeList(w, list, "")
}

func (a *API) getTrigger(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	t, err := bus.Functions().Trigger(r.Context(), webapi.Tenant(r.Context()), r.PathValue("name"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, t)
}

func (a *API) deleteTrigger(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	if err := bus.Functions().DeleteTrigger(r.Context(), webapi.Tenant(r.Context()), r.PathValue("name")); err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, "trigger removed")
}

// syncExecutor is the reference's cache refresh: functions are compiled
// when stored and triggers re-read within a second, so there is nothing
// to force.
func (a *API) syncExecutor(w http.ResponseWriter, _ *http.Request) {
	webapi.WriteJSON(w, http.StatusOK, "sync triggered")
}
