package coretest

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// ExecutionStoreSuite checks an ExecutionStore: creation, reads,
// compare-and-swap commits, step records, leases, listings, tenant
// isolation, and that typed values come back as they went in. newStore must
// return an empty store.
func ExecutionStoreSuite(t *testing.T, newStore func(t *testing.T) core.ExecutionStore) {
	ctx := context.Background()

	t.Run("CreateThenGetRoundTripsEveryValueType", func(t *testing.T) {
		s := newStore(t)
		e := NewExecution("default", "ex-types")
		e.Vars = map[string]core.Value{
			"s":    core.String("héllo\nworld"),
			"i":    {Type: core.TypeInt, Data: 42},
			"f":    {Type: core.TypeFloat, Data: 0.25},
			"b":    {Type: core.TypeBool, Data: true},
			"v":    {Type: core.TypeVector, Data: []float32{0.5, -1}},
			"j":    {Type: core.TypeJSON, Data: map[string]any{"big": json.Number("123456789012345678901234567890"), "list": []any{"a"}}},
			"h":    {Type: core.TypeChatHistory, Data: core.ChatHistory{Messages: []core.Message{{Role: "assistant", ToolCalls: []core.ToolCall{{ID: "c1", Type: "function", Function: core.ToolCallFunction{Name: "echo", Arguments: `{"text":"x"}`}}}}, {Role: "tool", Content: "x", ToolCallID: "c1", Name: "echo"}}, InputTokens: 3}},
			"nil":  core.Nil,
			"resp": {Type: core.TypeOpenAIChatResponse, Data: core.OpenAIChatResponse{ID: "r", Object: "chat.completion", Choices: []core.OpenAIChoice{{FinishReason: "stop"}}}},
		}
		if err := s.CreateExecution(ctx, e); err != nil {
			t.Fatalf("CreateExecution: %v", err)
		}
		if e.Version != 1 {
			t.Errorf("Version after create = %d, want 1", e.Version)
		}
		got, err := s.GetExecution(ctx, "default", "ex-types")
		if err != nil {
			t.Fatalf("GetExecution: %v", err)
		}
		for k, want := range e.Vars {
			if !reflect.DeepEqual(got.Vars[k], want) {
				t.Errorf("Vars[%q] = %#v, want %#v", k, got.Vars[k], want)
			}
		}
		if got.Version != 1 || got.Status != e.Status || got.Chain.ID != e.Chain.ID || !got.CreatedAt.Equal(e.CreatedAt) {
			t.Errorf("GetExecution = %+v, want the created execution", got)
		}
	})

	t.Run("CreateDuplicateIsConflict", func(t *testing.T) {
		s := newStore(t)
		mustCreate(t, s, NewExecution("default", "dup"))
		err := s.CreateExecution(ctx, NewExecution("default", "dup"))
		wantCode(t, err, core.ECONFLICT)
	})

	t.Run("GetMissingIsNotFound", func(t *testing.T) {
		s := newStore(t)
		_, err := s.GetExecution(ctx, "default", "nope")
		wantCode(t, err, core.ENOTFOUND)
	})

	t.Run("TenantsAreIsolated", func(t *testing.T) {
		s := newStore(t)
		a := NewExecution("tenant-a", "same-id")
		mustCreate(t, s, a)
		if _, err := s.GetExecution(ctx, "tenant-b", "same-id"); core.ErrorCode(err) != core.ENOTFOUND {
			t.Errorf("tenant-b reads tenant-a's execution: err = %v, want not_found", err)
		}
		b := NewExecution("tenant-b", "same-id")
		if err := s.CreateExecution(ctx, b); err != nil {
			t.Fatalf("tenant-b cannot create its own execution with the same id: %v", err)
		}
		mustCommit(t, s, a, step(a, 1))
		if steps, err := s.ListSteps(ctx, "tenant-b", "same-id", 0, 0); err != nil || len(steps) != 0 {
			t.Errorf("tenant-b sees %d steps (err %v), want 0", len(steps), err)
		}
		mustCommit(t, s, b, nil)
		got, _ := s.GetExecution(ctx, "tenant-a", "same-id")
		if got.Version != 2 {
			t.Errorf("tenant-a version = %d after tenant-b's commit, want 2", got.Version)
		}
	})

	t.Run("CommitAdvancesVersionAndStoresStep", func(t *testing.T) {
		s := newStore(t)
		e := NewExecution("default", "c1")
		mustCreate(t, s, e)
		e.StepCount = 1
		e.Vars["first"] = core.String("one")
		mustCommit(t, s, e, step(e, 1))
		if e.Version != 2 {
			t.Errorf("Version after commit = %d, want 2", e.Version)
		}
		got, err := s.GetExecution(ctx, "default", "c1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != 2 || got.StepCount != 1 || got.Vars["first"] != core.String("one") {
			t.Errorf("stored = version %d steps %d vars %v, want 2, 1, first=one", got.Version, got.StepCount, got.Vars)
		}
		if got.Chain == nil || got.Chain.ID != e.Chain.ID || len(got.Chain.Tasks) != 1 || got.Cursor.Input == nil || *got.Cursor.Input != core.String("in") {
			t.Errorf("stored chain %+v cursor %+v, want the snapshot and cursor kept across commits", got.Chain, got.Cursor)
		}
		steps, err := s.ListSteps(ctx, "default", "c1", 0, 10)
		if err != nil || len(steps) != 1 || steps[0].Index != 1 || steps[0].TaskID != "t1" {
			t.Fatalf("ListSteps = %v, %v; want the one step", steps, err)
		}
		if !reflect.DeepEqual(steps[0].Output, core.String("out-1")) {
			t.Errorf("step output = %#v, want out-1", steps[0].Output)
		}
	})

	t.Run("StaleCommitIsConflictAndWritesNothing", func(t *testing.T) {
		s := newStore(t)
		e := NewExecution("default", "stale")
		mustCreate(t, s, e)
		winner := *e
		loser := *e
		winner.StepCount = 1
		mustCommit(t, s, &winner, step(&winner, 1))
		loser.StepCount = 99
		err := s.CommitExecution(ctx, &loser, step(&loser, 2))
		wantCode(t, err, core.ECONFLICT)
		if loser.Version != 1 {
			t.Errorf("loser's Version changed to %d on a failed commit", loser.Version)
		}
		got, _ := s.GetExecution(ctx, "default", "stale")
		if got.StepCount != 1 || got.Version != 2 {
			t.Errorf("stored after stale commit = steps %d version %d, want 1, 2", got.StepCount, got.Version)
		}
		if steps, _ := s.ListSteps(ctx, "default", "stale", 0, 0); len(steps) != 1 {
			t.Errorf("%d steps stored, want 1 (the stale commit's step must not be written)", len(steps))
		}
	})

	t.Run("DuplicateStepIndexIsConflictAndWritesNothing", func(t *testing.T) {
		s := newStore(t)
		e := NewExecution("default", "dupstep")
		mustCreate(t, s, e)
		mustCommit(t, s, e, step(e, 1))
		e.StepCount = 7
		err := s.CommitExecution(ctx, e, step(e, 1))
		wantCode(t, err, core.ECONFLICT)
		got, _ := s.GetExecution(ctx, "default", "dupstep")
		if got.StepCount == 7 || got.Version != 2 {
			t.Errorf("execution changed by a commit whose step was a duplicate: %+v", got)
		}
	})

	t.Run("CommitMissingIsNotFound", func(t *testing.T) {
		s := newStore(t)
		e := NewExecution("default", "ghost")
		e.Version = 1
		wantCode(t, s.CommitExecution(ctx, e, nil), core.ENOTFOUND)
	})

	t.Run("ListStepsPagesInOrder", func(t *testing.T) {
		s := newStore(t)
		e := NewExecution("default", "pages")
		mustCreate(t, s, e)
		for i := 1; i <= 5; i++ {
			mustCommit(t, s, e, step(e, i))
		}
		tests := []struct {
			name         string
			after, limit int
			want         []int
		}{
			{"All", 0, 0, []int{1, 2, 3, 4, 5}},
			{"FirstPage", 0, 2, []int{1, 2}},
			{"NextPage", 2, 2, []int{3, 4}},
			{"LastPage", 4, 2, []int{5}},
			{"PastTheEnd", 5, 2, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				steps, err := s.ListSteps(ctx, "default", "pages", tt.after, tt.limit)
				if err != nil {
					t.Fatal(err)
				}
				var got []int
				for _, st := range steps {
					got = append(got, st.Index)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("ListSteps(after=%d, limit=%d) = %v, want %v", tt.after, tt.limit, got, tt.want)
				}
			})
		}
		_, err := s.ListSteps(ctx, "default", "missing", 0, 0)
		wantCode(t, err, core.ENOTFOUND)
	})

	t.Run("ConcurrentCommitsHaveOneWinner", func(t *testing.T) {
		s := newStore(t)
		e := NewExecution("default", "race")
		mustCreate(t, s, e)
		const n = 8
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mine := *e
				mine.StepCount = 1
				st := step(&mine, 1)
				st.Output = core.String(fmt.Sprintf("worker-%d", i))
				errs[i] = s.CommitExecution(ctx, &mine, st)
			}()
		}
		wg.Wait()
		wins := 0
		for _, err := range errs {
			switch core.ErrorCode(err) {
			case "":
				wins++
			case core.ECONFLICT:
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}
		if wins != 1 {
			t.Fatalf("%d commits won the race, want exactly 1", wins)
		}
		steps, _ := s.ListSteps(ctx, "default", "race", 0, 0)
		if len(steps) != 1 {
			t.Errorf("%d steps stored, want 1", len(steps))
		}
	})

	t.Run("WaitingRoundTrips", func(t *testing.T) {
		s := newStore(t)
		e := NewExecution("default", "waits")
		e.Status = core.StatusWaiting
		e.Waiting = &core.Waiting{Task: "approve", Kind: core.WaitClientTools, Prompt: "ok?",
			ToolCalls: []core.ToolCall{{ID: "c1", Type: "function", Function: core.ToolCallFunction{Name: "lookup", Arguments: `{"q":"x"}`}}}}
		mustCreate(t, s, e)
		got, err := s.GetExecution(ctx, "default", "waits")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Waiting, e.Waiting) || got.Status != core.StatusWaiting {
			t.Errorf("stored %s %+v, want %+v", got.Status, got.Waiting, e.Waiting)
		}
		e.Waiting, e.Status = nil, core.StatusQueued
		mustCommit(t, s, e, nil)
		if got, _ = s.GetExecution(ctx, "default", "waits"); got.Waiting != nil {
			t.Errorf("Waiting after a commit clearing it = %+v", got.Waiting)
		}
	})

	t.Run("LeaseRoundTrips", func(t *testing.T) {
		s := newStore(t)
		e := NewExecution("default", "leased")
		until := time.Date(2026, 1, 2, 3, 5, 6, 123456789, time.FixedZone("UTC+2", 2*3600))
		tests := []struct {
			name  string
			lease core.Lease
		}{
			{"TakenAtCreation", core.Lease{Owner: "host-1/delivery-a", Until: until}},
			{"RenewedByACommit", core.Lease{Owner: "host-1/delivery-a", Until: until.Add(time.Nanosecond)}},
			{"TakenOverByAnother", core.Lease{Owner: "host-2/delivery-b", Until: until.Add(time.Minute + 7)}},
			{"Cleared", core.Lease{}},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e.Lease = tt.lease
				if i == 0 {
					mustCreate(t, s, e)
				} else {
					mustCommit(t, s, e, nil)
				}
				got, err := s.GetExecution(ctx, "default", "leased")
				if err != nil {
					t.Fatal(err)
				}
				if got.Lease.Owner != tt.lease.Owner || !got.Lease.Until.Equal(tt.lease.Until) || got.Lease.Until.IsZero() != tt.lease.Until.IsZero() {
					t.Errorf("stored lease = %+v, want %+v", got.Lease, tt.lease)
				}
			})
		}
	})

	executionListTests(t, newStore)

	t.Run("ReturnedRecordsDoNotAliasTheStore", func(t *testing.T) {
		s := newStore(t)
		e := NewExecution("default", "alias")
		e.Vars["x"] = core.String("kept")
		mustCreate(t, s, e)
		e.Vars["x"] = core.String("changed by the caller")
		got, _ := s.GetExecution(ctx, "default", "alias")
		got.Vars["x"] = core.String("changed again")
		again, _ := s.GetExecution(ctx, "default", "alias")
		if again.Vars["x"] != core.String("kept") {
			t.Errorf("stored var = %v, want it unaffected by callers' changes", again.Vars["x"])
		}
	})
}

