package eventing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/jsfunc"
)

// Function is a stored JavaScript function, as the reference's API takes
// and shows it.
type Function struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// ScriptType is "goja", the only one.
	ScriptType string `json:"scriptType"`
	Script     string `json:"script"`
	// TimeoutMs is the script's own running time per run, not counting
	// its builtins' (default 1000, at most 10000).
	TimeoutMs int64     `json:"timeoutMs,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Trigger runs a function, or starts a chain, for every event of a type.
type Trigger struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	ListenFor   ListenFor `json:"listenFor"`
	// Type is TriggerFunction or TriggerChain.
	Type string `json:"type"`
	// Function names the function (TriggerFunction).
	Function string `json:"function,omitempty"`
	// Chain is the id of a stored chain, started with the event as its
	// json input (TriggerChain).
	Chain     string    `json:"chain,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// ListenFor is what a trigger matches.
type ListenFor struct {
	Type string `json:"type"`
}

// Trigger types.
const (
	TriggerFunction = "function"
	TriggerChain    = "chain"
)

// Limits of the function store.
const (
	maxFunctions = 1000
	maxTriggers  = 1000
	// triggerTTL is how long a process trusts its list of a tenant's
	// triggers; writes through this process clear it at once.
	triggerTTL = time.Second
)

// Run is one function run, as recorded.
type Run struct {
	ID        string `json:"id"`
	Function  string `json:"function"`
	Trigger   string `json:"trigger"`
	EventID   string `json:"event_id"`
	EventType string `json:"event_type"`
	// Event is the event the function was given.
	Event      map[string]any `json:"event,omitempty"`
	Started    time.Time      `json:"started"`
	DurationMs float64        `json:"duration_ms"`
	Result     any            `json:"result,omitempty"`
	Logs       []string       `json:"logs"`
	Error      string         `json:"error,omitempty"`
	// ExecutionID is the execution a chain trigger started.
	ExecutionID string `json:"execution_id,omitempty"`
	// Status is RunRunning while a worker holds the run (until
	// ClaimedUntil), RunDone once its outcome is recorded.
	Status       string    `json:"status"`
	ClaimedUntil time.Time `json:"claimed_until,omitzero"`
}

// Functions keeps functions, triggers and runs, and the compiled programs
// of the functions.
type Functions struct {
	records core.RecordStore
	now     func() time.Time

	mu       sync.Mutex
	compiled map[string]*jsfunc.Program // by hash of the source
	triggers map[string]cachedTriggers  // by tenant
}

type cachedTriggers struct {
	list []*Trigger
	at   time.Time
}

// NewFunctions returns the function store of records.
func NewFunctions(records core.RecordStore, now func() time.Time) *Functions {
	if now == nil {
		now = time.Now
	}
	return &Functions{records: records, now: now, compiled: map[string]*jsfunc.Program{}, triggers: map[string]cachedTriggers{}}
}

// Compile compiles a source, from the cache when it was compiled before.
func (f *Functions) Compile(name, src string) (*jsfunc.Program, error) {
	// The name is part of the key: a program carries its name into its
	// errors, and another tenant's function of the same source must not
	// show this one's.
	sum := sha256.Sum256([]byte(name + "\x00" + src))
	key := hex.EncodeToString(sum[:])
	f.mu.Lock()
	p := f.compiled[key]
	f.mu.Unlock()
	if p != nil {
		return p, nil
	}
	p, err := jsfunc.Compile(name, src)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	if len(f.compiled) >= 4*maxFunctions {
		clear(f.compiled)
	}
	f.compiled[key] = p
	f.mu.Unlock()
	return p, nil
}

// SaveFunction creates or replaces a function, compile-checked.
func (f *Functions) SaveFunction(ctx context.Context, tenant string, fn Function, create bool) (*Function, error) {
	if err := checkName("name", fn.Name); err != nil {
		return nil, err
	}
	switch fn.ScriptType {
	case "":
		fn.ScriptType = "goja"
	case "goja":
	default:
		return nil, core.Errorf(core.EINVALID, "scriptType: %q is not goja", fn.ScriptType)
	}
	if fn.TimeoutMs < 0 || time.Duration(fn.TimeoutMs)*time.Millisecond > jsfunc.MaxTimeout {
		return nil, core.Errorf(core.EINVALID, "timeoutMs: at most %d", jsfunc.MaxTimeout.Milliseconds())
	}
	if _, err := f.Compile(fn.Name, fn.Script); err != nil {
		return nil, core.Errorf(core.EINVALID, "script: %v", err)
	}
	now := f.now().UTC()
	fn.CreatedAt, fn.UpdatedAt = now, now
	if err := f.save(ctx, tenant, KindFunction, "function", fn.Name, create, maxFunctions, &fn, &fn.CreatedAt); err != nil {
		return nil, err
	}
	return &fn, nil
}

