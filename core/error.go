package core

import (
	"context"
	"errors"
	"fmt"
)

// Error codes. The set is closed: adapters translate their own errors into one
// of these, and only the HTTP layer maps them to status codes.
const (
	ENOTFOUND     = "not_found"
	ECONFLICT     = "conflict"
	EINVALID      = "invalid"
	EUNAUTHORIZED = "unauthorized"
	EFORBIDDEN    = "forbidden"
	ETIMEOUT      = "timeout"
	EUNAVAILABLE  = "unavailable"
	EINTERNAL     = "internal"
	// ELIMIT: a budget or a rate limit refuses the request until its
	// window moves on.
	ELIMIT = "limit_exceeded"
)

// Error is an application error with a code from the closed set above.
type Error struct {
	// Code is one of the E* constants.
	Code string
	// Message is a human-readable description, safe to show to users.
	Message string
	// Err is the underlying cause, if any.
	Err error
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Err != nil && e.Message == "" {
		return e.Err.Error()
	}
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WrapError returns an *Error with the given code, message and cause.
func WrapError(code string, err error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// ErrorCode returns the code of the first *Error in err's chain, ETIMEOUT for
// a context deadline, or EINTERNAL for anything else. It returns "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ETIMEOUT
	}
	return EINTERNAL
}

// upstream marks an error as the answer of a service we called.
type upstream struct{ err error }

func (u *upstream) Error() string { return u.err.Error() }
func (u *upstream) Unwrap() error { return u.err }

// Upstream marks err as the answer of a service stepwise called on the
// caller's behalf (a model backend, a hook) rather than a verdict of
// stepwise's own: a backend that refuses a bad API key says EINVALID about
// our request to it, not about the caller's request to us. The code stays
// the one ErrorCode finds in err, so routing and retries are unchanged;
// the HTTP layer uses the mark to answer 502 and put the blame on the
// backend. Upstream(nil) is nil.
func Upstream(err error) error {
	if err == nil {
		return nil
	}
	return &upstream{err: err}
}

// IsUpstream reports whether err carries the mark of Upstream for the code
// ErrorCode returns. An error wrapped around the marked one with another
// code (a task timeout around a backend's failure) is a judgement of
// stepwise's own, so the mark no longer applies to it.
func IsUpstream(err error) bool {
	var u *upstream
	return errors.As(err, &u) && ErrorCode(u.err) == ErrorCode(err)
}
