package core

import (
	"context"
	"errors"
	"fmt"
	"github.com/stepwise-run/stepwise/events"
	"slices"
	"time"

	"github.com/google/uuid"
)

// Engine runs executions one step at a time, committing the execution and
// the step record through the ExecutionStore after every step.
type Engine struct {
	store       ExecutionStore
	llm         LLM
	tools       Tools
	queue       Queue
	pub         Publisher
	meter       StepMeter
	failpointFn func(string)
	maxHops     int
	leaseTTL    time.Duration
	now         func() time.Time
	newID       func() string
	// templates caches parsed templates across executions.
	templates templateCache
}

// EngineConfig holds the Engine's dependencies.
type EngineConfig struct {
	// Store keeps executions and steps. Required.
	Store ExecutionStore
	// LLM serves the model handlers; without it they fail with a clear
	// error.
	LLM LLM
	// Tools serves hooks; without it hook tasks fail with a clear error.
	Tools Tools
	// Now is the clock (default time.Now).
	Now func() time.Time
	// NewID makes execution ids (default: UUIDv7, which sorts by time).
	NewID func() string
	// Queue carries continuations (Deliver, Enqueue, Sweep); without it
	// only Run is available.
	Queue Queue
	// Publisher receives execution lifecycle events (events.Type*) when
	// an execution waits or ends; nil publishes none. Deliver, Resume and
	// Cancel publish them, at least once: the event is recorded as owed in
	// the commit that changes the status, and a failed publish is retried
	// through the Queue. Run (the CLI's path) does not publish.
	Publisher Publisher
	// Meter, when not nil, admits every model call of a step and counts
	// the step's use before it is committed.
	Meter StepMeter
	// Failpoint, when not nil, is called at each of the Fail* points; a
	// test build makes it kill the process there. Production leaves it
	// nil. FailAfterHookBeforeRecord fires inside a handler, whose panics
	// the engine records as failed attempts: an in-process test must end
	// the goroutine (runtime.Goexit) rather than panic to simulate a
	// crash there.
	Failpoint func(name string)
	// MaxHops bounds the continuations of one execution (default
	// DefaultMaxHops).
	MaxHops int
	// LeaseTTL is how long a delivery's claim lasts without a commit
	// (default DefaultLeaseTTL).
	LeaseTTL time.Duration
}

