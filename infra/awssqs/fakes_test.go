package awssqs

import (
	"context"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// tamper passes SendMessage requests on to SQS with DelaySeconds set to
// delay, so that SQS itself rejects them.
type tamper struct {
	sqs   api
	delay int32
}

func (f tamper) SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	in.DelaySeconds = f.delay
	return f.sqs.SendMessage(ctx, in, optFns...)
}

func (f tamper) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	return f.sqs.SendMessageBatch(ctx, in, optFns...)
}

// flaky fails batch entries as SQS can: the entry with Id k fails its
// first fails[k] offers, and is passed on to SQS after that. The failure
// is SQS's own (InternalError, SenderFault false) unless rejects[k], then
// the entry's fault (InvalidParameterValue, SenderFault true). It stands
// in for SQS's per-entry failures because moto's cannot be read (see the
// package comment).
type flaky struct {
	sqs     api
	fails   map[string]int
	rejects map[string]bool

	mu     sync.Mutex
	offers map[string]int
}

func (f *flaky) SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	return f.sqs.SendMessage(ctx, in, optFns...)
}

func (f *flaky) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	f.mu.Lock()
	var pass []types.SendMessageBatchRequestEntry
	var failed []types.BatchResultErrorEntry
	for _, e := range in.Entries {
		id := aws.ToString(e.Id)
		f.offers[id]++
		if f.offers[id] <= f.fails[id] {
			r := types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError"), Message: aws.String("try again")}
			if f.rejects[id] {
				r = types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InvalidParameterValue"),
					Message: aws.String("invalid entry"), SenderFault: true}
			}
			failed = append(failed, r)
			continue
		}
		pass = append(pass, e)
	}
	f.mu.Unlock()
	out := &sqs.SendMessageBatchOutput{}
	if len(pass) > 0 {
		in.Entries = pass
		var err error
		if out, err = f.sqs.SendMessageBatch(ctx, in, optFns...); err != nil {
			return nil, err
		}
	}
	out.Failed = append(out.Failed, failed...)
	return out, nil
}
