package eventing

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/jsfunc"
	"github.com/stepwise-run/stepwise/events"
)

// MaxPayload is the largest webhook body ingested: an event must fit on
// EventBridge and SQS with its envelope.
const MaxPayload = 200 << 10

// Fanout hands a stored event on to have its triggers run: locally onto
// the work queue, on AWS to EventBridge (whose rule feeds the functions
// queue). Either way a worker calls Bus.Handle.
type Fanout interface {
	Fanout(ctx context.Context, ev events.Envelope) error
}

// FunctionRun is one function run as a Runner gets it.
type FunctionRun struct {
	Name, Source string
	// Key names the tenant's version of the function: runs of one key
	// may share a runtime (jsfunc.Request.ReuseKey).
	Key string
	// Event is the event as the script sees it (global event).
	Event    map[string]any
	Builtins []string
	Limits   jsfunc.Limits
}

// Runner runs functions: in this process (InProcess) or in a child
// process with its own limits (jsfunc.Pool).
type Runner interface {
	Run(ctx context.Context, run FunctionRun, host jsfunc.Host) jsfunc.Outcome
}

// Executions starts durable executions and reads them back.
type Executions interface {
	Start(ctx context.Context, req core.StartRequest) (*core.Execution, error)
	Enqueue(ctx context.Context, ex *core.Execution) error
	Execution(ctx context.Context, tenant, id string) (*core.Execution, error)
}

// ChainLoader returns a tenant's stored chain.
type ChainLoader func(ctx context.Context, tenant, id string) (*core.Chain, error)

// Config holds a Bus's dependencies.
type Config struct {
	Store     *Store
	Functions *Functions
	// Fanout is where stored events go; nil runs their triggers at once,
	// in the caller (tests).
	Fanout Fanout
	// Runner runs functions. Required for function triggers.
	Runner Runner
	// Executions and Chains serve chain triggers and the chain builtins;
	// without them those fail with a clear error.
	Executions Executions
	Chains     ChainLoader
	// HTTP is httpFetch's client: the egress guard's. Nil refuses
	// httpFetch.
	HTTP   *http.Client
	Logger *slog.Logger
	Now    func() time.Time
}

// Bus ingests webhooks, appends events and runs their triggers.
type Bus struct {
	cfg Config
}

// NewBus returns a Bus.
func NewBus(cfg Config) *Bus {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Bus{cfg: cfg}
}

// Store is the bus's event store.
func (b *Bus) Store() *Store { return b.cfg.Store }

// Functions is the bus's function store.
func (b *Bus) Functions() *Functions { return b.cfg.Functions }

// redactedHeaders are not kept with a raw event: credentials a sender
// (or a proxy in front) may add.
var redactedHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "X-Api-Key", "Api-Key"}

// Ingest takes one webhook delivery for a mapping's path: it checks the
// signature, stores the raw event (a delivery id seen before answers the
// raw event stored then, dup true, and does nothing more), derives the
// domain event and appends it. The raw event is stored before anything
// else can fail; a mapping that cannot derive an event leaves it stored
// with its error (EINVALID). An unknown path stores nothing (ENOTFOUND):
// anyone can call this route, and storing unsigned payloads for paths
// nobody mapped would let them fill the store.
func (b *Bus) Ingest(ctx context.Context, tenant, path string, header http.Header, body []byte) (raw *events.RawEvent, dup bool, err error) {
	if path == "" {
		return nil, false, core.Errorf(core.EINVALID, "path: required (?path=)")
	}
	if len(body) > MaxPayload {
		return nil, false, core.Errorf(core.EINVALID, "body: %d bytes, over the %d-byte limit of a webhook", len(body), MaxPayload)
	}
	m, err := b.cfg.Store.Mapping(ctx, tenant, path)
	if err != nil {
		return nil, false, err
	}
	if m.Signature != nil {
		if err := m.Signature.Verify(body, header, b.cfg.Now()); err != nil {
			return nil, false, core.Errorf(core.EUNAUTHORIZED, "%v", err)
		}
	}
	var payload any
	if err := json.Unmarshal(body, &payload); err != nil || len(bytes.TrimSpace(body)) == 0 {
		return nil, false, core.Errorf(core.EINVALID, "body: not JSON")
	}
	kept := header.Clone()
	for _, h := range redactedHeaders {
		kept.Del(h)
	}
	raw = &events.RawEvent{Path: path, Headers: kept, Payload: payload, DeliveryID: m.DeliveryID(payload, header)}
	if m.Signature != nil && !m.Signature.SignsID() {
		// The scheme signs neither an id nor a time: the delivery id
		// header could be forged on a captured body, so the body itself
		// identifies the delivery as well.
		raw.BodyHash = bodyHash(body)
	}
	raw, dup, err = b.cfg.Store.AddRawEvent(ctx, tenant, raw)
	if err != nil {
		return raw, dup, err
	}
	if dup && len(raw.EventIDs) > 0 {
		return raw, true, nil
	}
	// A first delivery, or a redelivery of one whose event was never
	// appended (a crash, a bus that refused it): derive it now. Deriving
	// is idempotent.
	return raw, dup, b.derive(ctx, tenant, raw, m)
}

