package awsbus

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/stepwise-run/stepwise/core"
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

// mapError translates an error of a whole EventBridge request into a
// *core.Error whose message is the formatted one; bus is named when it
// does not exist. The table, first match wins:
//
//	context cancelled or deadline exceeded        ETIMEOUT
//	bus does not exist                            EUNAVAILABLE (names the bus)
//	throttling, server fault, retry quota spent,
//	  request not sent (network)                  EUNAVAILABLE
//	request rejected as malformed                 EINVALID
//	anything else (access denied, ...)            EINTERNAL
//
// A missing bus is EUNAVAILABLE, not ENOTFOUND: the caller asked to
// publish, not for the bus, and the fix is in the deployment.
func mapError(err error, bus, format string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, args...)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return core.WrapError(core.ETIMEOUT, err, "%s", msg)
	}
	var missing *types.ResourceNotFoundException
	var api smithy.APIError
	hasAPI := errors.As(err, &api)
	if errors.As(err, &missing) || hasAPI && entryCode(api.ErrorCode()) == core.ENOTFOUND {
		return core.WrapError(core.EUNAVAILABLE, err, "%s: bus %s does not exist", msg, bus)
	}
	if hasAPI {
		switch code := entryCode(api.ErrorCode()); {
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
