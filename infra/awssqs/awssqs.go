// Package awssqs is core.Queue on Amazon SQS: the send side of the work
// queue on AWS. Lambda's SQS event source mapping does the receiving and
// hands the worker each record's body, which core.DecodeQueueMessage
// turns back into a core.QueueMessage.
//
// The queue is a standard queue (at-least-once, unordered): the engine
// copes with duplicates by comparing versions, so FIFO's ordering and
// deduplication would buy nothing and cost throughput; SendMessage on a
// FIFO queue fails with EINVALID for want of a MessageGroupId.
//
// Wire format: the body is the JSON of core.QueueMessage (the ID is set to
// a UUIDv7 when empty, so logs and deduplication have something to hold
// on to), and the message attributes "kind", "tenant" and "execution"
// repeat its routing fields, so that queue tooling, a dead-letter queue's
// console and subscription filters can see them without parsing bodies.
// Empty fields get no attribute, because SQS rejects empty attribute
// values.
//
// Delays: DelaySeconds takes whole seconds up to 900, so a delay is
// rounded up (a message is never delivered before it is due) and capped
// at 15 minutes. A longer delay is delivered after 15 minutes, early:
// harmless, because a continuation that arrives early finds its execution
// as it left it and simply runs, and the only delays the engine asks for
// are retry backoffs, which stay under core.MaxRetryBackoff (30 s).
//
// Errors map to core codes: throttling, server faults, network failures
// and a queue that does not exist (a deployment problem the caller cannot
// fix, named by URL) are EUNAVAILABLE; a request SQS rejects as malformed
// is EINVALID; an ended context is ETIMEOUT; anything else is EINTERNAL.
//
// Tested against moto_server (infra/awsmoto), which agreed with SQS on
// what the tests exercise through it: whole-second DelaySeconds (and the
// rejection of more than 900), the ApproximateReceiveCount attribute,
// redelivery after a visibility timeout of 0, message attributes, and a
// missing queue. Divergences, each kept out of the emulator tests and
// covered with a small fake instead: moto 5.2 answers a SendMessageBatch
// with failed entries with "SenderFault": "true" — a string where SQS's
// JSON protocol has a boolean — which the SDK cannot deserialize, so the
// whole call fails there (EINTERNAL) where SQS reports the entries; and
// moto fails batch entries only for DelaySeconds, where SQS also rejects
// invalid characters and oversized entries one by one.
package awssqs

import (
	"context"
	"encoding/json"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"

	"github.com/stepwise-run/stepwise/core"
)

// MaxDelay is the longest delay SQS can hold a message back (DelaySeconds
// 900); Send caps longer delays to it.
const MaxDelay = 15 * time.Minute

// Message attribute names, for filters and logs.
const (
	AttrKind      = "kind"
	AttrTenant    = "tenant"
	AttrExecution = "execution"
)

// api is the part of the SQS client the queue uses; tests substitute a
// wrapper that fails batch entries the way SQS's servers can.
type api interface {
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

// Queue sends core.QueueMessages to one SQS queue. It is safe for
// concurrent use, as the SQS client is.
type Queue struct {
	client api
	url    string
	// retryWait is the wait before the first resend of failed batch
	// entries; it doubles for each further resend.
	retryWait time.Duration
}

var _ core.Queue = (*Queue)(nil)

// New returns a Queue sending to queueURL through client. It does no I/O:
// a wrong URL shows on the first Send, as EUNAVAILABLE naming it.
func New(client *sqs.Client, queueURL string) *Queue {
	return newQueue(client, queueURL)
}

func newQueue(client api, queueURL string) *Queue {
	return &Queue{client: client, url: queueURL, retryWait: 100 * time.Millisecond}
}

// Send enqueues m, to be delivered no sooner than delay from now (rounded
// up to whole seconds, capped at MaxDelay; see the package comment), and
// sets its ID if it is empty. It fails with EINVALID, sending nothing, if
// m lacks a kind, a tenant, or a continuation's execution.
func (q *Queue) Send(ctx context.Context, m core.QueueMessage, delay time.Duration) error {
	if err := ctx.Err(); err != nil {
		return core.WrapError(core.ETIMEOUT, err, "awssqs: send %s", m.ExecutionID)
	}
	m = withID(m)
	body, err := encode(m)
	if err != nil {
		return err
	}
	_, err = q.client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:          aws.String(q.url),
		MessageBody:       aws.String(body),
		DelaySeconds:      delaySeconds(delay),
		MessageAttributes: attributes(m),
	})
	if err != nil {
		return mapError(err, q.url, "awssqs: send %s (id %s)", m.ExecutionID, m.ID)
	}
	return nil
}

// withID returns m with a fresh UUIDv7 ID if it has none: time-ordered,
// so IDs in logs sort by when they were sent.
func withID(m core.QueueMessage) core.QueueMessage {
	if m.ID == "" {
		m.ID = uuid.Must(uuid.NewV7()).String()
	}
	return m
}

// check reports what a message lacks for a worker to act on it.
func check(m core.QueueMessage) error {
	switch {
	case m.Kind == "":
		return core.Errorf(core.EINVALID, "kind: required")
	case m.Tenant == "":
		return core.Errorf(core.EINVALID, "tenant: required")
	case m.Kind == core.KindContinue && m.ExecutionID == "":
		return core.Errorf(core.EINVALID, "execution_id: required for kind %q", m.Kind)
	}
	return nil
}

// encode checks m and returns its body.
func encode(m core.QueueMessage) (string, error) {
	if err := check(m); err != nil {
		return "", core.WrapError(core.EINVALID, err, "awssqs: message %s", m.ID)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", core.WrapError(core.EINTERNAL, err, "awssqs: encode message %s", m.ID)
	}
	return string(b), nil
}

// attributes returns the message attributes of m, leaving out empty
// fields, which SQS rejects.
func attributes(m core.QueueMessage) map[string]types.MessageAttributeValue {
	attrs := map[string]types.MessageAttributeValue{}
	for name, v := range map[string]string{AttrKind: m.Kind, AttrTenant: m.Tenant, AttrExecution: m.ExecutionID} {
		if v != "" {
			attrs[name] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
		}
	}
	return attrs
}

// delaySeconds converts delay to SQS's DelaySeconds: rounded up to whole
// seconds so that a message is never delivered before it is due, and
// capped at MaxDelay.
func delaySeconds(delay time.Duration) int32 {
	if delay <= 0 {
		return 0
	}
	if delay >= MaxDelay {
		return int32(MaxDelay / time.Second)
	}
	return int32((delay + time.Second - 1) / time.Second)
}
