package lambdaenv_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

// malformed is an event of the wrong shape for every function: JSON, as
// Lambda only delivers JSON, but an array where an object is expected.
const malformed = `[]`

// wantFailure fails the test unless the function reported invocation id
// to the error endpoint with an error type (typ, unless typ is ""), and
// with a message holding msg.
func wantFailure(t *testing.T, res result, id, typ, msg string) {
	t.Helper()
	e := res.failure(t, id)
	if e.Type == "" {
		t.Errorf("no errorType in %s", res.body)
	} else if typ != "" && e.Type != typ {
		t.Errorf("errorType %q, want %q", e.Type, typ)
	}
	if !strings.Contains(e.Message, msg) {
		t.Errorf("errorMessage %q, want it to hold %q", e.Message, msg)
	}
}

// TestBootstrapBinaries builds the api and worker bootstraps and drives
// them through the Runtime API, as Lambda runs the zips: each first fails
// a malformed event on the error endpoint and then answers the next one —
// the api an API Gateway v2 event, the worker the SQS event of the
// continuation of an execution the API started.
func TestBootstrapBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the function binaries")
	}
	d := deploy(t, map[string]string{"STEPWISE_SYNC_TIMEOUT": "500ms"})
	d.llm.Script(fakellm.Reply{Match: "step", Text: "done", Latency: stepLatency})

	t.Run("api: GET /health", func(t *testing.T) {
		p := startBootstrap(t, bootstraps.get(t, "api", runtime.GOOS, runtime.GOARCH), d.lambdaVars(nil))
		t.Logf("api bootstrap: start to first poll %v", p.firstPoll(t))

		wantFailure(t, p.invoke(t, "api-0", json.RawMessage(malformed), 29*time.Second), "api-0",
			"UnmarshalTypeError", "events.APIGatewayV2HTTPRequest")

		res := p.invoke(t, "api-1", apigwEvent(t, http.MethodGet, "/health", nil, false), 29*time.Second)
		if res.kind != "response" || res.id != "api-1" {
			t.Fatalf("function posted %s for %q: %s", res.kind, res.id, res.body)
		}
		var out awsevents.APIGatewayV2HTTPResponse
		if err := json.Unmarshal(res.body, &out); err != nil {
			t.Fatalf("decode %s: %v", res.body, err)
		}
		if out.StatusCode != http.StatusOK {
			t.Errorf("GET /health = %d %s, want 200", out.StatusCode, out.Body)
		}
	})

	t.Run("worker: one SQS continuation", func(t *testing.T) {
		p := startBootstrap(t, bootstraps.get(t, "worker", runtime.GOOS, runtime.GOARCH),
			d.lambdaVars(map[string]string{"STEPWISE_DELIVERY_MARGIN": "2s"}))
		t.Logf("worker bootstrap: start to first poll %v", p.firstPoll(t))

		wantFailure(t, p.invoke(t, "worker-0", json.RawMessage(`{}`), invocationTime), "worker-0",
			"", "neither an SQS batch nor a scheduled sweep")

		res := d.call(http.MethodPost, "/executions", map[string]any{"input": "go", "chain": prompts("slow", chainSteps)}, false)
		wantStatus(t, "POST /executions", res, http.StatusAccepted)
		var accepted struct{ ID string }
		res.decode(t, &accepted)

		ctx := context.Background()
		ev := d.await(ctx, 5, 10)
		if len(ev.Records) == 0 {
			t.Fatal("the API enqueued nothing")
		}
		out := p.invoke(t, "worker-1", ev, invocationTime)
		if out.kind != "response" || out.id != "worker-1" {
			t.Fatalf("function posted %s for %q: %s", out.kind, out.id, out.body)
		}
		var resp awsevents.SQSEventResponse
		if err := json.Unmarshal(out.body, &resp); err != nil {
			t.Fatalf("decode %s: %v", out.body, err)
		}
		if len(resp.BatchItemFailures) != 0 {
			t.Errorf("batch failures %+v, want none", resp.BatchItemFailures)
		}
		d.settle(ctx, ev, resp)

		var steps []struct{ TaskID string }
		res = d.call(http.MethodGet, "/executions/"+accepted.ID+"/steps", nil, false)
		wantStatus(t, "GET steps", res, http.StatusOK)
		res.decode(t, &steps)
		if len(steps) == 0 {
			t.Errorf("execution %s committed no step in the worker's invocation", accepted.ID)
		}
		if d.status(accepted.ID) != "succeeded" && len(d.await(ctx, 5, 10).Records) == 0 {
			t.Errorf("execution %s is %s and no continuation was enqueued", accepted.ID, d.status(accepted.ID))
		}
		t.Logf("worker bootstrap: %d step(s) committed in one %v invocation", len(steps), invocationTime)
	})
}

