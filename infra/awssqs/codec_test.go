package awssqs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/stepwise-run/stepwise/core"
)

func TestDelaySeconds(t *testing.T) {
	tests := []struct {
		name  string
		delay time.Duration
		want  int32
	}{
		{"Zero", 0, 0},
		{"Negative", -time.Second, 0},
		{"OneNanosecondRoundsUp", time.Nanosecond, 1},
		{"WholeSecond", time.Second, 1},
		{"JustOverASecondRoundsUp", time.Second + time.Millisecond, 2},
		{"Backoff", 250 * time.Millisecond, 1},
		{"Maximum", 900 * time.Second, 900},
		{"JustUnderMaximumRoundsUpToIt", 899*time.Second + 1, 900},
		{"OverMaximumIsCapped", 901 * time.Second, 900},
		{"HourIsCapped", time.Hour, 900},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := delaySeconds(tt.delay); got != tt.want {
				t.Errorf("delaySeconds(%v) = %d, want %d", tt.delay, got, tt.want)
			}
		})
	}
}

func TestMapError(t *testing.T) {
	const url = "https://sqs.us-east-1.amazonaws.com/123456789012/work"
	op := func(err error) error {
		return &smithy.OperationError{ServiceID: "SQS", OperationName: "SendMessage", Err: err}
	}
	tests := []struct {
		name     string
		err      error
		wantCode string
		wantURL  bool
	}{
		{"Cancelled", op(context.Canceled), core.ETIMEOUT, false},
		{"DeadlineExceeded", op(fmt.Errorf("send: %w", context.DeadlineExceeded)), core.ETIMEOUT, false},
		{"QueueDoesNotExistType", op(&types.QueueDoesNotExist{}), core.EUNAVAILABLE, true},
		{"NonExistentQueueQueryCode", op(&smithy.GenericAPIError{Code: "AWS.SimpleQueueService.NonExistentQueue"}), core.EUNAVAILABLE, true},
		{"RequestThrottledType", op(&types.RequestThrottled{}), core.EUNAVAILABLE, false},
		{"ThrottlingException", op(&smithy.GenericAPIError{Code: "ThrottlingException", Fault: smithy.FaultClient}), core.EUNAVAILABLE, false},
		{"KmsThrottled", op(&types.KmsThrottled{}), core.EUNAVAILABLE, false},
		{"ServerFault", op(&smithy.GenericAPIError{Code: "Unheard", Fault: smithy.FaultServer}), core.EUNAVAILABLE, false},
		{"RetriesExhausted", op(&retry.MaxAttemptsError{Attempt: 3, Err: &smithy.GenericAPIError{Code: "ServiceUnavailable"}}), core.EUNAVAILABLE, false},
		{"RetryQuotaSpent", op(ratelimit.QuotaExceededError{Available: 0, Requested: 5}), core.EUNAVAILABLE, false},
		{"NotSent", op(&smithyhttp.RequestSendError{Err: errors.New("dial tcp: connection refused")}), core.EUNAVAILABLE, false},
		{"InvalidMessageContents", op(&types.InvalidMessageContents{}), core.EINVALID, false},
		{"InvalidParameterValue", op(&smithy.GenericAPIError{Code: "InvalidParameterValue", Fault: smithy.FaultClient}), core.EINVALID, false},
		{"TooManyEntries", op(&types.TooManyEntriesInBatchRequest{}), core.EINVALID, false},
		{"AccessDenied", op(&smithy.GenericAPIError{Code: "AccessDenied", Fault: smithy.FaultClient}), core.EINTERNAL, false},
		{"Unknown", errors.New("boom"), core.EINTERNAL, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := mapError(tt.err, url, "awssqs: send %s", "ex-1")
			if got := core.ErrorCode(err); got != tt.wantCode {
				t.Errorf("code = %q, want %q (error %v)", got, tt.wantCode, err)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("mapped error %v does not wrap the SDK's", err)
			}
			if !strings.HasPrefix(err.Error(), "awssqs: send ex-1") {
				t.Errorf("error %q does not begin with the operation", err)
			}
			if got := strings.Contains(err.Error(), url); got != tt.wantURL {
				t.Errorf("error %q names the URL: %v, want %v", err, got, tt.wantURL)
			}
		})
	}
	t.Run("Nil", func(t *testing.T) {
		if err := mapError(nil, url, "x"); err != nil {
			t.Errorf("mapError(nil) = %v, want nil", err)
		}
	})
}
