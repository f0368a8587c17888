package catalog_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/stepwise-run/stepwise/core"
)

// chain returns a small valid chain.
func chain(id, description string) *core.Chain {
	return &core.Chain{ID: id, Description: description, Tasks: []*core.Task{
		{ID: "ask", Handler: core.HandlerPromptToString, PromptTemplate: "{{.input}}", Transition: &core.Transition{
			Branches: []*core.Branch{{Operator: "default", Goto: "done"}},
		}},
		{ID: "done", Handler: core.HandlerNoop},
	}}
}

// wantProblem checks that err is EINVALID with a *core.ValidationError
// holding a problem at task and path.
func wantProblem(t *testing.T, err error, task, path string) {
	t.Helper()
	if core.ErrorCode(err) != core.EINVALID {
		t.Fatalf("error %v: code %s, want %s", err, core.ErrorCode(err), core.EINVALID)
	}
	var ve *core.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v is not a *core.ValidationError", err)
	}
	for _, p := range ve.Problems {
		if p.TaskID == task && p.Path == path {
			return
		}
	}
	t.Errorf("problems %v lack one in task %q at %q", ve.Problems, task, path)
}

func TestCreateChain(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, options{})
	want := chain("greet", "says hello")
	must(t, f.cat.CreateChain(ctx, tenant, want))

	t.Run("Get", func(t *testing.T) {
		got, err := f.cat.GetChain(ctx, tenant, "greet")
		must(t, err)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("GetChain = %+v, want %+v", got, want)
		}
	})
	t.Run("StoredCanonical", func(t *testing.T) {
		r, err := f.store.GetRecord(ctx, tenant, "chain", "greet")
		must(t, err)
		canonical, err := json.Marshal(want)
		must(t, err)
		if string(r.Body) != string(canonical) {
			t.Errorf("stored body %s, want %s", r.Body, canonical)
		}
		if !r.CreatedAt.Equal(epoch().Add(1e9)) || !r.UpdatedAt.Equal(r.CreatedAt) {
			t.Errorf("record times %v/%v, want both the clock's first reading", r.CreatedAt, r.UpdatedAt)
		}
	})
	t.Run("Duplicate", func(t *testing.T) {
		wantErr(t, f.cat.CreateChain(ctx, tenant, chain("greet", "again")), core.ECONFLICT, `id: a chain with id "greet" exists`)
	})
	t.Run("OtherTenant", func(t *testing.T) {
		_, err := f.cat.GetChain(ctx, "t2", "greet")
		wantErr(t, err, core.ENOTFOUND, `chain "greet" not found`)
	})
}

func TestChainValidation(t *testing.T) {
	unknownGoto := chain("c", "")
	unknownGoto.Tasks[0].Transition.Branches[0].Goto = "dnoe"
	noHandler := chain("c", "")
	noHandler.Tasks[1].Handler = ""
	noID := chain("", "")
	tests := []struct {
		name       string
		chain      *core.Chain
		task, path string
		// createOnly: PutChain gives a chain without id the path's id.
		createOnly bool
	}{
		{"UnknownGoto", unknownGoto, "ask", "tasks[0].transition.branches[0].goto", false},
		{"MissingHandler", noHandler, "done", "tasks[1].handler", false},
		{"MissingID", noID, "", "id", true},
		{"Nil", nil, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, options{})
			wantProblem(t, f.cat.CreateChain(ctx, tenant, tt.chain), tt.task, tt.path)
			if ids := rawIDs(t, f.store, "chain"); len(ids) != 0 {
				t.Errorf("an invalid chain was stored: %v", ids)
			}
			if tt.createOnly {
				return
			}
			must(t, f.cat.CreateChain(ctx, tenant, chain("c", "valid")))
			wantProblem(t, f.cat.PutChain(ctx, tenant, "c", tt.chain), tt.task, tt.path)
			got, err := f.cat.GetChain(ctx, tenant, "c")
			must(t, err)
			if got.Description != "valid" {
				t.Errorf("an invalid put changed the chain: %+v", got)
			}
		})
	}
}

