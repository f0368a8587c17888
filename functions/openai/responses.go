package openai

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/meter"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// ResponsesChain is the id of the one-task chain a stored response runs:
// GET /executions?chain=openai-responses lists them.
const ResponsesChain = "openai-responses"

// deletedKind is the record kind that marks a deleted response: the
// execution behind it stays (an audit record), the Responses API no
// longer answers for it.
const deletedKind = "openai_response_deleted"

// The template variables a response's execution keeps its request's
// settings in, for the response object and for the responses after it.
const (
	varInstructions = "instructions"
	varPrevious     = "previous_response_id"
	varMetadata     = "metadata"
	varModel        = "model"
)

// createResponse answers POST /v1/responses. A stored response (store,
// the default) is an execution of a one-task chain whose chat_completion
// offers the request's function tools as the client's; previous_response_id
// continues the conversation of the response it names, read back from its
// steps. With store: false the model is called directly, as chat
// completions are.
func (h *Handler) createResponse(w http.ResponseWriter, r *http.Request) {
	ctx, tenant := r.Context(), webapi.Tenant(r.Context())
	req, err := decodeResponse(r)
	if err == nil {
		err = webapi.Allowed(ctx, "model", req.Model)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	msgs, err := h.conversation(ctx, tenant, req)
	if err != nil {
		writeError(w, r, err)
		return
	}
	chat := core.OpenAIChatRequest{
		Model: req.Model, Messages: msgs, Tools: req.Tools, ToolChoice: req.ToolChoice,
		ParallelToolCalls: req.ParallelToolCalls, MaxTokens: req.MaxOutputTokens,
		Temperature: req.Temperature, TopP: req.TopP, ResponseFormat: req.Format,
		ReasoningEffort: req.ReasoningEffort, User: req.User,
	}
	id := "resp_" + strings.ReplaceAll(uuid.Must(uuid.NewV7()).String(), "-", "")
	base := responseObject{ID: id, CreatedAt: time.Now().Unix(), Model: req.Model, Status: "in_progress"}
	base.settings(chat, req.Instructions, req.PreviousResponseID, req.Metadata, req.Store)

	ticket, ok := h.admit(w, r, req.Model, webapi.EstimateTokens(msgs), req.MaxOutputTokens)
	if !ok {
		return
	}
	var out *responseEvents
	if req.Stream {
		out = newResponseEvents(w, 2*h.cfg.Heartbeat, base)
	}
	if !req.Store {
		h.directResponse(w, r, chat, base, out, ticket)
		return
	}
	meta, _ := json.Marshal(req.Metadata)
	ex, err := h.cfg.Engine.Start(ctx, core.StartRequest{
		Tenant: tenant, ID: id, Chain: responsesChain(len(req.Tools) > 0), Key: webapi.KeyID(ctx),
		Input: core.Value{Type: core.TypeOpenAIChat, Data: chat},
		TemplateVars: map[string]string{
			varInstructions: req.Instructions, varPrevious: req.PreviousResponseID, varMetadata: string(meta), varModel: req.Model,
		},
	})
	if err != nil {
		webapi.Cancel(r, ticket)
		writeError(w, r, err)
		return
	}
	w.Header().Set(ExecutionHeader, ex.ID)
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(h.cfg.ChainTimeout + time.Minute))
	var obs core.Observer
	if out != nil {
		obs = out
	}
	run := h.runner().Run(ctx, ex, h.cfg.ChainTimeout, obs)
	defer webapi.Settle(w, r, ticket, meter.Usage{ExecutionID: ex.ID})
	if run.Err != nil {
		h.endResponse(w, r, out, base, nil, run.Err)
		return
	}
	view := responseOf(run.Execution, run.Steps)
	if run.Execution.Status == core.StatusFailed || run.Execution.Status == core.StatusCancelled {
		h.endResponse(w, r, out, view, nil, executionError(run.Execution))
		return
	}
	if view.Status == "in_progress" {
		h.endResponse(w, r, out, view, nil, &apiError{status: http.StatusGatewayTimeout, code: "timeout",
			msg: fmt.Sprintf("response %s did not finish within %s; it goes on in the background: GET /v1/responses/%s", id, h.cfg.ChainTimeout, id)})
		return
	}
	h.endResponse(w, r, out, view, nil, nil)
}

// directResponse answers a response that is not stored: one routed model
// call, streamed as it comes.
func (h *Handler) directResponse(w http.ResponseWriter, r *http.Request, chat core.OpenAIChatRequest, base responseObject, out *responseEvents, ticket *meter.Ticket) {
	var delta core.DeltaFunc
	if out != nil {
		delta = out.delta
	}
	c, err := h.models(r.Context()).LLM().Chat(r.Context(), chatRequestOf(&chat), delta)
	u := webapi.UsageOfCall(c.Usage, err)
	defer webapi.Settle(w, r, ticket, u)
	if out == nil {
		webapi.ShowCost(w, ticket, u)
	}
	if err != nil {
		h.endResponse(w, r, out, base, nil, modelError(err, chat.Model))
		return
	}
	base.Model = c.Usage.Model
	base.complete(c.Message, usageOf(c.Usage))
	h.endResponse(w, r, out, base, &c, nil)
}

