package core

import (
	"context"
	"fmt"
	"time"
)

// result is what a handler produces: the output, the value transitions
// are evaluated on (with alternative spellings that also match), and the
// cost of any model call. A handler that needs something from outside
// sets wait instead of finishing: the execution pauses on the task.
type result struct {
	output  Value
	eval    string
	aliases []string
	usage   Usage
	wait    *Waiting
}

// handlerFunc runs one attempt of a task on its input.
type handlerFunc func(ctx context.Context, r *stepRun, in Value) (result, error)

// stepRun is the context one step's handler works in.
type stepRun struct {
	e      *Engine
	ex     *Execution
	task   *Task
	index  int
	obs    Observer
	macros macroEnv
}

// delta forwards a streamed piece of a model's answer to the observer.
func (r *stepRun) delta(d Delta) {
	r.obs.Observe(Event{Kind: EventDelta, ExecutionID: r.ex.ID, StepIndex: r.index, TaskID: r.task.ID, Handler: r.task.Handler,
		Attempt: r.ex.Cursor.Attempt, Delta: d.Text, ToolCall: d.ToolCall, At: r.e.now()})
}

// step runs one attempt of the execution's current task and advances ex
// (a private copy) to its next state, returning the step record to commit
// with it. The only error it returns is errInterrupted.
func (e *Engine) step(ctx context.Context, ex *Execution, obs Observer) (*Step, error) {
	task := ex.Chain.Task(ex.Cursor.Task)
	index := ex.StepCount + 1
	attempt := max(ex.Cursor.Attempt, 1)
	started := e.now()
	st := &Step{
		Tenant: ex.Tenant, ExecutionID: ex.ID, Index: index,
		TaskID: ex.Cursor.Task, Attempt: attempt, Input: ex.nextInput(), Output: Nil,
		StartedAt: started.UTC(),
	}
	if task == nil { // only a chain changed behind the engine's back gets here
		e.finish(ex, StatusFailed, Nil, &ExecError{Code: EINVALID, Reason: ReasonInvalidChain, Task: ex.Cursor.Task, Message: fmt.Sprintf("task %q does not exist in the chain", ex.Cursor.Task)})
		st.Error = ex.Error
		ex.StepCount = index
		return st, nil
	}
	st.Handler = task.Handler
	if xerr := e.overTime(ex); xerr != nil {
		// The step is recorded, refused, so that the history says why the
		// execution ended where it did.
		e.finish(ex, StatusFailed, Nil, xerr)
		st.Error = xerr
		ex.StepCount = index
		return st, nil
	}
	obs.Observe(Event{Kind: EventStepStarted, ExecutionID: ex.ID, StepIndex: index, TaskID: task.ID, Handler: task.Handler, Attempt: attempt, At: started})

	r := &stepRun{e: e, ex: ex, task: task, index: index, obs: obs, macros: macroEnv{
		tenant: ex.Tenant, vars: ex.TemplateVars, now: ex.CreatedAt, chain: ex.Chain.ID, tools: e.tools,
	}}
	res, input, err := e.attempt(ctx, r)
	st.Input = input
	st.Duration = e.now().Sub(started)
	st.TokensIn, st.TokensOut = res.usage.TokensIn, res.usage.TokensOut
	st.CachedTokens, st.ReasoningTokens = res.usage.CachedIn, res.usage.Reasoning
	st.Model, st.Backend = res.usage.Model, res.usage.Backend
	ex.TokensIn += res.usage.TokensIn
	ex.TokensOut += res.usage.TokensOut
	if err != nil && ctx.Err() != nil {
		return nil, errInterrupted
	}
	ex.StepCount = index
	ex.UpdatedAt = e.now().UTC()
	switch {
	case err == nil && res.wait != nil:
		e.pause(ex, task, res, st)
	case err == nil:
		err = e.advance(ctx, r, res, st)
	}
	if err != nil {
		e.fail(ex, task, attempt, err, st)
	}
	e.checkTokens(ex, task)
	return st, nil
}

// pause puts the execution in waiting on task: the cursor stays on it and
// nothing runs until Engine.Resume completes it.
func (e *Engine) pause(ex *Execution, task *Task, res result, st *Step) {
	st.Output, st.Eval = res.output, res.eval
	w := *res.wait
	w.Task = task.ID
	ex.Status = StatusWaiting
	ex.Waiting = &w
	ex.Cursor.NotBefore = time.Time{}
	e.owe(ex)
}

