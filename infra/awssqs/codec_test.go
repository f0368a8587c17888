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

func TestDecodeBody(t *testing.T) {
	valid := core.QueueMessage{ID: "m1", Kind: core.KindContinue, Tenant: "acme", ExecutionID: "ex-1", Version: 7}
	body, err := encode(valid)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("RoundTripsWhatSendWrites", func(t *testing.T) {
		got, err := DecodeBody(body)
		if err != nil || got != valid {
			t.Errorf("DecodeBody(%s) = %+v, %v; want %+v", body, got, err, valid)
		}
	})
	t.Run("IgnoresUnknownFields", func(t *testing.T) {
		// A newer sender may add fields; an older worker still runs the
		// continuation.
		got, err := DecodeBody(`{"id":"m1","kind":"continue","tenant":"acme","execution_id":"ex-1","version":7,"hop":3}`)
		if err != nil || got != valid {
			t.Errorf("DecodeBody = %+v, %v; want %+v", got, err, valid)
		}
	})
	bad := []struct {
		name, body, want string
	}{
		{"Empty", ``, "not a stepwise message"},
		{"NotJSON", `continue ex-1`, "not a stepwise message"},
		{"Array", `[{"id":"m1"}]`, "not a stepwise message"},
		{"Null", `null`, "id: required"},
		{"TrailingData", body + ` {}`, "data after the JSON object"},
		{"WrongFieldType", `{"id":"m1","kind":"continue","tenant":"acme","execution_id":"ex-1","version":"7"}`, "not a stepwise message"},
		{"NoID", `{"kind":"continue","tenant":"acme","execution_id":"ex-1"}`, "id: required"},
		{"NoKind", `{"id":"m1","tenant":"acme","execution_id":"ex-1"}`, "kind: required"},
		{"NoTenant", `{"id":"m1","kind":"continue","execution_id":"ex-1"}`, "tenant: required"},
		{"ContinuationWithoutExecution", `{"id":"m1","kind":"continue","tenant":"acme"}`, "execution_id: required"},
		{"EventBridgeEvent", `{"version":"0","id":"6a7e8feb","detail-type":"execution.finished","source":"stepwise","detail":{}}`, "not a stepwise message"},
		{"EventBridgeLikeWithoutVersion", `{"id":"6a7e8feb","detail-type":"execution.finished","source":"stepwise","detail":{}}`, "kind: required"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeBody(tt.body)
			if core.ErrorCode(err) != core.EINVALID {
				t.Fatalf("DecodeBody(%q) = %+v, %v; want EINVALID", tt.body, m, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("DecodeBody(%q) error = %q, want it to mention %q", tt.body, err, tt.want)
			}
			if m != (core.QueueMessage{}) {
				t.Errorf("DecodeBody(%q) returned %+v with its error, want the zero message", tt.body, m)
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
