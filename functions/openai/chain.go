package openai

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/meter"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// chainChat runs a stored chain on the request's conversation as a
// durable execution and answers its output as a chat completion: the
// seed's /openai/{chain}/v1/chat/completions. A follow-up request that
// answers the client tools' calls of an execution waiting for them resumes
// that execution instead of starting a new one.
func (h *Handler) chainChat(w http.ResponseWriter, r *http.Request) {
	ctx, tenant, chainID := r.Context(), webapi.Tenant(r.Context()), r.PathValue("chain")
	if err := webapi.Allowed(ctx, "chain", chainID); err != nil {
		writeError(w, r, err)
		return
	}
	chain, err := h.cfg.Catalog.GetChain(ctx, tenant, chainID)
	if core.ErrorCode(err) == core.ENOTFOUND {
		writeError(w, r, &apiError{status: http.StatusNotFound, code: "chain_not_found", param: "chain",
			msg: fmt.Sprintf("no chain %q: store it with POST /taskchains", chainID)})
		return
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	req, err := decodeChat(r, false)
	if err != nil {
		writeError(w, r, err)
		return
	}
	in := req.OpenAIChatRequest
	if in.Model == chain.ID {
		// Clients must name a model; naming the chain leaves it open.
		in.Model = ""
	}
	model := req.Model
	if model == "" {
		model = chain.ID
	}
	ticket, ok := h.admit(w, r, model, webapi.EstimateTokens(in.Messages), in.Options().MaxTokens)
	if !ok {
		return
	}
	ex, err := h.resumeClientTools(ctx, tenant, chain.ID, &in)
	if err == nil && ex == nil {
		ex, err = h.cfg.Engine.Start(ctx, core.StartRequest{
			Tenant: tenant, Chain: chain, Input: core.Value{Type: core.TypeOpenAIChat, Data: in}, Key: webapi.KeyID(ctx),
			TemplateVars: map[string]string{"request_id": webapi.RequestID(ctx)},
		})
	}
	if err != nil {
		webapi.Cancel(r, ticket)
		writeError(w, r, err)
		return
	}
	w.Header().Set(ExecutionHeader, ex.ID)
	// The chain may run longer than the server's write timeout allows an
	// ordinary answer; its own timeout bounds it instead.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(h.cfg.ChainTimeout + time.Minute))
	id := "chatcmpl-" + ex.ID
	if !req.Stream {
		run := h.runner().Run(ctx, ex, h.cfg.ChainTimeout, nil)
		defer webapi.Settle(w, r, ticket, meter.Usage{ExecutionID: ex.ID})
		resp, err := h.chainAnswer(ctx, run.Execution, run.Err, id, model)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeCompletion(w, resp)
		return
	}
	h.streamChain(w, r, ex, chain, id, model, req.IncludeUsage, ticket)
}

// streamChain runs the execution, streaming the text of its answering
// tasks (see answering) as the backend generates it, then the rest of the
// answer: what no answering step streamed, and the client tools' calls.
func (h *Handler) streamChain(w http.ResponseWriter, r *http.Request, ex *core.Execution, chain *core.Chain, id, model string, includeUsage bool, ticket *meter.Ticket) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	out := newChunks(w, 2*h.cfg.Heartbeat, id, model, includeUsage)
	obs := &chainStream{out: out, answering: answering(chain), cancel: cancel}

	beat := time.NewTicker(h.cfg.Heartbeat)
	defer beat.Stop()
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-beat.C:
				out.heartbeat()
			}
		}
	}()
	run := h.runner().Run(ctx, ex, h.cfg.ChainTimeout, obs)
	close(done)
	defer webapi.Settle(w, r, ticket, meter.Usage{ExecutionID: ex.ID})

	if broken := obs.brokenStep(); broken != nil {
		// The answering step failed after its text began: the client's
		// answer is cut, whatever the chain does next in the background.
		out.fail(webapi.ErrorObject{Message: fmt.Sprintf("execution %s: task %q failed after its answer began: %s", ex.ID, broken.TaskID, broken.Error.Message),
			Type: "api_error", Code: broken.Error.Code})
		return
	}
	resp, err := h.chainAnswer(r.Context(), run.Execution, run.Err, id, model)
	if err != nil {
		if !out.started() {
			writeError(w, r, err)
			return
		}
		_, obj := describe(r, err)
		out.fail(obj)
		return
	}
	choice := resp.Choices[0]
	text := ""
	if choice.Message.Content != nil {
		text = *choice.Message.Content
	}
	if rest, ok := strings.CutPrefix(text, obs.lastText()); ok {
		out.content(rest)
	}
	for i, tc := range choice.Message.ToolCalls {
		out.toolCall(core.ToolCallDelta{Index: i, ID: tc.ID, Name: tc.Function.Name, Arguments: tc.Function.Arguments})
	}
	out.finish(choice.FinishReason, resp.Usage)
}

