package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/meter"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

func (a *API) executionRoutes() {
	a.handle(http.MethodPost, "/executions", a.startExecution)
	a.handle(http.MethodGet, "/executions", a.listExecutions)
	a.handle(http.MethodGet, "/executions/{id}", a.getExecution)
	a.handle(http.MethodGet, "/executions/{id}/steps", a.listSteps)
	a.handle(http.MethodGet, "/executions/{id}/events", a.executionEvents)
	a.handle(http.MethodPost, "/executions/{id}/resume", a.resumeExecution)
	a.handle(http.MethodPost, "/executions/{id}/cancel", a.cancelExecution)
}

// executionView is an execution as the API shows it: its state and
// counters, never its chain snapshot or its variables, which can be large
// and are the steps' business.
type executionView struct {
	ID         string      `json:"id"`
	ChainID    string      `json:"chainId"`
	Status     core.Status `json:"status"`
	Output     any         `json:"output"`
	OutputType string      `json:"outputType"`
	Error      *errorView  `json:"error"`
	// CurrentTask is the task that runs next; empty once final.
	CurrentTask string       `json:"currentTask,omitempty"`
	StepCount   int          `json:"stepCount"`
	TokensIn    int          `json:"tokensIn"`
	TokensOut   int          `json:"tokensOut"`
	Waiting     *waitingView `json:"waiting,omitempty"`
	CreatedAt   time.Time    `json:"createdAt"`
	UpdatedAt   time.Time    `json:"updatedAt"`
}