// bodyHash identifies a delivery by its body.
func bodyHash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// derive makes a raw event's domain event with the mapping, appends it,
// and records the outcome on the raw event.
func (b *Bus) derive(ctx context.Context, tenant string, raw *events.RawEvent, m *events.Mapping) error {
	ev, err := m.Derive(raw, tenant)
	if err != nil {
		raw.Error = err.Error()
		if uerr := b.cfg.Store.UpdateRawEvent(ctx, tenant, raw); uerr != nil {
			return uerr
		}
		return core.Errorf(core.EINVALID, "mapping %s: %v", m.Path, err)
	}
	if err := b.Append(ctx, ev); err != nil {
		return err
	}
	raw.Error = ""
	if !slices.Contains(raw.EventIDs, ev.ID) {
		raw.EventIDs = append(raw.EventIDs, ev.ID)
	}
	return b.cfg.Store.UpdateRawEvent(ctx, tenant, raw)
}

// Replay derives a stored raw event's event again with its path's
// current mapping. The same mapping gives the same event, which is not
// appended twice.
func (b *Bus) Replay(ctx context.Context, tenant, rawID string) (*events.RawEvent, error) {
	raw, err := b.cfg.Store.RawEvent(ctx, tenant, rawID)
	if err != nil {
		return nil, err
	}
	m, err := b.cfg.Store.Mapping(ctx, tenant, raw.Path)
	if err != nil {
		return nil, err
	}
	return raw, b.derive(ctx, tenant, raw, m)
}

// Append stores an event and hands it on to have its triggers run. An
// event stored before is handed on again: its trigger runs are recorded
// by id, so none runs twice, and a fan-out that failed the first time
// gets another chance.
func (b *Bus) Append(ctx context.Context, ev events.Envelope) error {
	if ev.Time.IsZero() {
		ev.Time = b.cfg.Now().UTC()
	}
	stored, err := b.store(ctx, ev)
	if err != nil {
		return err
	}
	if b.cfg.Fanout == nil {
		return b.runTriggers(ctx, stored)
	}
	return b.cfg.Fanout.Fanout(ctx, stored)
}

