package api

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"

	"github.com/stepwise-run/stepwise/core"
)

// statusOf is the one table from core error codes to HTTP statuses.
// upstream says the error is a backend's answer (core.IsUpstream): a
// backend refusing or failing the call is 502, whatever its code, so that
// a bad key on a backend does not read as the caller's mistake; a timeout
// stays 504 and a model the backend lacks stays 404.
func statusOf(code string, upstream bool) int {
	if upstream && code != core.ETIMEOUT && code != core.ENOTFOUND {
		return http.StatusBadGateway
	}
	switch code {
	case core.EINVALID:
		return http.StatusUnprocessableEntity
	case core.ENOTFOUND:
		return http.StatusNotFound
	case core.ECONFLICT:
		return http.StatusConflict
	case core.EFORBIDDEN:
		return http.StatusForbidden
	case core.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case core.ETIMEOUT:
		return http.StatusGatewayTimeout
	case core.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// errorType is the OpenAI error type of a status.
func errorType(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusConflict:
		return "conflict_error"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

// requestError is a mistake in the request the code table does not place:
// a malformed body or query parameter (400), a body over the limit (413),
// a wrong method (405), or a field at fault that the error should name.
type requestError struct {
	// status, when not 0, replaces the status of code.
	status int
	code   string
	param  string
	msg    string
}

func (e *requestError) Error() string { return e.msg }

// badRequest is a 400: the body or a query parameter cannot be read.
func badRequest(param, format string, args ...any) error {
	return &requestError{status: http.StatusBadRequest, code: core.EINVALID, param: param, msg: fmt.Sprintf(format, args...)}
}

// invalid is a 422 naming the field at fault.
func invalid(param, format string, args ...any) error {
	return &requestError{code: core.EINVALID, param: param, msg: fmt.Sprintf(format, args...)}
}

// errorObject is the inside of the error envelope.
type errorObject struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    string `json:"code"`
	// Param is the request field at fault, or null.
	Param *string `json:"param"`
}

// errorEnvelope is the body of every error answer.
type errorEnvelope struct {
	Error errorObject `json:"error"`
}

// fieldPrefix finds the field a validation message starts with, as in
// `baseUrl: "ftp://x" is not an http(s) URL`.
var fieldPrefix = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])*(?:\.[A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])*)*): `)

// describeError returns the status and the envelope content of err.
// Internal errors are logged with their detail and answered without it:
// they may carry paths, queries or other things that are not the caller's
// business.
func describeError(r *http.Request, err error) (int, errorObject) {
	var re *requestError
	if errors.As(err, &re) {
		status := re.status
		if status == 0 {
			status = statusOf(re.code, false)
		}
		return status, errorObject{Message: re.msg, Type: errorType(status), Code: re.code, Param: paramOf(re.param)}
	}
	code := core.ErrorCode(err)
	status := statusOf(code, core.IsUpstream(err))
	if status == http.StatusInternalServerError {
		logger(r.Context()).Error("internal error", "error", err.Error())
		return status, errorObject{
			Message: "internal error; the server log has the detail under request id " + requestID(r.Context()),
			Type:    errorType(status), Code: core.EINTERNAL,
		}
	}
	param := ""
	var ve *core.ValidationError
	if errors.As(err, &ve) && len(ve.Problems) > 0 {
		param = ve.Problems[0].Path
	} else if m := fieldPrefix.FindStringSubmatch(err.Error()); m != nil {
		param = m[1]
	}
	return status, errorObject{Message: err.Error(), Type: errorType(status), Code: code, Param: paramOf(param)}
}

func paramOf(p string) *string {
	if p == "" {
		return nil
	}
	return &p
}

// writeError answers err in the error envelope.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, obj := describeError(r, err)
	writeJSON(w, status, errorEnvelope{Error: obj})
}
