package lambdaenv_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/functions/internal/lambdaenv"
)

// invocationTime is the worker's timeout in these tests: with the 2 s
// delivery margin, an invocation starts steps during its first second
// only, and each model call takes stepLatency, so it runs at most three
// steps, and a chain of six cannot finish in one invocation.
const (
	invocationTime = 3 * time.Second
	stepLatency    = 400 * time.Millisecond
	chainSteps     = 6
)

// TestWorkerContinuesFromSQS is the end to end on the emulator: the
// API function answers 202 with an execution id, and worker invocations fed
// from the SQS work queue carry the execution on, invocation after
// invocation, until it succeeds with every step committed once.
func TestWorkerContinuesFromSQS(t *testing.T) {
	tests := []struct {
		name string
		path string
		// cut is how many model calls the sync deadline may have cut off:
		// their step was not committed, and a worker ran it again.
		cut int
	}{
		{"POST /executions", "/executions", 0},
		{"POST /tasks past the sync timeout", "/tasks", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := deploy(t, map[string]string{"STEPWISE_SYNC_TIMEOUT": "500ms", "STEPWISE_DELIVERY_MARGIN": "2s"})
			d.llm.Script(fakellm.Reply{Match: "step", Text: "done", Latency: stepLatency})
			chain := prompts("slow", chainSteps)
			// $1 per million tokens each way: a step costs its tokens in
			// micros.
			wantStatus(t, "PUT /prices", d.call(http.MethodPut, "/prices/"+taskModel, map[string]any{"inputPerMTok": 1, "outputPerMTok": 1}, false), http.StatusOK)

			res := d.call(http.MethodPost, tt.path, map[string]any{"input": "go", "chain": chain}, false)
			wantStatus(t, "POST "+tt.path, res, http.StatusAccepted)
			var accepted struct{ ID string }
			res.decode(t, &accepted)
			if accepted.ID == "" {
				t.Fatalf("202 without an execution id: %s", res.body)
			}

			worker := lambdaenv.Worker(d.env)
			invocations := 0
			ctx := context.Background()
			for status := ""; status != "succeeded"; status = d.status(accepted.ID) {
				if invocations == 20 {
					t.Fatalf("execution %s is %s after %d invocations", accepted.ID, status, invocations)
				}
				ev := d.await(ctx, 5, 10)
				if len(ev.Records) == 0 {
					t.Fatalf("execution %s is %s, and no message came in 20 s: a continuation was lost", accepted.ID, status)
				}
				invocations++
				ictx, cancel := context.WithTimeout(ctx, invocationTime)
				resp, err := worker.HandleSQS(ictx, ev)
				cancel()
				if err != nil {
					t.Fatalf("HandleSQS: %v", err)
				}
				d.settle(ctx, ev, resp)
			}
			if invocations < 2 {
				t.Errorf("the chain finished in %d invocation(s); it was meant to need several", invocations)
			}

			var steps []struct {
				TaskID string
				Output any
			}
			res = d.call(http.MethodGet, "/executions/"+accepted.ID+"/steps", nil, false)
			wantStatus(t, "GET steps", res, http.StatusOK)
			res.decode(t, &steps)
			var got []string
			for _, s := range steps {
				got = append(got, s.TaskID)
			}
			var want []string
			for _, task := range chain["tasks"].([]any) {
				want = append(want, task.(map[string]any)["id"].(string))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("steps %v, want each task once: %v", got, want)
			}
			calls := 0
			for _, r := range d.llm.Requests() {
				if strings.Contains(asked(r), "step go") {
					calls++
				}
			}
			if calls < chainSteps || calls > chainSteps+tt.cut {
				t.Errorf("%d model calls, want one per step (%d) and at most %d cut off", calls, chainSteps, tt.cut)
			}
			// The ledger in the table counts each step once, whichever
			// invocation ran it, and a call cut off not at all.
			var ex struct{ TokensIn, TokensOut int }
			d.call(http.MethodGet, "/executions/"+accepted.ID, nil, false).decode(t, &ex)
			var usage struct {
				Total struct{ Requests, Steps, TokensIn, TokensOut, CostMicros int }
			}
			res = d.call(http.MethodGet, "/usage", nil, false)
			wantStatus(t, "GET /usage", res, http.StatusOK)
			res.decode(t, &usage)
			if u := usage.Total; u.Requests != 1 || u.Steps != chainSteps || u.TokensIn != ex.TokensIn || u.TokensOut != ex.TokensOut ||
				ex.TokensOut == 0 || u.CostMicros != ex.TokensIn+ex.TokensOut {
				t.Errorf("usage %+v; the execution used %+v", u, ex)
			}
		})
	}
}

// status is the execution's status, as GET /executions/{id} shows it.
func (d *deployment) status(id string) string {
	d.t.Helper()
	res := d.call(http.MethodGet, "/executions/"+id, nil, false)
	wantStatus(d.t, "GET /executions/"+id, res, http.StatusOK)
	var ex struct{ Status string }
	res.decode(d.t, &ex)
	return ex.Status
}

// TestDeadWorkerIsRecovered: a worker invocation that died mid-delivery
// leaves its lease on the execution and its message invisible. The next
// scheduled sweep sends the execution a message delayed to the lease's
// end, and a worker then carries it to its end: the bound on AWS is the
// lease's TTL (plus the sweep's minute when the lease is shorter).
func TestDeadWorkerIsRecovered(t *testing.T) {
	d := deploy(t, nil)
	d.llm.Script(fakellm.Reply{Match: "step", Text: "done"})
	res := d.call(http.MethodPost, "/executions", map[string]any{"input": "go", "chain": prompts("recover", 3)}, false)
	wantStatus(t, "POST /executions", res, http.StatusAccepted)
	var accepted struct{ ID string }
	res.decode(t, &accepted)
	ctx := context.Background()
	// The crash: the message is gone from sight, the lease stays, held by
	// an invocation that will never commit again.
	d.settle(ctx, d.await(ctx, 10, 10), awsevents.SQSEventResponse{})
	ex, err := d.env.Store.GetExecution(ctx, core.DefaultTenant, accepted.ID)
	if err != nil {
		t.Fatal(err)
	}
	ex.Status = core.StatusRunning
	ex.Lease = core.Lease{Owner: "dead-invocation", Until: time.Now().Add(2 * time.Second)}
	if err := d.env.Store.CommitExecution(ctx, ex, nil); err != nil {
		t.Fatal(err)
	}

	worker := lambdaenv.Worker(d.env)
	swept := time.Now()
	if _, err := worker.HandleEvent(ctx, json.RawMessage(`{"detail-type":"Scheduled Event","source":"aws.events","detail":{}}`)); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	for status := d.status(accepted.ID); status != "succeeded"; status = d.status(accepted.ID) {
		if time.Since(swept) > 30*time.Second {
			t.Fatalf("execution %s is %s 30 s after the sweep", accepted.ID, status)
		}
		batch := d.await(ctx, 1, 10)
		ictx, cancel := context.WithTimeout(ctx, invocationTime)
		resp, err := worker.HandleSQS(ictx, batch)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		d.settle(ctx, batch, resp)
	}
	t.Logf("the dead worker's execution finished %v after the sweep (its lease had 2 s left)", time.Since(swept).Round(10*time.Millisecond))
}
