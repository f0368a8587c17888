// Package awserr maps the errors of the AWS SDK's clients to stepwise's
// core error codes, one way for the adapters that send work and events
// (infra/awssqs, infra/awsbus): each brings only its service's table of
// error codes and the name of its resource.
package awserr

import (
	"context"
	"errors"
	"net"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/stepwise-run/stepwise/core"
)

// Map translates err, an error of an SDK client, into a *core.Error whose
// message is msg. codeOf classifies the service's error codes
// (EUNAVAILABLE, EINVALID, ENOTFOUND for the resource missing, or "");
// resource ("queue <url>", "bus <name>") is named when it does not exist.
// The table, first match wins:
//
//	context cancelled or deadline exceeded        ETIMEOUT
//	resource does not exist                       EUNAVAILABLE (names it)
//	throttling, server fault, retry quota spent,
//	  request not sent (network)                  EUNAVAILABLE
//	request rejected as malformed                 EINVALID
//	anything else (access denied, ...)            EINTERNAL
//
// A missing resource is EUNAVAILABLE, not ENOTFOUND: the caller asked to
// send, not for the queue or bus, and the fix is in the deployment.
func Map(err error, codeOf func(string) string, resource, msg string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return core.WrapError(core.ETIMEOUT, err, "%s", msg)
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch code := codeOf(api.ErrorCode()); {
		case code == core.ENOTFOUND:
			return core.WrapError(core.EUNAVAILABLE, err, "%s: %s does not exist", msg, resource)
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