// endResponse answers the response as it ended: whole, or as the last
// events of its stream; err, when not nil, is why it failed.
func (h *Handler) endResponse(w http.ResponseWriter, r *http.Request, out *responseEvents, view responseObject, _ *core.Completion, err error) {
	if err != nil {
		if out == nil || !out.started() {
			writeError(w, r, modelError(err, view.Model))
			return
		}
		_, obj := describe(r, err)
		out.fail(view, obj)
		return
	}
	if out == nil {
		webapi.WriteJSON(w, http.StatusOK, view)
		return
	}
	out.complete(view)
}

// responsesChain is the chain of a stored response: the model answers,
// offering the request's tools as the client's when there are any.
func responsesChain(clientTools bool) *core.Chain {
	return &core.Chain{ID: ResponsesChain, Tasks: []*core.Task{{
		ID: "respond", Handler: core.HandlerChatCompletion,
		ExecuteConfig: &core.ExecuteConfig{PassClientsTools: clientTools},
		Transition:    &core.Transition{Branches: []*core.Branch{{Operator: core.OpDefault, Goto: core.End}}},
	}}}
}

// conversation is what the model is given: the request's instructions as
// a system message, the conversation of the previous response (its own
// instructions left out, as OpenAI does), and the request's input. The
// tool outputs of the input must answer calls of the conversation, and a
// conversation whose last calls are unanswered takes nothing but their
// outputs.
func (h *Handler) conversation(ctx context.Context, tenant string, req *responseRequest) ([]core.Message, error) {
	var msgs []core.Message
	if req.Instructions != "" {
		msgs = append(msgs, core.Message{Role: core.RoleSystem, Content: req.Instructions})
	}
	if req.PreviousResponseID != "" {
		prev, steps, err := h.loadResponse(ctx, tenant, req.PreviousResponseID)
		if err != nil {
			if core.ErrorCode(err) == core.ENOTFOUND {
				err = &apiError{status: http.StatusNotFound, code: "not_found", param: "previous_response_id",
					msg: fmt.Sprintf("Previous response with id %q not found.", req.PreviousResponseID)}
			}
			return nil, err
		}
		hist, ok := answerHistory(steps)
		if !ok {
			return nil, badRequest("previous_response_id", "previous_response_id: response %s has no answer to continue (it is %s)", prev.ID, responseStatus(prev))
		}
		if req.Model == "" {
			req.Model = prev.TemplateVars[varModel]
		}
		carried := hist.Messages
		if in := prev.TemplateVars[varInstructions]; in != "" && len(carried) > 0 && carried[0].Role == core.RoleSystem && carried[0].Content == in {
			carried = carried[1:]
		}
		msgs = append(msgs, carried...)
		defer h.closeWaiting(ctx, prev, hist, req.Input)
	}
	msgs = append(msgs, req.Input...)
	if len(req.Input) == 0 {
		return nil, badRequest("input", "input: required: a text or input items")
	}
	return msgs, checkToolOutputs(msgs)
}

// closeWaiting completes a previous response whose execution waits for the
// client's tool outputs, with the outputs this request brings, so that it
// ends (succeeded) rather than waits forever. It is best effort: the next
// response carries the conversation on whether or not it succeeds (another
// request may have completed it first).
func (h *Handler) closeWaiting(ctx context.Context, prev *core.Execution, hist core.ChatHistory, input []core.Message) {
	if prev.Status != core.StatusWaiting || prev.Waiting == nil || prev.Waiting.Kind != core.WaitClientTools {
		return
	}
	for _, m := range input {
		if m.Role == core.RoleTool {
			hist.Messages = append(hist.Messages, m)
		}
	}
	if _, err := h.cfg.Engine.Resume(ctx, prev.Tenant, prev.ID, core.Value{Type: core.TypeChatHistory, Data: hist}); err != nil {
		webapi.Logger(ctx).Debug("previous response not completed", "response", prev.ID, "error", err.Error())
	}
}

// checkToolOutputs refuses a function_call_output that answers no call,
// and a message after calls that are not all answered, as OpenAI does.
func checkToolOutputs(msgs []core.Message) error {
	pending := map[string]bool{}
	asked := map[string]bool{}
	for i, m := range msgs {
		switch {
		case m.Role == core.RoleTool:
			if !asked[m.ToolCallID] {
				return badRequest("input", "No tool call found for function call output with call_id %s.", m.ToolCallID)
			}
			delete(pending, m.ToolCallID)
		case len(pending) > 0:
			for id := range pending {
				return badRequest("input", "No tool output found for function call %s (message %d comes before it).", id, i)
			}
		}
		for _, c := range m.ToolCalls {
			asked[c.ID], pending[c.ID] = true, true
		}
	}
	return nil
}

