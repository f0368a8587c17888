package core

import (
	"context"
	"fmt"
	"strings"
)

// Resume completes the task a waiting execution paused on, with input as
// what the task's handler would have returned, and commits it (with
// compare-and-swap) together with a step record of the resume: the task's
// handler, the input given and the output kept. The task's transition is
// evaluated as for any completed task — on the input's text after an
// await_input task, on tool-call after a chat_completion that waited for
// the client's tools — and the execution goes back to queued on the next
// task (or ends, for a transition to end).
//
// Resume runs nothing: the caller enqueues the execution or runs it. It
// fails with EINVALID, committing nothing, when the execution is not
// waiting or the input does not fit (a client_tools wait needs a
// chat_history or openai_chat answering every call; an input no branch
// accepts is refused and the execution keeps waiting); with ECONFLICT when
// another resume or a cancel committed first; with ENOTFOUND for no such
// execution.
func (e *Engine) Resume(ctx context.Context, tenant, id string, input Value) (*Execution, error) {
	ex, err := e.store.GetExecution(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if ex.Status != StatusWaiting || ex.Waiting == nil {
		return nil, Errorf(EINVALID, "execution %s is %s, not waiting: only a waiting execution can be resumed", id, ex.Status)
	}
	w := ex.Waiting
	task := ex.Chain.Task(w.Task)
	if task == nil {
		return nil, Errorf(EINTERNAL, "execution %s waits on task %q, which its chain lacks", id, w.Task)
	}
	if input.Type == "" {
		input = Nil
	}
	res, err := resumeResult(w, input)
	if err != nil {
		return nil, WrapError(EINVALID, err, "resume of execution %s (task %q)", id, task.ID)
	}

	next := ex.clone()
	// The wait is over: an execution.waiting event not yet published
	// would only tell of a state that is gone.
	next.PendingEvent = ""
	now := e.now()
	index := ex.StepCount + 1
	st := &Step{
		Tenant: ex.Tenant, ExecutionID: ex.ID, Index: index, TaskID: task.ID, Handler: task.Handler,
		Attempt: max(ex.Cursor.Attempt, 1), Input: input, Output: Nil, StartedAt: now.UTC(),
	}
	r := &stepRun{e: e, ex: next, task: task, index: index, obs: ObserverFunc(func(Event) {}), macros: macroEnv{
		tenant: next.Tenant, vars: next.TemplateVars, now: next.CreatedAt, chain: next.Chain.ID, tools: e.tools,
	}}
	if res, err = r.applyOutputTemplate(ctx, res); err == nil {
		err = e.advance(ctx, r, res, st)
	}
	if err != nil {
		return nil, WrapError(EINVALID, err, "resume of execution %s (task %q) with this input; it still waits", id, task.ID)
	}
	next.Waiting = nil
	next.Lease = Lease{}
	next.StepCount = index
	next.UpdatedAt = now.UTC()
	if !next.Status.Final() {
		next.Status = StatusQueued
	}
	if err := e.store.CommitExecution(ctx, next, st); err != nil {
		return nil, err
	}
	// A resume that ends the execution owes its final event; a failed
	// publish is retried through the queue (announce).
	next, _ = e.announce(ctx, next)
	return next, nil
}

// resumeResult is what the paused handler returns, given the resume input.
func resumeResult(w *Waiting, input Value) (result, error) {
	switch w.Kind {
	case WaitInput:
		eval, err := input.Text()
		if err != nil {
			eval = input.Display()
		}
		if input.Data == nil {
			eval = ""
		}
		return result{output: input, eval: eval}, nil
	case WaitClientTools:
		hist, ok := asHistory(input)
		if !ok {
			return result{}, Errorf(EINVALID, "the client's tool results come as a chat_history or openai_chat, not %s", input.Type)
		}
		if missing := unanswered(w.ToolCalls, hist); len(missing) > 0 {
			return result{}, Errorf(EINVALID, "the history has no tool message answering %s", strings.Join(missing, ", "))
		}
		return result{output: input, eval: EvalToolCall, aliases: []string{evalToolCallAlias}}, nil
	}
	return result{}, Errorf(EINTERNAL, "unknown kind of wait %q", w.Kind)
}

// unanswered describes the calls no tool message of hist answers.
func unanswered(calls []ToolCall, hist ChatHistory) []string {
	answers := map[string]int{}
	for _, m := range hist.Messages {
		if m.Role == RoleTool {
			answers[answerKey(m.ToolCallID, m.Name)]++
		}
	}
	var missing []string
	for _, c := range calls {
		k := answerKey(c.ID, c.Function.Name)
		if answers[k] > 0 {
			answers[k]--
			continue
		}
		missing = append(missing, fmt.Sprintf("call %q of tool %s", c.ID, c.Function.Name))
	}
	return missing
}
