package api

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/meter"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

func (a *API) execRoutes() {
	a.handle(http.MethodPost, "/execute", a.execute)
	a.handle(http.MethodPost, "/tasks", a.tasks)
	a.handle(http.MethodPost, "/embed", a.embed)
	a.handle(http.MethodGet, "/defaultmodel", a.defaultModel)
	a.handle(http.MethodGet, "/supported", a.supported)
}

// executeSystemPrompt is the system instruction of POST /execute: the
// endpoint is for short, self-contained jobs, so the model is asked to do
// the job and nothing around it.
const executeSystemPrompt = "You carry out the task in the user's message. " +
	"Answer with the result only: no preamble, no restating of the task, no offer of further help."

// executeTemperature keeps /execute close to deterministic.
const executeTemperature = 0.1

// executeRequest is the body of POST /execute.
type executeRequest struct {
	Prompt        string `json:"prompt"`
	ModelName     string `json:"model_name"`
	ModelProvider string `json:"model_provider"`
	RoutingPolicy string `json:"routing_policy"`
}

// executeResponse is the answer of POST /execute.
type executeResponse struct {
	// ID is the id of the execution that ran the prompt.
	ID       string `json:"id"`
	Response string `json:"response"`
}

// policyAliases maps the other spelling of the per-request routing policy
// field to its canonical name.
func policyAliases() map[string]string { return map[string]string{"routingPolicy": "routing_policy"} }

// execute runs one prompt through a one-task chain, so that it is recorded
// as an execution like any other. When the model cannot answer within
// SyncTimeout the answer is 202 with the execution's id, as for /tasks.
func (a *API) execute(w http.ResponseWriter, r *http.Request) {
	var req executeRequest
	if err := decodeInto(r, &req, policyAliases()); err != nil {
		writeError(w, r, err)
		return
	}
	if strings.TrimSpace(req.Prompt) == "" {
		writeError(w, r, badRequest("prompt", "prompt: required"))
		return
	}
	model, provider := req.ModelName, req.ModelProvider
	if model == "" {
		d, err := a.fleet(r.Context()).Defaults(r.Context())
		if err != nil {
			writeError(w, r, err)
			return
		}
		task := d.Task
		if task.Name == "" {
			writeError(w, r, invalid("model_name", "model_name: required while no default task model is configured (set TASK_MODEL, or assign a model to %s, as `stepwise bootstrap` does)", catalog.GroupTasks))
			return
		}
		model = task.Name
		if provider == "" {
			provider = task.Provider // lower-case: the fleet's defaults are
		}
	}
	temperature := executeTemperature
	chain := &core.Chain{
		ID:            "execute",
		RoutingPolicy: req.RoutingPolicy,
		Tasks: []*core.Task{{
			ID:                "prompt",
			Handler:           core.HandlerPromptToString,
			SystemInstruction: executeSystemPrompt,
			ExecuteConfig:     &core.ExecuteConfig{Model: model, Provider: provider, Temperature: &temperature},
			Transition:        &core.Transition{Branches: []*core.Branch{{Operator: core.OpDefault, Goto: core.End}}},
		}},
	}
	ticket, err := webapi.Admit(r, a.cfg.Meter, model, (len(req.Prompt)+len(executeSystemPrompt))/4+8, 0)
	if err != nil {
		writeError(w, r, err)
		return
	}
	ex, err := a.cfg.Engine.Start(r.Context(), core.StartRequest{
		Tenant: webapi.Tenant(r.Context()), Chain: chain, Input: core.String(req.Prompt),
		TemplateVars: withRequestID(r, nil), Key: webapi.KeyID(r.Context()),
	})
	if err != nil {
		webapi.Cancel(r, ticket)
		writeError(w, r, err)
		return
	}
	run := a.runInline(r.Context(), ex)
	defer webapi.Settle(w, r, ticket, meter.Usage{ExecutionID: ex.ID})
	switch {
	case run.Err != nil, run.Execution.Status.Final() && run.Execution.Status != core.StatusSucceeded:
		writeExecutionError(w, r, run.Execution, run.Err, nil)
	case !run.Execution.Status.Final():
		writeAccepted(w, run.Execution, nil)
	default:
		text, _ := run.Execution.Output.Data.(string)
		webapi.WriteJSON(w, http.StatusOK, executeResponse{ID: run.Execution.ID, Response: text})
	}
}

// executionFailure is the body of a failed /tasks or /execute call: the
// error envelope, with the execution and its steps beside it so that the
// caller sees how far it got.
type executionFailure struct {
	Error webapi.ErrorObject `json:"error"`
	ID    string             `json:"id,omitempty"`
	State []stepState        `json:"state,omitempty"`
}

