package lambdaenv_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/stepwise-run/stepwise/functions/internal/lambdaenv"
	"github.com/stepwise-run/stepwise/infra/awsmoto"
)

// allEvents is the template's rule: every event on stepwise's bus goes
// to the work queue.
const allEvents = `{"source":[{"prefix":""}]}`

// routeBusToQueue puts the template's rule on the deployment's bus.
func routeBusToQueue(t *testing.T, d *deployment) {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(awsmoto.Region), config.WithBaseEndpoint(d.vars["AWS_ENDPOINT_URL"]),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("testing", "testing", "")))
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := sqs.NewFromConfig(cfg).GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(d.queue),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	eb := eventbridge.NewFromConfig(cfg)
	bus := d.vars["STEPWISE_EVENT_BUS"]
	if _, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String("events-to-work"), EventBusName: aws.String(bus), EventPattern: aws.String(allEvents)}); err != nil {
		t.Fatalf("PutRule: %v", err)
	}
	if _, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String("events-to-work"), EventBusName: aws.String(bus),
		Targets: []ebtypes.Target{{Id: aws.String("work"), Arn: aws.String(attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)])}}}); err != nil {
		t.Fatalf("PutTargets: %v", err)
	}
}

// TestEventFlowOnTheEmulator is the reference's flow on AWS's shape: the
// ingest function stores a signed webhook and publishes its event on
// EventBridge; the rule sends it to the work queue; worker invocations
// run the function on push, whose sendEvent goes round the bus again to a
// second function, which starts a chain, which the worker runs to its
// end; its lifecycle event comes back as an event too.
func TestEventFlowOnTheEmulator(t *testing.T) {
	d := deploy(t, nil)
	routeBusToQueue(t, d)
	for _, c := range []struct {
		path string
		body any
	}{
		{"/mappings", map[string]any{"path": "github", "eventType": "github", "eventTypeField": "$headers.X-GitHub-Event", "eventSource": "github",
			"aggregateType": "repository", "aggregateIDField": "repository.full_name", "version": 1, "signature": map[string]any{"scheme": "github", "secret": "s3cret"}}},
		{"/taskchains", map[string]any{"id": "summarize", "tasks": []any{map[string]any{"id": "say", "handler": "noop", "prompt_template": "summary of {{.input.repo}}",
			"transition": map[string]any{"branches": []any{map[string]any{"operator": "default", "goto": "end"}}}}}}},
		{"/functions", map[string]any{"name": "onPush", "script": `function onPush(e) { return sendEvent("push.seen", {repo: e.aggregateID}) }`}},
		{"/functions", map[string]any{"name": "onSeen", "script": `function onSeen(e) { return callTaskChain("summarize", {repo: e.data.repo}) }`}},
		{"/event-triggers", map[string]any{"name": "push", "listenFor": map[string]any{"type": "push"}, "function": "onPush"}},
		{"/event-triggers", map[string]any{"name": "seen", "listenFor": map[string]any{"type": "push.seen"}, "function": "onSeen"}},
	} {
		wantStatus(t, "POST "+c.path, d.call(http.MethodPost, c.path, c.body, false), http.StatusCreated)
	}

	body := `{"repository": {"full_name": "acme/api"}}`
	mac := hmac.New(sha256.New, []byte("s3cret"))
	mac.Write([]byte(body))
	ev := apigwEvent(t, http.MethodPost, "/ingest/github", []byte(body), false)
	ev.Headers["x-github-event"], ev.Headers["x-github-delivery"], ev.Headers["x-hub-signature-256"] = "push", "d-1", "sha256="+hex.EncodeToString(mac.Sum(nil))
	ingest := httpadapter.NewV2(lambdaenv.Ingest(d.env)).ProxyWithContext
	start := time.Now()
	out, err := ingest(context.Background(), ev)
	if err != nil || out.StatusCode != http.StatusCreated {
		t.Fatalf("ingest = %d %s, %v", out.StatusCode, out.Body, err)
	}
	answered := time.Since(start)

	worker := lambdaenv.Worker(d.env)
	ctx := context.Background()
	var runs []struct {
		Function, Error, ExecutionID string
		Result                       map[string]any
	}
	var execStatus string
	for i := 0; i < 20; i++ {
		batch := d.await(ctx, 1, 10)
		if len(batch.Records) == 0 {
			t.Fatalf("no message came; runs so far %+v", runs)
		}
		ictx, cancel := context.WithTimeout(ctx, 20*time.Second)
		resp, err := worker.HandleSQS(ictx, batch)
		cancel()
		if err != nil {
			t.Fatalf("HandleSQS: %v", err)
		}
		d.settle(ctx, batch, resp)
		d.call(http.MethodGet, "/function-runs", nil, false).decode(t, &runs)
		if len(runs) == 2 {
			for _, r := range runs {
				if r.Function == "onSeen" {
					id, _ := r.Result["execution_id"].(string)
					execStatus = d.status(id)
				}
			}
			if execStatus == "succeeded" {
				break
			}
		}
	}
	t.Logf("ingest answered in %v; the chain finished %v after the delivery", answered, time.Since(start))
	fns := []string{}
	for _, r := range runs {
		fns = append(fns, r.Function)
		if r.Error != "" {
			t.Errorf("%s failed: %s", r.Function, r.Error)
		}
	}
	slices.Sort(fns)
	if strings.Join(fns, ",") != "onPush,onSeen" || execStatus != "succeeded" {
		t.Fatalf("runs %v, the chain %q; want onPush and onSeen, and the chain succeeded", fns, execStatus)
	}
	// The chain's end is an event in the table as well: it came round the
	// bus and the queue.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var evs []struct{ ID string }
		d.call(http.MethodGet, "/events/type?event_type=execution.succeeded", nil, false).decode(t, &evs)
		if len(evs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("execution.succeeded events %v", evs)
		}
		batch := d.await(ctx, 1, 10)
		resp, err := worker.HandleSQS(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		d.settle(ctx, batch, resp)
	}
}
