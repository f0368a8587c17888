package wire_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm/internal/wire"
)

// TestStatusError checks the code and the upstream mark of each HTTP error
// status a backend may answer: a refusal or a failure of the backend's own
// is marked (the API answers 502), a missing model and a busy backend are
// not (404 and 503).
func TestStatusError(t *testing.T) {
	tests := []struct {
		status   int
		code     string
		upstream bool
	}{
		{400, core.EINVALID, true},
		{401, core.EINVALID, true},
		{403, core.EINVALID, true},
		{404, core.ENOTFOUND, false},
		{422, core.EINVALID, true},
		{429, core.EUNAVAILABLE, false},
		{500, core.EUNAVAILABLE, true},
		{502, core.EUNAVAILABLE, true},
		{503, core.EUNAVAILABLE, false},
		{504, core.EUNAVAILABLE, true},
		{302, core.EUNAVAILABLE, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			cause := errors.New("the backend's own words")
			err := wire.StatusError(tt.status, cause, "openai %s: chat with %s", "http://127.0.0.1:1/v1", "gpt-x")
			if got := core.ErrorCode(err); got != tt.code {
				t.Errorf("code = %q, want %q", got, tt.code)
			}
			if got := core.IsUpstream(err); got != tt.upstream {
				t.Errorf("IsUpstream = %v, want %v", got, tt.upstream)
			}
			if got := wire.UpstreamStatus(tt.status); got != tt.upstream {
				t.Errorf("UpstreamStatus = %v, want %v", got, tt.upstream)
			}
			if !errors.Is(err, cause) {
				t.Errorf("%v does not wrap its cause", err)
			}
			for _, s := range []string{"http://127.0.0.1:1/v1", "gpt-x", "the backend's own words"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not name %q", err, s)
				}
			}
		})
	}
}

// TestTransportErrorsAreNotUpstream checks that an error without an HTTP
// status keeps its code and no mark: a backend that does not answer is
// unavailable (503) or timed out (504), not a backend's verdict.
func TestTransportErrorsAreNotUpstream(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code string
	}{
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, core.EUNAVAILABLE},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, core.EUNAVAILABLE},
		{"deadline", fmt.Errorf("post: %w", context.DeadlineExceeded), core.ETIMEOUT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := wire.TransportCode(tt.err); got != tt.code {
				t.Errorf("TransportCode = %q, want %q", got, tt.code)
			}
			if err := core.WrapError(wire.TransportCode(tt.err), tt.err, "ollama x"); core.IsUpstream(err) {
				t.Errorf("%v is marked upstream", err)
			}
		})
	}
}

// TestUpstreamMark checks what keeps the mark of core.Upstream: wrapping
// with the same code does, a wrapper with a code of its own (a task timing
// out around a backend's failure) does not.
func TestUpstreamMark(t *testing.T) {
	marked := wire.StatusError(500, errors.New("boom"), "ollama http://b: chat with m")
	tests := []struct {
		name     string
		err      error
		code     string
		upstream bool
	}{
		{"as answered", marked, core.EUNAVAILABLE, true},
		{"wrapped with fmt", fmt.Errorf("step 3: %w", marked), core.EUNAVAILABLE, true},
		{"wrapped with the same code", core.WrapError(core.EUNAVAILABLE, marked, "router"), core.EUNAVAILABLE, true},
		{"wrapped with another code", core.WrapError(core.ETIMEOUT, marked, "task timed out after 1s"), core.ETIMEOUT, false},
		{"not marked", core.Errorf(core.EUNAVAILABLE, "down"), core.EUNAVAILABLE, false},
		{"nil", core.Upstream(nil), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := core.ErrorCode(tt.err); got != tt.code {
				t.Errorf("code = %q, want %q", got, tt.code)
			}
			if got := core.IsUpstream(tt.err); got != tt.upstream {
				t.Errorf("IsUpstream = %v, want %v", got, tt.upstream)
			}
		})
	}
	if marked.Error() != core.WrapError(core.EUNAVAILABLE, errors.New("boom"), "ollama http://b: chat with m").Error() {
		t.Errorf("the mark changed the message: %q", marked)
	}
}
