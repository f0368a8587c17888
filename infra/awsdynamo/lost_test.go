package awsdynamo

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/coretest"
)

// lostAnswerClient sends every request on, but loses the answer to the
// first one for the operation target (an X-Amz-Target such as
// "DynamoDB_20120810.UpdateItem"): the request is applied, and the SDK
// sees the error a connection closed under its response gives, which it
// retries. This is how moto_server fails under load, and what a network
// does to DynamoDB now and then.
type lostAnswerClient struct {
	next   aws.HTTPClient
	target string
	lost   atomic.Int32
	// onLost, if set, runs when the answer is lost (to cancel the
	// caller's context, say).
	onLost func()
}

func (c *lostAnswerClient) Do(req *http.Request) (*http.Response, error) {
	resp, err := c.next.Do(req)
	if err != nil || req.Header.Get("X-Amz-Target") != c.target || !c.lost.CompareAndSwap(0, 1) {
		return resp, err
	}
	_ = resp.Body.Close()
	if c.onLost != nil {
		c.onLost()
	}
	return nil, errors.New("read tcp 127.0.0.1:1->127.0.0.1:2: use of closed network connection")
}

// TestLostAnswerToAnAppliedWrite checks that a create or commit whose
// response is lost after DynamoDB applied it succeeds once the SDK's retry
// finds the item at the version with the write's own token, rather than
// reporting the conflict with itself (after which a worker would drop a
// delivery that had committed, and the execution would stall until the
// sweeper) — also when the caller's context ends meanwhile, as a worker's
// does at its deadline. Another writer's commit from the version before is
// still a conflict.
func TestLostAnswerToAnAppliedWrite(t *testing.T) {
	em := startEmulator(t)
	commitRunning := func(ctx context.Context, s *Store, e *core.Execution) error {
		e.Status = core.StatusRunning
		return s.CommitExecution(ctx, e, nil)
	}
	tests := []struct {
		name   string
		target string
		// write is the write whose answer is lost, on the execution made
		// before unless version is 1 (write creates it).
		write func(ctx context.Context, s *Store, e *core.Execution) error
		// version is the execution's version after write.
		version int64
		// cancel ends the caller's context when the answer is lost.
		cancel bool
	}{
		{
			name:    "create",
			target:  "DynamoDB_20120810.TransactWriteItems",
			write:   func(ctx context.Context, s *Store, e *core.Execution) error { return s.CreateExecution(ctx, e) },
			version: 1,
		},
		{
			name:    "commit without a step (UpdateItem)",
			target:  "DynamoDB_20120810.UpdateItem",
			write:   commitRunning,
			version: 2,
		},
		{
			name:   "commit with a step (TransactWriteItems)",
			target: "DynamoDB_20120810.TransactWriteItems",
			write: func(ctx context.Context, s *Store, e *core.Execution) error {
				e.StepCount = 1
				return s.CommitExecution(ctx, e, &core.Step{Tenant: e.Tenant, ExecutionID: e.ID, Index: 1, TaskID: "t1", Output: core.String("one")})
			},
			version: 2,
		},
		{
			name:    "commit whose caller gives up meanwhile",
			target:  "DynamoDB_20120810.UpdateItem",
			write:   commitRunning,
			version: 2,
			cancel:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			plain := em.store(t)
			e := coretest.NewExecution("default", "lost")
			if tt.version > 1 {
				if err := plain.CreateExecution(ctx, e); err != nil {
					t.Fatalf("CreateExecution: %v", err)
				}
			}
			before := *e
			cfg := em.cfg.Copy()
			lossy := &lostAnswerClient{next: em.client.Options().HTTPClient, target: tt.target}
			cfg.HTTPClient = lossy
			s := New(dynamodb.NewFromConfig(cfg), plain.table)
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if tt.cancel {
				lossy.onLost = cancel
			}

			if err := tt.write(wctx, s, e); err != nil {
				t.Fatalf("the write whose answer was lost: %v, want success", err)
			}
			if lossy.lost.Load() != 1 {
				t.Fatalf("no %s answer was lost: the test did not test", tt.target)
			}
			if e.Version != tt.version {
				t.Errorf("Version = %d after the write, want %d", e.Version, tt.version)
			}
			got, err := plain.GetExecution(ctx, "default", "lost")
			if err != nil || got.Version != tt.version || got.Status != e.Status || got.StepCount != e.StepCount {
				t.Fatalf("stored %+v, %v; want version %d, %s, %d steps", got, err, tt.version, e.Status, e.StepCount)
			}

			// Another writer that held the version before: the item is at
			// the version its commit would make, but not with its token.
			if tt.version > 1 {
				if err := plain.CommitExecution(ctx, &before, nil); core.ErrorCode(err) != core.ECONFLICT {
					t.Errorf("another writer's commit from version %d = %v, want %s", before.Version, err, core.ECONFLICT)
				}
			}
			// The next commit goes on from there.
			if err := plain.CommitExecution(ctx, got, nil); err != nil {
				t.Fatalf("commit after the lost answer: %v", err)
			}
		})
	}
}

// TestLostAnswerToAnAppliedRecordWrite is TestLostAnswerToAnAppliedWrite
// for catalog records: a create or update whose answer is lost succeeds.
// (A delete leaves nothing to recognise; see the package doc.)
func TestLostAnswerToAnAppliedRecordWrite(t *testing.T) {
	em := startEmulator(t)
	ctx := context.Background()
	now := time.Now().UTC()
	newRecord := func() *core.Record {
		return &core.Record{Kind: "backend", ID: "b1", Keys: []string{"name=one"}, Body: json.RawMessage(`{"name":"one"}`), CreatedAt: now, UpdatedAt: now}
	}
	tests := []struct {
		name string
		// write is the write whose answer is lost, on the record created
		// first unless create is false.
		write  func(s *Store, r *core.Record) error
		create bool
		// version is the record's version after write.
		version int64
		keys    []string
	}{
		{"create", func(s *Store, r *core.Record) error { return s.CreateRecord(ctx, "default", r) }, false, 1, []string{"name=one"}},
		{"update that moves a key", func(s *Store, r *core.Record) error {
			r.Keys, r.Body = []string{"name=two"}, json.RawMessage(`{"name":"two"}`)
			return s.UpdateRecord(ctx, "default", r)
		}, true, 2, []string{"name=two"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain := em.store(t)
			r := newRecord()
			if tt.create {
				if err := plain.CreateRecord(ctx, "default", r); err != nil {
					t.Fatalf("CreateRecord: %v", err)
				}
			}
			cfg := em.cfg.Copy()
			lossy := &lostAnswerClient{next: em.client.Options().HTTPClient, target: "DynamoDB_20120810.TransactWriteItems"}
			cfg.HTTPClient = lossy
			s := New(dynamodb.NewFromConfig(cfg), plain.table)

			if err := tt.write(s, r); err != nil {
				t.Fatalf("the write whose answer was lost: %v, want success", err)
			}
			if lossy.lost.Load() != 1 {
				t.Fatal("no answer was lost: the test did not test")
			}
			got, err := plain.GetRecord(ctx, "default", "backend", "b1")
			if err != nil || got.Version != tt.version || r.Version != tt.version {
				t.Fatalf("stored %+v, %v (caller's version %d); want version %d", got, err, r.Version, tt.version)
			}
			for _, k := range tt.keys {
				if found, err := plain.FindRecord(ctx, "default", "backend", k); err != nil || found.ID != "b1" {
					t.Errorf("FindRecord(%s) = %+v, %v; want b1", k, found, err)
				}
			}
		})
	}
}