// NewExecution returns a minimal valid execution for store tests.
func NewExecution(tenant, id string) *core.Execution {
	chain := &core.Chain{ID: "chain-" + id, Tasks: []*core.Task{{ID: "t1", Handler: core.HandlerNoop}}}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	in := core.String("in")
	return &core.Execution{
		Tenant: tenant, ID: id, Chain: chain, Status: core.StatusQueued,
		Input: core.String("in"), Vars: map[string]core.Value{},
		Cursor:    core.Cursor{Task: "t1", Input: &in, Attempt: 1},
		Output:    core.Nil,
		CreatedAt: now, UpdatedAt: now,
	}
}

func step(e *core.Execution, index int) *core.Step {
	return &core.Step{
		Tenant: e.Tenant, ExecutionID: e.ID, Index: index, TaskID: "t1", Handler: core.HandlerNoop,
		Attempt: 1, Input: core.String("in"), Output: core.String(fmt.Sprintf("out-%d", index)),
		Eval: "noop", Transition: core.End, StartedAt: e.CreatedAt, Duration: time.Millisecond,
	}
}

func mustCreate(t *testing.T, s core.ExecutionStore, e *core.Execution) {
	t.Helper()
	if err := s.CreateExecution(context.Background(), e); err != nil {
		t.Fatalf("CreateExecution(%s): %v", e.ID, err)
	}
}

func mustCommit(t *testing.T, s core.ExecutionStore, e *core.Execution, st *core.Step) {
	t.Helper()
	if err := s.CommitExecution(context.Background(), e, st); err != nil {
		t.Fatalf("CommitExecution(%s): %v", e.ID, err)
	}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := core.ErrorCode(err); got != code {
		t.Errorf("error = %v (code %q), want code %q", err, got, code)
	}
}