// functionURLEvent is the event a Function URL sends: the urlstream
// package's fixture (a streamed chat completion), as edit leaves it.
func functionURLEvent(t *testing.T, edit func(*awsevents.LambdaFunctionURLRequest)) awsevents.LambdaFunctionURLRequest {
	t.Helper()
	raw, err := os.ReadFile("../urlstream/testdata/function-url-request.json")
	if err != nil {
		t.Fatal(err)
	}
	var ev awsevents.LambdaFunctionURLRequest
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	if edit != nil {
		edit(&ev)
	}
	return ev
}

// TestBootstrapIngest drives the ingest bootstrap through the Runtime API,
// over the deployment on the emulator, with the events of payload format
// 2.0 it takes (an HTTP API route, and a Function URL in BUFFERED mode).
// The failures come first, so that the answers after them show the
// process polling on after an error.
func TestBootstrapIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the function binaries")
	}
	d := deploy(t, nil)
	wantStatus(t, "POST /mappings", d.call(http.MethodPost, "/mappings", map[string]any{"path": "forms", "eventType": "form.sent",
		"eventSource": "forms", "aggregateType": "form", "aggregateIDField": "id", "version": 1}, false), http.StatusCreated)
	p := startBootstrap(t, bootstraps.get(t, "ingest", runtime.GOOS, runtime.GOARCH), d.lambdaVars(nil))
	t.Logf("ingest bootstrap: start to first poll %v", p.firstPoll(t))

	tests := []struct {
		name  string
		event any
		// fails tells whether the function fails the invocation, with
		// errorType (any, if "") and a message holding message.
		fails              bool
		errorType, message string
		status             int
		holds              string
	}{
		{name: "malformed event: error endpoint", event: json.RawMessage(malformed), fails: true, errorType: "UnmarshalTypeError", message: "events.APIGatewayV2HTTPRequest"},
		{name: "HTTP API route: an unknown path", event: apigwEvent(t, http.MethodPost, "/ingest/nope", []byte(`{"id":"x"}`), false), status: http.StatusNotFound, holds: `"code":"not_found"`},
		{name: "HTTP API route: stored", event: apigwEvent(t, http.MethodPost, "/ingest/forms", []byte(`{"id":"f-1"}`), false), status: http.StatusCreated, holds: `"path":"forms"`},
		{name: "Function URL, BUFFERED: stored", event: functionURLEvent(t, func(ev *awsevents.LambdaFunctionURLRequest) {
			ev.RawPath, ev.RawQueryString, ev.RequestContext.HTTP.Path, ev.RequestContext.HTTP.Method = "/ingest", "path=forms", "/ingest", http.MethodPost
			ev.Body, ev.IsBase64Encoded = `{"id":"f-2"}`, false
		}), status: http.StatusCreated, holds: `"id":"f-2"`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "ingest-" + string(rune('a'+i))
			res := p.invoke(t, id, tt.event, 29*time.Second)
			if tt.fails {
				wantFailure(t, res, id, tt.errorType, tt.message)
				return
			}
			if res.kind != "response" || res.id != id {
				t.Fatalf("function posted %s for %q: %s", res.kind, res.id, res.body)
			}
			var out awsevents.APIGatewayV2HTTPResponse
			if err := json.Unmarshal(res.body, &out); err != nil {
				t.Fatalf("decode %s: %v", res.body, err)
			}
			if out.StatusCode != tt.status || !strings.Contains(out.Body, tt.holds) {
				t.Errorf("status %d %s, want %d holding %s", out.StatusCode, out.Body, tt.status, tt.holds)
			}
			if ct := out.Headers["Content-Type"]; ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
		})
	}
	// Both deliveries are in the table, each with its event.
	var raws []struct {
		EventIDs []string `json:"event_ids"`
	}
	d.call(http.MethodGet, "/raw-events", nil, false).decode(t, &raws)
	if len(raws) != 2 || len(raws[0].EventIDs) != 1 || len(raws[1].EventIDs) != 1 {
		t.Errorf("raw events %+v, want two, each with its event", raws)
	}
}

