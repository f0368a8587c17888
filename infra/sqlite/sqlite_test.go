package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/coretest"
)

// openTemp opens a fresh database in the test's temporary folder and
// closes it when the test ends.
func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "data", "stepwise.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestRecordStore(t *testing.T) {
	coretest.RecordStoreSuite(t, func(t *testing.T) core.RecordStore { return openTemp(t) })
}

func TestExecutionStore(t *testing.T) {
	coretest.ExecutionStoreSuite(t, func(t *testing.T) core.ExecutionStore { return openTemp(t) })
}

func TestDurability(t *testing.T) {
	coretest.DurabilitySuite(t, func(t *testing.T) core.ExecutionStore { return openTemp(t) })
}

func TestCounters(t *testing.T) {
	coretest.CounterSuite(t, func(t *testing.T) core.Counters { return openTemp(t) })
}

func TestBudgets(t *testing.T) {
	coretest.BudgetSuite(t, func(t *testing.T) coretest.Store { return openTemp(t) })
}

func TestReopenKeepsRecordsAndExecutions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stepwise.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 3, 4, 5, 6, 7, 891, time.UTC)
	rec := coretest.NewRecord("backend", "b1", created, "name=local")
	if err := s.CreateRecord(ctx, "default", rec); err != nil {
		t.Fatal(err)
	}
	ex := coretest.NewExecution("default", "ex1")
	if err := s.CreateExecution(ctx, ex); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		ex.StepCount = i
		st := &core.Step{Tenant: "default", ExecutionID: "ex1", Index: i, TaskID: "t1", Output: core.String(fmt.Sprintf("out-%d", i))}
		if err := s.CommitExecution(ctx, ex, st); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	got, err := s.FindRecord(ctx, "default", "backend", "name=local")
	if err != nil || got.ID != "b1" || string(got.Body) != string(rec.Body) || !got.CreatedAt.Equal(created) || got.Version != 1 {
		t.Errorf("record after reopen = %+v, %v; want b1 as written", got, err)
	}
	gotEx, err := s.GetExecution(ctx, "default", "ex1")
	if err != nil || gotEx.Version != 3 || gotEx.StepCount != 2 || gotEx.Chain == nil || gotEx.Chain.ID != "chain-ex1" {
		t.Errorf("execution after reopen = %+v, %v; want version 3 with 2 steps and its chain", gotEx, err)
	}
	steps, err := s.ListSteps(ctx, "default", "ex1", 0, 0)
	if err != nil || len(steps) != 2 || steps[1].Output != core.String("out-2") {
		t.Errorf("steps after reopen = %v, %v; want both", steps, err)
	}
}

func TestOpenTwiceMigratesOnce(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stepwise.db")
	for i := range 2 {
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("Open #%d: %v", i+1, err)
		}
		var rows, version int
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&rows, &version); err != nil {
			t.Fatal(err)
		}
		all, _ := migrations()
		if rows != len(all) || version != len(all) {
			t.Errorf("Open #%d: schema_migrations has %d rows up to version %d, want %d", i+1, rows, version, len(all))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenRefusesANewerDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stepwise.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, '0099_future.sql', 0)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	all, _ := migrations()
	_, err = Open(ctx, path)
	if err == nil {
		t.Fatal("Open of a database at schema version 99 succeeded")
	}
	for _, want := range []string{path, "version 99", fmt.Sprintf("the %d this stepwise knows", len(all))} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestOpenWhereTheFolderCannotBeCreated(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(file, "sub", "stepwise.db")
	_, err := Open(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Open(%q) = %v, want an error naming the path", path, err)
	}
}

func TestOpenMakesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(context.Background(), filepath.Join(dir, "stepwise.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, filepath.Join(dir, "stepwise.db"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s mode = %v, want %v", path, fi.Mode(), want)
		}
	}
	var mode string
	if err := s.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestTimesOutsideTheStoredRangeAreInvalid(t *testing.T) {
	s := openTemp(t)
	tests := []struct {
		name string
		at   time.Time
	}{
		{"Zero", time.Time{}},
		{"Year3000", time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.CreateRecord(context.Background(), "default", coretest.NewRecord("model", tt.name, tt.at))
			if core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "createdAt") {
				t.Errorf("CreateRecord at %v = %v, want invalid naming createdAt", tt.at, err)
			}
			if _, err := s.GetRecord(context.Background(), "default", "model", tt.name); core.ErrorCode(err) != core.ENOTFOUND {
				t.Errorf("GetRecord after the failed create = %v, want not_found", err)
			}
		})
	}
}

// TestConcurrentCommitters runs eight committers on one file through two
// Stores, as two processes would: each Store's writers queue on its
// semaphore and the two Stores meet at SQLite's write lock.
func TestConcurrentCommitters(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stepwise.db")
	stores := make([]*Store, 2)
	for i := range stores {
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		stores[i] = s
	}
	const workers, steps = 8, 25
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[w%len(stores)]
			ex := coretest.NewExecution("default", fmt.Sprintf("ex-%d", w))
			if errs[w] = s.CreateExecution(ctx, ex); errs[w] != nil {
				return
			}
			for i := 1; i <= steps; i++ {
				ex.StepCount = i
				st := &core.Step{Tenant: "default", ExecutionID: ex.ID, Index: i, Output: core.String("x")}
				if errs[w] = s.CommitExecution(ctx, ex, st); errs[w] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Errorf("worker %d: %v", w, err)
		}
	}
	for w := range workers {
		got, err := stores[0].ListSteps(ctx, "default", fmt.Sprintf("ex-%d", w), 0, 0)
		if err != nil || len(got) != steps {
			t.Errorf("worker %d: %d steps stored (err %v), want %d", w, len(got), err, steps)
		}
	}
}

func TestLockHeldElsewhereIsUnavailable(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stepwise.db")
	s, err := open(ctx, path, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, err := sql.Open("sqlite", dsn(path, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("take the write lock: %v", err)
	}
	defer tx.Rollback()
	err = s.CreateRecord(ctx, "default", coretest.NewRecord("model", "m", time.Now()))
	if core.ErrorCode(err) != core.EUNAVAILABLE || !strings.Contains(err.Error(), "create model m") {
		t.Errorf("CreateRecord while another connection holds the write lock = %v, want unavailable naming the operation", err)
	}
}

func TestCancelledCallsAreTimeout(t *testing.T) {
	s := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	t.Run("WaitingToWrite", func(t *testing.T) {
		s.writeSlot <- struct{}{} // another writer of this Store is in its transaction
		defer func() { <-s.writeSlot }()
		err := s.CreateRecord(ctx, "default", coretest.NewRecord("model", "m", time.Now()))
		if core.ErrorCode(err) != core.ETIMEOUT {
			t.Errorf("CreateRecord with a cancelled context = %v, want timeout", err)
		}
	})
	t.Run("Reading", func(t *testing.T) {
		_, err := s.ListRecords(ctx, "default", "model", core.ListQuery{})
		if core.ErrorCode(err) != core.ETIMEOUT || !strings.Contains(err.Error(), "list model records") {
			t.Errorf("ListRecords with a cancelled context = %v, want timeout naming the operation", err)
		}
	})
}