// getResponse answers GET /v1/responses/{id}.
func (h *Handler) getResponse(w http.ResponseWriter, r *http.Request) {
	ex, steps, err := h.loadResponse(r.Context(), webapi.Tenant(r.Context()), r.PathValue("id"))
	if err != nil {
		writeError(w, r, responseNotFound(err, r.PathValue("id")))
		return
	}
	webapi.WriteJSON(w, http.StatusOK, responseOf(ex, steps))
}

// deleteResponse answers DELETE /v1/responses/{id}: the response is no
// longer served (GET and previous_response_id answer 404); its execution
// stays, as the record of what ran.
func (h *Handler) deleteResponse(w http.ResponseWriter, r *http.Request) {
	ctx, tenant, id := r.Context(), webapi.Tenant(r.Context()), r.PathValue("id")
	if _, _, err := h.loadResponse(ctx, tenant, id); err != nil {
		writeError(w, r, responseNotFound(err, id))
		return
	}
	now := time.Now().UTC()
	err := h.cfg.Records.CreateRecord(ctx, tenant, &core.Record{Kind: deletedKind, ID: id, Body: json.RawMessage(`{}`), CreatedAt: now, UpdatedAt: now})
	if err != nil && core.ErrorCode(err) != core.ECONFLICT {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, map[string]any{"id": id, "object": "response", "deleted": true})
}

func responseNotFound(err error, id string) error {
	if core.ErrorCode(err) != core.ENOTFOUND {
		return err
	}
	return &apiError{status: http.StatusNotFound, code: "not_found", msg: fmt.Sprintf("No response found with id %q.", id)}
}

// loadResponse reads a stored response's execution and its steps.
// ENOTFOUND for an id that is no response of the tenant, or a deleted one.
func (h *Handler) loadResponse(ctx context.Context, tenant, id string) (*core.Execution, []*core.Step, error) {
	if !strings.HasPrefix(id, "resp_") {
		return nil, nil, core.Errorf(core.ENOTFOUND, "no response %q", id)
	}
	if _, err := h.cfg.Records.GetRecord(ctx, tenant, deletedKind, id); err == nil {
		return nil, nil, core.Errorf(core.ENOTFOUND, "response %q was deleted", id)
	} else if core.ErrorCode(err) != core.ENOTFOUND {
		return nil, nil, err
	}
	ex, err := h.cfg.Executions.GetExecution(ctx, tenant, id)
	if err != nil {
		return nil, nil, err
	}
	if ex.Chain == nil || ex.Chain.ID != ResponsesChain {
		return nil, nil, core.Errorf(core.ENOTFOUND, "no response %q", id)
	}
	steps, err := h.cfg.Executions.ListSteps(ctx, tenant, id, 0, 0)
	return ex, steps, err
}

// answerHistory is the conversation as the response's model answered it:
// the output of its last step that a model answered (a resume with the
// client's tool outputs answers nothing).
func answerHistory(steps []*core.Step) (core.ChatHistory, bool) {
	for i := len(steps) - 1; i >= 0; i-- {
		s := steps[i]
		if s.Model == "" || s.Error != nil {
			continue
		}
		if hist, ok := s.Output.Data.(core.ChatHistory); ok && len(hist.Messages) > 0 {
			return hist.Clone(), true
		}
	}
	return core.ChatHistory{}, false
}

// responseStatus is the Responses API's status of a response's execution.
func responseStatus(ex *core.Execution) string {
	switch ex.Status {
	case core.StatusSucceeded, core.StatusWaiting:
		return "completed"
	case core.StatusFailed:
		return "failed"
	case core.StatusCancelled:
		return "cancelled"
	}
	return "in_progress"
}

// responseOf is the response object of a stored response's execution.
func responseOf(ex *core.Execution, steps []*core.Step) responseObject {
	v := responseObject{ID: ex.ID, CreatedAt: ex.CreatedAt.Unix(), Model: ex.TemplateVars[varModel], Status: responseStatus(ex)}
	chat, _ := ex.Input.Data.(core.OpenAIChatRequest)
	var meta map[string]string
	_ = json.Unmarshal([]byte(ex.TemplateVars[varMetadata]), &meta)
	v.settings(chat, ex.TemplateVars[varInstructions], ex.TemplateVars[varPrevious], meta, true)
	usage := core.OpenAIUsage{PromptTokens: ex.TokensIn, CompletionTokens: ex.TokensOut, TotalTokens: ex.TokensIn + ex.TokensOut}
	if hist, ok := answerHistory(steps); ok && v.Status != "in_progress" {
		v.complete(hist.Last(), usage)
		for i := len(steps) - 1; i >= 0; i-- {
			if steps[i].Model != "" {
				v.Model = steps[i].Model
				break
			}
		}
	}
	v.Status = responseStatus(ex) // complete marks it completed
	if xe := ex.Error; xe != nil && ex.Status.Final() {
		v.Error = &responseError{Code: xe.Code, Message: xe.Message}
	}
	return v
}
