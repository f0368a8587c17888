package api

import (
	"encoding/json"
	"net/http"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/meter"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// inlineChainID names a chain given to /tasks without an id.
const inlineChainID = "inline"

// tasksRequest is a decoded run request: POST /tasks, POST /executions.
type tasksRequest struct {
	chain *core.Chain
	input core.Value
	vars  map[string]string
}

// tasksResponse is the answer of a successful POST /tasks.
type tasksResponse struct {
	ID         string      `json:"id"`
	Output     any         `json:"output"`
	OutputType string      `json:"outputType"`
	State      []stepState `json:"state"`
}

// tasks runs a chain given in the request on the given input, inline, and
// answers its output with every step record. A failed execution answers
// the error envelope with the steps beside it; one that waits for input,
// or that cannot finish within SyncTimeout, answers 202 with the steps so
// far and goes on in the background.
func (a *API) tasks(w http.ResponseWriter, r *http.Request) {
	ex, req, ticket, ok := a.startRun(w, r, false)
	if !ok {
		return
	}
	run := a.runInline(r.Context(), ex)
	defer webapi.Settle(w, r, ticket, meter.Usage{ExecutionID: ex.ID})
	state := make([]stepState, len(run.Steps))
	for i, s := range run.Steps {
		state[i] = newStepState(req.chain, s)
	}
	switch {
	case run.Err != nil:
		writeExecutionError(w, r, run.Execution, run.Err, state)
	case !run.Execution.Status.Final():
		writeAccepted(w, run.Execution, state)
	case run.Execution.Status != core.StatusSucceeded:
		writeExecutionError(w, r, run.Execution, nil, state)
	default:
		ex := run.Execution
		webapi.WriteJSON(w, http.StatusOK, tasksResponse{ID: ex.ID, Output: ex.Output.Data, OutputType: string(dataType(ex.Output)), State: state})
	}
}

// withRequestID returns the template variables of a request with
// request_id set to the request's id.
// startRun reads a run request body — with a stored chain (chain_id) when
// stored is set — admits it against the limits of the request's key and
// tenant (the ticket is nil without a meter) and stores a new execution of
// it. When it fails it has answered the error and ok is false.
func (a *API) startRun(w http.ResponseWriter, r *http.Request, stored bool) (ex *core.Execution, req *tasksRequest, ticket *meter.Ticket, ok bool) {
	tree, err := parseBody(r)
	if err == nil && stored {
		tree, err = a.withStoredChain(r.Context(), tree)
	}
	if err == nil {
		req, err = fromRunRequest(r, tree)
	}
	if err == nil {
		// The chain's models are known step by step; the ledger prices
		// the steps.
		in, _ := json.Marshal(req.input.Data)
		ticket, err = webapi.Admit(r, a.cfg.Meter, req.chain.ID, len(in)/4+4, req.chain.MaxTokensTotal)
	}
	if err != nil {
		writeError(w, r, err)
		return nil, nil, nil, false
	}
	ex, err = a.cfg.Engine.Start(r.Context(), core.StartRequest{
		Tenant: webapi.Tenant(r.Context()), Chain: req.chain, Input: req.input, TemplateVars: withRequestID(r, req.vars),
		Key: webapi.KeyID(r.Context()),
	})
	if err != nil {
		webapi.Cancel(r, ticket)
		writeError(w, r, core.InRunRequest(err))
		return nil, nil, nil, false
	}
	return ex, req, ticket, true
}

func withRequestID(r *http.Request, vars map[string]string) map[string]string {
	out := make(map[string]string, len(vars)+1)
	for k, v := range vars {
		out[k] = v
	}
	out["request_id"] = webapi.RequestID(r.Context())
	return out
}

// fromRunRequest checks a parsed run request body: the reference's
// request shape (qa.json) in both generations of names, decoded by core,
// with the input coerced to its type (default string).
func fromRunRequest(r *http.Request, tree any) (*tasksRequest, error) {
	req, warnings, err := core.DecodeRunRequest(tree)
	logWarnings(r, warnings)
	if err != nil {
		return nil, err
	}
	if req.Chain.ID == "" {
		req.Chain.ID = inlineChainID
	}
	input, err := coerceInput(req.InputType, req.Input)
	if err != nil {
		return nil, err
	}
	return &tasksRequest{chain: req.Chain, input: input, vars: req.TemplateVars}, nil
}

// coerceInput coerces a request's input to the named type (string when
// typeName is ""); errors name inputType or input.
func coerceInput(typeName string, raw any) (core.Value, error) {
	if typeName == "" {
		typeName = string(core.TypeString)
	}
	typ, err := core.ParseDataType(typeName)
	if err != nil {
		return core.Value{}, invalid("inputType", "inputType: %v", err)
	}
	input, err := core.Coerce(typ, raw)
	if err != nil {
		return core.Value{}, invalid("input", "input: %v", err)
	}
	return input, nil
}
