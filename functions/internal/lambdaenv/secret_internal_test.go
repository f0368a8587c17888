package lambdaenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/stepwise-run/stepwise/core"
)

// TestSecretError checks the answers of GetSecretValue the emulator does
// not give (it enforces no IAM and never fails), as the SDK returns them.
func TestSecretError(t *testing.T) {
	apiErr := func(code string) error {
		return fmt.Errorf("operation error Secrets Manager: GetSecretValue: %w", &smithy.GenericAPIError{Code: code, Message: "refused"})
	}
	status := func(n int) error {
		return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: n}}, Err: errors.New("boom")}
	}
	tests := []struct {
		name string
		err  error
		code string
	}{
		{"access denied", apiErr("AccessDeniedException"), core.EFORBIDDEN},
		{"KMS key not usable", apiErr("DecryptionFailure"), core.EFORBIDDEN},
		{"not found", apiErr("ResourceNotFoundException"), core.ENOTFOUND},
		{"scheduled for deletion", apiErr("InvalidRequestException"), core.EINVALID},
		{"throttled", apiErr("ThrottlingException"), core.EUNAVAILABLE},
		{"server error", status(503), core.EUNAVAILABLE},
		{"unreachable", &smithyhttp.RequestSendError{Err: errors.New("connection refused")}, core.EUNAVAILABLE},
		{"deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), core.ETIMEOUT},
		{"anything else", apiErr("SomethingNew"), core.EINTERNAL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, why := secretError(tt.err)
			if code != tt.code {
				t.Errorf("code %s, want %s", code, tt.code)
			}
			if why == "" {
				t.Error("says nothing about the secret")
			}
		})
	}
}
