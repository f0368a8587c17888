package webapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/stepwise-run/stepwise/core"
)

// Wrap returns h behind the middleware every request goes through, outer
// first: a request id (and a logger carrying it) in the context, one
// access log line per request, a panic answered 500 instead of a dropped
// connection, and a body capped at maxBody bytes.
func Wrap(h http.Handler, log *slog.Logger, maxBody int64) http.Handler {
	return withRequestID(log, withAccessLog(withRecovery(withBodyLimit(maxBody, h))))
}

// RequestIDHeader carries the request id, in both directions.
const RequestIDHeader = "X-Request-ID"

type requestIDKey struct{}
type loggerKey struct{}

// RequestID returns the id of the request ctx belongs to.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// Logger returns the logger of the request ctx belongs to: it adds the
// request id to every line.
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

// saneRequestID accepts a caller's request id that is safe to log and to
// echo: 1 to 128 letters, digits and ._:- characters.
func saneRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._:-", c)
		if !ok {
			return false
		}
	}
	return true
}

// withRequestID takes the caller's X-Request-ID when it is sane, or makes
// one, echoes it, and puts it and a logger carrying it in the context.
func withRequestID(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !saneRequestID(id) {
			id = uuid.Must(uuid.NewV7()).String()
		}
		w.Header().Set(RequestIDHeader, id)
		ctx := context.WithValue(r.Context(), requestIDKey{}, id)
		ctx = context.WithValue(ctx, loggerKey{}, log.With("request_id", id))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// recorder remembers the status and size of a response. It unwraps to the
// underlying writer so that http.ResponseController reaches its Flush and
// SetWriteDeadline.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (rw *recorder) WriteHeader(status int) {
	if rw.status == 0 {
		rw.status = status
	}
	rw.ResponseWriter.WriteHeader(status)
}

func (rw *recorder) Write(b []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	n, err := rw.ResponseWriter.Write(b)
	rw.bytes += int64(n)
	return n, err
}

// Flush lets streams flush through the recorder.
func (rw *recorder) Flush() {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	_ = http.NewResponseController(rw.ResponseWriter).Flush()
}

// Unwrap returns the underlying writer, for http.ResponseController.
func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

// withAccessLog logs one line per request when it ends.
func withAccessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		Logger(r.Context()).LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.String("route", r.Pattern),
			slog.Int("status", status),
			slog.Int64("bytes", rec.bytes),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
		)
	})
}

// withRecovery turns a panic in a handler into a 500 envelope (if nothing
// was written yet) and a log line with the stack, instead of a dropped
// connection. http.ErrAbortHandler keeps its meaning.
func withRecovery(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			Logger(r.Context()).Error("panic in handler", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if rec.status == 0 {
				WriteJSON(rec, http.StatusInternalServerError, Envelope{Error: ErrorObject{
					Message: "internal error; the server log has the detail under request id " + RequestID(r.Context()),
					Type:    ErrorType(http.StatusInternalServerError), Code: core.EINTERNAL,
				}})
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

// withBodyLimit caps every request body; reading past the cap fails with
// *http.MaxBytesError, which the decoders answer 413.
func withBodyLimit(limit int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		next.ServeHTTP(w, r)
	})
}