// TestBootstrapOpenAI drives the openai bootstrap, over the deployment on
// the emulator, as a Function URL with InvokeMode RESPONSE_STREAM does:
// the function streams its answer to the response endpoint (chunked, a
// JSON prelude, eight NUL bytes, the body), and the test reads it as the
// URL's client would. The failures come first, so that the answers after
// them show the process polling on after an error.
func TestBootstrapOpenAI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the function binaries")
	}
	d := deploy(t, nil)
	d.llm.Script(fakellm.Reply{Match: "stream me", Text: "streamed from Lambda ✓"})
	p := startBootstrap(t, bootstraps.get(t, "openai", runtime.GOOS, runtime.GOARCH), d.lambdaVars(nil))
	t.Logf("openai bootstrap: start to first poll %v", p.firstPoll(t))

	chat := func(body string) func(*awsevents.LambdaFunctionURLRequest) {
		return func(ev *awsevents.LambdaFunctionURLRequest) {
			ev.Body, ev.IsBase64Encoded, ev.RawQueryString = body, false, ""
		}
	}
	tests := []struct {
		name  string
		event any
		// fails tells whether the function fails the invocation, with
		// errorType (any, if "") and a message holding message.
		fails              bool
		errorType, message string
		// status, contentType and holds describe a streamed answer.
		status      int
		contentType string
		holds       []string
	}{
		{name: "malformed event: error endpoint", event: json.RawMessage(malformed), fails: true, errorType: "UnmarshalTypeError", message: "events.LambdaFunctionURLRequest"},
		{name: "body not base64: error endpoint", event: functionURLEvent(t, func(ev *awsevents.LambdaFunctionURLRequest) { ev.Body = "%%%" }),
			fails: true, message: "urlstream: body is not base64"},
		{name: "POST /v1/chat/completions, streamed", event: functionURLEvent(t,
			chat(`{"model":"`+chatModel+`","stream":true,"messages":[{"role":"user","content":"stream me"}]}`)),
			status: http.StatusOK, contentType: "text/event-stream", holds: []string{`"content":"streamed `, `"finish_reason":"stop"`, "data: [DONE]"}},
		{name: "POST /v1/chat/completions, unknown model", event: functionURLEvent(t,
			chat(`{"model":"nope:1b","stream":true,"messages":[{"role":"user","content":"x"}]}`)),
			status: http.StatusNotFound, contentType: "application/json", holds: []string{`"code":"model_not_found"`}},
		{name: "GET /v1/models", event: functionURLEvent(t, func(ev *awsevents.LambdaFunctionURLRequest) {
			ev.RawPath, ev.RequestContext.HTTP.Path, ev.RequestContext.HTTP.Method = "/v1/models", "/v1/models", http.MethodGet
			ev.Body, ev.IsBase64Encoded, ev.RawQueryString = "", false, ""
		}), status: http.StatusOK, contentType: "application/json", holds: []string{`"id":"` + chatModel + `"`}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "openai-" + string(rune('a'+i))
			res := p.invoke(t, id, tt.event, 29*time.Second)
			if tt.fails {
				wantFailure(t, res, id, tt.errorType, tt.message)
				return
			}
			if res.id != id {
				t.Fatalf("function answered %q, want %q", res.id, id)
			}
			got := res.functionURL(t)
			if got.status != tt.status {
				t.Errorf("status %d, want %d: %s", got.status, tt.status, got.body)
			}
			if ct := got.header.Get("Content-Type"); ct != tt.contentType {
				t.Errorf("Content-Type %q, want %q", ct, tt.contentType)
			}
			for _, want := range tt.holds {
				if !strings.Contains(string(got.body), want) {
					t.Errorf("body lacks %s: %s", want, got.body)
				}
			}
		})
	}
}
