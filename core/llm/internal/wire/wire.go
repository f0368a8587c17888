// Package wire holds what the provider packages of core/llm share about
// talking to a model backend over HTTP: the default HTTP client, the mapping
// of statuses and transport failures onto core error codes (with the mark
// of errors a backend answered), and the small conversions both wire
// formats need (tool names of tool results, ids for tool calls that arrive
// without one, finish reasons).
//
// It is internal so that these details can change without widening the
// public API of core/llm.
package wire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stepwise-run/stepwise/core"
)

// NewHTTPClient returns the client providers use when the caller gives none.
// Dialing and the TLS handshake are bounded so that a dead host fails fast,
// but there is no overall timeout and no response-header timeout: a backend
// may spend minutes loading a model before its first byte and then stream
// for minutes more, so the length of a call is left to the caller's context.
func NewHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 10 * time.Second
	t.IdleConnTimeout = 90 * time.Second
	t.MaxIdleConnsPerHost = 16
	return &http.Client{Transport: t}
}

// StatusError returns the error for an HTTP error status a backend
// answered: the code of CodeForStatus, marked core.Upstream when
// UpstreamStatus says the status is the backend's verdict on the call, with
// cause made brief. format and args name the backend and the model.
func StatusError(status int, cause error, format string, args ...any) error {
	err := core.WrapError(CodeForStatus(status), Brief(cause), format, args...)
	if UpstreamStatus(status) {
		return core.Upstream(err)
	}
	return err
}

// UpstreamStatus reports whether an HTTP error status from a backend is
// the backend refusing or failing the call (every 4xx but 404 and 429, and
// every 5xx but 503), which the HTTP layer answers with 502 naming the
// backend, so that a bad API key on a backend does not read as the
// caller's mistake. 404 (the model is not there) keeps its own meaning,
// and 429 and 503 say the backend is busy: the caller should retry later,
// which 503 tells it.
func UpstreamStatus(status int) bool {
	switch {
	case status == http.StatusNotFound, status == http.StatusTooManyRequests, status == http.StatusServiceUnavailable:
		return false
	default:
		return status >= 400 && status < 600
	}
}

// CodeForStatus maps an HTTP error status from a backend to a core error
// code: 404 means the model is not on that backend (the router tries the
// next one), 429 and 5xx mean the backend is overloaded or failing (worth
// retrying elsewhere), and any other 4xx means the backend refused the
// request itself, which no other backend will like better.
func CodeForStatus(status int) string {
	switch {
	case status == http.StatusNotFound:
		return core.ENOTFOUND
	case status == http.StatusTooManyRequests || status >= 500:
		return core.EUNAVAILABLE
	case status >= 400:
		return core.EINVALID
	default:
		// A status below 400 reported as an error is a backend that does
		// not follow its protocol; treat it as failing.
		return core.EUNAVAILABLE
	}
}

// ContextError returns the error for a call whose context is done, or nil
// if ctx is still live. Both a deadline and a cancellation become ETIMEOUT
// because core's closed set of codes has nothing closer for "the caller
// stopped waiting"; the context's own error is kept as the cause so that
// errors.Is(err, context.Canceled) still tells the two apart.
func ContextError(ctx context.Context, format string, args ...any) *core.Error {
	err := ctx.Err()
	if err == nil {
		return nil
	}
	return core.WrapError(core.ETIMEOUT, err, format, args...)
}

// TransportCode classifies an error that carries no HTTP status: a network
// timeout is ETIMEOUT, anything else (connection refused or reset, a body
// that ends early, a response that does not decode) means the backend is not
// answering properly and is EUNAVAILABLE.
func TransportCode(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return core.ETIMEOUT
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return core.ETIMEOUT
	}
	return core.EUNAVAILABLE
}

// ToolName returns the tool name of the tool message msgs[i]: its own Name,
// or else the name of the call with the same id in an earlier assistant
// message. Ollama needs the name on a tool result, and OpenAI-compatible
// servers accept it, while core lets callers give only the id.
func ToolName(msgs []core.Message, i int) string {
	if msgs[i].Name != "" || msgs[i].ToolCallID == "" {
		return msgs[i].Name
	}
	for j := i - 1; j >= 0; j-- {
		for _, tc := range msgs[j].ToolCalls {
			if tc.ID == msgs[i].ToolCallID {
				return tc.Function.Name
			}
		}
	}
	return ""
}

// CallID makes an id for a tool call that came without one. It depends on
// the number of messages in the conversation and the call's position, so it
// is deterministic and cannot collide with the id of a call made at an
// earlier turn, whose conversation was shorter.
func CallID(messages, index int) string {
	return fmt.Sprintf("call_%d_%d", messages, index)
}

// FinishReason reduces a backend's finish reason to the three core knows.
// Tool calls win over whatever the backend said, because some servers
// report "stop" for an answer that only calls tools.
func FinishReason(toolCalls bool, reason string) string {
	switch {
	case toolCalls:
		return "tool_calls"
	case reason == "length":
		return "length"
	default:
		return "stop"
	}
}

// maxErrorText bounds the text a backend's error contributes to a message.
const maxErrorText = 300

// Brief returns err with its text on one line and at most about 300
// characters, keeping err in the chain for errors.As and errors.Is. A
// backend or proxy answering with an HTML error page must not turn a step's
// error into a page of markup.
func Brief(err error) error {
	if err == nil {
		return nil
	}
	text := strings.Join(strings.Fields(err.Error()), " ")
	if len(text) > maxErrorText {
		cut := maxErrorText
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut] + " …"
	}
	return brief{err: err, text: text}
}

type brief struct {
	err  error
	text string
}

func (b brief) Error() string { return b.text }
func (b brief) Unwrap() error { return b.err }