func TestPutChain(t *testing.T) {
	tests := []struct {
		name     string
		id       string
		chain    *core.Chain
		wantCode string
		wantMsg  string
	}{
		{"Replace", "c", chain("c", "new"), "", ""},
		{"EmptyIDTakesPath", "c", chain("", "new"), "", ""},
		{"IDMismatch", "c", chain("other", "new"), core.EINVALID, `id: "other" does not match the path ("c")`},
		{"Missing", "nope", chain("nope", "new"), core.ENOTFOUND, `chain "nope" not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, options{})
			must(t, f.cat.CreateChain(ctx, tenant, chain("c", "old")))
			before, err := f.store.GetRecord(ctx, tenant, "chain", "c")
			must(t, err)
			inputID := tt.chain.ID
			err = f.cat.PutChain(ctx, tenant, tt.id, tt.chain)
			if tt.wantCode != "" {
				wantErr(t, err, tt.wantCode, tt.wantMsg)
				return
			}
			must(t, err)
			if tt.chain.ID != inputID {
				t.Errorf("PutChain changed the caller's chain id to %q", tt.chain.ID)
			}
			got, err := f.cat.GetChain(ctx, tenant, "c")
			must(t, err)
			if got.ID != "c" || got.Description != "new" {
				t.Errorf("after put: %+v", got)
			}
			after, err := f.store.GetRecord(ctx, tenant, "chain", "c")
			must(t, err)
			if after.Version != before.Version+1 || !after.CreatedAt.Equal(before.CreatedAt) || !after.UpdatedAt.After(before.UpdatedAt) {
				t.Errorf("record before %+v, after %+v: want version+1, same CreatedAt, later UpdatedAt", before, after)
			}
		})
	}
}

func TestDeleteChain(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, options{})
	must(t, f.cat.CreateChain(ctx, tenant, chain("c", "")))
	tests := []struct {
		name     string
		wantCode string
	}{
		{"Present", ""},
		{"Gone", core.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := f.cat.DeleteChain(ctx, tenant, "c")
			if tt.wantCode != "" {
				wantErr(t, err, tt.wantCode, `chain "c" not found`)
				return
			}
			must(t, err)
			_, err = f.cat.GetChain(ctx, tenant, "c")
			wantErr(t, err, core.ENOTFOUND, `chain "c" not found`)
		})
	}
}

func TestListChains(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, options{})
	for _, id := range []string{"c1", "c2", "c3", "c4", "c5"} {
		must(t, f.cat.CreateChain(ctx, tenant, chain(id, "")))
	}
	t.Run("Pages", func(t *testing.T) {
		var got [][]string
		q := core.ListQuery{Limit: 2}
		for {
			chains, next, err := f.cat.ListChains(ctx, tenant, q)
			must(t, err)
			var ids []string
			for _, c := range chains {
				ids = append(ids, c.ID)
			}
			got = append(got, ids)
			if next == "" {
				break
			}
			q.Cursor = next
		}
		want := [][]string{{"c5", "c4"}, {"c3", "c2"}, {"c1"}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("pages %v, want %v", got, want)
		}
	})
	t.Run("TimestampCursor", func(t *testing.T) {
		// c3 was created at the clock's third reading.
		chains, _, err := f.cat.ListChains(ctx, tenant, core.ListQuery{Cursor: epoch().Add(3e9).Format("2006-01-02T15:04:05Z07:00")})
		must(t, err)
		if len(chains) != 2 || chains[0].ID != "c2" || chains[1].ID != "c1" {
			t.Errorf("chains created before c3: %v", chains)
		}
	})
	errs := []struct {
		name string
		q    core.ListQuery
		want string
	}{
		{"LimitTooLarge", core.ListQuery{Limit: core.MaxPageSize + 1}, "limit"},
		{"NegativeLimit", core.ListQuery{Limit: -1}, "limit"},
		{"BadCursor", core.ListQuery{Cursor: "not a cursor!"}, "cursor"},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := f.cat.ListChains(ctx, tenant, tt.q)
			wantErr(t, err, core.EINVALID, tt.want)
		})
	}
}
