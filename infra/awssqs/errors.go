package awssqs

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/stepwise-run/stepwise/core"
)

// codeOf classifies an SQS error code: EUNAVAILABLE for "not now" (the
// request may succeed later unchanged: throttling, mostly; the KMS one
// comes from a queue encrypted with a customer key), ENOTFOUND for a queue
// that does not exist (the query protocol's name and the JSON protocol's),
// EINVALID for a request SQS rejects as malformed, "" for the rest.
func codeOf(code string) string {
	switch code {
	case "RequestThrottled", "ThrottlingException", "Throttling", "KmsThrottled",
		"OverLimit", "ServiceUnavailable", "InternalError", "InternalFailure",
		"RequestTimeout", "RequestTimeoutException", "QueueDeletedRecently",
		"PurgeQueueInProgress":
		return core.EUNAVAILABLE
	case "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist":
		return core.ENOTFOUND
	case "InvalidParameterValue", "InvalidParameterCombination", "MissingParameter",
		"ValidationError", "InvalidMessageContents", "InvalidAttributeName",
		"InvalidAttributeValue", "InvalidAddress", "InvalidIdFormat",
		"InvalidBatchEntryId", "BatchEntryIdsNotDistinct", "BatchRequestTooLong",
		"EmptyBatchRequest", "TooManyEntriesInBatchRequest", "UnsupportedOperation",
		"AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
		"AWS.SimpleQueueService.BatchRequestTooLong",
		"AWS.SimpleQueueService.EmptyBatchRequest",
		"AWS.SimpleQueueService.InvalidBatchEntryId",
		"AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
		"AWS.SimpleQueueService.UnsupportedOperation":
		return core.EINVALID
	}
	return ""
}

// mapError translates an error of the SQS client into a *core.Error whose
// message is the formatted one; queueURL is named when the queue does not
// exist. The table, first match wins:
//
//	context cancelled or deadline exceeded        ETIMEOUT
//	queue does not exist                          EUNAVAILABLE (names the URL)
//	throttling, server fault, retry quota spent,
//	  request not sent (network)                  EUNAVAILABLE
//	request rejected as malformed                 EINVALID
//	anything else (access denied, ...)            EINTERNAL
//
// A missing queue is EUNAVAILABLE, not ENOTFOUND: the caller asked to send
// work, not for the queue, and the fix is in the deployment.
func mapError(err error, queueURL, format string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, args...)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return core.WrapError(core.ETIMEOUT, err, "%s", msg)
	}
	var missing *types.QueueDoesNotExist
	var api smithy.APIError
	hasAPI := errors.As(err, &api)
	if errors.As(err, &missing) || hasAPI && codeOf(api.ErrorCode()) == core.ENOTFOUND {
		return core.WrapError(core.EUNAVAILABLE, err, "%s: queue %s does not exist", msg, queueURL)
	}
	if hasAPI {
		switch code := codeOf(api.ErrorCode()); {
		case code == core.EUNAVAILABLE, api.ErrorFault() == smithy.FaultServer:
			return core.WrapError(core.EUNAVAILABLE, err, "%s", msg)
		case code == core.EINVALID:
			return core.WrapError(core.EINVALID, err, "%s", msg)
		}
		return core.WrapError(core.EINTERNAL, err, "%s", msg)
	}
	var quota ratelimit.QuotaExceededError
	var send *smithyhttp.RequestSendError
	var netErr net.Error
	if errors.As(err, &quota) || errors.As(err, &send) || errors.As(err, &netErr) {
		return core.WrapError(core.EUNAVAILABLE, err, "%s", msg)
	}
	return core.WrapError(core.EINTERNAL, err, "%s", msg)
}