// Function returns a function by name.
func (f *Functions) Function(ctx context.Context, tenant, name string) (*Function, error) {
	var fn Function
	if err := f.get(ctx, tenant, KindFunction, "function", name, &fn); err != nil {
		return nil, err
	}
	return &fn, nil
}

// ListFunctions returns a page of functions.
func (f *Functions) ListFunctions(ctx context.Context, tenant string, q core.ListQuery) ([]*Function, string, error) {
	page, err := f.records.ListRecords(ctx, tenant, KindFunction, q)
	if err != nil {
		return nil, "", err
	}
	out := make([]*Function, 0, len(page.Records))
	for _, r := range page.Records {
		var fn Function
		if err := json.Unmarshal(r.Body, &fn); err != nil {
			return nil, "", core.WrapError(core.EINTERNAL, err, "decode function %s", r.ID)
		}
		out = append(out, &fn)
	}
	return out, page.Next, nil
}

// DeleteFunction removes a function and the triggers that run it.
func (f *Functions) DeleteFunction(ctx context.Context, tenant, name string) error {
	err := f.records.DeleteRecord(ctx, tenant, KindFunction, name)
	if core.ErrorCode(err) == core.ENOTFOUND {
		return core.Errorf(core.ENOTFOUND, "no function %q", name)
	}
	if err != nil {
		return err
	}
	all, err := f.allTriggers(ctx, tenant)
	if err != nil {
		return err
	}
	for _, t := range all {
		if t.Type == TriggerFunction && t.Function == name {
			if err := f.records.DeleteRecord(ctx, tenant, KindTrigger, t.Name); err != nil && core.ErrorCode(err) != core.ENOTFOUND {
				return err
			}
		}
	}
	f.forgetTriggers(tenant)
	return nil
}

// ChainChecker tells whether a tenant has a stored chain.
type ChainChecker func(ctx context.Context, tenant, id string) error

// SaveTrigger creates or replaces a trigger: its function must exist
// (409 otherwise, as the reference's foreign key), its chain be stored.
func (f *Functions) SaveTrigger(ctx context.Context, tenant string, t Trigger, create bool, chainExists ChainChecker) (*Trigger, error) {
	if err := checkName("name", t.Name); err != nil {
		return nil, err
	}
	if t.ListenFor.Type == "" {
		return nil, core.Errorf(core.EINVALID, "listenFor.type: required")
	}
	switch t.Type {
	case "", TriggerFunction:
		t.Type = TriggerFunction
		if t.Function == "" {
			return nil, core.Errorf(core.EINVALID, "function: required for a function trigger")
		}
		if _, err := f.Function(ctx, tenant, t.Function); core.ErrorCode(err) == core.ENOTFOUND {
			return nil, core.Errorf(core.ECONFLICT, "function: there is no function %q", t.Function)
		} else if err != nil {
			return nil, err
		}
	case TriggerChain:
		if t.Chain == "" {
			return nil, core.Errorf(core.EINVALID, "chain: required for a chain trigger")
		}
		if chainExists == nil {
			return nil, core.Errorf(core.EUNAVAILABLE, "chain: chain triggers are not available here")
		}
		if err := chainExists(ctx, tenant, t.Chain); core.ErrorCode(err) == core.ENOTFOUND {
			return nil, core.Errorf(core.ECONFLICT, "chain: there is no stored chain %q", t.Chain)
		} else if err != nil {
			return nil, err
		}
	default:
		return nil, core.Errorf(core.EINVALID, "type: %q is not function or chain", t.Type)
	}
	now := f.now().UTC()
	t.CreatedAt, t.UpdatedAt = now, now
	defer f.forgetTriggers(tenant)
	if err := f.save(ctx, tenant, KindTrigger, "trigger", t.Name, create, maxTriggers, &t, &t.CreatedAt); err != nil {
		return nil, err
	}
	return &t, nil
}

