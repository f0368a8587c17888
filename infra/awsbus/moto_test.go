package awsbus

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/coretest"
	"github.com/stepwise-run/stepwise/events"
	"github.com/stepwise-run/stepwise/infra/awsmoto"
)

// routed is a bus on moto whose rule, matching the source the tests'
// events have, delivers to a fresh SQS queue.
type routed struct {
	eb       *eventbridge.Client
	sqs      *sqs.Client
	bus      string
	queueURL string
}

// newRouted starts moto_server for t and creates the bus, queue, rule and
// target on it.
func newRouted(t *testing.T) routed {
	t.Helper()
	return newRoutedOn(t, awsmoto.Start(t).Config())
}

// newRoutedOn creates a bus, queue, rule and target on the emulator cfg
// points at, so that subtests can share one emulator.
func newRoutedOn(t *testing.T, cfg aws.Config) routed {
	t.Helper()
	ctx := context.Background()
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
		EventPattern: aws.String(`{"source":["stepwise.test"]}`)}); err != nil {
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
	Time       time.Time       `json:"time"`
	Detail     events.Envelope `json:"detail"`
}

// receive reads the queue, deleting what it reads, until n events have
// arrived or ctx ends. It polls briefly rather than long-polling: moto
// has delivered by the time PutEvents returns (see the package comment),
// and moto's long poll waits out its whole wait for fewer messages than
// asked for.
func (r routed) receive(ctx context.Context, n int) ([]delivered, error) {
	var got []delivered
	for len(got) < n && ctx.Err() == nil {
		out, err := r.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(r.queueURL), MaxNumberOfMessages: 10,
			// A receive whose answer moto lost under load shows its
			// messages again after this, not the queue's 30 s.
			VisibilityTimeout: 2})
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return got, err
		}
		for _, m := range out.Messages {
			var d delivered
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &d); err != nil {
				return got, fmt.Errorf("message body %q: %w", aws.ToString(m.Body), err)
			}
			got = append(got, d)
			if _, err := r.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{
				QueueUrl: aws.String(r.queueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
				return got, err
			}
		}
		if len(out.Messages) == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return got, nil
}

// receiveAll reads what has arrived, without waiting for a count.
func (r routed) receiveAll(t *testing.T) []delivered {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	got, err := r.receive(ctx, 1<<30)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return got
}

// testEvents returns n valid events with distinct types and data.
func testEvents(n int) []events.Envelope {
	es := make([]events.Envelope, n)
	for i := range es {
		es[i] = events.Envelope{ID: fmt.Sprintf("ev-%d", i), Tenant: "acme", Source: "stepwise.test",
			Type: fmt.Sprintf("Test%d", i), Time: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC),
			Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
	}
	return es
}

// TestPublisherSuite runs the port's conformance suite on moto, reading
// the events where the bus's rule delivers them: an SQS queue.
func TestPublisherSuite(t *testing.T) {
	cfg := awsmoto.Start(t).Config()
	coretest.PublisherSuite(t, func(t *testing.T) coretest.PublisherHarness {
		r := newRoutedOn(t, cfg)
		return coretest.PublisherHarness{Publisher: New(r.eb, r.bus), Receive: func(ctx context.Context, n int) ([]events.Envelope, error) {
			got, err := r.receive(ctx, n)
			evs := make([]events.Envelope, len(got))
			for i, d := range got {
				// The entry's own fields must agree with the envelope.
				if d.Source != d.Detail.Source || d.DetailType != d.Detail.Type {
					return nil, fmt.Errorf("event %s arrived with source %q and detail type %q, want %q and %q",
						d.Detail.ID, d.Source, d.DetailType, d.Detail.Source, d.Detail.Type)
				}
				if !d.Time.Equal(d.Detail.Time.Truncate(time.Second)) {
					return nil, fmt.Errorf("event %s arrived at time %v, want %v", d.Detail.ID, d.Time, d.Detail.Time)
				}
				evs[i] = d.Detail
			}
			return evs, err
		}}
	})
}

func TestPublishOnMoto(t *testing.T) {
	r := newRouted(t)
	tests := []struct {
		name     string
		bus      string
		wrap     func(api) api
		events   []events.Envelope
		wantCode string
		wantIn   []string
	}{
		{name: "missing bus", bus: "no-such-bus", events: testEvents(1),
			wantCode: core.EUNAVAILABLE, wantIn: []string{"bus no-such-bus does not exist", "event 0 (Test0): NotSent"}},
		{name: "malformed detail reaching EventBridge", bus: r.bus, wrap: func(c api) api { return garble{c, "Test1"} },
			events: testEvents(3), wantCode: core.EINVALID, wantIn: []string{"event 1 (Test1): MalformedDetail"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c api = r.eb
			if tt.wrap != nil {
				c = tt.wrap(c)
			}
			err := newBus(c, tt.bus).Publish(context.Background(), tt.events)
			assertError(t, err, tt.wantCode, tt.wantIn...)
		})
	}
	// The two good events of the garbled request were published.
	if got := r.receiveAll(t); len(got) != 2 {
		t.Errorf("received %d events after the partial failure, want 2: %+v", len(got), got)
	}
}