// NewEngine returns an Engine. It does no I/O.
func NewEngine(cfg EngineConfig) *Engine {
	e := &Engine{store: cfg.Store, llm: cfg.LLM, tools: cfg.Tools, queue: cfg.Queue, pub: cfg.Publisher, meter: cfg.Meter, failpointFn: cfg.Failpoint,
		maxHops: cfg.MaxHops, leaseTTL: cfg.LeaseTTL, now: cfg.Now, newID: cfg.NewID}
	if e.maxHops <= 0 {
		e.maxHops = DefaultMaxHops
	}
	if e.leaseTTL <= 0 {
		e.leaseTTL = DefaultLeaseTTL
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.newID == nil {
		e.newID = func() string { return uuid.Must(uuid.NewV7()).String() }
	}
	return e
}

// StartRequest describes an execution to create.
type StartRequest struct {
	// Tenant owns the execution (default DefaultTenant).
	Tenant string
	// ID is the execution id; empty means a new one.
	ID           string
	Chain        *Chain
	Input        Value
	TemplateVars map[string]string
	// Key is the id of the API key starting it, "" for none.
	Key string
	// EventHop is the functions' depth of the event that started it (see
	// Execution.EventHop); at most events.MaxHop.
	EventHop int
	// Validated says the caller passed Chain through Validate and has not
	// changed it since, so Start does not validate it again (the CLI,
	// which validates while it reads the file).
	Validated bool
}

// Start validates the chain and stores a new queued execution positioned
// at the chain's first task. It runs nothing.
func (e *Engine) Start(ctx context.Context, req StartRequest) (*Execution, error) {
	if !req.Validated {
		if err := Validate(req.Chain); err != nil {
			return nil, err
		}
	}
	if req.EventHop < 0 || req.EventHop > events.MaxHop {
		return nil, Errorf(EINVALID, "the execution would be %d functions deep, more than %d", req.EventHop, events.MaxHop)
	}
	tenant := req.Tenant
	if tenant == "" {
		tenant = DefaultTenant
	}
	if err := e.checkHooks(ctx, tenant, req.Chain); err != nil {
		return nil, err
	}
	id := req.ID
	if id == "" {
		id = e.newID()
	}
	input := req.Input
	if input.Type == "" {
		input.Type = TypeNil
	}
	now := e.now().UTC()
	ex := &Execution{
		Tenant:       tenant,
		ID:           id,
		Chain:        req.Chain,
		Status:       StatusQueued,
		Input:        input,
		TemplateVars: req.TemplateVars,
		EventHop:     req.EventHop,
		Key:          req.Key,
		Vars:         map[string]Value{},
		Cursor:       Cursor{Task: req.Chain.Tasks[0].ID, Input: &input, Attempt: 1},
		Output:       Nil,
		CreatedAt:    now,
		UpdatedAt:    now,
	}
	if err := e.store.CreateExecution(ctx, ex); err != nil {
		return nil, err
	}
	return ex, nil
}

// checkHooks reports every hook the chain names that is not available to
// tenant.
func (e *Engine) checkHooks(ctx context.Context, tenant string, c *Chain) error {
	type ref struct{ task, path, hook string }
	var refs []ref
	for i, t := range c.Tasks {
		if t.ExecuteConfig != nil {
			for j, h := range t.ExecuteConfig.Hooks {
				refs = append(refs, ref{t.ID, fmt.Sprintf("tasks[%d].execute_config.hooks[%d]", i, j), h})
			}
		}
		if t.Handler == HandlerHook && t.Hook != nil {
			refs = append(refs, ref{t.ID, fmt.Sprintf("tasks[%d].hook.name", i), t.Hook.Name})
		}
	}
	if len(refs) == 0 {
		return nil
	}
	var available []string
	if e.tools != nil {
		var err error
		if available, err = e.tools.Hooks(ctx, tenant); err != nil {
			return err
		}
	}
	var ps []Problem
	for _, r := range refs {
		if !slices.Contains(available, r.hook) {
			ps = append(ps, Problem{TaskID: r.task, Path: r.path, Message: fmt.Sprintf("unknown hook %q%s", r.hook, Suggest(r.hook, available))})
		}
	}
	return invalidChain(ps)
}

// Execute starts an execution and runs it to its end.
func (e *Engine) Execute(ctx context.Context, req StartRequest, obs Observer) (*Execution, error) {
	ex, err := e.Start(ctx, req)
	if err != nil {
		return nil, err
	}
	return e.Run(ctx, ex.Tenant, ex.ID, obs)
}

// Run loads an execution and runs its steps until it reaches a final
// state, committing after every step. If ctx ends first, Run returns the
// execution as last committed together with an ETIMEOUT error; the step
// in flight is not committed and runs again when the execution is resumed.
// A commit that loses a compare-and-swap race returns ECONFLICT: another
// worker owns the execution, and this one stops without side effects.
func (e *Engine) Run(ctx context.Context, tenant, id string, obs Observer) (*Execution, error) {
	if obs == nil {
		obs = ObserverFunc(func(Event) {})
	}
	ex, err := e.store.GetExecution(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if ex.Status.Final() || ex.Status == StatusWaiting {
		return ex, nil
	}
	if ex.Status != StatusRunning {
		ex.Status = StatusRunning
		ex.UpdatedAt = e.now().UTC()
		if err := e.store.CommitExecution(ctx, ex, nil); err != nil {
			return nil, err
		}
	}
	for !ex.Status.Final() && ex.Status != StatusWaiting {
		if wait := ex.Cursor.NotBefore.Sub(e.now()); wait > 0 {
			if err := sleep(ctx, wait); err != nil {
				return ex, interrupted(ex, err)
			}
		}
		next, err := e.runOne(ctx, ex, obs, "")
		if err != nil {
			return ex, err
		}
		ex = next
	}
	obs.Observe(Event{Kind: EventFinished, ExecutionID: ex.ID, StepIndex: ex.StepCount, Execution: ex, At: e.now()})
	return ex, nil
}

// runOne runs the next step of ex and commits it with the step record,
// returning the execution as committed. With a lease owner it renews the
// lease in the same commit. Reaching max_steps commits the failure instead
// of a step. It returns ETIMEOUT when ctx ends before the step is
// committed (nothing is committed then) and ECONFLICT when another worker
// moved the execution on.
func (e *Engine) runOne(ctx context.Context, ex *Execution, obs Observer, owner string) (*Execution, error) {
	if err := ctx.Err(); err != nil {
		return ex, interrupted(ex, err)
	}
	next := ex.clone()
	if owner != "" {
		next.Lease = Lease{Owner: owner, Until: e.now().Add(e.leaseTTL)}
	}
	if ex.StepCount >= ex.Chain.StepLimit() {
		e.finish(next, StatusFailed, Nil, &ExecError{
			Code: EINVALID, Reason: ReasonMaxSteps, Task: ex.Cursor.Task,
			Message: fmt.Sprintf("execution stopped after %d steps (the chain's max_steps) before task %q", ex.StepCount, ex.Cursor.Task),
		})
		next.Lease = Lease{}
		if err := e.store.CommitExecution(ctx, next, nil); err != nil {
			return ex, err
		}
		return next, nil
	}
	stepCtx := ctx
	var hb *heartbeat
	if owner != "" {
		hb, stepCtx = e.startHeartbeat(ctx, ex, owner)
		// Stop renewing whatever happens to the step, a panic included,
		// and leave ex at the version the renewals reached, so that a
		// failure is recorded against the stored execution. stop may be
		// called more than once.
		defer func() {
			version, _ := hb.stop()
			ex.Version = version
		}()
	}
	step, err := e.step(stepCtx, next, obs)
	if hb != nil {
		version, lost := hb.stop()
		// The renewals moved the stored version: what was committed last
		// is the execution as it stood, at that version.
		ex.Version, next.Version = version, version
		if lost {
			return ex, Errorf(ECONFLICT, "execution %s: lease lost to another worker during task %q", ex.ID, ex.Cursor.Task)
		}
		next.Lease.Until = e.now().Add(e.leaseTTL)
	}
	if err != nil {
		// Only an interruption by the caller's context ends up here.
		return ex, interrupted(ex, ctx.Err())
	}
	if next.Status.Final() || next.Status == StatusWaiting {
		next.Lease = Lease{} // nothing left to run: no claim to hold
	}
	next.FailedDeliveries = 0 // the execution moves again
	if e.meter != nil && step.TokensIn+step.TokensOut > 0 {
		// Counted before the commit, under the step's own index: a step
		// run again after a crash or a lost commit is counted once, and
		// none that used a model goes uncounted.
		if err := e.meter.MeterStep(ctx, next, step); err != nil {
			return ex, err
		}
	}
	e.failpoint(FailAfterStepBeforeCommit)
	if err := e.store.CommitExecution(ctx, next, step); err != nil {
		return ex, err
	}
	obs.Observe(Event{Kind: EventStepCommitted, ExecutionID: next.ID, StepIndex: step.Index, TaskID: step.TaskID, Handler: step.Handler, Attempt: step.Attempt, Step: step, At: e.now()})
	return next, nil
}

func interrupted(ex *Execution, cause error) error {
	return WrapError(ETIMEOUT, cause, "execution %s interrupted after %d committed steps, before task %q", ex.ID, ex.StepCount, ex.Cursor.Task)
}

// finish moves an execution to a final status.
func (e *Engine) finish(ex *Execution, status Status, output Value, xerr *ExecError) {
	ex.Status = status
	ex.Output = output
	ex.Error = xerr
	ex.Waiting = nil
	ex.Cursor = Cursor{Previous: ex.Cursor.Previous}
	ex.UpdatedAt = e.now().UTC()
	e.owe(ex)
}

// retryDelay is the backoff before attempt+1: base doubled per retry.
func retryDelay(t *Task, attempt int) time.Duration {
	d := time.Duration(t.RetryBackoff)
	if d <= 0 {
		d = DefaultRetryBackoff
	}
	for i := 1; i < attempt && d < MaxRetryBackoff; i++ {
		d *= 2
	}
	return min(d, MaxRetryBackoff)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// clone returns a copy of the execution that the next step may change
// without touching the committed one.
func (ex *Execution) clone() *Execution {
	c := *ex
	c.Vars = make(map[string]Value, len(ex.Vars)+1)
	for k, v := range ex.Vars {
		c.Vars[k] = v
	}
	if ex.Error != nil {
		xe := *ex.Error
		c.Error = &xe
	}
	return &c
}

// errInterrupted marks a step whose context ended because the caller went
// away (not because the task's own timeout fired): it is not a task
// failure and is not committed.
var errInterrupted = errors.New("step interrupted")