// Failure reasons of the chain's bounds besides max_steps.
const (
	// ReasonMaxTokens: the execution's model calls used more tokens than
	// the chain's max_tokens_total.
	ReasonMaxTokens = "max_tokens"
	// ReasonMaxDuration: the execution outlived the chain's max_duration.
	ReasonMaxDuration = "max_duration"
)

// overTime returns the failure of an execution that has run longer than
// its chain's max_duration, or nil. It is checked before every step.
func (e *Engine) overTime(ex *Execution) *ExecError {
	limit := time.Duration(ex.Chain.MaxDuration)
	if limit <= 0 {
		return nil
	}
	elapsed := e.now().Sub(ex.CreatedAt)
	if elapsed <= limit {
		return nil
	}
	return &ExecError{
		Code: ETIMEOUT, Reason: ReasonMaxDuration, Task: ex.Cursor.Task,
		Message: fmt.Sprintf("execution stopped after running for %s, over the chain's max_duration of %s, before task %q", elapsed.Round(time.Millisecond), limit, ex.Cursor.Task),
	}
}

// checkTokens fails an execution that is not over yet once its model
// calls have used more tokens than the chain's max_tokens_total. It is
// checked after every step; a step that ends the execution keeps its
// outcome, since the tokens are spent either way.
func (e *Engine) checkTokens(ex *Execution, task *Task) {
	limit := ex.Chain.MaxTokensTotal
	used := ex.TokensIn + ex.TokensOut
	if limit <= 0 || used <= limit || ex.Status.Final() {
		return
	}
	e.finish(ex, StatusFailed, Nil, &ExecError{
		Code: EINVALID, Reason: ReasonMaxTokens, Task: task.ID,
		Message: fmt.Sprintf("execution stopped after task %q: it used %d tokens, over the chain's max_tokens_total of %d", task.ID, used, limit),
	})
	ex.Waiting = nil
}

// attempt prepares the task's input and runs its handler under the task's
// timeout, which derives from ctx so that a caller going away cancels the
// model or hook call too.
func (e *Engine) attempt(ctx context.Context, r *stepRun) (result, Value, error) {
	task, ex := r.task, r.ex
	in := ex.nextInput()
	if task.InputVar != "" {
		v, err := resolveVar(ex, task.InputVar)
		if err != nil {
			return result{}, in, err
		}
		in = v
	}
	if task.PromptTemplate != "" {
		text, err := r.renderTemplate(ctx, "prompt_template", task.PromptTemplate, templateData(ex))
		if err != nil {
			return result{}, in, err
		}
		in = String(text)
	}
	run, ok := handlerFor(task.Handler)
	if !ok {
		return result{}, in, Errorf(EINVALID, "unknown handler %q", task.Handler)
	}
	actx := ctx
	if task.Timeout > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, time.Duration(task.Timeout))
		defer cancel()
	}
	res, err := runRecovered(actx, run, r, in)
	if err != nil && ctx.Err() == nil && actx.Err() != nil {
		err = WrapError(ETIMEOUT, err, "task timed out after %s", time.Duration(task.Timeout))
	}
	if err != nil {
		return res, in, err
	}
	if res.output.Type == "" {
		res.output = Nil
	}
	if res.wait != nil {
		return res, in, nil // the output is not complete yet
	}
	res, err = r.applyOutputTemplate(ctx, res)
	return res, in, err
}

// applyOutputTemplate renders the task's output_template, if any, over the
// output, which the rendering replaces.
func (r *stepRun) applyOutputTemplate(ctx context.Context, res result) (result, error) {
	if r.task.OutputTemplate == "" {
		return res, nil
	}
	text, err := r.renderTemplate(ctx, "output_template", r.task.OutputTemplate, res.output.Data)
	if err != nil {
		return res, err
	}
	res.output = String(text)
	if r.task.Handler == HandlerHook {
		res.eval = text
	}
	return res, nil
}

