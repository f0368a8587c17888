// Package urlstream serves an http.Handler behind a Lambda Function URL
// whose InvokeMode is RESPONSE_STREAM: the handler's status and headers
// are sent as soon as it writes (or flushes) anything, and its body is
// streamed to the client as it writes it, instead of being buffered until
// the handler returns as aws-lambda-go-api-proxy does. Server-sent events
// (the OpenAI endpoint's token stream) need exactly that.
//
// The function must be built with -tags lambda.norpc (the provided.al2023
// runtime), which is what lets aws-lambda-go stream a response.
package urlstream

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	awsevents "github.com/aws/aws-lambda-go/events"
)

// Handler is a Function URL handler for lambda.Start.
type Handler func(ctx context.Context, ev *awsevents.LambdaFunctionURLRequest) (*awsevents.LambdaFunctionURLStreamingResponse, error)

// New returns the Function URL handler serving h. It returns once h has
// written its header (or has returned); the body follows through the
// response's reader. When Lambda is done with the response (it closes it),
// a handler still running has its request context cancelled and is waited
// for, so that nothing of one invocation runs on into the next.
func New(h http.Handler) Handler {
	return func(ctx context.Context, ev *awsevents.LambdaFunctionURLRequest) (*awsevents.LambdaFunctionURLStreamingResponse, error) {
		ctx, cancel := context.WithCancel(ctx)
		req, err := request(ctx, ev)
		if err != nil {
			cancel()
			return nil, err
		}
		pr, pw := io.Pipe()
		w := &writer{header: http.Header{}, pipe: pw, started: make(chan struct{})}
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer func() {
				if p := recover(); p != nil {
					// Before the header: a plain 500. After it, the stream
					// ends with an error, which the runtime reports to
					// Lambda instead of a clean end that looks like success.
					select {
					case <-w.started:
					default:
						w.header = http.Header{"Content-Type": {"application/json"}}
					}
					if w.start(http.StatusInternalServerError) {
						_, _ = pw.Write([]byte(`{"error":{"message":"internal error","type":"api_error","code":"internal","param":null}}`))
					}
					_ = pw.CloseWithError(fmt.Errorf("handler panicked: %v", p))
					return
				}
				// A handler that returns without a header because the
				// invocation ended sends none: the invocation's error is
				// the answer, not an empty 200.
				if ctx.Err() != nil {
					select {
					case <-w.started:
					default:
						_ = pw.CloseWithError(ctx.Err())
						return
					}
				}
				w.start(http.StatusOK)
				_ = pw.Close()
			}()
			h.ServeHTTP(w, req)
		}()
		select {
		case <-w.started:
		case <-ctx.Done():
			cancel()
			_ = pr.Close()
			<-done
			return nil, ctx.Err()
		}
		headers, cookies := flatten(w.sent)
		return &awsevents.LambdaFunctionURLStreamingResponse{
			StatusCode: w.status,
			Headers:    headers,
			Cookies:    cookies,
			Body:       &body{PipeReader: pr, cancel: cancel, done: done},
		}, nil
	}
}

// request converts the Function URL event to the request h serves.
func request(ctx context.Context, ev *awsevents.LambdaFunctionURLRequest) (*http.Request, error) {
	data := []byte(ev.Body)
	if ev.IsBase64Encoded {
		var err error
		if data, err = base64.StdEncoding.DecodeString(ev.Body); err != nil {
			return nil, fmt.Errorf("urlstream: body is not base64: %w", err)
		}
	}
	path := ev.RawPath
	if path == "" {
		path = "/"
	}
	u := &url.URL{Path: path, RawQuery: ev.RawQueryString}
	if raw, err := url.PathUnescape(path); err == nil && raw != path {
		u.Path, u.RawPath = raw, path
	}
	method := ev.RequestContext.HTTP.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), strings.NewReader(string(data)))
	if err != nil {
		return nil, fmt.Errorf("urlstream: %w", err)
	}
	for k, v := range ev.Headers {
		req.Header.Set(k, v)
	}
	if len(ev.Cookies) > 0 {
		req.Header.Set("Cookie", strings.Join(ev.Cookies, "; "))
	}
	req.Host = ev.RequestContext.DomainName
	if h := ev.Headers["host"]; h != "" {
		req.Host = h
	}
	req.URL.Host = req.Host
	req.RemoteAddr = ev.RequestContext.HTTP.SourceIP
	req.RequestURI = u.RequestURI()
	return req, nil
}

// writer is the handler's ResponseWriter: the header is held until the
// first write, the body goes into the pipe the runtime reads.
type writer struct {
	header  http.Header
	pipe    *io.PipeWriter
	once    sync.Once
	started chan struct{}
	status  int
	sent    http.Header
}

// start fixes the status and the header, once; it reports whether this
// call did.
func (w *writer) start(status int) bool {
	first := false
	w.once.Do(func() {
		first = true
		w.status, w.sent = status, w.header.Clone()
		close(w.started)
	})
	return first
}

// Header implements http.ResponseWriter.
func (w *writer) Header() http.Header { return w.header }

// WriteHeader implements http.ResponseWriter. Informational statuses are
// not sent: a Function URL answers once.
func (w *writer) WriteHeader(status int) {
	if status >= 200 {
		w.start(status)
	}
}

// Write implements http.ResponseWriter; it returns once the runtime has
// taken the bytes, so the client sees them as they are written.
func (w *writer) Write(p []byte) (int, error) {
	w.start(http.StatusOK)
	return w.pipe.Write(p)
}

// Flush implements http.Flusher: writes are never buffered here, so it
// only sends the header when nothing was written yet.
func (w *writer) Flush() { w.start(http.StatusOK) }

// flatten turns the header into a Function URL's: one value per name
// (several joined with commas), and Set-Cookie as cookies.
func flatten(h http.Header) (map[string]string, []string) {
	out := make(map[string]string, len(h))
	var cookies []string
	for k, v := range h {
		if http.CanonicalHeaderKey(k) == "Set-Cookie" {
			cookies = append(cookies, v...)
			continue
		}
		out[k] = strings.Join(v, ",")
	}
	return out, cookies
}

// body is the response body the runtime reads. Closing it (the runtime
// does once the response is sent, or has failed) cancels a handler still
// running and waits for it.
type body struct {
	*io.PipeReader
	cancel context.CancelFunc
	done   chan struct{}
}

// Close implements io.Closer.
func (b *body) Close() error {
	b.cancel()
	err := b.PipeReader.Close()
	<-b.done
	return err
}
