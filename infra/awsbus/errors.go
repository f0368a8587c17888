package awsbus

import (
	"context"
	"fmt"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/infra/internal/awserr"
)

// entryCode classifies an EventBridge error code, of a PutEvents entry or
// of a whole request: EUNAVAILABLE for "not now" (the same entry may pass
// later), EINVALID for an entry or request EventBridge rejects as
// malformed, ENOTFOUND for a bus that does not exist, "" for the rest.
func entryCode(code string) string {
	switch code {
	case "ThrottlingException", "Throttling", "InternalFailure", "InternalException",
		"ServiceUnavailable", "ServiceUnavailableException", "RequestTimeout",
		"RequestTimeoutException", "ConcurrentModificationException":
		return core.EUNAVAILABLE
	case "MalformedDetail", "InvalidArgument", "ValidationException",
		"InvalidEventPatternException", "SerializationException":
		return core.EINVALID
	case "ResourceNotFoundException":
		return core.ENOTFOUND
	}
	return ""
}

// failureCode is the code of a Publish whose requests all succeeded but
// left failures: EINVALID if any was malformed (resending the call cannot
// help), ETIMEOUT if ctx ended, EUNAVAILABLE if any was throttling or an
// internal failure, else EINTERNAL.
func failureCode(ctx context.Context, failed []core.PublishFailure) string {
	unavailable := false
	for _, f := range failed {
		switch entryCode(f.Code) {
		case core.EINVALID:
			return core.EINVALID
		case core.EUNAVAILABLE:
			unavailable = true
		}
	}
	switch {
	case ctx.Err() != nil:
		return core.ETIMEOUT
	case unavailable:
		return core.EUNAVAILABLE
	}
	return core.EINTERNAL
}

// mapError translates an error of the EventBridge client into a *core.Error whose
// message is the formatted one, as awserr.Map does; bus is named when
// the bus does not exist.
func mapError(err error, bus, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return awserr.Map(err, entryCode, "bus "+bus, fmt.Sprintf(format, args...))
}
