package lambdaenv_test

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go/middleware"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/functions/internal/lambdaenv"
	"github.com/stepwise-run/stepwise/infra/awsmoto"
)

// callCounter counts the AWS operations the clients it is installed in
// send, by service and operation ("DynamoDB.TransactWriteItems").
type callCounter struct {
	mu    sync.Mutex
	calls map[string]int
}

// install adds the counter to every client built from the configuration,
// in the Initialize step, so that each operation counts once however many
// times the SDK retries it.
func (c *callCounter) install(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("countCalls",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			c.mu.Lock()
			c.calls[awsmiddleware.GetServiceID(ctx)+"."+awsmiddleware.GetOperationName(ctx)]++
			c.mu.Unlock()
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}

// take returns the counts since the last take and starts again from zero.
func (c *callCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := c.calls
	c.calls = map[string]int{}
	return got
}

// total is the number of calls to service among counts.
func total(counts map[string]int, service string) int {
	n := 0
	for op, k := range counts {
		if strings.HasPrefix(op, service+".") {
			n += k
		}
	}
	return n
}

// format lists counts in a stable order.
func format(counts map[string]int) string {
	ops := make([]string, 0, len(counts))
	for op, k := range counts {
		ops = append(ops, fmt.Sprintf("%s=%d", op, k))
	}
	sort.Strings(ops)
	return strings.Join(ops, " ")
}

// TestCallsPerStep counts the DynamoDB, SQS and EventBridge calls the
// worker makes while a six-step chain runs over several invocations (each
// has time for about three steps), per committed step and per
// continuation, so that the figures in the docs come from a run. Only sane
// bounds are asserted, and that the execution's end is published once.
func TestCallsPerStep(t *testing.T) {
	d := deploy(t, map[string]string{"STEPWISE_SYNC_TIMEOUT": "500ms"})
	d.llm.Script(fakellm.Reply{Match: "step", Text: "done", Latency: stepLatency})
	ctx := context.Background()
	vars := d.lambdaVars(map[string]string{"STEPWISE_DELIVERY_MARGIN": "2s"})
	counter := &callCounter{calls: map[string]int{}}
	env, err := lambdaenv.Load(ctx, func(k string) string { return vars[k] },
		config.WithRegion(awsmoto.Region),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("testing", "testing", "")),
		config.WithAPIOptions([]func(*middleware.Stack) error{counter.install}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Logf("cold start (catalog bootstrap and fleet load): %s", format(counter.take()))
	worker := lambdaenv.Worker(env)

	res := d.call(http.MethodPost, "/executions", map[string]any{"input": "go", "chain": prompts("slow", chainSteps)}, false)
	wantStatus(t, "POST /executions", res, http.StatusAccepted)
	var accepted struct{ ID string }
	res.decode(t, &accepted)

	committed, invocations := 0, 0
	var dynamo, sqsCalls, continuations, published int
	for status := ""; status != "succeeded"; status = d.status(accepted.ID) {
		if invocations == 20 {
			t.Fatalf("execution %s is %s after %d invocations", accepted.ID, status, invocations)
		}
		ev := d.await(ctx, 5, 10)
		if len(ev.Records) == 0 {
			t.Fatalf("execution %s is %s, and no message came in 20 s: a continuation was lost", accepted.ID, status)
		}
		invocations++
		counter.take()
		ictx, cancel := context.WithTimeout(ctx, invocationTime)
		resp, err := worker.HandleSQS(ictx, ev)
		cancel()
		counts := counter.take()
		if err != nil || len(resp.BatchItemFailures) != 0 {
			t.Fatalf("HandleSQS: %v, failures %+v", err, resp.BatchItemFailures)
		}
		d.settle(ctx, ev, resp)

		var steps []struct{ TaskID string }
		res := d.call(http.MethodGet, "/executions/"+accepted.ID+"/steps", nil, false)
		wantStatus(t, "GET steps", res, http.StatusOK)
		res.decode(t, &steps)
		n := len(steps) - committed
		committed = len(steps)
		sent := counts["SQS.SendMessage"] + counts["SQS.SendMessageBatch"]
		continuations += sent
		dynamo += total(counts, "DynamoDB")
		sqsCalls += total(counts, "SQS")
		published += counts["EventBridge.PutEvents"]
		t.Logf("invocation %d: %d step(s) committed, %d continuation(s) sent: %s", invocations, n, sent, format(counts))
		if n == 0 {
			t.Errorf("invocation %d committed no step", invocations)
			continue
		}
		if got := total(counts, "DynamoDB"); got > 3*n+2 {
			t.Errorf("invocation %d: %d DynamoDB calls for %d step(s), want at most 3 per step and 2 per invocation", invocations, got, n)
		}
		if sent > 1 {
			t.Errorf("invocation %d sent %d continuations, want at most one", invocations, sent)
		}
	}
	if committed != chainSteps || invocations < 2 {
		t.Fatalf("%d steps over %d invocations, want %d over several", committed, invocations, chainSteps)
	}
	// The one lifecycle event of this execution, "succeeded", costs one
	// PutEvents (and the UpdateItem that clears it from the checkpoint).
	if published != 1 {
		t.Errorf("%d PutEvents, want 1: the execution's end, published once", published)
	}
	t.Logf("figures: %d steps, %d invocations, %d continuations; DynamoDB %d calls (%.2f per committed step), SQS %d calls (%.2f per continuation), EventBridge %d PutEvents",
		committed, invocations, continuations, dynamo, float64(dynamo)/float64(committed), sqsCalls, float64(sqsCalls)/float64(max(continuations, 1)), published)
}
