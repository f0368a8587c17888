package api

import (
	"net/http"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// waitingView is what a waiting execution needs before it can go on.
type waitingView struct {
	// Task is the task that paused.
	Task string `json:"task"`
	// Kind is "input" (an await_input task) or "client_tools" (a model
	// called tools only the client runs).
	Kind string `json:"kind"`
	// Prompt is what an await_input task asks for.
	Prompt string `json:"prompt,omitempty"`
	// ToolCalls are the client tool calls the resume must answer.
	ToolCalls []core.ToolCall `json:"toolCalls,omitempty"`
}

func newWaitingView(ex *core.Execution) *waitingView {
	w := ex.Waiting
	if w == nil || ex.Status != core.StatusWaiting {
		return nil
	}
	return &waitingView{Task: w.Task, Kind: w.Kind, Prompt: w.Prompt, ToolCalls: w.ToolCalls}
}

// resumeFields are the fields of POST /executions/{id}/resume, in every
// accepted spelling.
func resumeFields() map[string]string {
	return map[string]string{"input_type": "inputType"}
}

// resumeExecution completes the task a waiting execution paused on with
// the given input (coerced to inputType, default string) and hands the
// execution back to the queue's workers. An execution that is not waiting,
// or an input its task cannot take, is a 422; a resume or cancel that
// committed first is a 409.
func (a *API) resumeExecution(w http.ResponseWriter, r *http.Request) {
	tree, err := parseBody(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	m, err := object(tree, []string{"input", "inputType"}, resumeFields())
	if err != nil {
		writeError(w, r, err)
		return
	}
	typeName, ok := m["inputType"].(string)
	if !ok && m["inputType"] != nil {
		writeError(w, r, invalid("inputType", "inputType: want a string, got %s", core.DescribeJSON(m["inputType"])))
		return
	}
	input, err := coerceInput(typeName, m["input"])
	if err != nil {
		writeError(w, r, err)
		return
	}
	ex, err := a.cfg.Engine.Resume(r.Context(), webapi.Tenant(r.Context()), r.PathValue("id"), input)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if !ex.Status.Final() {
		if err := a.cfg.Engine.Enqueue(r.Context(), ex); err != nil {
			writeExecutionError(w, r, ex, err, nil)
			return
		}
	}
	writeAccepted(w, ex, nil)
}