// chainStream passes the text the answering tasks' models stream to the
// client, and notices an answering step that fails after its text began.
type chainStream struct {
	out       *chunks
	answering map[string]bool
	cancel    context.CancelFunc

	mu     sync.Mutex
	step   int             // the step whose text was streamed last
	text   strings.Builder // that step's text
	broken *core.Step
}

// Observe implements core.Observer.
func (s *chainStream) Observe(e core.Event) {
	switch e.Kind {
	case core.EventDelta:
		if !s.answering[e.TaskID] || e.Delta == "" {
			return
		}
		s.mu.Lock()
		if e.StepIndex != s.step {
			s.step = e.StepIndex
			s.text.Reset()
		}
		s.text.WriteString(e.Delta)
		s.mu.Unlock()
		s.out.content(e.Delta)
	case core.EventStepCommitted:
		s.mu.Lock()
		defer s.mu.Unlock()
		if e.Step != nil && e.Step.Error != nil && e.StepIndex == s.step && s.text.Len() > 0 {
			s.broken = e.Step
			s.cancel() // the rest runs in the background
		}
	}
}

func (s *chainStream) brokenStep() *core.Step {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broken
}

func (s *chainStream) lastText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.text.String()
}

// answering returns the tasks whose model's text is the chain's answer as
// it streams: chat_completion and prompt_to_string tasks without an
// output_template from which the chain can reach its end through tasks
// that pass the answer on unchanged (convert_to_openai_chat_response, a
// noop without prompt_template). In an agent loop the chat task answers;
// a classifier before it or a hook that rewrites the answer after it does
// not stream.
func answering(c *core.Chain) map[string]bool {
	passes := func(t *core.Task) bool {
		return t.Handler == core.HandlerConvertToOpenAI || (t.Handler == core.HandlerNoop && t.PromptTemplate == "")
	}
	var reachesEnd func(id string, seen map[string]bool) bool
	reachesEnd = func(id string, seen map[string]bool) bool {
		if id == "" || id == core.End {
			return true
		}
		t := c.Task(id)
		if t == nil || seen[id] || !passes(t) {
			return false
		}
		seen[id] = true
		return nextTasks(t, func(next string) bool { return reachesEnd(next, seen) })
	}
	out := map[string]bool{}
	for _, t := range c.Tasks {
		if (t.Handler == core.HandlerChatCompletion || t.Handler == core.HandlerPromptToString) && t.OutputTemplate == "" &&
			nextTasks(t, func(next string) bool { return reachesEnd(next, map[string]bool{}) }) {
			out[t.ID] = true
		}
	}
	return out
}

// nextTasks reports whether ok holds for any task a success of t can go
// to ("" for the end).
func nextTasks(t *core.Task, ok func(string) bool) bool {
	if t.Transition == nil || len(t.Transition.Branches) == 0 {
		return ok("")
	}
	for _, b := range t.Transition.Branches {
		if ok(b.Goto) {
			return true
		}
	}
	return false
}

// chainAnswer is the chat completion an execution gives, or the error
// that answers for it: its output when it succeeded, the calls of the
// client's tools when it waits for them, and for one that is still
// running when the request's time ran out a 504 naming it.
func (h *Handler) chainAnswer(ctx context.Context, ex *core.Execution, runErr error, id, model string) (core.OpenAIChatResponse, error) {
	if runErr != nil {
		return core.OpenAIChatResponse{}, runErr
	}
	usage := core.OpenAIUsage{PromptTokens: ex.TokensIn, CompletionTokens: ex.TokensOut, TotalTokens: ex.TokensIn + ex.TokensOut}
	created := ex.CreatedAt.Unix()
	switch {
	case ex.Status == core.StatusSucceeded:
		return answerOf(ex.Output, id, created, model, usage), nil
	case ex.Status == core.StatusWaiting && ex.Waiting != nil && ex.Waiting.Kind == core.WaitClientTools:
		return completion(id, created, model, core.Message{ToolCalls: ex.Waiting.ToolCalls}, "tool_calls", usage), nil
	case ex.Status == core.StatusWaiting && ex.Waiting != nil:
		// An await_input task asks its question; the answer comes through
		// POST /executions/{id}/resume.
		return completion(id, created, model, core.Message{Content: ex.Waiting.Prompt}, "stop", usage), nil
	case ex.Status == core.StatusFailed || ex.Status == core.StatusCancelled:
		return core.OpenAIChatResponse{}, executionError(ex)
	}
	return core.OpenAIChatResponse{}, &apiError{status: http.StatusGatewayTimeout, code: "timeout",
		msg: fmt.Sprintf("execution %s did not finish within %s; it goes on in the background: GET /executions/%s", ex.ID, h.cfg.ChainTimeout, ex.ID)}
}

