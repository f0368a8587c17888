// Package webapi is what every stepwise function's HTTP surface shares:
// the one table from core error codes to HTTP statuses, the error envelope
// (OpenAI's {"error":{"message","type","code","param"}}), JSON answers,
// server-sent event streams, the tenant a request acts for, and the
// middleware every request goes through (request ids, the access log,
// panic recovery, body limits).
package webapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	"github.com/stepwise-run/stepwise/core"
)

// Status is the one table from core error codes to HTTP statuses.
// upstream says the error is a backend's answer (core.IsUpstream): a
// backend refusing or failing the call is 502, whatever its code, so that
// a bad key on a backend does not read as the caller's mistake; a timeout
// stays 504 and a model the backend lacks stays 404.
func Status(code string, upstream bool) int {
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
	case core.ELIMIT:
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

// ErrorType is the OpenAI error type of a status.
func ErrorType(status int) string {
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

// ErrorObject is the inside of the error envelope.
type ErrorObject struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    string `json:"code"`
	// Param is the request field at fault, or null.
	Param *string `json:"param"`
}

// Envelope is the body of every error answer.
type Envelope struct {
	Error ErrorObject `json:"error"`
}

// Param returns p as an envelope's param: null when p is "".
func Param(p string) *string {
	if p == "" {
		return nil
	}
	return &p
}

// WriteJSON answers v as JSON, without HTML escaping.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only a value the handler built wrongly gets here; the envelope
		// itself always encodes.
		buf.Reset()
		status = http.StatusInternalServerError
		_ = enc.Encode(Envelope{Error: ErrorObject{Message: "encode response: " + err.Error(), Type: ErrorType(status), Code: core.EINTERNAL}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type tenantKey struct{}

// WithTenant returns a context whose requests act for tenant; an
// authentication layer in front of a function sets it from the caller's
// key.
func WithTenant(ctx context.Context, tenant string) context.Context {
	return context.WithValue(ctx, tenantKey{}, tenant)
}

// Tenant returns the tenant a request acts for: the one set by WithTenant,
// else core.DefaultTenant.
func Tenant(ctx context.Context) string {
	if t, ok := ctx.Value(tenantKey{}).(string); ok && t != "" {
		return t
	}
	return core.DefaultTenant
}
