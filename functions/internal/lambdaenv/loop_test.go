package lambdaenv_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/functions/worker"
)

// TestFiftyContinuations runs a long chain one step per delivery, each
// delivery fed from the SQS work queue, so that the execution is handed on
// fifty times. Every hop must find a message (none: a continuation was
// lost) and run exactly one step, and the engine must send one
// continuation per version it hands on: the same message again is SQS's
// at-least-once delivery (or the SDK resending it), which must run
// nothing, but a second message for a version is a duplicated send.
func TestFiftyContinuations(t *testing.T) {
	tests := []struct {
		name string
		// tasks is the chain's length; with one step per delivery the
		// execution needs tasks deliveries and tasks-1 continuations.
		tasks int
	}{
		{"51 noop tasks, one step per delivery", 51},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := deploy(t, nil)
			ctx := context.Background()
			tasks := make([]map[string]any, tt.tasks)
			for i := range tasks {
				tasks[i] = map[string]any{"id": fmt.Sprintf("step%02d", i), "handler": "noop"}
			}
			chain := linear("long", tasks...)

			res := d.call(http.MethodPost, "/executions", map[string]any{"input": "go", "chain": chain}, false)
			wantStatus(t, "POST /executions", res, http.StatusAccepted)
			var accepted struct{ ID string }
			res.decode(t, &accepted)
			if accepted.ID == "" {
				t.Fatalf("202 without an execution id: %s", res.body)
			}

			// The worker as lambdaenv.Worker builds it, with a step budget
			// of one, so that every step is its own delivery.
			w := worker.New(worker.Config{Engine: d.env.Engine, Margin: d.env.Settings.Margin, MaxSteps: 1})
			hops, ran := 0, 0
			// sent is, for every version handed on, the message that did.
			sent := map[int64]string{}
			for {
				// A hop takes well under the five seconds a message is
				// hidden for; one shown again during a hop arrives with the
				// next as the same message again, which runs nothing.
				ev := d.await(ctx, 10, 5)
				if len(ev.Records) == 0 {
					t.Fatalf("hop %d: no message on the queue: a continuation was lost", hops+1)
				}
				for _, r := range ev.Records {
					m, err := core.DecodeQueueMessage([]byte(r.Body))
					if err != nil {
						t.Fatalf("hop %d: %v", hops+1, err)
					}
					if id, ok := sent[m.Version]; ok && id != m.ID {
						t.Fatalf("hop %d: messages %s and %s both continue version %d: the engine sent twice", hops+1, id, m.ID, m.Version)
					}
					sent[m.Version] = m.ID
				}
				if len(ev.Records) > 1 {
					// The step count below proves that the redelivered one
					// ran nothing.
					t.Logf("hop %d: %d messages (one delivered again)", hops+1, len(ev.Records))
				}
				hops++
				ictx, cancel := context.WithTimeout(ctx, 15*time.Second)
				resp, err := w.HandleSQS(ictx, ev)
				cancel()
				if err != nil {
					t.Fatalf("hop %d: HandleSQS: %v", hops, err)
				}
				if len(resp.BatchItemFailures) != 0 {
					t.Fatalf("hop %d: failed items %v", hops, resp.BatchItemFailures)
				}
				d.settle(ctx, ev, resp)
				ex, err := d.env.Store.GetExecution(ctx, core.DefaultTenant, accepted.ID)
				if err != nil {
					t.Fatalf("hop %d: GetExecution: %v", hops, err)
				}
				// A batch of only stale duplicates (SQS delivers at least
				// once) runs nothing; any other runs exactly one step.
				switch {
				case ex.StepCount == ran+1:
					ran++
				case ex.StepCount == ran:
					t.Logf("hop %d: only a duplicate, which ran nothing", hops)
				default:
					t.Fatalf("hop %d: step count %d after %d, want one step per delivery", hops, ex.StepCount, ran)
				}
				if ex.Status.Final() {
					if ex.Status != core.StatusSucceeded {
						t.Fatalf("hop %d: execution %s, want succeeded (error %+v)", hops, ex.Status, ex.Error)
					}
					if want := tt.tasks - 1; ex.Continuations != want {
						t.Errorf("%d continuations, want %d", ex.Continuations, want)
					}
					break
				}
				if hops >= 3*tt.tasks {
					t.Fatalf("execution still %s after %d deliveries", ex.Status, hops)
				}
			}
			if ran != tt.tasks {
				t.Errorf("finished after %d steps, want %d", ran, tt.tasks)
			}
			// Anything left is a duplicate: delivered, it runs nothing.
			if ev := d.receive(ctx, 10); len(ev.Records) != 0 {
				resp, err := w.HandleSQS(ctx, ev)
				if err != nil || len(resp.BatchItemFailures) != 0 {
					t.Errorf("a leftover duplicate failed: %+v, %v", resp, err)
				}
				if ex, _ := d.env.Store.GetExecution(ctx, core.DefaultTenant, accepted.ID); ex.StepCount != tt.tasks {
					t.Errorf("a leftover duplicate ran a step: %d steps", ex.StepCount)
				}
			}

			res = d.call(http.MethodGet, "/executions/"+accepted.ID, nil, false)
			wantStatus(t, "GET execution", res, http.StatusOK)
			var view struct {
				Status    string
				StepCount int
			}
			res.decode(t, &view)
			if view.Status != "succeeded" || view.StepCount != tt.tasks {
				t.Errorf("GET execution: %s with %d steps, want succeeded with %d", view.Status, view.StepCount, tt.tasks)
			}

			var steps []struct{ TaskID string }
			res = d.call(http.MethodGet, "/executions/"+accepted.ID+"/steps", nil, false)
			wantStatus(t, "GET steps", res, http.StatusOK)
			res.decode(t, &steps)
			var got, want []string
			for _, s := range steps {
				got = append(got, s.TaskID)
			}
			for _, task := range tasks {
				want = append(want, task["id"].(string))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("steps %v, want each task once, in order: %v", got, want)
			}
		})
	}
}
