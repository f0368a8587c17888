package api

import (
	"net/http"

	"github.com/stepwise-run/stepwise/core"
)

// inlineChainID names a chain given to /tasks without an id.
const inlineChainID = "inline"

// tasksRequest is a decoded POST /tasks body.
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
// the error envelope with the steps beside it.
func (a *API) tasks(w http.ResponseWriter, r *http.Request) {
	req, err := decodeTasks(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	vars := map[string]string{}
	for k, v := range req.vars {
		vars[k] = v
	}
	vars["request_id"] = requestID(r.Context())
	// The engine hands over each step record as it commits it, so the
	// answer needs no read back from the store.
	state := []stepState{}
	collect := core.ObserverFunc(func(e core.Event) {
		if e.Kind == core.EventStepCommitted && e.Step != nil {
			state = append(state, newStepState(req.chain, e.Step))
		}
	})
	ex, err := a.cfg.Engine.Execute(r.Context(), core.StartRequest{
		Tenant: Tenant(r.Context()), Chain: req.chain, Input: req.input, TemplateVars: vars,
	}, collect)
	if ex == nil {
		writeError(w, r, core.InRunRequest(err))
		return
	}
	if err != nil || ex.Status != core.StatusSucceeded {
		writeExecutionError(w, r, ex, err, state)
		return
	}
	writeJSON(w, http.StatusOK, tasksResponse{ID: ex.ID, Output: ex.Output.Data, OutputType: string(dataType(ex.Output)), State: state})
}

// decodeTasks reads and checks a POST /tasks body: the reference's
// request shape (qa.json) in both generations of names, decoded by core.
func decodeTasks(r *http.Request) (*tasksRequest, error) {
	tree, err := parseBody(r)
	if err != nil {
		return nil, err
	}
	req, warnings, err := core.DecodeRunRequest(tree)
	logWarnings(r, warnings)
	if err != nil {
		return nil, err
	}
	if req.Chain.ID == "" {
		req.Chain.ID = inlineChainID
	}
	typeName := req.InputType
	if typeName == "" {
		typeName = string(core.TypeString)
	}
	typ, err := core.ParseDataType(typeName)
	if err != nil {
		return nil, invalid("inputType", "inputType: %v", err)
	}
	input, err := core.Coerce(typ, req.Input)
	if err != nil {
		return nil, invalid("input", "input: %v", err)
	}
	return &tasksRequest{chain: req.Chain, input: input, vars: req.TemplateVars}, nil
}
