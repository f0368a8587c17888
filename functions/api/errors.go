package api

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

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

// fieldPrefix finds the field a validation message starts with, as in
// `baseUrl: "ftp://x" is not an http(s) URL`.
var fieldPrefix = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])*(?:\.[A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])*)*): `)

// describeError returns the status and the envelope content of err.
// Internal errors are logged with their detail and answered without it:
// they may carry paths, queries or other things that are not the caller's
// business.
func describeError(r *http.Request, err error) (int, webapi.ErrorObject) {
	var re *requestError
	if errors.As(err, &re) {
		status := re.status
		if status == 0 {
			status = webapi.Status(re.code, false)
		}
		return status, webapi.ErrorObject{Message: re.msg, Type: webapi.ErrorType(status), Code: re.code, Param: webapi.Param(re.param)}
	}
	code := core.ErrorCode(err)
	status := webapi.Status(code, core.IsUpstream(err))
	if status == http.StatusInternalServerError {
		webapi.Logger(r.Context()).Error("internal error", "error", err.Error())
		return status, webapi.ErrorObject{
			Message: "internal error; the server log has the detail under request id " + webapi.RequestID(r.Context()),
			Type:    webapi.ErrorType(status), Code: core.EINTERNAL,
		}
	}
	param := ""
	var ve *core.ValidationError
	if errors.As(err, &ve) && len(ve.Problems) > 0 {
		param = ve.Problems[0].Path
	} else if m := fieldPrefix.FindStringSubmatch(err.Error()); m != nil {
		param = m[1]
	}
	return status, webapi.ErrorObject{Message: err.Error(), Type: webapi.ErrorType(status), Code: code, Param: webapi.Param(param)}
}

// asBadRequest answers a refused request body 400 instead of 422, for
// the routes whose reference answered so (POST /models); the field at
// fault is named all the same.
func asBadRequest(err error) error {
	if core.ErrorCode(err) != core.EINVALID {
		return err
	}
	param := ""
	if m := fieldPrefix.FindStringSubmatch(err.Error()); m != nil {
		param = m[1]
	}
	return &requestError{status: http.StatusBadRequest, code: core.EINVALID, param: param, msg: err.Error()}
}

// writeError answers err in the error envelope.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	webapi.RetryAfter(w, err)
	status, obj := describeError(r, err)
	webapi.WriteJSON(w, status, webapi.Envelope{Error: obj})
}
