package core

import (
	"context"
	"time"
)

// Status is the state of an execution.
type Status string

// Execution statuses. queued, running and waiting are live; the others are
// final.
const (
	StatusQueued    Status = "queued"
	StatusRunning   Status = "running"
	StatusWaiting   Status = "waiting"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
)

// Final reports whether s is a final status.
func (s Status) Final() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCancelled
}

// DefaultTenant owns every record until API keys decide the tenant.
const DefaultTenant = "default"

// Execution is the durable record of one run of a chain. Together with its
// Step records it is enough to continue the run after any crash: the
// engine commits it, with compare-and-swap on Version, after every step.
type Execution struct {
	Tenant string `json:"tenant"`
	ID     string `json:"id"`
	// Chain is the snapshot of the chain this execution runs.
	Chain  *Chain `json:"chain"`
	Status Status `json:"status"`
	// Input is the execution's input.
	Input Value `json:"input"`
	// TemplateVars feed the {{var:NAME}} macro.
	TemplateVars map[string]string `json:"template_vars,omitempty"`
	// EventHop is how many functions stand between the outside world and
	// this execution (0 when a person or a program started it); its
	// lifecycle events carry it.
	EventHop int `json:"event_hop,omitempty"`
	// Vars holds every completed task's output (after compose), by task id.
	Vars map[string]Value `json:"vars,omitempty"`
	// Cursor says what runs next; it is empty once the execution is final.
	Cursor Cursor `json:"cursor"`
	// StepCount is the number of committed steps (attempts).
	StepCount int `json:"step_count"`
	// Continuations counts the times a delivery handed the execution on
	// to the next one; the engine's MaxHops bounds it.
	Continuations int `json:"continuations,omitempty"`
	// FailedDeliveries counts the deliveries in a row that failed while
	// running it (a step the store refuses to commit, a crash of the
	// engine itself); MaxFailedDeliveries of them end it as poison work.
	FailedDeliveries int `json:"failed_deliveries,omitempty"`
	// Key is the id of the API key that started the execution, "" for
	// none: the ledger counts its steps' use against that key.
	Key string `json:"key,omitempty"`
	// TokensIn and TokensOut sum every model call of the execution.
	TokensIn  int `json:"tokens_in"`
	TokensOut int `json:"tokens_out"`
	// Output is the final output, set when the execution succeeds.
	Output Value `json:"output"`
	// Error is the failure, set when the execution fails.
	Error *ExecError `json:"error,omitempty"`
	// Waiting says what the execution waits for while its status is
	// waiting (nil otherwise): Engine.Resume brings it.
	Waiting *Waiting `json:"waiting,omitempty"`
	// Lease says which worker runs the execution now, until when. A worker
	// takes it with a compare-and-swap commit before it runs a step and
	// keeps it fresh with every commit; another worker may take it once it
	// has expired. The zero Lease means no worker holds it.
	Lease Lease `json:"lease,omitzero"`
	// PendingEvent is the type of the lifecycle event (events.Type*) the
	// execution's last change of status owes the engine's Publisher; it
	// is set in the commit that changes the status and cleared once the
	// event is published, so a crash in between loses no event.
	PendingEvent string `json:"pending_event,omitempty"`
	// Version is the compare-and-swap token: the value read, which a commit
	// must still find in the store.
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Waiting is what a waiting execution needs from outside before it can go
// on. Nothing runs it meanwhile: no lease, no queue message, no cost.
type Waiting struct {
	// Task is the task that paused. The cursor stays on it; the resume
	// completes it, as if its handler had returned the resume input.
	Task string `json:"task"`
	// Kind is WaitInput or WaitClientTools.
	Kind string `json:"kind"`
	// Prompt is what an await_input task asks for: its input as text (the
	// rendering of its prompt_template when it has one).
	Prompt string `json:"prompt,omitempty"`
	// ToolCalls are the calls of the client's own tools the model made
	// (WaitClientTools); the resume must answer each with a tool message.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// Kinds of Waiting.
const (
	// WaitInput: an await_input task waits for a person or a system to
	// supply a value (an answer, an approval).
	WaitInput = "input"
	// WaitClientTools: a chat_completion task with pass_clients_tools made
	// calls of tools only the client can run.
	WaitClientTools = "client_tools"
)

// Lease is a worker's claim on an execution.
type Lease struct {
	// Owner names the worker (process and delivery) holding it.
	Owner string `json:"owner,omitempty"`
	// Until is when the claim lapses unless renewed.
	Until time.Time `json:"until,omitzero"`
}

// Held reports whether the lease is held by someone at time now.
func (l Lease) Held(now time.Time) bool { return l.Owner != "" && now.Before(l.Until) }

// Cursor is the position of an execution: the task to run next, the input
// it gets and the attempt it is on. The input is normally the previous
// task's output, which the cursor refers to by name rather than copying,
// so that a checkpoint holds each value once.
type Cursor struct {
	Task string `json:"task,omitempty"`
	// Previous is the last completed task; its variable is the previous
	// output and, unless Input is set, the next task's input.
	Previous string `json:"previous,omitempty"`
	// Input is set when the next task's input is not the previous output:
	// the execution's input for the first task, the error text for an
	// on_failure task.
	Input *Value `json:"input,omitempty"`
	// Attempt counts from 1; it is above 1 while a failed task is retried.
	Attempt int `json:"attempt,omitempty"`
	// NotBefore delays a retry (backoff).
	NotBefore time.Time `json:"not_before,omitzero"`
}

// previousOutput is the output of the last completed task, or Nil.
func (e *Execution) previousOutput() Value {
	if v, ok := e.Vars[e.Cursor.Previous]; ok && e.Cursor.Previous != "" {
		return v
	}
	return Nil
}

// nextInput is the input of the task the cursor points at.
func (e *Execution) nextInput() Value {
	if e.Cursor.Input != nil {
		return *e.Cursor.Input
	}
	return e.previousOutput()
}

// ExecError describes why an execution failed.
type ExecError struct {
	// Code is one of the core error codes.
	Code string `json:"code"`
	// Reason is a short machine-readable cause: one of the Reason*
	// constants.
	Reason  string `json:"reason"`
	Message string `json:"message"`
	// Task is the task that failed, if any.
	Task string `json:"task,omitempty"`
	// Upstream says the error is the answer of a service the task called
	// (IsUpstream), such as a model backend refusing a bad API key: the
	// HTTP layer answers 502 for it rather than blaming the caller.
	Upstream bool `json:"upstream,omitempty"`
}

// Failure reasons.
const (
	// ReasonTaskFailed: a task failed after its retries, with no
	// on_failure task to go to.
	ReasonTaskFailed = "task_failed"
	// ReasonMaxSteps: the execution used up its max_steps.
	ReasonMaxSteps = "max_steps"
	// ReasonInvalidChain: the chain snapshot names a task it lacks.
	ReasonInvalidChain = "invalid_chain"
)

// Step is the record of one attempt of one task. The step records of an
// execution, with its chain snapshot and input, are enough to rebuild its
// state as of any step.
type Step struct {
	Tenant      string `json:"tenant"`
	ExecutionID string `json:"execution_id"`
	// Index counts the execution's steps from 1, without gaps.
	Index   int    `json:"index"`
	TaskID  string `json:"task_id"`
	Handler string `json:"handler"`
	Attempt int    `json:"attempt"`
	Input   Value  `json:"input"`
	Output  Value  `json:"output"`
	// Eval is the value the transition was evaluated on.
	Eval string `json:"eval,omitempty"`
	// Transition is the task taken next: a task id or "end" after a
	// success; after a failure the task's own id when it is retried, the
	// on_failure task, or empty when the execution fails.
	Transition string        `json:"transition,omitempty"`
	StartedAt  time.Time     `json:"started_at"`
	Duration   time.Duration `json:"duration_ns"`
	TokensIn   int           `json:"tokens_in,omitempty"`
	TokensOut  int           `json:"tokens_out,omitempty"`
	// CachedTokens and ReasoningTokens are the input tokens the backend
	// read from its cache and the output tokens spent reasoning, when it
	// reports them.
	CachedTokens    int    `json:"cached_tokens,omitempty"`
	ReasoningTokens int    `json:"reasoning_tokens,omitempty"`
	Model           string `json:"model,omitempty"`
	Backend         string `json:"backend,omitempty"`
	// Printed is the rendered print template of the task, if any.
	Printed string `json:"printed,omitempty"`
	// Error is set when the attempt failed.
	Error *ExecError `json:"error,omitempty"`
}

// ExecutionStore is the port that keeps executions and their steps. Every
// record belongs to a tenant; one tenant never sees another's records.
// The chain snapshot is written once, by CreateExecution: commits never
// change it, so a store need not rewrite it with every checkpoint.
// Implementations must be safe for concurrent use.
type ExecutionStore interface {
	// CreateExecution stores a new execution with Version 1 (it sets
	// e.Version). ECONFLICT if the tenant already has one with that id.
	CreateExecution(ctx context.Context, e *Execution) error
	// GetExecution returns the execution. ENOTFOUND if the tenant has none
	// with that id.
	GetExecution(ctx context.Context, tenant, id string) (*Execution, error)
	// CommitExecution atomically replaces the stored execution and, if step
	// is not nil, adds the step record — only if the stored version still
	// equals e.Version. On success the stored version and e.Version are
	// e.Version+1. ECONFLICT if the version moved on or a step with that
	// index exists (nothing is written then); ENOTFOUND if there is no
	// such execution.
	CommitExecution(ctx context.Context, e *Execution, step *Step) error
	// ListSteps returns up to limit steps (all when limit <= 0) with
	// Index > after, in index order. ENOTFOUND if the tenant has no such
	// execution.
	ListSteps(ctx context.Context, tenant, executionID string, after, limit int) ([]*Step, error)
	// ListExecutions returns one page of the tenant's executions, newest
	// first (CreatedAt descending, then ID descending), filtered by the
	// query; each without its chain snapshot's tasks (Chain holds the id
	// only) to keep listings small. EINVALID for a malformed cursor or
	// limit.
	ListExecutions(ctx context.Context, tenant string, q ExecutionQuery) (ExecutionPage, error)
}

// ExecutionQuery selects executions to list.
type ExecutionQuery struct {
	// Statuses keeps executions in one of them (none: any).
	Statuses []Status
	// ChainID keeps executions of that chain ("" = any).
	ChainID string
	// UpdatedBefore keeps executions last updated before it (zero = any):
	// the sweeper's question "which runnable executions have not moved for
	// a while".
	UpdatedBefore time.Time
	// Cursor and Limit page as in ListQuery.
	Cursor string
	Limit  int
}

// ExecutionPage is one page of executions.
type ExecutionPage struct {
	Executions []*Execution
	// Next is the cursor of the following page, "" on the last page.
	Next string
}
