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
}

func (c *lostAnswerClient) Do(req *http.Request) (*http.Response, error) {
	resp, err := c.next.Do(req)
	if err != nil || req.Header.Get("X-Amz-Target") != c.target || !c.lost.CompareAndSwap(0, 1) {
		return resp, err
	}
	_ = resp.Body.Close()
	return nil, errors.New("read tcp 127.0.0.1:1->127.0.0.1:2: use of closed network connection")
}

// TestLostAnswerToAnAppliedWrite checks that a create or commit whose
// response is lost after DynamoDB applied it succeeds once the SDK's retry
// finds the item at the version with the write's own token, rather than
// reporting the conflict with itself (after which a worker would drop a
// delivery that had committed, and the execution would stall until the
// sweeper). A write that finds another's commit is still a conflict.
func TestLostAnswerToAnAppliedWrite(t *testing.T) {
	em := startEmulator(t)
	ctx := context.Background()
	tests := []struct {
		name   string
		target string
		// write is the write whose answer is lost, on the execution made
		// by create (nil: write creates it).
		write func(s *Store, e *core.Execution) error
		// version is the execution's version after write.
		version int64
	}{
		{
			name:    "create",
			target:  "DynamoDB_20120810.TransactWriteItems",
			write:   func(s *Store, e *core.Execution) error { return s.CreateExecution(ctx, e) },
			version: 1,
		},
		{
			name:   "commit without a step (UpdateItem)",
			target: "DynamoDB_20120810.UpdateItem",
			write: func(s *Store, e *core.Execution) error {
				e.Status = core.StatusRunning
				return s.CommitExecution(ctx, e, nil)
			},
			version: 2,
		},
		{
			name:   "commit with a step (TransactWriteItems)",
			target: "DynamoDB_20120810.TransactWriteItems",
			write: func(s *Store, e *core.Execution) error {
				e.StepCount = 1
				return s.CommitExecution(ctx, e, &core.Step{Tenant: e.Tenant, ExecutionID: e.ID, Index: 1, TaskID: "t1", Output: core.String("one")})
			},
			version: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain := em.store(t)
			e := coretest.NewExecution("default", "lost")
			if tt.version > 1 {
				if err := plain.CreateExecution(ctx, e); err != nil {
					t.Fatalf("CreateExecution: %v", err)
				}
			}
			cfg := em.cfg.Copy()
			lossy := &lostAnswerClient{next: em.client.Options().HTTPClient, target: tt.target}
			cfg.HTTPClient = lossy
			s := New(dynamodb.NewFromConfig(cfg), plain.table)

			if err := tt.write(s, e); err != nil {
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

			// The next commit goes on from there, and a stale one (another
			// worker's, at the version before) is still a conflict.
			stale := *got
			stale.Version--
			if err := plain.CommitExecution(ctx, got, nil); err != nil {
				t.Fatalf("commit after the lost answer: %v", err)
			}
			if err := plain.CommitExecution(ctx, &stale, nil); core.ErrorCode(err) != core.ECONFLICT {
				t.Errorf("a stale commit = %v, want %s", err, core.ECONFLICT)
			}
		})
	}
}

// TestLostAnswerToAnAppliedRecordWrite is TestLostAnswerToAnAppliedWrite
// for catalog records: a create or update whose answer is lost succeeds,
// and so does a delete, whose retry finds the record gone.
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
		// version is the record's version after write; 0: it is gone.
		version int64
		keys    []string
	}{
		{"create", func(s *Store, r *core.Record) error { return s.CreateRecord(ctx, "default", r) }, false, 1, []string{"name=one"}},
		{"update that moves a key", func(s *Store, r *core.Record) error {
			r.Keys, r.Body = []string{"name=two"}, json.RawMessage(`{"name":"two"}`)
			return s.UpdateRecord(ctx, "default", r)
		}, true, 2, []string{"name=two"}},
		{"delete", func(s *Store, r *core.Record) error { return s.DeleteRecord(ctx, "default", r.Kind, r.ID) }, true, 0, nil},
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
			if tt.version == 0 {
				if core.ErrorCode(err) != core.ENOTFOUND {
					t.Fatalf("GetRecord after the delete: %+v, %v; want %s", got, err, core.ENOTFOUND)
				}
				return
			}
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