// Trigger returns a trigger by name.
func (f *Functions) Trigger(ctx context.Context, tenant, name string) (*Trigger, error) {
	var t Trigger
	if err := f.get(ctx, tenant, KindTrigger, "trigger", name, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// DeleteTrigger removes a trigger.
func (f *Functions) DeleteTrigger(ctx context.Context, tenant, name string) error {
	defer f.forgetTriggers(tenant)
	err := f.records.DeleteRecord(ctx, tenant, KindTrigger, name)
	if core.ErrorCode(err) == core.ENOTFOUND {
		return core.Errorf(core.ENOTFOUND, "no trigger %q", name)
	}
	return err
}

// Triggers lists a tenant's triggers, those of an event type or of a
// function when either is given.
func (f *Functions) Triggers(ctx context.Context, tenant, eventType, function string) ([]*Trigger, error) {
	all, err := f.cachedTriggers(ctx, tenant)
	if err != nil {
		return nil, err
	}
	out := []*Trigger{}
	for _, t := range all {
		if (eventType == "" || t.ListenFor.Type == eventType) && (function == "" || t.Function == function) {
			out = append(out, t)
		}
	}
	return out, nil
}

func (f *Functions) cachedTriggers(ctx context.Context, tenant string) ([]*Trigger, error) {
	f.mu.Lock()
	c, ok := f.triggers[tenant]
	f.mu.Unlock()
	if ok && f.now().Sub(c.at) < triggerTTL {
		return c.list, nil
	}
	list, err := f.allTriggers(ctx, tenant)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.triggers[tenant] = cachedTriggers{list: list, at: f.now()}
	f.mu.Unlock()
	return list, nil
}

func (f *Functions) forgetTriggers(tenant string) {
	f.mu.Lock()
	delete(f.triggers, tenant)
	f.mu.Unlock()
}

func (f *Functions) allTriggers(ctx context.Context, tenant string) ([]*Trigger, error) {
	var out []*Trigger
	err := f.each(ctx, tenant, KindTrigger, func(r *core.Record) (bool, error) {
		var t Trigger
		if err := json.Unmarshal(r.Body, &t); err != nil {
			return false, core.WrapError(core.EINTERNAL, err, "decode trigger %s", r.ID)
		}
		out = append(out, &t)
		return true, nil
	})
	return out, err
}

func (f *Functions) count(ctx context.Context, tenant, kind string) (int, error) {
	n := 0
	err := f.each(ctx, tenant, kind, func(*core.Record) (bool, error) { n++; return true, nil })
	return n, err
}

// each calls fn for a tenant's records of kind, newest first, until it
// answers false.
func (f *Functions) each(ctx context.Context, tenant, kind string, fn func(*core.Record) (bool, error)) error {
	for cursor := ""; ; {
		page, err := f.records.ListRecords(ctx, tenant, kind, core.ListQuery{Cursor: cursor, Limit: core.MaxPageSize})
		if err != nil {
			return err
		}
		for _, r := range page.Records {
			if more, err := fn(r); err != nil || !more {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		cursor = page.Next
	}
}

// get reads a function or a trigger (noun) into v.
func (f *Functions) get(ctx context.Context, tenant, kind, noun, name string, v any) error {
	r, err := f.records.GetRecord(ctx, tenant, kind, name)
	if core.ErrorCode(err) == core.ENOTFOUND {
		return core.Errorf(core.ENOTFOUND, "no %s %q", noun, name)
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		return core.WrapError(core.EINTERNAL, err, "decode %s %s", noun, name)
	}
	return nil
}

// save stores v, a function or a trigger (noun) named name: a new one,
// while the tenant has fewer than limit, or in place of the stored one,
// whose creation time it keeps in *created.
func (f *Functions) save(ctx context.Context, tenant, kind, noun, name string, create bool, limit int, v any, created *time.Time) error {
	now := f.now().UTC()
	if create {
		if n, err := f.count(ctx, tenant, kind); err != nil {
			return err
		} else if n >= limit {
			return core.Errorf(core.EINVALID, "name: a tenant has at most %d %ss", limit, noun)
		}
		body, _ := json.Marshal(v)
		err := f.records.CreateRecord(ctx, tenant, &core.Record{Kind: kind, ID: name, Body: body, CreatedAt: now, UpdatedAt: now})
		if core.ErrorCode(err) == core.ECONFLICT {
			return core.Errorf(core.ECONFLICT, "name: a %s named %q exists", noun, name)
		}
		return err
	}
	r, err := f.records.GetRecord(ctx, tenant, kind, name)
	if core.ErrorCode(err) == core.ENOTFOUND {
		return core.Errorf(core.ENOTFOUND, "no %s %q", noun, name)
	}
	if err != nil {
		return err
	}
	var old struct {
		CreatedAt time.Time `json:"createdAt"`
	}
	_ = json.Unmarshal(r.Body, &old)
	*created = old.CreatedAt
	r.Body, _ = json.Marshal(v)
	r.UpdatedAt = now
	return f.records.UpdateRecord(ctx, tenant, r)
}

// claimTTL is how long a claim on a run holds off other workers: past
// it, a worker that died mid-run no longer keeps the run from happening.
// A run is cut at maxRunTime, before its claim lapses.
const (
	claimTTL   = 10 * time.Minute
	maxRunTime = 9 * time.Minute
)

// Run statuses.
const (
	RunRunning = "running"
	RunDone    = "done"
)

// claimRun records that a run starts, so that a second delivery of the
// event does not run the trigger at the same time. It returns the claim's
// record, nil when the run is done already; an error when another worker
// holds a live claim (the delivery is retried) or the store fails.
func (f *Functions) claimRun(ctx context.Context, tenant string, run *Run) (*core.Record, error) {
	now := f.now().UTC()
	run.Status, run.ClaimedUntil = RunRunning, now.Add(claimTTL)
	body, err := json.Marshal(run)
	if err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "encode run %s", run.ID)
	}
	r := &core.Record{Kind: KindRun, ID: run.ID, Body: body, CreatedAt: run.Started, UpdatedAt: now}
	err = f.records.CreateRecord(ctx, tenant, r)
	if err == nil {
		return r, nil
	}
	if core.ErrorCode(err) != core.ECONFLICT {
		return nil, err
	}
	prev, err := f.records.GetRecord(ctx, tenant, KindRun, run.ID)
	if err != nil {
		return nil, err
	}
	var old Run
	if err := json.Unmarshal(prev.Body, &old); err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "decode run %s", run.ID)
	}
	switch {
	case old.Status != RunRunning:
		return nil, nil
	case now.Before(old.ClaimedUntil):
		return nil, core.Errorf(core.EUNAVAILABLE, "run %s is running on another worker", run.ID)
	}
	// A dead worker's claim: take it over.
	prev.Body, prev.UpdatedAt = body, now
	if err := f.records.UpdateRecord(ctx, tenant, prev); err != nil {
		if core.ErrorCode(err) == core.ECONFLICT {
			return nil, core.Errorf(core.EUNAVAILABLE, "run %s was taken over by another worker", run.ID)
		}
		return nil, err
	}
	return prev, nil
}