// errorView is why an execution failed or was cancelled.
type errorView struct {
	Code    string `json:"code"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Task    string `json:"task,omitempty"`
}

func newExecutionView(ex *core.Execution) executionView {
	v := executionView{
		ID: ex.ID, Status: ex.Status,
		Output: ex.Output.Data, OutputType: string(dataType(ex.Output)),
		CurrentTask: ex.Cursor.Task, StepCount: ex.StepCount,
		TokensIn: ex.TokensIn, TokensOut: ex.TokensOut,
		Waiting:   newWaitingView(ex),
		CreatedAt: ex.CreatedAt, UpdatedAt: ex.UpdatedAt,
	}
	if ex.Chain != nil {
		v.ChainID = ex.Chain.ID
	}
	if xe := ex.Error; xe != nil {
		v.Error = &errorView{Code: xe.Code, Reason: xe.Reason, Message: xe.Message, Task: xe.Task}
	}
	return v
}

// stepRecord is a step in the reference's stepState shape with what the
// step record adds: where it stands in the execution, which attempt it
// was, and the model and backend that served it.
type stepRecord struct {
	stepState
	Index     int       `json:"index"`
	Attempt   int       `json:"attempt"`
	Model     string    `json:"model,omitempty"`
	Backend   string    `json:"backend,omitempty"`
	TokensIn  int       `json:"tokensIn"`
	TokensOut int       `json:"tokensOut"`
	StartedAt time.Time `json:"startedAt"`
}

func newStepRecord(chain *core.Chain, s *core.Step) stepRecord {
	return stepRecord{
		stepState: newStepState(chain, s),
		Index:     s.Index, Attempt: s.Attempt, Model: s.Model, Backend: s.Backend,
		TokensIn: s.TokensIn, TokensOut: s.TokensOut, StartedAt: s.StartedAt,
	}
}

// accepted is the 202 answer of a request that left an execution to run
// in the background: where to follow it, and for /tasks the steps
// committed before the answer.
type accepted struct {
	ID     string      `json:"id"`
	Status core.Status `json:"status"`
	State  []stepState `json:"state,omitempty"`
	Links  links       `json:"links"`
}

// links are the routes that follow an execution.
type links struct {
	Self   string `json:"self"`
	Steps  string `json:"steps"`
	Events string `json:"events"`
}

func writeAccepted(w http.ResponseWriter, ex *core.Execution, state []stepState) {
	self := "/executions/" + ex.ID
	w.Header().Set("Location", self)
	webapi.WriteJSON(w, http.StatusAccepted, accepted{ID: ex.ID, Status: ex.Status, State: state,
		Links: links{Self: self, Steps: self + "/steps", Events: self + "/events"}})
}

// startFields are the fields POST /executions accepts besides those of a
// run request: a stored chain's id, in either spelling.
func startFields() map[string]string {
	return map[string]string{"chain_id": "chain_id", "chainId": "chain_id"}
}

// startExecution stores a new execution of an inline or stored chain and
// hands it to the queue's workers; the answer does not wait for any step.
func (a *API) startExecution(w http.ResponseWriter, r *http.Request) {
	ex, _, ticket, ok := a.startRun(w, r, true)
	if !ok {
		return
	}
	// The steps run in the background, past this request: the call is
	// counted against the rate limits, and its reservation given back.
	defer webapi.Settle(w, r, ticket, meter.Usage{ExecutionID: ex.ID})
	if err := a.cfg.Engine.Enqueue(r.Context(), ex); err != nil {
		writeExecutionError(w, r, ex, err, nil)
		return
	}
	writeAccepted(w, ex, nil)
}

// withStoredChain turns a body naming a stored chain (chain_id) into the
// run request core decodes, with the chain in it; a body without one is
// returned as it is. Giving both chain and chain_id is a 422.
func (a *API) withStoredChain(ctx context.Context, tree any) (any, error) {
	m, ok := tree.(map[string]any)
	if !ok {
		return tree, nil
	}
	var id any
	var given []string
	for spelling := range startFields() {
		if v, ok := m[spelling]; ok {
			id, given = v, append(given, spelling)
		}
	}
	if len(given) == 0 {
		return tree, nil
	}
	slices.Sort(given)
	param := given[len(given)-1]
	if len(given) > 1 {
		return nil, invalid(param, "%s: %q and %q are the same field; give only one", param, given[0], param)
	}
	if m["chain"] != nil {
		return nil, invalid(param, "%s: give the chain inline (chain) or stored (%s), not both", param, param)
	}
	name, ok := id.(string)
	if !ok || name == "" {
		return nil, invalid(param, "%s: want a stored chain's id, got %s", param, core.DescribeJSON(id))
	}
	c, err := a.cfg.Catalog.GetChain(ctx, webapi.Tenant(ctx), name)
	if core.ErrorCode(err) == core.ENOTFOUND {
		return nil, &requestError{status: http.StatusNotFound, code: core.ENOTFOUND, param: param, msg: param + ": no stored chain " + strconv.Quote(name)}
	}
	if err != nil {
		return nil, err
	}
	// The stored chain goes through core's run request decoder as if it
	// had been sent inline, so there is one decoder of run requests.
	b, err := json.Marshal(c)
	if err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "encode stored chain %q", name)
	}
	var chain any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&chain); err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "decode stored chain %q", name)
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		if _, isID := startFields()[k]; !isID {
			out[k] = v
		}
	}
	out["chain"] = chain
	return out, nil
}

func (a *API) getExecution(w http.ResponseWriter, r *http.Request) {
	ex, err := a.cfg.Executions.GetExecution(r.Context(), webapi.Tenant(r.Context()), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, newExecutionView(ex))
}

// knownStatus reports whether s is an execution status, a value of GET
// /executions?status=.
func knownStatus(s core.Status) bool {
	switch s {
	case core.StatusQueued, core.StatusRunning, core.StatusWaiting, core.StatusSucceeded, core.StatusFailed, core.StatusCancelled:
		return true
	}
	return false
}

// listExecutions lists the tenant's executions, newest first, filtered by
// status (one or more, comma-separated or repeated) and chain id.
func (a *API) listExecutions(w http.ResponseWriter, r *http.Request) {
	lq, err := listQuery(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	q := core.ExecutionQuery{ChainID: r.URL.Query().Get("chain"), Cursor: lq.Cursor, Limit: lq.Limit}
	for _, v := range r.URL.Query()["status"] {
		for s := range strings.SplitSeq(v, ",") {
			st := core.Status(strings.TrimSpace(s))
			if !knownStatus(st) {
				writeError(w, r, badRequest("status", "status %q: want one of queued, running, waiting, succeeded, failed, cancelled", s))
				return
			}
			q.Statuses = append(q.Statuses, st)
		}
	}
	page, err := a.cfg.Executions.ListExecutions(r.Context(), webapi.Tenant(r.Context()), q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	views := make([]executionView, len(page.Executions))
	for i, ex := range page.Executions {
		views[i] = newExecutionView(ex)
	}
	writeList(w, views, page.Next)
}

// listSteps pages through an execution's step records in index order:
// ?after= is the index of the last step already seen (the X-Next-Cursor
// of the previous page), ?limit= the page size.
func (a *API) listSteps(w http.ResponseWriter, r *http.Request) {
	after, err := intParam(r, "after", 0, 0)
	if err != nil {
		writeError(w, r, err)
		return
	}
	limit, err := intParam(r, "limit", core.DefaultPageSize, core.MaxPageSize)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if limit == 0 {
		writeError(w, r, badRequest("limit", "limit 0: want an integer from 1 to %d", core.MaxPageSize))
		return
	}
	ctx, tenant, id := r.Context(), webapi.Tenant(r.Context()), r.PathValue("id")
	ex, err := a.cfg.Executions.GetExecution(ctx, tenant, id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	// One step more than the page tells whether another page follows.
	steps, err := a.cfg.Executions.ListSteps(ctx, tenant, id, after, limit+1)
	if err != nil {
		writeError(w, r, err)
		return
	}
	next := ""
	if len(steps) > limit {
		steps = steps[:limit]
		next = strconv.Itoa(steps[limit-1].Index)
	}
	records := make([]stepRecord, len(steps))
	for i, s := range steps {
		records[i] = newStepRecord(ex.Chain, s)
	}
	writeList(w, records, next)
}

// intParam reads a non-negative integer query parameter (def when
// absent; at most upTo unless upTo is 0); anything else is a 400 naming
// it.
func intParam(r *http.Request, name string, def, upTo int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || (upTo > 0 && n > upTo) {
		if upTo > 0 {
			return 0, badRequest(name, "%s %q: want an integer from 0 to %d", name, s, upTo)
		}
		return 0, badRequest(name, "%s %q: want a non-negative integer", name, s)
	}
	return n, nil
}

// cancelRequest is the optional body of POST /executions/{id}/cancel.
type cancelRequest struct {
	Reason string `json:"reason"`
}

// cancelExecution ends an execution that is not final; a worker running
// it stops at its next commit. An execution already final is a 409.
func (a *API) cancelExecution(w http.ResponseWriter, r *http.Request) {
	var req cancelRequest
	data, err := readBody(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if len(bytes.TrimSpace(data)) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(data))
		if err := decodeInto(r, &req, nil); err != nil {
			writeError(w, r, err)
			return
		}
	}
	ex, err := a.cfg.Engine.Cancel(r.Context(), webapi.Tenant(r.Context()), r.PathValue("id"), req.Reason)
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, newExecutionView(ex))
}
