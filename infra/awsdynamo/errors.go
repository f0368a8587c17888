package awsdynamo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/stepwise-run/stepwise/core"
)

// Transaction cancellation reason codes.
const (
	reasonCondition = "ConditionalCheckFailed"
	reasonConflict  = "TransactionConflict"
)

const (
	// conflictRetries is how many times a transaction cancelled by a
	// concurrent transaction on its items is tried again.
	conflictRetries = 3
	// conflictPause is the pause before the first retry; it doubles.
	conflictPause = 10 * time.Millisecond
)

// writeGrace bounds how long a write already sent is awaited after its
// caller's context was cancelled.
const writeGrace = 10 * time.Second

// writeContext returns the context to send a write on. Once sent, a write
// is not abandoned when ctx is cancelled: DynamoDB may have applied it
// already, and a caller told "cancelled" would not know whether its
// compare-and-swap moved the version (a lease renewal cut short when the
// step it guards ends is the common case). Its answer is awaited instead,
// until ctx's deadline if it has one and for writeGrace at most. A ctx
// that has ended already sends nothing.
func writeContext(ctx context.Context, what string) (context.Context, context.CancelFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, core.WrapError(core.ETIMEOUT, err, "%s", what)
	}
	deadline := time.Now().Add(writeGrace)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	wctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	return wctx, cancel, nil
}

// isCode reports whether err is the DynamoDB error named code.
func isCode(err error, code string) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == code
}

// fail translates an SDK error into a core error whose message says what
// the store was doing (format and args) on which table.
func (s *Store) fail(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	var ce *core.Error
	if errors.As(err, &ce) {
		return err
	}
	what := fmt.Sprintf(format, args...)
	code, msg := classify(err)
	switch msg {
	case "":
		return core.WrapError(code, err, "%s", what)
	default:
		return core.WrapError(code, err, "%s: DynamoDB table %q %s", what, s.table, msg)
	}
}

// classify returns the core code of an SDK error and, for some, what to
// say about the table.
func classify(err error) (code, msg string) {
	var (
		canceled  *types.TransactionCanceledException
		notFound  *types.ResourceNotFoundException
		condition *types.ConditionalCheckFailedException
		conflict  *types.TransactionConflictException
		throttled *types.ProvisionedThroughputExceededException
		limited   *types.RequestLimitExceeded
		throttle  *types.ThrottlingException
		internal  *types.InternalServerError
		send      *smithyhttp.RequestSendError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return core.ETIMEOUT, ""
	case errors.As(err, &notFound):
		return core.EUNAVAILABLE, "does not exist (or the index is missing)"
	case errors.As(err, &condition), errors.As(err, &conflict):
		return core.ECONFLICT, ""
	case errors.As(err, &canceled):
		return canceledCode(canceled), ""
	case errors.As(err, &throttled), errors.As(err, &limited), errors.As(err, &throttle),
		isCode(err, "ThrottlingException"):
		return core.EUNAVAILABLE, "is over its throughput; try again later"
	case errors.As(err, &internal), errors.As(err, &send):
		// A server error or an unreachable endpoint is an outage that
		// passes, not a fault of the request.
		return core.EUNAVAILABLE, "cannot be reached"
	case isCode(err, "ValidationException"):
		return core.EINVALID, ""
	default:
		return core.EINTERNAL, ""
	}
}

// canceledCode is the core code of a cancelled transaction, from the
// first reason that is not "None".
func canceledCode(e *types.TransactionCanceledException) string {
	for _, r := range e.CancellationReasons {
		switch aws.ToString(r.Code) {
		case "", "None":
			continue
		case reasonCondition, reasonConflict:
			return core.ECONFLICT
		case "ThrottlingError", "ProvisionedThroughputExceeded":
			return core.EUNAVAILABLE
		case "ValidationError", "ItemCollectionSizeLimitExceeded":
			return core.EINVALID
		default:
			return core.EINTERNAL
		}
	}
	return core.EINTERNAL
}

// txOp is one item of a transaction and what its failed condition means.
type txOp struct {
	op types.TransactWriteItem
	// onCondition returns the error of the call when this item's
	// condition fails.
	onCondition func(context.Context) error
}

// transact runs ops as one TransactWriteItems. A cancellation by a failed
// condition returns that item's onCondition error; one by a concurrent
// transaction is retried, up to conflictRetries times.
func (s *Store) transact(ctx context.Context, what string, ops []txOp) error {
	items := make([]types.TransactWriteItem, len(ops))
	for i, o := range ops {
		items[i] = o.op
	}
	pause := conflictPause
	for attempt := 0; ; attempt++ {
		wctx, cancel, err := writeContext(ctx, what)
		if err != nil {
			return err
		}
		_, err = s.client.TransactWriteItems(wctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
		cancel()
		var canceled *types.TransactionCanceledException
		if !errors.As(err, &canceled) {
			return s.fail(err, "%s", what)
		}
		raced := false
		for i, r := range canceled.CancellationReasons {
			switch aws.ToString(r.Code) {
			case reasonCondition:
				if i < len(ops) {
					return ops[i].onCondition(ctx)
				}
			case reasonConflict:
				raced = true
			}
		}
		if !raced || attempt == conflictRetries {
			return s.fail(err, "%s", what)
		}
		select {
		case <-ctx.Done():
			return core.WrapError(core.ETIMEOUT, ctx.Err(), "%s", what)
		case <-time.After(pause):
		}
		pause *= 2
	}
}
