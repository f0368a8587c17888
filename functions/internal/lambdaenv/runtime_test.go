package lambdaenv_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/infra/awsmoto"
)

// runtimeAPI is the Lambda Runtime API (2018-06-01) as the Lambda service
// serves it to a provided.al2023 bootstrap: it hands out the events queued
// with invoke one at a time on GET .../invocation/next, and collects what
// the function posts back.
type runtimeAPI struct {
	srv     *httptest.Server
	events  chan invocation
	done    chan struct{}
	results chan result

	mu        sync.Mutex
	firstPoll time.Time
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
	id    string
	kind  string // "response", "error" or "init/error"
	body  []byte
	error string // the Lambda-Runtime-Function-Error-Type header
}

// startRuntimeAPI serves the Runtime API on 127.0.0.1 until t ends.
func startRuntimeAPI(t *testing.T) *runtimeAPI {
	t.Helper()
	r := &runtimeAPI{events: make(chan invocation, 4), done: make(chan struct{}), results: make(chan result, 4)}
	const prefix = "/2018-06-01/runtime/"
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+prefix+"invocation/next", func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		if r.firstPoll.IsZero() {
			r.firstPoll = time.Now()
		}
		r.mu.Unlock()
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
			body, err := io.ReadAll(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.results <- result{id: req.PathValue("id"), kind: kind, body: body, error: req.Header.Get("Lambda-Runtime-Function-Error-Type")}
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"status":"OK"}`))
		}
	}
	mux.HandleFunc("POST "+prefix+"invocation/{id}/response", post("response"))
	mux.HandleFunc("POST "+prefix+"invocation/{id}/error", post("error"))
	mux.HandleFunc("POST "+prefix+"init/error", post("init/error"))
	r.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		close(r.done)
		r.srv.Close()
	})
	return r
}

// addr is what AWS_LAMBDA_RUNTIME_API carries: host and port, no scheme.
func (r *runtimeAPI) addr() string { return strings.TrimPrefix(r.srv.URL, "http://") }

// invoke queues payload and waits for the function's answer to it.
func (r *runtimeAPI) invoke(t *testing.T, id string, payload any, timeout time.Duration) result {
	t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	r.events <- invocation{id: id, payload: b, deadline: time.Now().Add(timeout)}
	select {
	case res := <-r.results:
		return res
	case <-time.After(timeout + 30*time.Second):
		t.Fatalf("no answer to invocation %s", id)
		return result{}
	}
}

// firstPollAt is when the function first asked for an invocation.
func (r *runtimeAPI) firstPollAt() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.firstPoll
}

// buildBootstrap builds the function's entry point as the Makefile does,
// but for the host, so that this machine can run it.
func buildBootstrap(t *testing.T, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bootstrap")
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// coldStart runs the bootstrap as Lambda does, with the deployment's
// environment, and stops it when t ends. It returns the Runtime API it
// polls and the time the process was started.
func (d *deployment) coldStart(t *testing.T, bin string, extra map[string]string) (*runtimeAPI, time.Time) {
	t.Helper()
	rt := startRuntimeAPI(t)
	s := d.env.Settings
	vars := map[string]string{
		"AWS_LAMBDA_RUNTIME_API": rt.addr(),
		"AWS_REGION":             awsmoto.Region,
		"AWS_ACCESS_KEY_ID":      "testing",
		"AWS_SECRET_ACCESS_KEY":  "testing",
		"AWS_ENDPOINT_URL":       s.Endpoint,
		"STEPWISE_TABLE":         s.Table,
		"STEPWISE_QUEUE_URL":     s.QueueURL,
		"STEPWISE_SECRET_KEY":    base64.StdEncoding.EncodeToString(make([]byte, 32)),
		"OLLAMA_BACKEND_URL":     d.llm.URL(),
		"EMBED_MODEL":            embedModel,
		"TASK_MODEL":             taskModel,
		"CHAT_MODEL":             chatModel,
		"STEPWISE_LOG_LEVEL":     "error",
		"PATH":                   os.Getenv("PATH"),
	}
	for k, v := range extra {
		vars[k] = v
	}
	cmd := exec.Command(bin)
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	started := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("bootstrap stderr:\n%s", stderr.String())
		}
	})
	return rt, started
}

// TestBootstrapBinaries builds the api and worker bootstraps and drives
// them through the Runtime API, as Lambda runs the zips: the api answers an
// API Gateway v2 event, and the worker carries an execution the API started
// on from the SQS event of its continuation.
func TestBootstrapBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the function binaries")
	}
	d := deploy(t, map[string]string{"STEPWISE_SYNC_TIMEOUT": "500ms"})
	d.llm.Script(fakellm.Reply{Match: "step", Text: "done", Latency: stepLatency})

	t.Run("api: GET /health", func(t *testing.T) {
		rt, started := d.coldStart(t, buildBootstrap(t, "github.com/stepwise-run/stepwise/functions/api/lambda"), nil)
		raw, err := os.ReadFile("testdata/apigw-v2-request.json")
		if err != nil {
			t.Fatal(err)
		}
		var ev awsevents.APIGatewayV2HTTPRequest
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatalf("fixture: %v", err)
		}
		ev.RawPath, ev.RequestContext.HTTP.Path, ev.RequestContext.HTTP.Method = "/health", "/health", http.MethodGet
		res := rt.invoke(t, "api-1", ev, 29*time.Second)
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
		t.Logf("api bootstrap: start to first poll %v", rt.firstPollAt().Sub(started))
	})

	t.Run("worker: one SQS continuation", func(t *testing.T) {
		rt, started := d.coldStart(t, buildBootstrap(t, "github.com/stepwise-run/stepwise/functions/worker/lambda"),
			map[string]string{"STEPWISE_DELIVERY_MARGIN": "2s"})
		res := d.call(http.MethodPost, "/executions", map[string]any{"input": "go", "chain": prompts("slow", chainSteps)}, false)
		wantStatus(t, "POST /executions", res, http.StatusAccepted)
		var accepted struct{ ID string }
		res.decode(t, &accepted)

		ctx := context.Background()
		ev := d.receive(ctx, 5)
		if len(ev.Records) == 0 {
			t.Fatal("the API enqueued nothing")
		}
		out := rt.invoke(t, "worker-1", ev, invocationTime)
		if out.kind != "response" {
			t.Fatalf("function posted %s (%s): %s", out.kind, out.error, out.body)
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
		if next := d.receive(ctx, 5); len(next.Records) == 0 && d.status(accepted.ID) != "succeeded" {
			t.Errorf("execution %s is %s and no continuation was enqueued", accepted.ID, d.status(accepted.ID))
		}
		t.Logf("worker bootstrap: start to first poll %v; %d step(s) committed in one %v invocation",
			rt.firstPollAt().Sub(started), len(steps), invocationTime)
	})
}