// runRecovered runs a handler, turning a panic into an EINTERNAL error of
// the attempt: one bad handler or input must not take down the process and
// every other execution in it.
func runRecovered(ctx context.Context, run handlerFunc, r *stepRun, in Value) (res result, err error) {
	defer func() {
		if p := recover(); p != nil {
			res, err = result{}, Errorf(EINTERNAL, "handler %s crashed: %v", r.task.Handler, p)
		}
	}()
	return run(ctx, r, in)
}

// advance applies a successful attempt: it takes the transition, composes,
// stores the task's variable, renders print, and moves the cursor.
func (e *Engine) advance(ctx context.Context, r *stepRun, res result, st *Step) error {
	task, ex := r.task, r.ex
	st.Output = res.output
	st.Eval = res.eval
	branch, err := chooseBranch(task.Transition, res.eval, res.aliases)
	if err != nil {
		return err
	}
	// Everything that can fail runs before ex changes, so that a failed
	// attempt leaves the execution as it was for the retry or on_failure.
	out := res.output
	composedName := ""
	if branch != nil && branch.Compose != nil {
		with, err := resolveVar(ex, branch.Compose.WithVar)
		if err != nil {
			return err
		}
		if out, err = composeValues(res.output, with, branch.Compose.Strategy); err != nil {
			return err
		}
		composedName = composedVarName(task.ID, branch.When)
	}
	if task.Print != "" {
		data := templateData(ex)
		data[task.ID] = templateValue(out)
		data[VarPreviousOutput] = templateValue(out)
		if composedName != "" {
			data[composedName] = templateValue(out)
		}
		text, err := r.renderTemplate(ctx, "print", task.Print, data)
		if err != nil {
			return err
		}
		st.Printed = text
	}
	if composedName != "" {
		ex.Vars[composedName] = out
	}
	ex.Vars[task.ID] = out
	ex.Cursor.Previous, ex.Cursor.Input = task.ID, nil
	next := End
	if branch != nil && branch.Goto != "" {
		next = branch.Goto
	}
	st.Transition = next
	if next == End {
		e.finish(ex, StatusSucceeded, out, nil)
		return nil
	}
	ex.Cursor = Cursor{Task: next, Previous: task.ID, Attempt: 1}
	return nil
}

// fail records a failed attempt and decides what follows: a retry after a
// backoff, the on_failure task with the error text as its input, or the
// end of the execution.
func (e *Engine) fail(ex *Execution, task *Task, attempt int, err error, st *Step) {
	xerr := &ExecError{Code: ErrorCode(err), Reason: ReasonTaskFailed, Task: task.ID, Message: err.Error(), Upstream: IsUpstream(err)}
	st.Error = xerr
	if attempt <= task.RetryOnFailure {
		st.Transition = task.ID // the task runs again
		ex.Cursor.Attempt = attempt + 1
		ex.Cursor.NotBefore = e.now().Add(retryDelay(task, attempt)).UTC()
		return
	}
	if task.Transition != nil && task.Transition.OnFailure != "" {
		st.Transition = task.Transition.OnFailure
		msg := String(err.Error())
		ex.Cursor = Cursor{Task: task.Transition.OnFailure, Previous: ex.Cursor.Previous, Input: &msg, Attempt: 1}
		return
	}
	if attempt > 1 {
		xerr = &ExecError{Code: xerr.Code, Reason: xerr.Reason, Task: task.ID, Upstream: xerr.Upstream,
			Message: fmt.Sprintf("task %q failed after %d attempts: %s", task.ID, attempt, err.Error())}
	} else {
		xerr = &ExecError{Code: xerr.Code, Reason: xerr.Reason, Task: task.ID, Upstream: xerr.Upstream,
			Message: fmt.Sprintf("task %q failed: %s", task.ID, err.Error())}
	}
	e.finish(ex, StatusFailed, Nil, xerr)
}

// estimateTokens approximates the tokens of a text (about four characters
// a token), which is all a token_limit or a context check needs.
func estimateTokens(s string) int {
	n := len([]rune(s))
	return (n + 3) / 4
}

// checkTokenLimit enforces the chain's token_limit on an estimated size.
func (r *stepRun) checkTokenLimit(tokens int, what string) error {
	if limit := r.ex.Chain.TokenLimit; limit > 0 && tokens > limit {
		return Errorf(EINVALID, "%s is about %d tokens, over the chain's token_limit of %d", what, tokens, limit)
	}
	return nil
}
