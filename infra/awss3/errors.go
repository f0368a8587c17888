package awss3

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/stepwise-run/stepwise/core"
)

// fail translates an SDK error into a core error whose message says what
// the store was doing (format and args) in which bucket.
func (s *Store) fail(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf(format, args...)
	code, msg := classify(err)
	if msg == "" {
		return core.WrapError(code, err, "%s in bucket %q", what, s.bucket)
	}
	return core.WrapError(code, err, "%s: bucket %q %s", what, s.bucket, msg)
}

// classify returns the core code of an SDK error and, for some, what to
// say about the bucket.
func classify(err error) (code, msg string) {
	var (
		noKey    *types.NoSuchKey
		notFound *types.NotFound
		noBucket *types.NoSuchBucket
		send     *smithyhttp.RequestSendError
		api      smithy.APIError
		resp     *smithyhttp.ResponseError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return core.ETIMEOUT, ""
	case errors.As(err, &noKey), errors.As(err, &notFound):
		return core.ENOTFOUND, ""
	case errors.As(err, &noBucket):
		return core.EUNAVAILABLE, "does not exist"
	case errors.As(err, &send):
		return core.EUNAVAILABLE, "cannot be reached"
	}
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return core.ENOTFOUND, ""
		case "NoSuchBucket":
			return core.EUNAVAILABLE, "does not exist"
		case "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch":
			return core.EFORBIDDEN, "refuses this role"
		case "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout":
			return core.EUNAVAILABLE, "is overloaded or failing; try again later"
		case "InvalidRequest", "InvalidArgument", "KeyTooLongError", "EntityTooLarge":
			return core.EINVALID, ""
		}
	}
	if errors.As(err, &resp) && resp.HTTPStatusCode() >= 500 {
		// A server error is an outage that passes, not a fault of the
		// request.
		return core.EUNAVAILABLE, "is overloaded or failing; try again later"
	}
	return core.EINTERNAL, ""
}
