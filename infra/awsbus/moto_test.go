package awsbus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/infra/awsmoto"
)

// routed is a bus on moto whose rule, matching sources that start with
// "stepwise" as the template's does, delivers to a fresh SQS queue.
type routed struct {
	eb       *eventbridge.Client
	sqs      *sqs.Client
	bus      string
	queueURL string
}

// newRouted starts moto_server for t and creates the bus, queue, rule and
// target.
func newRouted(t *testing.T) routed {
	t.Helper()
	ctx := context.Background()
	cfg := awsmoto.Start(t).Config()
	r := routed{eb: eventbridge.NewFromConfig(cfg), sqs: sqs.NewFromConfig(cfg), bus: "stepwise-" + uuid.NewString()}
	if _, err := r.eb.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(r.bus)}); err != nil {
		t.Fatalf("CreateEventBus: %v", err)
	}
	q, err := r.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("work-" + uuid.NewString())})
	if err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	r.queueURL = aws.ToString(q.QueueUrl)
	attrs, err := r.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatalf("GetQueueAttributes: %v", err)
	}
	if _, err := r.eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String("to-work"), EventBusName: aws.String(r.bus),
		EventPattern: aws.String(`{"source":[{"prefix":"stepwise"}]}`)}); err != nil {
		t.Fatalf("PutRule: %v", err)
	}
	if _, err := r.eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String("to-work"), EventBusName: aws.String(r.bus),
		Targets: []ebtypes.Target{{Id: aws.String("work"), Arn: aws.String(attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)])}}}); err != nil {
		t.Fatalf("PutTargets: %v", err)
	}
	return r
}

// delivered is the part of an EventBridge event, as a rule delivers it to
// SQS, that the tests check.
type delivered struct {
	Source     string          `json:"source"`
	DetailType string          `json:"detail-type"`
	Detail     json.RawMessage `json:"detail"`
}

// receiveAll reads the queue until it answers empty, deleting what it
// reads. moto has delivered by the time PutEvents returns (see the package
// comment); the short long-poll covers EventBridge's asynchronous delivery.
func (r routed) receiveAll(t *testing.T) []delivered {
	t.Helper()
	var got []delivered
	for {
		out, err := r.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(r.queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatalf("ReceiveMessage: %v", err)
		}
		if len(out.Messages) == 0 {
			return got
		}
		for _, m := range out.Messages {
			var d delivered
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &d); err != nil {
				t.Fatalf("message body %q: %v", aws.ToString(m.Body), err)
			}
			got = append(got, d)
			if _, err := r.sqs.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{
				QueueUrl: aws.String(r.queueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatalf("DeleteMessage: %v", err)
			}
		}
	}
}

// events returns n events with distinct detail types and details.
func events(n int) []Event {
	es := make([]Event, n)
	for i := range es {
		es[i] = Event{DetailType: fmt.Sprintf("Test%d", i), Detail: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
	}
	return es
}

func TestPublishReachesQueueThroughRule(t *testing.T) {
	r := newRouted(t)
	ctx := context.Background()
	// An event of another source must not match the rule.
	if err := New(r.eb, r.bus, "other.app").Publish(ctx, events(1)); err != nil {
		t.Fatalf("Publish (other source): %v", err)
	}
	want := events(MaxEntries + 3) // two requests
	if err := New(r.eb, r.bus, "stepwise.test").Publish(ctx, want); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	got := r.receiveAll(t)
	if len(got) != len(want) {
		t.Fatalf("received %d events, want %d: %+v", len(got), len(want), got)
	}
	byType := map[string]delivered{}
	for _, d := range got {
		byType[d.DetailType] = d
	}
	for _, e := range want {
		d, ok := byType[e.DetailType]
		if !ok {
			t.Errorf("event %s did not arrive", e.DetailType)
			continue
		}
		if d.Source != "stepwise.test" || compact(t, d.Detail) != compact(t, e.Detail) {
			t.Errorf("event %s arrived as %+v, want source stepwise.test, detail %s", e.DetailType, d, e.Detail)
		}
	}
}

func TestPublishOnMoto(t *testing.T) {
	r := newRouted(t)
	tests := []struct {
		name     string
		bus      string
		wrap     func(api) api
		events   []Event
		wantCode string
		wantIn   []string
	}{
		{name: "missing bus", bus: "no-such-bus", events: events(1),
			wantCode: core.EUNAVAILABLE, wantIn: []string{"bus no-such-bus does not exist", "event 0 (Test0): NotSent"}},
		{name: "malformed detail reaching EventBridge", bus: r.bus, wrap: func(c api) api { return garble{c, "Test1"} },
			events: events(3), wantCode: core.EINVALID, wantIn: []string{"event 1 (Test1): MalformedDetail"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c api = r.eb
			if tt.wrap != nil {
				c = tt.wrap(c)
			}
			err := newBus(c, tt.bus, "stepwise.test").Publish(context.Background(), tt.events)
			assertError(t, err, tt.wantCode, tt.wantIn...)
		})
	}
	// The two good events of the garbled request were published.
	if got := r.receiveAll(t); len(got) != 2 {
		t.Errorf("received %d events after the partial failure, want 2: %+v", len(got), got)
	}
}

// compact returns raw without insignificant whitespace: EventBridge
// re-encodes the detail it delivers.
func compact(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatalf("detail %s: %v", raw, err)
	}
	return b.String()
}
