package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/coretest"
)

// TestExecutionListingsWalkAnIndex checks, with EXPLAIN QUERY PLAN, that
// the listings the API and the sweeper run read an index in listing order
// rather than scanning the table or sorting it.
func TestExecutionListingsWalkAnIndex(t *testing.T) {
	s := openTemp(t)
	cursor := core.EncodeCursor(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "x")
	tests := []struct {
		name      string
		q         core.ExecutionQuery
		wantIndex string
	}{
		{"Newest", core.ExecutionQuery{}, "executions_newest (tenant=?)"},
		{"NextPage", core.ExecutionQuery{Cursor: cursor}, "executions_newest (tenant=? AND created_at<?)"},
		{"ByStatus", core.ExecutionQuery{Statuses: []core.Status{core.StatusQueued}}, "executions_by_status (tenant=? AND status=?)"},
		{"ByStatusNextPage", core.ExecutionQuery{Statuses: []core.Status{core.StatusQueued}, Cursor: cursor}, "executions_by_status (tenant=? AND status=? AND created_at<?)"},
		{"ByChain", core.ExecutionQuery{ChainID: "c"}, "executions_newest (tenant=?)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			query, args, _, none, err := executionListSQL("default", tt.q)
			if err != nil || none {
				t.Fatalf("executionListSQL = none %v, %v", none, err)
			}
			plan := queryPlan(t, s.db, query, args)
			if !strings.Contains(plan, "USING INDEX "+tt.wantIndex) || strings.Contains(plan, "TEMP B-TREE") {
				t.Errorf("plan of %q:\n%s\nwant a walk of %s without a sort", query, plan, tt.wantIndex)
			}
		})
	}
}

// queryPlan returns the lines of EXPLAIN QUERY PLAN for query.
func queryPlan(t *testing.T, db *sql.DB, query string, args []any) string {
	t.Helper()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// TestMigrationFillsTheChainIDOfExistingExecutions writes an execution into
// a database at schema version 1, as stepwise did before listings, and
// checks that opening it migrates the row so the listing finds it by chain.
func TestMigrationFillsTheChainIDOfExistingExecutions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v1.db")
	all, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dsn(path, busyTimeout))
	if err != nil {
		t.Fatal(err)
	}
	ex := coretest.NewExecution("default", "old")
	ex.Status = core.StatusRunning
	chain, err := json.Marshal(ex.Chain)
	if err != nil {
		t.Fatal(err)
	}
	state, err := encodeState(ex, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []struct {
		query string
		args  []any
	}{
		{`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`, nil},
		{all[0].sql, nil},
		{`INSERT INTO schema_migrations (version, name, applied_at) VALUES (1, ?, 0)`, []any{all[0].name}},
		{`INSERT INTO executions (tenant, id, version, status, chain, state, created_at, updated_at) VALUES (?, ?, 1, ?, ?, ?, ?, ?)`,
			[]any{"default", "old", string(ex.Status), string(chain), string(state), ex.CreatedAt.UnixNano(), ex.UpdatedAt.UnixNano()}},
	} {
		if _, err := db.ExecContext(ctx, stmt.query, stmt.args...); err != nil {
			t.Fatalf("%s: %v", stmt.query, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open of a version 1 database: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	page, err := s.ListExecutions(ctx, "default", core.ExecutionQuery{
		ChainID: ex.Chain.ID, Statuses: []core.Status{core.StatusRunning}, UpdatedBefore: ex.UpdatedAt.Add(time.Nanosecond),
	})
	if err != nil || len(page.Executions) != 1 {
		t.Fatalf("ListExecutions by chain after the migration = %d executions, %v; want the old one", len(page.Executions), err)
	}
	if got := page.Executions[0]; got.ID != "old" || got.Chain.ID != ex.Chain.ID || got.Version != 1 {
		t.Errorf("listed %+v, want execution old of chain %q at version 1", got, ex.Chain.ID)
	}
}
