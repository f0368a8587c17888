package awssqs

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/infra/awsmoto"
)

// newClient starts moto_server for t and returns an SQS client on it.
func newClient(t *testing.T) *sqs.Client {
	t.Helper()
	return sqs.NewFromConfig(awsmoto.Start(t).Config())
}

// newQueueURL creates a fresh, empty queue for one test and returns its
// URL.
func newQueueURL(t *testing.T, client *sqs.Client) string {
	t.Helper()
	out, err := client.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String("t-" + uuid.NewString())})
	if err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	return aws.ToString(out.QueueUrl)
}

// received is one message as a consumer sees it.
type received struct {
	delivery   core.Delivery
	attributes map[string]string
}

// hideSeconds is how long the receiver hides what it receives, rather
// than the queue's 30 s: under load moto_server now and then closes the
// connection under a ReceiveMessage answer, the SDK's retry finds the
// queue empty, and the message the lost answer carried shows again only
// after its visibility timeout (as it would to Lambda's poller), which
// must come well within the tests' wait for it.
const hideSeconds = 5

// receiver plays Lambda's event source mapping for the tests: one
// message per long poll, deleted on success, made visible again at once
// on failure so that it is redelivered with a higher receive count.
type receiver struct {
	t      *testing.T
	client *sqs.Client
	url    string
}

// receive waits for the next message or until ctx ends.
func (r receiver) receive(ctx context.Context) (received, func(error), error) {
	for {
		if err := ctx.Err(); err != nil {
			return received{}, nil, err
		}
		out, err := r.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(r.url),
			MaxNumberOfMessages:         1,
			VisibilityTimeout:           hideSeconds,
			WaitTimeSeconds:             2,
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
			MessageAttributeNames:       []string{"All"},
		})
		if err != nil {
			return received{}, nil, err
		}
		if len(out.Messages) == 0 {
			continue
		}
		msg := out.Messages[0]
		m, err := core.DecodeQueueMessage([]byte(aws.ToString(msg.Body)))
		if err != nil {
			return received{}, nil, err
		}
		attempts, err := strconv.Atoi(msg.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
		if err != nil {
			return received{}, nil, errors.New("message without a valid ApproximateReceiveCount")
		}
		attrs := map[string]string{}
		for name, v := range msg.MessageAttributes {
			attrs[name] = aws.ToString(v.StringValue)
		}
		settle := func(failure error) {
			var err error
			if failure == nil {
				_, err = r.client.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(r.url), ReceiptHandle: msg.ReceiptHandle})
			} else {
				_, err = r.client.ChangeMessageVisibility(context.Background(), &sqs.ChangeMessageVisibilityInput{
					QueueUrl: aws.String(r.url), ReceiptHandle: msg.ReceiptHandle, VisibilityTimeout: 0})
			}
			if err != nil {
				r.t.Errorf("settle message %s: %v", m.ID, err)
			}
		}
		return received{delivery: core.Delivery{Message: m, Attempts: attempts}, attributes: attrs}, settle, nil
	}
}

// mustReceive receives and acknowledges the next message, failing t if
// none comes within a generous bound (a safety net, not a timing check).
func (r receiver) mustReceive() received {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), receiveWait)
	defer cancel()
	got, settle, err := r.receive(ctx)
	if err != nil {
		r.t.Fatalf("receive: %v", err)
	}
	settle(nil)
	return got
}