// Publish implements core.Publisher, so that the engine's lifecycle
// events are events like any other, which functions can react to.
func (b *Bus) Publish(ctx context.Context, evs []events.Envelope) error {
	if err := core.ValidateEvents(evs); err != nil {
		return err
	}
	for _, ev := range evs {
		if err := b.Append(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}

// store keeps an event and returns the one stored under its id: an event
// stored before is the one that counts, whatever a later copy says.
func (b *Bus) store(ctx context.Context, ev events.Envelope) (events.Envelope, error) {
	added, err := b.cfg.Store.AddEvent(ctx, ev)
	if err != nil || added {
		return ev, err
	}
	return b.cfg.Store.Event(ctx, ev.Tenant, ev.ID)
}

// HandleID runs the triggers of a stored event (the local worker).
func (b *Bus) HandleID(ctx context.Context, tenant, id string) error {
	ev, err := b.cfg.Store.Event(ctx, tenant, id)
	if err != nil {
		return err
	}
	return b.runTriggers(ctx, ev)
}

// Handle runs every trigger of the event's type, storing the event first
// if it came from elsewhere (EventBridge). A trigger whose run is
// recorded is skipped, so a redelivered event runs nothing twice. The
// first failure is returned after every trigger had its turn, for the
// queue to redeliver.
func (b *Bus) Handle(ctx context.Context, ev events.Envelope) error {
	ev, err := b.store(ctx, ev)
	if err != nil {
		return err
	}
	return b.runTriggers(ctx, ev)
}

// runTriggers runs the triggers of an event already stored.
func (b *Bus) runTriggers(ctx context.Context, ev events.Envelope) error {
	triggers, err := b.cfg.Functions.Triggers(ctx, ev.Tenant, ev.Type, "")
	if err != nil {
		return err
	}
	var first error
	for _, t := range triggers {
		if err := b.runTrigger(ctx, t, ev); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// runID names a trigger's run for an event.
func runID(tenant, trigger, eventID string) string {
	sum := sha256.Sum256([]byte(tenant + "\x00" + trigger + "\x00" + eventID))
	return "run_" + hex.EncodeToString(sum[:12])
}

func (b *Bus) runTrigger(ctx context.Context, t *Trigger, ev events.Envelope) error {
	id := runID(ev.Tenant, t.Name, ev.ID)
	run := &Run{ID: id, Function: t.Function, Trigger: t.Name, EventID: ev.ID, EventType: ev.Type, Event: jsEvent(ev), Started: b.cfg.Now().UTC(), Logs: []string{}}
	claim, err := b.cfg.Functions.claimRun(ctx, ev.Tenant, run)
	if err != nil || claim == nil {
		return err // nil: it ran before
	}
	// The run ends before its claim lapses, so that no second worker
	// takes it over while it still goes.
	ctx, cancel := context.WithTimeout(ctx, maxRunTime)
	defer cancel()
	if err := b.execute(ctx, t, ev, run, claim); err != nil {
		// Left for a redelivery: the claim is let go at once.
		b.cfg.Functions.releaseRun(context.WithoutCancel(ctx), ev.Tenant, claim, run)
		return err
	}
	return nil
}

// execute runs a claimed trigger and records its outcome; an error is one
// to retry.
func (b *Bus) execute(ctx context.Context, t *Trigger, ev events.Envelope, run *Run, claim *core.Record) error {
	id := run.ID
	h := &host{bus: b, tenant: ev.Tenant, runID: id, hop: ev.Hop, function: t.Function}
	switch t.Type {
	case TriggerChain:
		input := core.Value{Type: core.TypeJSON, Data: jsEvent(ev)}
		ex, err := h.startChain(ctx, t.Chain, input)
		if retryable(ctx, err) {
			return err // the claim lapses and a redelivery tries again
		}
		if err != nil {
			run.Error = err.Error()
		} else {
			run.ExecutionID = ex.ID
		}
	default:
		fn, err := b.cfg.Functions.Function(ctx, ev.Tenant, t.Function)
		if retryable(ctx, err) {
			return err
		}
		if err != nil {
			// The function is gone: the run is over, with that.
			run.Error = err.Error()
			return b.cfg.Functions.completeRun(ctx, ev.Tenant, claim, run)
		}
		if b.cfg.Runner == nil {
			run.Error = "functions cannot run here: no runner is configured"
			return b.cfg.Functions.completeRun(ctx, ev.Tenant, claim, run)
		}
		key := ev.Tenant + "\x00" + fn.Name + "\x00" + fn.UpdatedAt.Format(time.RFC3339Nano)
		out := b.cfg.Runner.Run(ctx, FunctionRun{Name: fn.Name, Source: fn.Script, Key: key, Event: run.Event, Builtins: Builtins,
			Limits: jsfunc.Limits{Timeout: time.Duration(fn.TimeoutMs) * time.Millisecond}}, h)
		run.Result, run.Logs, run.DurationMs = out.Result, out.Logs, float64(out.Duration.Microseconds())/1000
		if run.Logs == nil {
			run.Logs = []string{}
		}
		if out.Err != nil {
			if ctx.Err() != nil {
				// The worker is going away, not the function failing.
				return core.WrapError(core.ETIMEOUT, out.Err, "function %s for event %s: interrupted", fn.Name, ev.ID)
			}
			run.Error = out.Err.Error()
			if errors.Is(out.Err, jsfunc.ErrCrashed) {
				b.cfg.Logger.Warn("function crashed its process", "tenant", ev.Tenant, "function", fn.Name, "event", ev.ID, "error", out.Err)
			}
		}
	}
	if run.Error != "" {
		b.cfg.Logger.Info("function run failed", "tenant", ev.Tenant, "trigger", t.Name, "event", ev.ID, "error", run.Error)
	}
	return b.cfg.Functions.completeRun(ctx, ev.Tenant, claim, run)
}

// retryable reports an error that a later try may not meet: an outage or
// the caller's context ending.
func retryable(ctx context.Context, err error) bool {
	if err == nil {
		return false
	}
	c := core.ErrorCode(err)
	return ctx.Err() != nil || c == core.EUNAVAILABLE || c == core.ETIMEOUT || c == core.EINTERNAL
}

// jsEvent is an event as a script or a chain sees it: the reference's
// field names beside ours.
func jsEvent(ev events.Envelope) map[string]any {
	var data, meta any
	_ = json.Unmarshal(ev.Data, &data)
	if len(ev.Metadata) > 0 {
		_ = json.Unmarshal(ev.Metadata, &meta)
	}
	return map[string]any{
		"id": ev.ID, "type": ev.Type, "source": ev.Source, "subject": ev.Subject, "time": ev.Time.Format(time.RFC3339Nano),
		"eventType": ev.Type, "eventSource": ev.Source, "aggregateID": ev.Subject, "aggregateType": ev.AggregateType,
		"version": ev.Version, "createdAt": ev.Time.Format(time.RFC3339Nano), "data": data, "metadata": meta, "hop": ev.Hop,
	}
}

// executionID is the id of the execution a run's n-th chain call starts:
// the same on every retry of the run, so a retry starts nothing new.
func executionID(runID string, n int) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte(fmt.Sprintf("stepwise:%s/%d", runID, n))).String()
}

// InProcess runs functions in this process with the sandbox's limits:
// for tests, the CLI and AWS's worker (whose batch of one event is its
// boundary).
type InProcess struct {
	Sandbox   *jsfunc.Sandbox
	Functions *Functions
}

// Run implements Runner.
func (r InProcess) Run(ctx context.Context, run FunctionRun, host jsfunc.Host) jsfunc.Outcome {
	p, err := r.Functions.Compile(run.Name, run.Source)
	if err != nil {
		return jsfunc.Outcome{Err: err, Started: time.Now()}
	}
	return r.Sandbox.Do(ctx, jsfunc.Request{Program: p, Globals: map[string]any{"event": run.Event}, Entry: run.Name, Arg: "event",
		Builtins: run.Builtins, Host: host, Limits: run.Limits, ReuseKey: run.Key})
}

// Child runs functions in the child processes of a pool: the local
// server's boundary between one tenant's code and everyone's work.
type Child struct {
	Pool *jsfunc.Pool
}

// Run implements Runner.
func (c Child) Run(ctx context.Context, run FunctionRun, host jsfunc.Host) jsfunc.Outcome {
	return c.Pool.Run(ctx, jsfunc.ChildRequest{Name: run.Name, Source: run.Source, Globals: map[string]any{"event": run.Event},
		Entry: run.Name, Arg: "event", Builtins: run.Builtins, Limits: run.Limits, ReuseKey: run.Key}, host)
}

// nameOK reports whether an event type a function sends is acceptable.
func nameOK(s string) bool {
	return s != "" && len(s) <= events.MaxNameLen && !strings.Contains(s, "#")
}

// ExecutionReader reads executions back (the store's GetExecution).
type ExecutionReader interface {
	GetExecution(ctx context.Context, tenant, id string) (*core.Execution, error)
}

// EngineExecutions serves Executions with the engine and its store.
type EngineExecutions struct {
	Engine *core.Engine
	Store  ExecutionReader
}

// Start implements Executions.
func (e EngineExecutions) Start(ctx context.Context, req core.StartRequest) (*core.Execution, error) {
	return e.Engine.Start(ctx, req)
}

// Enqueue implements Executions.
func (e EngineExecutions) Enqueue(ctx context.Context, ex *core.Execution) error {
	return e.Engine.Enqueue(ctx, ex)
}

// Execution implements Executions.
func (e EngineExecutions) Execution(ctx context.Context, tenant, id string) (*core.Execution, error) {
	return e.Store.GetExecution(ctx, tenant, id)
}

// QueueFanout hands events to the work queue (the local server's): a
// worker takes the message and calls Bus.HandleID.
type QueueFanout struct {
	Queue core.Queue
}

// Fanout implements Fanout.
func (q QueueFanout) Fanout(ctx context.Context, ev events.Envelope) error {
	return q.Queue.Send(ctx, core.QueueMessage{Kind: core.KindEvent, Tenant: ev.Tenant, EventID: ev.ID}, 0)
}

// PublisherFanout hands events to a publisher (EventBridge on AWS, whose
// rule feeds the functions queue).
type PublisherFanout struct {
	Publisher core.Publisher
}

// Fanout implements Fanout.
func (p PublisherFanout) Fanout(ctx context.Context, ev events.Envelope) error {
	return p.Publisher.Publish(ctx, []events.Envelope{ev})
}
