package eventing_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/eventing"
	"github.com/stepwise-run/stepwise/core/jsfunc"
	"github.com/stepwise-run/stepwise/core/seal"
	"github.com/stepwise-run/stepwise/events"
	"github.com/stepwise-run/stepwise/infra/mem"
)

// runner is an Executions that runs each enqueued execution to its end
// in the background, as a worker would.
type runner struct {
	engine *core.Engine
	store  *mem.Store
	wg     sync.WaitGroup
}

func (r *runner) Start(ctx context.Context, req core.StartRequest) (*core.Execution, error) {
	return r.engine.Start(ctx, req)
}

func (r *runner) Enqueue(_ context.Context, ex *core.Execution) error {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		_, _ = r.engine.Run(context.Background(), ex.Tenant, ex.ID, nil)
	}()
	return nil
}

func (r *runner) Execution(ctx context.Context, tenant, id string) (*core.Execution, error) {
	return r.store.GetExecution(ctx, tenant, id)
}

type fixture struct {
	bus    *eventing.Bus
	store  *mem.Store
	chains map[string]*core.Chain
	execs  *runner
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	box, err := seal.New(seal.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	st := mem.New()
	f := &fixture{store: st, chains: map[string]*core.Chain{}}
	f.execs = &runner{engine: core.NewEngine(core.EngineConfig{Store: st}), store: st}
	t.Cleanup(f.execs.wg.Wait)
	fns := eventing.NewFunctions(st, nil)
	f.bus = eventing.NewBus(eventing.Config{
		Store: eventing.NewStore(st, box, nil), Functions: fns,
		Runner:     eventing.InProcess{Sandbox: jsfunc.New(), Functions: fns},
		Executions: f.execs,
		Chains: func(_ context.Context, _, id string) (*core.Chain, error) {
			if c, ok := f.chains[id]; ok {
				return c, nil
			}
			return nil, core.Errorf(core.ENOTFOUND, "no chain %s", id)
		},
	})
	return f
}

const hookSecret = "gh-secret"

func sign(body string) string {
	m := hmac.New(sha256.New, []byte(hookSecret))
	m.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func githubHeaders(body, delivery string) http.Header {
	return http.Header{"X-Github-Event": {"push"}, "X-Github-Delivery": {delivery}, "X-Hub-Signature-256": {sign(body)},
		"Authorization": {"Bearer should-not-be-kept"}}
}

// setUp stores the reference's flow: a GitHub mapping, a function on
// push that sends push.seen, and a function on push.seen that runs a
// chain and returns its result.
func (f *fixture) setUp(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	_, err := f.bus.Store().SaveMapping(ctx, "acme", events.Mapping{Path: "github", EventType: "github", EventTypeField: "$headers.X-GitHub-Event",
		EventSource: "github", AggregateType: "repository", AggregateIDField: "repository.full_name", Version: 1,
		Signature: &events.Signature{Scheme: events.SchemeGitHub, Secret: hookSecret}}, true)
	if err != nil {
		t.Fatal(err)
	}
	f.chains["summarize"] = &core.Chain{ID: "summarize", Tasks: []*core.Task{{ID: "say", Handler: "noop", PromptTemplate: "summary of {{.input.repo}}",
		Transition: &core.Transition{Branches: []*core.Branch{{Operator: "default", Goto: "end"}}}}}}
	fns := f.bus.Functions()
	for _, fn := range []eventing.Function{
		{Name: "onPush", Script: `function onPush(event) { var r = sendEvent("push.seen", {repo: event.aggregateID}); console.log("sent", r.event_id); return {ok: r.success} }`},
		{Name: "onSeen", Script: `function onSeen(e) { return executeTaskChain("summarize", {repo: e.data.repo}) }`},
	} {
		if _, err := fns.SaveFunction(ctx, "acme", fn, true); err != nil {
			t.Fatal(err)
		}
	}
	for _, tr := range []eventing.Trigger{
		{Name: "push", ListenFor: eventing.ListenFor{Type: "push"}, Function: "onPush"},
		{Name: "seen", ListenFor: eventing.ListenFor{Type: "push.seen"}, Function: "onSeen"},
	} {
		if _, err := fns.SaveTrigger(ctx, "acme", tr, true, nil); err != nil {
			t.Fatal(err)
		}
	}
}

const pushBody = `{"ref": "refs/heads/main", "repository": {"full_name": "acme/api"}}`

func TestReferenceFlow(t *testing.T) {
	f := newFixture(t)
	f.setUp(t)
	ctx := context.Background()
	raw, dup, err := f.bus.Ingest(ctx, "acme", "github", githubHeaders(pushBody, "d-1"), []byte(pushBody))
	if err != nil || dup {
		t.Fatalf("Ingest: %v, dup %v", err, dup)
	}
	if raw.Headers.Get("Authorization") != "" || raw.Headers.Get("X-Github-Delivery") != "d-1" || len(raw.EventIDs) != 1 {
		t.Errorf("raw event %+v", raw)
	}
	runs, err := f.bus.Functions().Runs(ctx, "acme", "", 0)
	if err != nil || len(runs) != 2 {
		t.Fatalf("runs %v, %v", runs, err)
	}
	byFn := map[string]*eventing.Run{}
	for _, r := range runs {
		byFn[r.Function] = r
	}
	if r := byFn["onPush"]; r == nil || r.Error != "" || fmt.Sprint(r.Result) != "map[ok:true]" || len(r.Logs) != 1 || !strings.HasPrefix(r.Logs[0], "sent run_") {
		t.Errorf("onPush's run %+v", r)
	}
	seen := byFn["onSeen"]
	res, _ := seen.Result.(map[string]any)
	if seen.Error != "" || res["status"] != "succeeded" || res["response"] != "summary of acme/api" || res["execution_id"] == "" {
		t.Errorf("onSeen's run %+v", seen)
	}
	all, err := f.bus.Store().Events(ctx, "acme", eventing.EventQuery{})
	if err != nil || len(all) != 2 {
		t.Fatalf("events %v, %v", all, err)
	}
	if all[0].Type != "push.seen" && all[1].Type != "push.seen" {
		t.Errorf("events %+v", all)
	}
	pushes, _ := f.bus.Store().Events(ctx, "acme", eventing.EventQuery{Type: "push"})
	if len(pushes) != 1 || pushes[0].Subject != "acme/api" || pushes[0].Source != "github" {
		t.Errorf("push events %+v", pushes)
	}

	t.Run("a replay derives the same event and runs nothing again", func(t *testing.T) {
		again, err := f.bus.Replay(ctx, "acme", raw.ID)
		if err != nil || len(again.EventIDs) != 1 || again.EventIDs[0] != raw.EventIDs[0] {
			t.Fatalf("Replay: %+v, %v", again, err)
		}
		if runs, _ := f.bus.Functions().Runs(ctx, "acme", "", 0); len(runs) != 2 {
			t.Errorf("%d runs after the replay, want 2", len(runs))
		}
		if evs, _ := f.bus.Store().Events(ctx, "acme", eventing.EventQuery{}); len(evs) != 2 {
			t.Errorf("%d events after the replay, want 2", len(evs))
		}
	})
	t.Run("10,000 duplicate deliveries", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 1250; i++ {
					got, dup, err := f.bus.Ingest(ctx, "acme", "github", githubHeaders(pushBody, "d-1"), []byte(pushBody))
					if err != nil || !dup || got.ID != raw.ID {
						errs <- fmt.Errorf("delivery %d: %v, dup %v, raw %v", i, err, dup, got)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		raws, _ := f.bus.Store().RawEvents(ctx, "acme", eventing.TimeRange{})
		evs, _ := f.bus.Store().Events(ctx, "acme", eventing.EventQuery{})
		runs, _ := f.bus.Functions().Runs(ctx, "acme", "", 0)
		if len(raws) != 1 || len(evs) != 2 || len(runs) != 2 {
			t.Errorf("%d raw events, %d events, %d runs; want 1, 2, 2", len(raws), len(evs), len(runs))
		}
	})
}

func TestIngestRefusals(t *testing.T) {
	f := newFixture(t)
	f.setUp(t)
	ctx := context.Background()
	for _, tt := range []struct {
		name    string
		path    string
		headers http.Header
		body    string
		code    string
		stored  bool
	}{
		{"a bad signature", "github", http.Header{"X-Hub-Signature-256": {"sha256=00"}, "X-Github-Delivery": {"x1"}}, pushBody, core.EUNAUTHORIZED, false},
		{"no signature", "github", http.Header{"X-Github-Delivery": {"x2"}}, pushBody, core.EUNAUTHORIZED, false},
		{"an unknown path", "gitlab", http.Header{}, pushBody, core.ENOTFOUND, false},
		{"no path", "", http.Header{}, pushBody, core.EINVALID, false},
		{"not JSON", "github", githubHeaders("nope", "x3"), "nope", core.EINVALID, false},
		{"no aggregate id", "github", githubHeaders(`{"ref": "x"}`, "x4"), `{"ref": "x"}`, core.EINVALID, true},
		{"too large", "github", githubHeaders("{}", "x5"), `{"a": "` + strings.Repeat("x", eventing.MaxPayload) + `"}`, core.EINVALID, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := f.bus.Store().RawEvents(ctx, "acme", eventing.TimeRange{})
			_, _, err := f.bus.Ingest(ctx, "acme", tt.path, tt.headers, []byte(tt.body))
			if core.ErrorCode(err) != tt.code {
				t.Errorf("Ingest: %v, want %s", err, tt.code)
			}
			after, _ := f.bus.Store().RawEvents(ctx, "acme", eventing.TimeRange{})
			if stored := len(after) > len(before); stored != tt.stored {
				t.Errorf("stored %v, want %v", stored, tt.stored)
			}
			if tt.stored && after[0].Error == "" {
				t.Errorf("the raw event kept no error: %+v", after[0])
			}
		})
	}
}

// TestCascadeIsBounded: a function that answers every event of its type
// with another stops at events.MaxHop.
func TestCascadeIsBounded(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	fns := f.bus.Functions()
	if _, err := fns.SaveFunction(ctx, "acme", eventing.Function{Name: "echoLoop", Script: `function echoLoop(e) { return sendEvent("loop", {n: e.hop}) }`}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := fns.SaveTrigger(ctx, "acme", eventing.Trigger{Name: "loop", ListenFor: eventing.ListenFor{Type: "loop"}, Function: "echoLoop"}, true, nil); err != nil {
		t.Fatal(err)
	}
	ev := events.Envelope{ID: "start", Tenant: "acme", Source: "test", Type: "loop", Data: []byte(`{}`)}
	if err := f.bus.Append(ctx, ev); err != nil {
		t.Fatal(err)
	}
	evs, _ := f.bus.Store().Events(ctx, "acme", eventing.EventQuery{Type: "loop"})
	runs, _ := fns.Runs(ctx, "acme", "echoLoop", 0)
	if len(evs) != events.MaxHop+1 || len(runs) != events.MaxHop+1 {
		t.Errorf("%d events and %d runs, want %d of each", len(evs), len(runs), events.MaxHop+1)
	}
	last := runs[0]
	if res, _ := last.Result.(map[string]any); res["success"] != false || !strings.Contains(fmt.Sprint(res["error"]), "deep") {
		t.Errorf("the last run %+v", last)
	}
}

func TestFunctionsAndTriggers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	fns := f.bus.Functions()
	for _, tt := range []struct {
		name  string
		fn    eventing.Function
		field string
	}{
		{"a syntax error", eventing.Function{Name: "bad", Script: "function ("}, "script"},
		{"a bad name", eventing.Function{Name: "a b", Script: "1"}, "name"},
		{"another script type", eventing.Function{Name: "x", ScriptType: "lua", Script: "1"}, "scriptType"},
		{"a long timeout", eventing.Function{Name: "x", Script: "1", TimeoutMs: 60_000}, "timeoutMs"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := fns.SaveFunction(ctx, "acme", tt.fn, true)
			if core.ErrorCode(err) != core.EINVALID || !strings.HasPrefix(err.Error(), tt.field+":") {
				t.Errorf("SaveFunction: %v, want EINVALID naming %s", err, tt.field)
			}
		})
	}
	if _, err := fns.SaveTrigger(ctx, "acme", eventing.Trigger{Name: "t", ListenFor: eventing.ListenFor{Type: "x"}, Function: "missing"}, true, nil); core.ErrorCode(err) != core.ECONFLICT {
		t.Errorf("a trigger of a missing function: %v, want ECONFLICT", err)
	}
	if _, err := fns.SaveFunction(ctx, "acme", eventing.Function{Name: "f", Script: "1"}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := fns.SaveTrigger(ctx, "acme", eventing.Trigger{Name: "t", ListenFor: eventing.ListenFor{Type: "x"}, Function: "f"}, true, nil); err != nil {
		t.Fatal(err)
	}
	if err := fns.DeleteFunction(ctx, "acme", "f"); err != nil {
		t.Fatal(err)
	}
	if _, err := fns.Trigger(ctx, "acme", "t"); core.ErrorCode(err) != core.ENOTFOUND {
		t.Errorf("the trigger after its function was deleted: %v, want ENOTFOUND", err)
	}
}
