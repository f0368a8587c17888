package coretest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// executionListTests is the part of ExecutionStoreSuite about
// ListExecutions.
func executionListTests(t *testing.T, newStore func(t *testing.T) core.ExecutionStore) {
	ctx := context.Background()
	t0 := NewExecution("default", "").CreatedAt

	t.Run("ListNewestFirstWithTiesByIDDescending", func(t *testing.T) {
		s := newStore(t)
		for id, at := range map[string]time.Time{
			"a": t0, "d": t0.Add(-time.Hour), "b": t0.Add(time.Nanosecond), "e": t0, "c": t0.Add(time.Nanosecond),
		} {
			e := NewExecution("default", id)
			e.CreatedAt = at
			mustCreate(t, s, e)
		}
		ids, next := listExecIDs(t, s, "default", core.ExecutionQuery{})
		if want := []string{"c", "b", "e", "a", "d"}; !reflect.DeepEqual(ids, want) || next != "" {
			t.Errorf("ListExecutions = %v (next %q), want %v and no next page", ids, next, want)
		}
	})

	t.Run("ListFilters", func(t *testing.T) {
		s := newStore(t)
		// Created one second apart in this order, so the newest-first
		// listing is the reverse; updated i minutes after t0.
		fixture := []struct {
			id     string
			status core.Status
			chain  string
		}{
			{"q1", core.StatusQueued, "alpha"},
			{"r1", core.StatusRunning, "alpha"},
			{"w1", core.StatusWaiting, "beta"},
			{"s1", core.StatusSucceeded, "alpha"},
			{"q2", core.StatusQueued, "beta"},
			{"r2", core.StatusRunning, "beta"},
			{"f1", core.StatusFailed, "alpha"},
		}
		for i, f := range fixture {
			e := NewExecution("default", f.id)
			e.Status, e.Chain.ID = f.status, f.chain
			e.CreatedAt = t0.Add(time.Duration(i) * time.Second)
			e.UpdatedAt = t0.Add(time.Duration(i) * time.Minute)
			mustCreate(t, s, e)
		}
		tests := []struct {
			name string
			q    core.ExecutionQuery
			want []string
		}{
			{"None", core.ExecutionQuery{}, []string{"f1", "r2", "q2", "s1", "w1", "r1", "q1"}},
			{"OneStatus", core.ExecutionQuery{Statuses: []core.Status{core.StatusQueued}}, []string{"q2", "q1"}},
			{"Statuses", core.ExecutionQuery{Statuses: []core.Status{core.StatusQueued, core.StatusRunning}}, []string{"r2", "q2", "r1", "q1"}},
			{"StatusNoneHas", core.ExecutionQuery{Statuses: []core.Status{core.StatusCancelled}}, nil},
			{"ChainID", core.ExecutionQuery{ChainID: "beta"}, []string{"r2", "q2", "w1"}},
			{"ChainIDNoneHas", core.ExecutionQuery{ChainID: "gamma"}, nil},
			{"UpdatedBefore", core.ExecutionQuery{UpdatedBefore: t0.Add(3 * time.Minute)}, []string{"w1", "r1", "q1"}},
			{"UpdatedBeforeIsStrict", core.ExecutionQuery{UpdatedBefore: t0}, nil},
			{"UpdatedBeforeFarFuture", core.ExecutionQuery{UpdatedBefore: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}, []string{"f1", "r2", "q2", "s1", "w1", "r1", "q1"}},
			{"UpdatedBeforeFarPast", core.ExecutionQuery{UpdatedBefore: time.Date(1, 1, 2, 0, 0, 0, 0, time.UTC)}, nil},
			{"StatusesAndChain", core.ExecutionQuery{Statuses: []core.Status{core.StatusQueued, core.StatusRunning}, ChainID: "beta"}, []string{"r2", "q2"}},
			{"StatusesAndUpdatedBefore", core.ExecutionQuery{Statuses: []core.Status{core.StatusQueued, core.StatusRunning}, UpdatedBefore: t0.Add(5 * time.Minute)}, []string{"q2", "r1", "q1"}},
			{"AllThree", core.ExecutionQuery{Statuses: []core.Status{core.StatusQueued, core.StatusRunning, core.StatusWaiting}, ChainID: "beta", UpdatedBefore: t0.Add(5 * time.Minute)}, []string{"q2", "w1"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ids, next := listExecIDs(t, s, "default", tt.q)
				if !reflect.DeepEqual(ids, tt.want) || next != "" {
					t.Errorf("ListExecutions(%+v) = %v (next %q), want %v and no next page", tt.q, ids, next, tt.want)
				}
			})
		}
		t.Run("PagedWithFilter", func(t *testing.T) {
			q := core.ExecutionQuery{ChainID: "alpha", Statuses: []core.Status{core.StatusQueued, core.StatusRunning, core.StatusFailed}, Limit: 1}
			got := pageAll(t, s, "default", q, 10)
			if want := []string{"f1", "r1", "q1"}; !reflect.DeepEqual(got, want) {
				t.Errorf("paged with filters = %v, want %v", got, want)
			}
		})
	})

	t.Run("ListPagingVisitsEveryExecutionOnce", func(t *testing.T) {
		s := newStore(t)
		const n = 250
		var want []string
		for i := range n {
			want = append(want, fmt.Sprintf("x%03d", i))
			// Insert in a scrambled order, three executions per instant,
			// so that pages end in the middle of a tie.
			j := i * 7 % n
			e := NewExecution("default", fmt.Sprintf("x%03d", j))
			e.CreatedAt = t0.Add(time.Duration(j/3) * time.Second)
			mustCreate(t, s, e)
		}
		slices.Reverse(want)
		checkPaging(t, "executions", want, func(limit int, cursor string) ([]string, string) {
			return listExecIDs(t, s, "default", core.ExecutionQuery{Limit: limit, Cursor: cursor})
		})
	})

	t.Run("ListInvalidQueryIsInvalid", func(t *testing.T) {
		s := newStore(t)
		mustCreate(t, s, NewExecution("default", "x"))
		tests := []struct {
			name string
			q    core.ExecutionQuery
		}{
			{"CursorNotOneReturned", core.ExecutionQuery{Cursor: "not a cursor!"}},
			{"LimitNegative", core.ExecutionQuery{Limit: -1}},
			{"LimitAboveMax", core.ExecutionQuery{Limit: core.MaxPageSize + 1}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				page, err := s.ListExecutions(ctx, "default", tt.q)
				wantCode(t, err, core.EINVALID)
				if len(page.Executions) != 0 || page.Next != "" {
					t.Errorf("an invalid query returned %d executions (next %q)", len(page.Executions), page.Next)
				}
			})
		}
	})

	t.Run("ListTenantsAreIsolated", func(t *testing.T) {
		s := newStore(t)
		mustCreate(t, s, NewExecution("tenant-a", "same-id"))
		mustCreate(t, s, NewExecution("tenant-a", "only-a"))
		mustCreate(t, s, NewExecution("tenant-b", "same-id"))
		tests := []struct {
			tenant string
			want   []string
		}{
			{"tenant-a", []string{"same-id", "only-a"}},
			{"tenant-b", []string{"same-id"}},
			{"tenant-c", nil},
		}
		for _, tt := range tests {
			t.Run(tt.tenant, func(t *testing.T) {
				page, err := s.ListExecutions(ctx, tt.tenant, core.ExecutionQuery{})
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, e := range page.Executions {
					if e.Tenant != tt.tenant {
						t.Errorf("%s's listing holds %s's execution %q", tt.tenant, e.Tenant, e.ID)
					}
					ids = append(ids, e.ID)
				}
				if !reflect.DeepEqual(ids, tt.want) {
					t.Errorf("%s lists %v, want %v", tt.tenant, ids, tt.want)
				}
			})
		}
	})

	t.Run("ListReturnsNoTasksButTheState", func(t *testing.T) {
		s := newStore(t)
		e := NewExecution("default", "state")
		e.Vars["t1"] = core.String("kept")
		e.Lease = core.Lease{Owner: "worker-1", Until: t0.Add(time.Minute)}
		mustCreate(t, s, e)
		e.StepCount = 1
		mustCommit(t, s, e, step(e, 1))
		page, err := s.ListExecutions(ctx, "default", core.ExecutionQuery{})
		if err != nil || len(page.Executions) != 1 {
			t.Fatalf("ListExecutions = %d executions, %v; want 1", len(page.Executions), err)
		}
		got := page.Executions[0]
		if got.Chain == nil || got.Chain.ID != e.Chain.ID || len(got.Chain.Tasks) != 0 {
			t.Errorf("listed chain = %+v, want id %q and no tasks", got.Chain, e.Chain.ID)
		}
		if got.Version != 2 || got.StepCount != 1 || got.Vars["t1"] != core.String("kept") ||
			got.Lease.Owner != "worker-1" || !got.CreatedAt.Equal(e.CreatedAt) {
			t.Errorf("listed execution = %+v, want version 2 with its state", got)
		}
		full, err := s.GetExecution(ctx, "default", "state")
		if err != nil || len(full.Chain.Tasks) != 1 {
			t.Errorf("GetExecution after a listing = %+v, %v; want the chain's task kept", full, err)
		}
	})

	t.Run("ListSeesWhatACommitChanged", func(t *testing.T) {
		s := newStore(t)
		e := NewExecution("default", "moves")
		mustCreate(t, s, e)
		mustCreate(t, s, NewExecution("default", "stays"))
		running := core.ExecutionQuery{Statuses: []core.Status{core.StatusRunning}}
		queued := core.ExecutionQuery{Statuses: []core.Status{core.StatusQueued}}
		stale := core.ExecutionQuery{UpdatedBefore: t0.Add(30 * time.Minute)}
		if ids, _ := listExecIDs(t, s, "default", running); len(ids) != 0 {
			t.Errorf("running before the commit = %v, want none", ids)
		}
		e.Status, e.UpdatedAt = core.StatusRunning, t0.Add(time.Hour)
		mustCommit(t, s, e, step(e, 1))
		tests := []struct {
			name string
			q    core.ExecutionQuery
			want []string
		}{
			{"NewStatus", running, []string{"moves"}},
			{"OldStatus", queued, []string{"stays"}},
			{"UpdatedBeforeTheCommit", stale, []string{"stays"}},
			{"UpdatedBeforeLater", core.ExecutionQuery{UpdatedBefore: t0.Add(2 * time.Hour)}, []string{"stays", "moves"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if ids, _ := listExecIDs(t, s, "default", tt.q); !reflect.DeepEqual(ids, tt.want) {
					t.Errorf("ListExecutions(%+v) = %v, want %v", tt.q, ids, tt.want)
				}
			})
		}
		page, err := s.ListExecutions(ctx, "default", running)
		if err != nil || len(page.Executions) != 1 || page.Executions[0].Version != 2 || !page.Executions[0].UpdatedAt.Equal(e.UpdatedAt) {
			t.Errorf("listed after the commit = %+v, %v; want version 2 updated at %v", page.Executions, err, e.UpdatedAt)
		}
	})
}

// listExecIDs lists one page of executions and returns their IDs and the
// Next cursor.
func listExecIDs(t *testing.T, s core.ExecutionStore, tenant string, q core.ExecutionQuery) ([]string, string) {
	t.Helper()
	page, err := s.ListExecutions(context.Background(), tenant, q)
	if err != nil {
		t.Fatalf("ListExecutions(%s, %+v): %v", tenant, q, err)
	}
	var ids []string
	for _, e := range page.Executions {
		ids = append(ids, e.ID)
	}
	return ids, page.Next
}

// pageAll follows Next from q for at most pages pages and returns every
// ID listed.
func pageAll(t *testing.T, s core.ExecutionStore, tenant string, q core.ExecutionQuery, pages int) []string {
	t.Helper()
	var got []string
	for range pages {
		ids, next := listExecIDs(t, s, tenant, q)
		got = append(got, ids...)
		if next == "" {
			break
		}
		q.Cursor = next
	}
	return got
}
