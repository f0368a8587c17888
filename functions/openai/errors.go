package openai

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// apiError is an error answered with its own status, OpenAI code and
// param: a request at fault, an unknown model or chain.
type apiError struct {
	status int
	code   string
	param  string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// badRequest is a 400 naming the field at fault.
func badRequest(param, format string, args ...any) error {
	return &apiError{status: http.StatusBadRequest, code: "invalid_request_error", param: param, msg: fmt.Sprintf(format, args...)}
}

// describe returns the status and envelope of err. Statuses come from the
// one table (webapi.Status), except that a request the core refuses
// (EINVALID, 422 on the management API) is 400 here, as OpenAI answers
// it. A model no backend serves is OpenAI's model_not_found on model.
// Internal errors are logged with their detail and answered without it.
func describe(r *http.Request, err error) (int, webapi.ErrorObject) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status, webapi.ErrorObject{Message: ae.msg, Type: webapi.ErrorType(ae.status), Code: ae.code, Param: webapi.Param(ae.param)}
	}
	code := core.ErrorCode(err)
	status := webapi.Status(code, core.IsUpstream(err))
	if status == http.StatusUnprocessableEntity {
		status = http.StatusBadRequest
	}
	if status == http.StatusInternalServerError {
		webapi.Logger(r.Context()).Error("internal error", "error", err.Error())
		return status, webapi.ErrorObject{
			Message: "internal error; the server log has the detail under request id " + webapi.RequestID(r.Context()),
			Type:    webapi.ErrorType(status), Code: core.EINTERNAL,
		}
	}
	switch code { // what OpenAI's SDKs and users look for
	case core.EUNAUTHORIZED:
		code = "invalid_api_key"
	case core.ELIMIT:
		code = "rate_limit_exceeded"
	}
	return status, webapi.ErrorObject{Message: err.Error(), Type: webapi.ErrorType(status), Code: code}
}

// writeError answers err in the error envelope.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	webapi.RetryAfter(w, err)
	status, obj := describe(r, err)
	webapi.WriteJSON(w, status, webapi.Envelope{Error: obj})
}

// modelError names the model when no backend serves it: OpenAI's SDKs and
// their users look for model_not_found on param model.
func modelError(err error, model string) error {
	if core.ErrorCode(err) != core.ENOTFOUND {
		return err
	}
	return &apiError{status: http.StatusNotFound, code: "model_not_found", param: "model",
		msg: fmt.Sprintf("The model %q does not exist or no backend serves it: %v", model, err)}
}
