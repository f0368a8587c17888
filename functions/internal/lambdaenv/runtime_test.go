package lambdaenv_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/infra/awsmoto"
)

// The Runtime API's headers and media types that the harness reads or
// writes (docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html).
const (
	headerErrorType = "Lambda-Runtime-Function-Error-Type"
	headerErrorBody = "Lambda-Runtime-Function-Error-Body"
	// httpIntegration is the media type of a response streamed to a
	// Function URL: a JSON prelude (status, headers, cookies), eight NUL
	// bytes, then the body as the client receives it. The Runtime API
	// documents a Lambda-Runtime-Function-Response-Mode: streaming header
	// as well; aws-lambda-go (v1.55) does not send it, and Lambda streams
	// on the Function URL's InvokeMode, so the harness does not ask for it.
	httpIntegration = "application/vnd.awslambda.http-integration-response"
)

// runtimeAPI is the Lambda Runtime API (2018-06-01) as the Lambda service
// serves it to one provided.al2023 execution environment: it hands out the
// events queued with invoke one at a time on GET .../invocation/next, and
// collects what the function posts back to the response endpoint (buffered
// or streamed), the error endpoint and the init error endpoint.
type runtimeAPI struct {
	srv     *httptest.Server
	events  chan invocation
	done    chan struct{}
	results chan result
	// polled is closed on the first GET .../invocation/next, at firstPoll.
	polled    chan struct{}
	pollOnce  sync.Once
	firstPoll time.Time
	closeOnce sync.Once
}

// invocation is one event with its request id and deadline.
type invocation struct {
	id       string
	payload  []byte
	deadline time.Time
}

// result is what the function posted for an invocation: to its response
// endpoint, its error endpoint, or the init error endpoint (id "").
type result struct {
	id   string
	kind string // "response", "error" or "init/error"
	body []byte
	// contentType is the posted Content-Type: application/json for a
	// buffered answer or an error, httpIntegration for a streamed one.
	contentType string
	// chunked tells whether the body came with chunked transfer encoding,
	// which a streamed response needs: its length is not known up front.
	chunked bool
	// streamError and streamErrorBody are the error of a stream that
	// failed after it started, which the runtime reports in the trailer
	// (the body as base64 JSON).
	streamError     string
	streamErrorBody string
}

// startRuntimeAPI serves the Runtime API on 127.0.0.1 until tb ends.
func startRuntimeAPI(tb testing.TB) *runtimeAPI {
	tb.Helper()
	r := &runtimeAPI{events: make(chan invocation, 4), done: make(chan struct{}),
		results: make(chan result, 4), polled: make(chan struct{})}
	const prefix = "/2018-06-01/runtime/"
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+prefix+"invocation/next", func(w http.ResponseWriter, req *http.Request) {
		r.pollOnce.Do(func() {
			r.firstPoll = time.Now()
			close(r.polled)
		})
		select {
		case inv := <-r.events:
			h := w.Header()
			h.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
			h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(inv.deadline.UnixMilli(), 10))
			h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:"+awsmoto.Region+":123456789012:function:stepwise")
			h.Set("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000;Sampled=0")
			h.Set("Content-Type", "application/json")
			_, _ = w.Write(inv.payload)
		case <-r.done:
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
		case <-req.Context().Done():
		}
	})
	post := func(kind string) http.HandlerFunc {
		return func(w http.ResponseWriter, req *http.Request) {
			// A streamed body is read to its end, where the trailer
			// (the error of a stream that failed midway) arrives.
			body, err := io.ReadAll(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			res := result{
				id: req.PathValue("id"), kind: kind, body: body,
				contentType:     req.Header.Get("Content-Type"),
				chunked:         len(req.TransferEncoding) > 0 && req.TransferEncoding[0] == "chunked",
				streamError:     req.Trailer.Get(headerErrorType),
				streamErrorBody: req.Trailer.Get(headerErrorBody),
			}
			select {
			case r.results <- res:
			case <-r.done:
			}
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"status":"OK"}`))
		}
	}
	mux.HandleFunc("POST "+prefix+"invocation/{id}/response", post("response"))
	mux.HandleFunc("POST "+prefix+"invocation/{id}/error", post("error"))
	mux.HandleFunc("POST "+prefix+"init/error", post("init/error"))
	r.srv = httptest.NewServer(mux)
	tb.Cleanup(r.close)
	return r
}

// close stops the server; a poll still waiting is answered 503.
func (r *runtimeAPI) close() {
	r.closeOnce.Do(func() {
		close(r.done)
		r.srv.Close()
	})
}

// addr is what AWS_LAMBDA_RUNTIME_API carries: host and port, no scheme.
func (r *runtimeAPI) addr() string { return strings.TrimPrefix(r.srv.URL, "http://") }

// urlResponse is a streamed Function URL response as its HTTP client sees
// it: Lambda turns the prelude into the status line and the header, and
// relays the rest of the stream as the body.
type urlResponse struct {
	status int
	header http.Header
	body   []byte
}

// functionURL decodes res as the Function URL (InvokeMode RESPONSE_STREAM)
// does. It fails the test unless res is a complete stream of that form: on
// the response endpoint, chunked, in the http-integration media type, with
// a prelude, and without an error in the trailer.
func (res result) functionURL(t *testing.T) urlResponse {
	t.Helper()
	if res.kind != "response" {
		t.Fatalf("function posted %s for %q: %s", res.kind, res.id, res.body)
	}
	if res.contentType != httpIntegration {
		t.Fatalf("Content-Type %q, want %q: the Function URL would send the raw bytes as a 200's body", res.contentType, httpIntegration)
	}
	if !res.chunked {
		t.Errorf("the response was not sent chunked: it was buffered, not streamed")
	}
	if res.streamError != "" {
		t.Errorf("the stream ended with error %s %s", res.streamError, res.streamErrorBody)
	}
	prelude, body, ok := bytes.Cut(res.body, make([]byte, 8))
	if !ok {
		t.Fatalf("no eight-NUL separator after the prelude in %q", res.body)
	}
	var meta struct {
		StatusCode int               `json:"statusCode"`
		Headers    map[string]string `json:"headers"`
		Cookies    []string          `json:"cookies"`
	}
	if err := json.Unmarshal(prelude, &meta); err != nil {
		t.Fatalf("prelude %q: %v", prelude, err)
	}
	out := urlResponse{status: meta.StatusCode, header: http.Header{}, body: body}
	if out.status == 0 {
		out.status = http.StatusOK
	}
	for k, v := range meta.Headers {
		out.header.Set(k, v)
	}
	for _, c := range meta.Cookies {
		out.header.Add("Set-Cookie", c)
	}
	return out
}

// invokeError is the error a function reported for an invocation, as
// Lambda returns it to a synchronous caller.
type invokeError struct {
	Type    string `json:"errorType"`
	Message string `json:"errorMessage"`
}

// failure decodes res as a report to the error endpoint for invocation id.
func (res result) failure(t *testing.T, id string) invokeError {
	t.Helper()
	if res.kind != "error" || res.id != id {
		t.Fatalf("function posted %s for %q, want an error for %q: %s", res.kind, res.id, id, res.body)
	}
	var e invokeError
	if err := json.Unmarshal(res.body, &e); err != nil {
		t.Fatalf("error body %q: %v", res.body, err)
	}
	return e
}