// releaseRun lets a claim go at once (the run is left for a redelivery);
// a claim another worker took over meanwhile is left alone.
func (f *Functions) releaseRun(ctx context.Context, tenant string, claim *core.Record, run *Run) {
	run.Status, run.ClaimedUntil = RunRunning, time.Time{}
	if body, err := json.Marshal(run); err == nil {
		claim.Body, claim.UpdatedAt = body, f.now().UTC()
		_ = f.records.UpdateRecord(ctx, tenant, claim)
	}
}

// completeRun records a claimed run's outcome.
func (f *Functions) completeRun(ctx context.Context, tenant string, claim *core.Record, run *Run) error {
	run.Status, run.ClaimedUntil = RunDone, time.Time{}
	body, err := json.Marshal(run)
	if err != nil {
		// A result that is not JSON is dropped, not the record.
		run.Result = nil
		body, _ = json.Marshal(run)
	}
	claim.Body, claim.UpdatedAt = body, f.now().UTC()
	err = f.records.UpdateRecord(ctx, tenant, claim)
	if core.ErrorCode(err) == core.ECONFLICT {
		// Another worker took the claim over after it lapsed and records
		// its own run.
		return nil
	}
	return err
}

// Runs lists recorded runs newest first, those of a function when one is
// given.
func (f *Functions) Runs(ctx context.Context, tenant, function string, limit int) ([]*Run, error) {
	n, err := core.PageLimit(limit)
	if err != nil {
		return nil, err
	}
	out := []*Run{}
	err = f.each(ctx, tenant, KindRun, func(r *core.Record) (bool, error) {
		var run Run
		if err := json.Unmarshal(r.Body, &run); err != nil {
			return false, core.WrapError(core.EINTERNAL, err, "decode run %s", r.ID)
		}
		if function == "" || run.Function == function {
			out = append(out, &run)
		}
		return len(out) < n, nil
	})
	return out, err
}
