package awssqs

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/stepwise-run/stepwise/core"
)

// BatchSize is the most entries SQS takes in one SendMessageBatch.
const BatchSize = 10

// batchAttempts is how many times SendBatch offers an entry that SQS
// failed through no fault of the sender before giving up on it. The SDK
// already retries whole requests that fail; these are the entries of a
// request that succeeded, which it does not retry.
const batchAttempts = 4

// Failure is a message of a SendBatch that SQS did not accept.
type Failure struct {
	// Index is the message's position in the slice given to SendBatch.
	Index int
	// ID is the message's ID (the one SendBatch set, if it was empty).
	ID string
	// Code and Message are SQS's reason.
	Code    string
	Message string
	// SenderFault is true when SQS blamed the message itself, so that
	// sending it again would fail again.
	SenderFault bool
}

// BatchError lists the messages of a SendBatch that were not sent. The
// others were: a caller that retries may resend only these. SendBatch
// returns it wrapped in a *core.Error; find it with errors.As.
type BatchError struct {
	Failed []Failure
	// Err is the error of a request that failed as a whole and stopped the
	// batch, or nil when SQS failed single entries only.
	Err error
}

// errorNames bounds how many failures Error spells out, so that a large
// batch against a missing queue does not make a log line of megabytes.
const errorNames = 10

// Error names the failed messages (the first few of them).
func (e *BatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d messages not sent", len(e.Failed))
	if e.Err != nil {
		fmt.Fprintf(&b, " (%v)", e.Err)
	}
	for i, f := range e.Failed {
		if i == errorNames {
			fmt.Fprintf(&b, "; and %d more", len(e.Failed)-errorNames)
			break
		}
		fmt.Fprintf(&b, "; messages[%d] (id %s): %s: %s", f.Index, f.ID, f.Code, f.Message)
	}
	return b.String()
}

// Unwrap returns Err.
func (e *BatchError) Unwrap() error { return e.Err }

// SendBatch enqueues ms, each to be delivered no sooner than delay from
// now, in SendMessageBatch requests of BatchSize, setting the IDs that are
// empty (on copies: ms is not changed). Entries SQS fails through no fault
// of the sender are resent a few times. It fails with EINVALID, sending
// nothing, if a message lacks a field a worker needs. Otherwise, when
// messages remain unsent, the error wraps a *BatchError naming them; its
// code is EINVALID if SQS rejected any of them as malformed, else
// EUNAVAILABLE. A request that fails as a whole (throttled past the SDK's
// retries, a queue that does not exist) stops the batch: its messages and
// the later ones are reported unsent.
func (q *Queue) SendBatch(ctx context.Context, ms []core.QueueMessage, delay time.Duration) error {
	if err := ctx.Err(); err != nil {
		return core.WrapError(core.ETIMEOUT, err, "awssqs: send batch of %d", len(ms))
	}
	entries := make([]types.SendMessageBatchRequestEntry, len(ms))
	ids := make([]string, len(ms))
	for i, m := range ms {
		m = withID(m)
		body, err := encode(m)
		if err != nil {
			return core.WrapError(core.EINVALID, err, "awssqs: send batch: messages[%d]", i)
		}
		ids[i] = m.ID
		entries[i] = types.SendMessageBatchRequestEntry{
			// SQS wants entry IDs unique within a request; the index in
			// ms is, and it maps a result straight back to its message.
			Id:                aws.String(strconv.Itoa(i)),
			MessageBody:       aws.String(body),
			DelaySeconds:      delaySeconds(delay),
			MessageAttributes: attributes(m),
		}
	}
	var failed []Failure
	for start := 0; start < len(entries); start += BatchSize {
		chunk := entries[start:min(start+BatchSize, len(entries))]
		f, err := q.sendChunk(ctx, chunk, ids)
		failed = append(failed, f...)
		if err != nil {
			for i := start + len(chunk); i < len(entries); i++ {
				failed = append(failed, Failure{Index: i, ID: ids[i], Code: notSent, Message: "an earlier request of the batch failed"})
			}
			return core.WrapError(core.ErrorCode(err), &BatchError{Failed: failed, Err: err}, "awssqs: send batch of %d", len(ms))
		}
	}
	if len(failed) == 0 {
		return nil
	}
	code := core.EUNAVAILABLE
	for _, f := range failed {
		if f.SenderFault {
			code = core.EINVALID
		}
	}
	return core.WrapError(code, &BatchError{Failed: failed}, "awssqs: send batch of %d to %s", len(ms), q.url)
}

// notSent is the Failure code of a message whose request failed as a
// whole or was never made.
const notSent = "NotSent"

// sendChunk sends one request's worth of entries, resending those SQS
// failed through no fault of the sender, and returns the ones that still
// failed. ids maps an entry's index to its message ID. An error means a
// request failed as a whole or ctx ended: every entry not yet sent is then
// returned as failed with it.
func (q *Queue) sendChunk(ctx context.Context, chunk []types.SendMessageBatchRequestEntry, ids []string) ([]Failure, error) {
	pending := chunk
	var failed []Failure
	wait := q.retryWait
	for attempt := 1; len(pending) > 0; attempt++ {
		out, err := q.client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(q.url), Entries: pending})
		if err != nil {
			return append(failed, unsent(pending, ids, "the request failed")...), mapError(err, q.url, "SendMessageBatch")
		}
		byID := make(map[string]types.SendMessageBatchRequestEntry, len(pending))
		for _, e := range pending {
			byID[aws.ToString(e.Id)] = e
		}
		var again []types.SendMessageBatchRequestEntry
		for _, r := range out.Failed {
			e, ok := byID[aws.ToString(r.Id)]
			if !ok {
				continue // not an entry of ours: nothing to resend
			}
			if !r.SenderFault && attempt < batchAttempts {
				again = append(again, e)
				continue
			}
			i := entryIndex(r.Id)
			failed = append(failed, Failure{Index: i, ID: ids[i], Code: aws.ToString(r.Code),
				Message: aws.ToString(r.Message), SenderFault: r.SenderFault})
		}
		pending = again
		if len(pending) > 0 {
			if err := sleep(ctx, wait); err != nil {
				return append(failed, unsent(pending, ids, "the context ended before a resend")...),
					core.WrapError(core.ETIMEOUT, err, "resend failed entries")
			}
			wait *= 2
		}
	}
	return failed, nil
}

// unsent returns the failures of entries that were not sent, for reason.
func unsent(entries []types.SendMessageBatchRequestEntry, ids []string, reason string) []Failure {
	fs := make([]Failure, len(entries))
	for k, e := range entries {
		i := entryIndex(e.Id)
		fs[k] = Failure{Index: i, ID: ids[i], Code: notSent, Message: reason}
	}
	return fs
}

// entryIndex recovers the index SendBatch put in an entry's ID.
func entryIndex(id *string) int {
	i, _ := strconv.Atoi(aws.ToString(id))
	return i
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