// answerOf turns a chain's output into a chat completion: a
// convert_to_openai_chat_response output as it is, a history's last
// message, a text as the content, anything else as its JSON text.
func answerOf(v core.Value, id string, created int64, model string, usage core.OpenAIUsage) core.OpenAIChatResponse {
	switch d := v.Data.(type) {
	case core.OpenAIChatResponse:
		if len(d.Choices) > 0 {
			return d
		}
	case core.ChatHistory:
		last := d.Last()
		finish := "stop"
		if len(last.ToolCalls) > 0 {
			finish = "tool_calls"
		}
		return completion(id, created, model, last, finish, usage)
	case string:
		return completion(id, created, model, core.Message{Content: d}, "stop", usage)
	case nil:
		return completion(id, created, model, core.Message{}, "stop", usage)
	}
	text, err := v.Text()
	if err != nil {
		text = string(rawJSON(v.Data))
	}
	return completion(id, created, model, core.Message{Content: text}, "stop", usage)
}

// executionError is the error that answers for a failed or cancelled
// execution: its code and message, the task named, the execution too.
func executionError(ex *core.Execution) error {
	xe := ex.Error
	if xe == nil {
		return core.Errorf(core.EINTERNAL, "execution %s ended %s", ex.ID, ex.Status)
	}
	msg := xe.Message
	if xe.Task != "" && !strings.HasPrefix(msg, fmt.Sprintf("task %q", xe.Task)) {
		msg = fmt.Sprintf("task %q: %s", xe.Task, msg)
	}
	err := core.Errorf(xe.Code, "execution %s %s: %s", ex.ID, ex.Status, msg)
	if xe.Upstream {
		return core.Upstream(err)
	}
	return err
}

// resumeClientTools continues the execution of chain that waits for the
// client's tool results this request brings, if there is one: the request
// ends with tool messages answering the calls of its last assistant
// message, and an execution waiting on exactly those calls, after the same
// user message, is found among the chain's most recent waiting ones. The
// execution is resumed with its own history plus the client's tool
// messages and returned; nil when there is none to resume.
func (h *Handler) resumeClientTools(ctx context.Context, tenant, chainID string, in *core.OpenAIChatRequest) (*core.Execution, error) {
	msgs := in.Messages
	end := len(msgs)
	for end > 0 && msgs[end-1].Role == core.RoleTool {
		end--
	}
	if end == len(msgs) || end == 0 || len(msgs[end-1].ToolCalls) == 0 {
		return nil, nil
	}
	asked, answers := msgs[end-1], msgs[end:]
	ids := make(map[string]bool, len(asked.ToolCalls))
	for _, c := range asked.ToolCalls {
		ids[c.ID] = true
	}
	q := core.ExecutionQuery{Statuses: []core.Status{core.StatusWaiting}, ChainID: chainID, Limit: 50}
	for page := 0; page < 4; page++ {
		p, err := h.cfg.Executions.ListExecutions(ctx, tenant, q)
		if err != nil {
			return nil, err
		}
		for _, ex := range p.Executions {
			if w := ex.Waiting; w == nil || w.Kind != core.WaitClientTools || !sameCalls(w.ToolCalls, ids) {
				continue
			}
			hist, ok, err := h.pausedHistory(ctx, ex, lastUser(msgs[:end]))
			if err != nil || !ok {
				continue
			}
			hist.Messages = append(hist.Messages, answers...)
			return h.cfg.Engine.Resume(ctx, tenant, ex.ID, core.Value{Type: core.TypeChatHistory, Data: hist})
		}
		if p.Next == "" {
			break
		}
		q.Cursor = p.Next
	}
	return nil, nil
}

// sameCalls reports whether calls are exactly the calls with the given ids.
func sameCalls(calls []core.ToolCall, ids map[string]bool) bool {
	if len(calls) != len(ids) {
		return false
	}
	for _, c := range calls {
		if !ids[c.ID] {
			return false
		}
	}
	return true
}

// pausedHistory returns the history a waiting execution paused with (the
// output of its last step) when its last user message is user, which
// tells one conversation from another whose calls happen to have the same
// ids.
func (h *Handler) pausedHistory(ctx context.Context, ex *core.Execution, user string) (core.ChatHistory, bool, error) {
	full, err := h.cfg.Executions.GetExecution(ctx, ex.Tenant, ex.ID)
	if err != nil {
		return core.ChatHistory{}, false, err
	}
	steps, err := h.cfg.Executions.ListSteps(ctx, ex.Tenant, ex.ID, full.StepCount-1, 1)
	if err != nil || len(steps) == 0 {
		return core.ChatHistory{}, false, err
	}
	hist, ok := steps[0].Output.Data.(core.ChatHistory)
	if !ok || lastUser(hist.Messages) != user {
		return core.ChatHistory{}, false, nil
	}
	return hist.Clone(), true, nil
}

// lastUser is the content of the last user message, "" if none.
func lastUser(msgs []core.Message) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == core.RoleUser {
			return msgs[i].Content
		}
	}
	return ""
}
