package awsdynamo

import (
	"context"
	"crypto/rand"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/coretest"
)

// rawItem reads an item as DynamoDB holds it; nil if there is none.
func rawItem(t *testing.T, s *Store, pk, sk string) item {
	t.Helper()
	out, err := s.client.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName: aws.String(s.table), Key: item{attrPK: attrS(pk), attrSK: attrS(sk)}, ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatalf("GetItem(%s, %s): %v", pk, sk, err)
	}
	return out.Item
}

func rawBody(t *testing.T, it item) []byte {
	t.Helper()
	b, ok := it[attrBody].(*types.AttributeValueMemberB)
	if !ok {
		t.Fatalf("item %v has no binary body", it)
	}
	return b.Value
}

// incompressible returns n random letters: gzip keeps about 60% of them
// (26 letters carry 4.7 bits each).
func incompressible(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = 'a' + b[i]%26
	}
	return string(b)
}

func TestStore(t *testing.T) {
	em := startEmulator(t)
	ctx := context.Background()

	t.Run("LargeBodiesAreCompressedAndRoundTrip", func(t *testing.T) {
		s := em.store(t)
		big := strings.Repeat("a checkpoint that repeats itself ", 20_000) // 660 KB
		e := coretest.NewExecution("default", "big")
		e.Vars["t1"] = core.String(big)
		if err := s.CreateExecution(ctx, e); err != nil {
			t.Fatalf("CreateExecution: %v", err)
		}
		st := &core.Step{Tenant: "default", ExecutionID: "big", Index: 1, TaskID: "t1", Output: core.String(big)}
		if err := s.CommitExecution(ctx, e, st); err != nil {
			t.Fatalf("CommitExecution: %v", err)
		}
		for _, sk := range []string{skState, stepSK(1)} {
			body := rawBody(t, rawItem(t, s, execPK("default", "big"), sk))
			if body[0] != bodyGzip || len(body) > 50_000 {
				t.Errorf("%s body: encoding %q, %d bytes; want gzip and far below the %d bytes of JSON", sk, body[0], len(body), len(big))
			}
		}
		small := rawBody(t, rawItem(t, s, execPK("default", "big"), skChain))
		if small[0] != bodyPlain {
			t.Errorf("small chain body encoding %q, want plain", small[0])
		}
		got, err := s.GetExecution(ctx, "default", "big")
		if err != nil || got.Vars["t1"] != core.String(big) || len(got.Chain.Tasks) != 1 {
			t.Errorf("GetExecution after compression: %v; the state or chain did not round-trip", err)
		}
		steps, err := s.ListSteps(ctx, "default", "big", 0, 0)
		if err != nil || len(steps) != 1 || steps[0].Output != core.String(big) {
			t.Errorf("ListSteps after compression: %d steps, %v; the output did not round-trip", len(steps), err)
		}
	})

	t.Run("ItemsOverTheLimitAreInvalidAndWriteNothing", func(t *testing.T) {
		s := em.store(t)
		huge := incompressible(1 << 20) // about 600 KB compressed
		e := coretest.NewExecution("default", "huge")
		if err := s.CreateExecution(ctx, e); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name string
			call func() error
		}{
			{"Step", func() error {
				return s.CommitExecution(ctx, e, &core.Step{Tenant: "default", ExecutionID: "huge", Index: 1, Output: core.String(huge)})
			}},
			{"State", func() error {
				next := *e
				next.Vars = map[string]core.Value{"t1": core.String(huge)}
				return s.CommitExecution(ctx, &next, nil)
			}},
			{"NewExecution", func() error {
				n := coretest.NewExecution("default", "huge-too")
				n.Input = core.String(huge)
				return s.CreateExecution(ctx, n)
			}},
			{"Record", func() error {
				r := coretest.NewRecord("chain", "huge", time.Now())
				r.Body = []byte(`"` + huge + `"`)
				return s.CreateRecord(ctx, "default", r)
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := tt.call()
				if core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "400 KB") {
					t.Errorf("error = %v, want invalid naming the 400 KB limit", err)
				}
			})
		}
		got, err := s.GetExecution(ctx, "default", "huge")
		if err != nil || got.Version != 1 || len(got.Vars) != 0 {
			t.Errorf("execution after refused commits: %v; want it unchanged at version 1", err)
		}
		if steps, err := s.ListSteps(ctx, "default", "huge", 0, 0); err != nil || len(steps) != 0 {
			t.Errorf("steps after a refused commit = %d, %v; want none", len(steps), err)
		}
		if _, err := s.GetExecution(ctx, "default", "huge-too"); core.ErrorCode(err) != core.ENOTFOUND {
			t.Errorf("refused execution: %v, want not found", err)
		}
	})

	t.Run("FailedCommitWritesNeitherStateNorStep", func(t *testing.T) {
		s := em.store(t)
		e := coretest.NewExecution("default", "guarded")
		if err := s.CreateExecution(ctx, e); err != nil {
			t.Fatal(err)
		}
		pk := execPK("default", "guarded")
		before := rawItem(t, s, pk, skState)
		tests := []struct {
			name    string
			version int64
			index   int
			want    string
		}{
			{"StaleVersion", 7, 1, core.ECONFLICT},
			{"NoSuchVersionYet", 2, 1, core.ECONFLICT},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				next := *e
				next.Version, next.StepCount, next.Status = tt.version, 5, core.StatusRunning
				err := s.CommitExecution(ctx, &next, &core.Step{Tenant: "default", ExecutionID: "guarded", Index: tt.index})
				if core.ErrorCode(err) != tt.want {
					t.Fatalf("CommitExecution = %v, want %s", err, tt.want)
				}
				if rawItem(t, s, pk, stepSK(tt.index)) != nil {
					t.Error("the step of a refused commit was written")
				}
				if after := rawItem(t, s, pk, skState); !slices.Equal(rawBody(t, after), rawBody(t, before)) || getS(after, attrStatus) != string(core.StatusQueued) {
					t.Error("the state of a refused commit was written")
				}
			})
		}
		t.Run("DuplicateStep", func(t *testing.T) {
			if err := s.CommitExecution(ctx, e, &core.Step{Tenant: "default", ExecutionID: "guarded", Index: 1, TaskID: "first"}); err != nil {
				t.Fatal(err)
			}
			committed := rawItem(t, s, pk, skState)
			dup := *e
			dup.Status = core.StatusFailed
			err := s.CommitExecution(ctx, &dup, &core.Step{Tenant: "default", ExecutionID: "guarded", Index: 1, TaskID: "second"})
			if core.ErrorCode(err) != core.ECONFLICT || !strings.Contains(err.Error(), "already committed") {
				t.Fatalf("CommitExecution = %v, want a conflict naming the step", err)
			}
			if v, _ := getN(rawItem(t, s, pk, skState), attrVersion); v != 2 || getS(rawItem(t, s, pk, skState), attrStatus) != getS(committed, attrStatus) {
				t.Errorf("state after a duplicate step: version %d; want it left at 2", v)
			}
			steps, _ := s.ListSteps(ctx, "default", "guarded", 0, 0)
			if len(steps) != 1 || steps[0].TaskID != "first" {
				t.Errorf("steps = %+v, want the first one kept", steps)
			}
		})
	})

	t.Run("TenantsCannotForgeKeys", func(t *testing.T) {
		s := em.store(t)
		r := coretest.NewRecord("R", "x", time.Now(), "name=x")
		if err := s.CreateRecord(ctx, "a", r); err != nil {
			t.Fatal(err)
		}
		// Unescaped, tenant "a#R#R" kind "x" would share the partition of
		// tenant "a" kind "R", and so find its keys.
		for _, tenant := range []string{"a#R#R", "a%23R%23R"} {
			if _, err := s.FindRecord(ctx, tenant, "R", "name=x"); core.ErrorCode(err) != core.ENOTFOUND {
				t.Errorf("tenant %q finds tenant a's record: %v", tenant, err)
			}
		}
		if _, err := s.FindRecord(ctx, "a", "R", "name=x"); err != nil {
			t.Errorf("tenant a cannot find its record: %v", err)
		}
	})
}

func TestSortTimeOrdersAsTime(t *testing.T) {
	times := []int64{math.MinInt64, -1e18, -1, 0, 1, 1e9, 1e18, math.MaxInt64}
	for i := 1; i < len(times); i++ {
		a, b := sortTime(times[i-1]), sortTime(times[i])
		if len(a) != 20 || len(b) != 20 || a >= b {
			t.Errorf("sortTime(%d) = %s, sortTime(%d) = %s; want 20 digits in time order", times[i-1], a, times[i], b)
		}
	}
}
