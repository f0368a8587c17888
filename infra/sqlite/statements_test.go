package sqlite

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/coretest"
)

// TestListStepsTellsMissingFromEmpty covers the rows of the one query
// ListSteps runs: none for a missing execution, a single NULL step for an
// execution without steps after the index, the steps otherwise.
func TestListStepsTellsMissingFromEmpty(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	for _, id := range []string{"none", "two"} {
		if err := s.CreateExecution(ctx, coretest.NewExecution("default", id)); err != nil {
			t.Fatal(err)
		}
	}
	two, err := s.GetExecution(ctx, "default", "two")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		if err := s.CommitExecution(ctx, two, &core.Step{Tenant: "default", ExecutionID: "two", Index: i, TaskID: "t1"}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, tenant, id string
		after, limit     int
		wantCode         string
		want             []int
	}{
		{"Missing", "default", "missing", 0, 0, core.ENOTFOUND, nil},
		{"OtherTenant", "other", "two", 0, 0, core.ENOTFOUND, nil},
		{"NoSteps", "default", "none", 0, 0, "", []int{}},
		{"NoStepsWithLimit", "default", "none", 0, 1, "", []int{}},
		{"PastTheLast", "default", "two", 2, 0, "", []int{}},
		{"All", "default", "two", 0, 0, "", []int{1, 2}},
		{"Limited", "default", "two", 0, 1, "", []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps, err := s.ListSteps(ctx, tt.tenant, tt.id, tt.after, tt.limit)
			if tt.wantCode != "" {
				if core.ErrorCode(err) != tt.wantCode {
					t.Fatalf("ListSteps = %v, %v; want %s", steps, err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if steps == nil {
				t.Fatal("ListSteps returned a nil slice, want an empty one (it encodes as [], not null)")
			}
			got := []int{}
			for _, st := range steps {
				got = append(got, st.Index)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ListSteps indexes = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCallsAfterCloseFail checks that Close closes every prepared
// statement with the database, and that calls after it fail.
func TestCallsAfterCloseFail(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "stepwise.db"))
	if err != nil {
		t.Fatal(err)
	}
	ex := coretest.NewExecution("default", "ex1")
	if err := s.CreateExecution(ctx, ex); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, st := range s.stmt.all() {
		if _, err := (*st.stmt).ExecContext(ctx); err == nil || !strings.Contains(err.Error(), "statement is closed") {
			t.Errorf("statement %q after Close: err = %v, want it closed", st.query, err)
		}
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"GetRecord", func() error { _, err := s.GetRecord(ctx, "default", "model", "m"); return err }},
		{"CreateRecord", func() error { return s.CreateRecord(ctx, "default", coretest.NewRecord("model", "m", time.Now())) }},
		{"GetExecution", func() error { _, err := s.GetExecution(ctx, "default", "ex1"); return err }},
		{"CommitExecution", func() error { return s.CommitExecution(ctx, ex, nil) }},
		{"ListSteps", func() error { _, err := s.ListSteps(ctx, "default", "ex1", 0, 0); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); core.ErrorCode(err) != core.EINTERNAL {
				t.Errorf("%s after Close = %v, want internal", tt.name, err)
			}
		})
	}
}
