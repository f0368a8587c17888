package awssqs

import (
	"fmt"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/infra/internal/awserr"
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
// message is the formatted one, as awserr.Map does; queueURL is named when
// the queue does not exist.
func mapError(err error, queueURL, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return awserr.Map(err, codeOf, "queue "+queueURL, fmt.Sprintf(format, args...))
}
