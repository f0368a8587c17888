package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/core/coretest"
	"github.com/stepwise-run/stepwise/core/meter"
)

// BenchmarkCommitExecution commits one step per iteration, as the engine
// does after every task, and reports the time and the growth of the
// database file per committed step: with a small output, and with a 100 KB
// one (a long model answer), which the commit writes twice, in the
// execution's vars and in the step record.
func BenchmarkCommitExecution(b *testing.B) {
	for _, bc := range []struct {
		name   string
		output core.Value
	}{
		{"SmallOutput", core.String("a small output")},
		{"100KBOutput", core.String(strings.Repeat("A long answer, line after line.\n", 100<<10/32))},
	} {
		b.Run(bc.name, func(b *testing.B) { benchmarkCommit(b, bc.output) })
	}
}

// benchmarkCommit commits steps whose task outputs output.
func benchmarkCommit(b *testing.B, output core.Value) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "bench.db")
	s, err := Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ex := coretest.NewExecution("default", "bench")
	if err := s.CreateExecution(ctx, ex); err != nil {
		b.Fatal(err)
	}
	before := dbSize(b, s, path)
	n := 0
	start := time.Now()
	for b.Loop() {
		n++
		ex.StepCount = n
		ex.Vars["t1"] = output
		ex.Cursor = core.Cursor{Task: "t1", Previous: "t1", Attempt: 1}
		st := &core.Step{
			Tenant: "default", ExecutionID: "bench", Index: n, TaskID: "t1", Handler: core.HandlerNoop,
			Attempt: 1, Input: core.String("a small input"), Output: output,
			Transition: "t1", StartedAt: ex.CreatedAt, Duration: time.Millisecond,
		}
		if err := s.CommitExecution(ctx, ex, st); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(elapsed.Microseconds())/float64(n), "µs/step")
	b.ReportMetric(float64(dbSize(b, s, path)-before)/float64(n), "bytes/step")
}

// dbSize checkpoints the WAL into the main file and returns its size.
func dbSize(b *testing.B, s *Store, path string) int64 {
	b.Helper()
	if _, err := s.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		b.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

// BenchmarkListSteps reads the ten steps of an execution per iteration, as
// a client following an execution's timeline does.
func BenchmarkListSteps(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ex := coretest.NewExecution("default", "bench")
	if err := s.CreateExecution(ctx, ex); err != nil {
		b.Fatal(err)
	}
	const steps = 10
	for i := 1; i <= steps; i++ {
		st := &core.Step{Tenant: "default", ExecutionID: "bench", Index: i, TaskID: "t1", Output: core.String("a small output")}
		if err := s.CommitExecution(ctx, ex, st); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		got, err := s.ListSteps(ctx, "default", "bench", 0, steps)
		if err != nil || len(got) != steps {
			b.Fatalf("ListSteps = %d steps, %v; want %d", len(got), err, steps)
		}
	}
}

// BenchmarkAdmitSettle admits and settles one metered call per iteration
// on a SQLite file, as the OpenAI routes do around a model call: a key
// with a daily spend budget and requests and tokens per minute, a priced
// model, the tenant without limits; and a key without limits, for which
// only the ledger record is written.
func BenchmarkAdmitSettle(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	m := meter.New(s, s, nil, nil)
	if _, err := m.SetPrice(ctx, "default", meter.Price{Model: "m:1", InputPerMTok: 0.15, OutputPerMTok: 0.6}); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name   string
		limits *access.Limits
	}{
		{"NoLimits", nil},
		{"SpendRequestsTokens", &access.Limits{Spend: []access.Spend{{Window: "day", USD: 1e6}}, RequestsPerMinute: 1e12, TokensPerMinute: 1e15}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			key := &access.Key{ID: "key_bench", Tenant: "default", Limits: bc.limits}
			var admitting time.Duration
			for b.Loop() {
				t0 := time.Now()
				t, err := m.Admit(ctx, meter.Call{Tenant: "default", Key: key, Model: "m:1", TokensIn: 10, MaxOut: 100})
				if err != nil {
					b.Fatal(err)
				}
				admitting += time.Since(t0)
				if _, err := t.Settle(ctx, meter.Usage{TokensIn: 10, TokensOut: 20}); err != nil {
					b.Fatal(err)
				}
			}
			// Admit is on the answer's path; Settle follows the answer.
			b.ReportMetric(float64(admitting.Microseconds())/float64(b.N), "admit-µs/op")
		})
	}
}