// writeExecutionError answers an execution that did not succeed: err is
// what running it returned (nil when the execution ran and failed), ex the
// execution as last committed (nil when it never started), state its steps
// (nil for /execute, which does not report them). A failed step's error
// code, and whether a backend answered it, give the status; the message is
// the step's, which names the backend when a backend failed, and names the
// task once.
func writeExecutionError(w http.ResponseWriter, r *http.Request, ex *core.Execution, err error, state []stepState) {
	body := executionFailure{State: state}
	var status int
	switch {
	case err != nil:
		status, body.Error = describeError(r, err)
	case ex.Error != nil:
		status = webapi.Status(ex.Error.Code, ex.Error.Upstream)
		body.Error = webapi.ErrorObject{Message: ex.Error.Message, Type: webapi.ErrorType(status), Code: ex.Error.Code}
		if named := fmt.Sprintf("task %q", ex.Error.Task); ex.Error.Task != "" && !strings.HasPrefix(ex.Error.Message, named) {
			body.Error.Message = named + ": " + ex.Error.Message
		}
	default:
		status = http.StatusInternalServerError
		body.Error = webapi.ErrorObject{Message: "execution ended " + string(ex.Status), Type: webapi.ErrorType(status), Code: core.EINTERNAL}
	}
	if ex != nil {
		body.ID = ex.ID
	}
	webapi.WriteJSON(w, status, body)
}

// embedRequest is the body of POST /embed.
type embedRequest struct {
	Text string `json:"text"`
}

// embedResponse is the answer of POST /embed.
type embedResponse struct {
	Vector []float32 `json:"vector"`
}

// embed returns the embedding of a text by the default embedding model.
func (a *API) embed(w http.ResponseWriter, r *http.Request) {
	var req embedRequest
	if err := decodeInto(r, &req, nil); err != nil {
		writeError(w, r, err)
		return
	}
	if req.Text == "" {
		writeError(w, r, invalid("text", "text: required"))
		return
	}
	d, err := a.fleet(r.Context()).Defaults(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	if d.Embed.Name == "" {
		writeError(w, r, core.Errorf(core.EINVALID, "no default embedding model is configured: set EMBED_MODEL, or assign a model to %s, as `stepwise bootstrap` does", catalog.GroupEmbed))
		return
	}
	var sel core.ModelSelector
	if m := d.Embed; m.Name != "" {
		sel.Models = []string{m.Name}
		if m.Provider != "" {
			sel.Providers = []string{m.Provider}
		}
	}
	ticket, err := webapi.Admit(r, a.cfg.Meter, d.Embed.Name, len(req.Text)/4+1, -1)
	if err != nil {
		writeError(w, r, err)
		return
	}
	emb, err := a.fleet(r.Context()).LLM().Embed(r.Context(), core.EmbedRequest{Select: sel, Text: req.Text})
	defer webapi.Settle(w, r, ticket, webapi.UsageOfCall(emb.Usage, err))
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, embedResponse{Vector: emb.Vector})
}

// defaultModels is the body of GET /defaultmodel. ModelName is the
// embedding model, as the reference answered; the others name each
// default ("" when there is none).
type defaultModels struct {
	ModelName  string `json:"modelName"`
	EmbedModel string `json:"embedModel"`
	TaskModel  string `json:"taskModel"`
	ChatModel  string `json:"chatModel"`
}

// defaultModel shows the default models in use: the configured ones,
// else those assigned to the built-in groups.
func (a *API) defaultModel(w http.ResponseWriter, r *http.Request) {
	d, err := a.fleet(r.Context()).Defaults(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, defaultModels{ModelName: d.Embed.Name, EmbedModel: d.Embed.Name, TaskModel: d.Task.Name, ChatModel: d.Chat.Name})
}

// supported lists the hooks chains can call.
func (a *API) supported(w http.ResponseWriter, r *http.Request) {
	names, err := a.cfg.Hooks.Hooks(r.Context(), webapi.Tenant(r.Context()))
	if err != nil {
		writeError(w, r, err)
		return
	}
	if names == nil {
		names = []string{}
	}
	webapi.WriteJSON(w, http.StatusOK, names)
}

// stepState is one step record in the reference's CapturedStateUnit shape.
type stepState struct {
	TaskID      string `json:"taskID"`
	TaskHandler string `json:"taskHandler"`
	InputType   string `json:"inputType"`
	OutputType  string `json:"outputType"`
	// Transition is the task taken next ("end" at the end, "" when the
	// execution failed here).
	Transition string `json:"transition"`
	// Duration is the step's wall time in milliseconds.
	Duration float64   `json:"duration"`
	Error    stepError `json:"error"`
	Input    any       `json:"input"`
	Output   any       `json:"output"`
	// InputVar is the variable that fed the task; as in the reference it
	// is the task's own id when the task names none.
	InputVar string `json:"inputVar"`
}

// stepError is the reference's error object of a step: an empty error
// string when the step succeeded.
type stepError struct {
	Error string `json:"error"`
	// Code and Reason, our additions, classify a failed attempt (a core
	// error code such as "unavailable" or "timeout"; a reason such as
	// "task_failed"); absent when the step succeeded.
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func newStepState(chain *core.Chain, s *core.Step) stepState {
	st := stepState{
		TaskID: s.TaskID, TaskHandler: s.Handler,
		InputType: string(dataType(s.Input)), OutputType: string(dataType(s.Output)),
		Transition: s.Transition,
		Duration:   float64(s.Duration.Microseconds()) / 1000,
		Input:      s.Input.Data, Output: s.Output.Data,
		InputVar: s.TaskID,
	}
	if s.Error != nil {
		st.Error = stepError{Error: s.Error.Message, Code: s.Error.Code, Reason: s.Error.Reason}
	}
	if t := chain.Task(s.TaskID); t != nil && t.InputVar != "" {
		st.InputVar = t.InputVar
	}
	return st
}

func dataType(v core.Value) core.DataType {
	if v.Type == "" {
		return core.TypeNil
	}
	return v.Type
}
