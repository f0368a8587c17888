package api_test

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/functions/api"
)

// execution is GET /executions/{id} as tests read it.
type execution struct {
	ID          string
	ChainID     string
	Status      string
	Output      any
	OutputType  string
	CurrentTask string
	StepCount   int
	Error       *struct{ Code, Reason, Message, Task string }
	Waiting     *struct{ Task, Kind, Prompt string }
}

// acceptedBody is a 202 answer as tests read it.
type acceptedBody struct {
	ID     string
	Status string
	State  []map[string]any
	Links  struct{ Self, Steps, Events string }
}

// linear is a chain of tasks that run one after the other.
func linear(id string, tasks ...map[string]any) map[string]any {
	for i, t := range tasks[:len(tasks)-1] {
		t["transition"] = map[string]any{"branches": []any{map[string]any{"operator": "default", "goto": tasks[i+1]["id"]}}}
	}
	list := make([]any, len(tasks))
	for i, t := range tasks {
		list[i] = t
	}
	return map[string]any{"id": id, "tasks": list}
}

// noops is a chain of n noop tasks: n steps, no model.
func noops(id string, n int) map[string]any {
	tasks := make([]map[string]any, n)
	for i := range tasks {
		tasks[i] = map[string]any{"id": fmt.Sprintf("t%d", i+1), "handler": "noop"}
	}
	return linear(id, tasks...)
}

// approval waits for input, then passes it on.
func approval() map[string]any {
	return linear("approval",
		map[string]any{"id": "ask", "handler": "await_input"},
		map[string]any{"id": "done", "handler": "noop"},
	)
}

// start posts an execution and returns the 202's body.
func (e *env) start(body any) acceptedBody {
	e.t.Helper()
	res := e.do(req{method: "POST", path: "/executions", body: body})
	if res.status != http.StatusAccepted {
		e.t.Fatalf("POST /executions = %d %s, want 202", res.status, res.body)
	}
	var out acceptedBody
	res.decode(e.t, &out)
	if out.ID == "" || out.Links.Self != "/executions/"+out.ID || res.header.Get("Location") != out.Links.Self {
		e.t.Fatalf("202 body %s, Location %q", res.body, res.header.Get("Location"))
	}
	return out
}

// get reads an execution.
func (e *env) get(id string) execution {
	e.t.Helper()
	res := e.do(req{method: "GET", path: "/executions/" + id})
	if res.status != http.StatusOK {
		e.t.Fatalf("GET /executions/%s = %d %s", id, res.status, res.body)
	}
	if strings.Contains(string(res.body), `"tasks"`) {
		e.t.Errorf("the execution shows its chain snapshot: %s", res.body)
	}
	var ex execution
	res.decode(e.t, &ex)
	return ex
}

// await polls an execution until it has the status.
func (e *env) await(id, status string) execution {
	e.t.Helper()
	var ex execution
	eventually(e.t, func() string {
		if ex = e.get(id); ex.Status != status {
			return fmt.Sprintf("execution %s is %s, want %s", id, ex.Status, status)
		}
		return ""
	})
	return ex
}

func TestStartExecution(t *testing.T) {
	e := newEnv(t)
	e.addOllama("local-ollama")
	e.llm.Script(fakellm.Reply{Match: "capital", Text: "Paris."})
	stored := linear("stored", map[string]any{"id": "ask", "handler": "prompt_to_string"})
	if res := e.do(req{method: "POST", path: "/taskchains", body: stored}); res.status != http.StatusCreated {
		t.Fatalf("POST /taskchains = %d %s", res.status, res.body)
	}

	for _, tt := range []struct {
		name  string
		body  map[string]any
		chain string
	}{
		{"inline chain", map[string]any{"input": "capital of France?", "chain": linear("inline-c", map[string]any{"id": "ask", "handler": "prompt_to_string"})}, "inline-c"},
		{"stored chain", map[string]any{"input": "capital of France?", "chain_id": "stored"}, "stored"},
		{"chainId spelling", map[string]any{"input": "capital of France?", "chainId": "stored", "input_type": "string"}, "stored"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := e.start(tt.body)
			if got.Status != "queued" {
				t.Errorf("status = %q, want queued", got.Status)
			}
			ex := e.await(got.ID, "succeeded")
			if ex.Output != "Paris." || ex.OutputType != "string" || ex.ChainID != tt.chain || ex.StepCount != 1 || ex.Error != nil || ex.CurrentTask != "" {
				t.Errorf("execution %+v", ex)
			}
		})
	}

	tests := []struct {
		name   string
		body   any
		status int
		param  string
		text   string
	}{
		{"no chain", map[string]any{"input": "x"}, 422, "chain", "required"},
		{"both chains", map[string]any{"chain_id": "stored", "chain": stored}, 422, "chain_id", "not both"},
		{"both spellings", map[string]any{"chain_id": "stored", "chainId": "stored"}, 422, "chain_id", "same field"},
		{"unknown stored chain", map[string]any{"chain_id": "ghost"}, 404, "chain_id", "ghost"},
		{"chain id not a string", map[string]any{"chainId": 7}, 422, "chainId", "stored chain's id"},
		{"invalid chain", map[string]any{"chain": linear("bad", map[string]any{"id": "a", "handler": "bogus"})}, 422, "chain.tasks[0].handler", "bogus"},
		{"unknown field", map[string]any{"chain_id": "stored", "inptu": "x"}, 422, "inptu", "input"},
		{"input does not fit", map[string]any{"chain_id": "stored", "input": "abc", "inputType": "int"}, 422, "input", "abc"},
		{"malformed", `{"chain_id": `, 400, "", "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.do(req{method: "POST", path: "/executions", body: tt.body}).wantError(t, tt.status, tt.param)
			if !strings.Contains(got.Error.Message, tt.text) {
				t.Errorf("message %q does not contain %q", got.Error.Message, tt.text)
			}
		})
	}
	t.Run("unknown execution", func(t *testing.T) {
		e.do(req{method: "GET", path: "/executions/nope"}).wantError(t, http.StatusNotFound, "")
	})
}

func TestExecutionSteps(t *testing.T) {
	e := newEnv(t)
	var run struct{ ID string }
	res := e.do(req{method: "POST", path: "/tasks", body: map[string]any{"input": "x", "chain": noops("five", 5)}})
	if res.status != http.StatusOK {
		t.Fatalf("POST /tasks = %d %s", res.status, res.body)
	}
	res.decode(t, &run)

	var seen []int
	after := ""
	for pages := 0; ; pages++ {
		path := "/executions/" + run.ID + "/steps?limit=2"
		if after != "" {
			path += "&after=" + after
		}
		res := e.do(req{method: "GET", path: path})
		var page []map[string]any
		res.decode(t, &page)
		if len(page) == 0 || len(page) > 2 {
			t.Fatalf("page %d has %d steps: %s", pages, len(page), res.body)
		}
		for _, s := range page {
			seen = append(seen, int(s["index"].(float64)))
			if s["taskID"] != fmt.Sprintf("t%d", len(seen)) || s["attempt"] != float64(1) || s["output"] != "x" || s["startedAt"] == "" {
				t.Errorf("step %v", s)
			}
		}
		after = res.header.Get(api.NextCursorHeader)
		if after == "" {
			break
		}
		if after != strconv.Itoa(seen[len(seen)-1]) {
			t.Errorf("next cursor %q after step %d", after, seen[len(seen)-1])
		}
	}
	if !slices.Equal(seen, []int{1, 2, 3, 4, 5}) {
		t.Errorf("steps %v, want 1..5 once each", seen)
	}

	for _, tt := range []struct {
		name, path string
		status     int
		param      string
	}{
		{"negative after", "/executions/" + run.ID + "/steps?after=-1", 400, "after"},
		{"after not a number", "/executions/" + run.ID + "/steps?after=x", 400, "after"},
		{"zero limit", "/executions/" + run.ID + "/steps?limit=0", 400, "limit"},
		{"limit too large", "/executions/" + run.ID + "/steps?limit=1001", 400, "limit"},
		{"unknown execution", "/executions/nope/steps", 404, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.do(req{method: "GET", path: tt.path}).wantError(t, tt.status, tt.param)
		})
	}
}

func TestListExecutions(t *testing.T) {
	e := newEnv(t)
	for _, c := range []string{"list-a", "list-b", "list-a"} {
		if res := e.do(req{method: "POST", path: "/tasks", body: map[string]any{"input": "x", "chain": noops(c, 1)}}); res.status != http.StatusOK {
			t.Fatalf("POST /tasks = %d %s", res.status, res.body)
		}
	}
	waiting := e.start(map[string]any{"input": "ok?", "chain": approval()})
	e.await(waiting.ID, "waiting")

	list := func(t *testing.T, query string) ([]execution, string) {
		t.Helper()
		res := e.do(req{method: "GET", path: "/executions" + query})
		if res.status != http.StatusOK {
			t.Fatalf("GET /executions%s = %d %s", query, res.status, res.body)
		}
		var out []execution
		res.decode(t, &out)
		return out, res.header.Get(api.NextCursorHeader)
	}
	t.Run("by chain", func(t *testing.T) {
		got, _ := list(t, "?chain=list-a")
		if len(got) != 2 || got[0].ChainID != "list-a" || got[1].ChainID != "list-a" {
			t.Errorf("list-a executions %+v", got)
		}
	})
	t.Run("by status", func(t *testing.T) {
		got, _ := list(t, "?status=waiting")
		if len(got) != 1 || got[0].ID != waiting.ID || got[0].Waiting == nil {
			t.Errorf("waiting executions %+v", got)
		}
		if got, _ := list(t, "?status=failed,cancelled"); len(got) != 0 {
			t.Errorf("failed or cancelled executions %+v", got)
		}
		if got, _ := list(t, "?status=succeeded&status=waiting"); len(got) != 4 {
			t.Errorf("%d succeeded or waiting executions, want 4", len(got))
		}
	})
	t.Run("pages", func(t *testing.T) {
		first, next := list(t, "?limit=3")
		if len(first) != 3 || next == "" {
			t.Fatalf("first page %d executions, next %q", len(first), next)
		}
		if first[0].ID != waiting.ID {
			t.Errorf("the newest execution is not first: %+v", first[0])
		}
		rest, next := list(t, "?limit=3&cursor="+next)
		if len(rest) != 1 || next != "" || rest[0].ChainID != "list-a" {
			t.Errorf("last page %+v, next %q", rest, next)
		}
	})
	for _, tt := range []struct{ name, query, param string }{
		{"unknown status", "?status=done", "status"},
		{"bad limit", "?limit=0", "limit"},
		{"bad cursor", "?cursor=notacursor", "cursor"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.do(req{method: "GET", path: "/executions" + tt.query}).wantError(t, http.StatusBadRequest, tt.param)
		})
	}
}

func TestCancelExecution(t *testing.T) {
	e := newEnv(t)
	waiting := e.start(map[string]any{"input": "ok?", "chain": approval()})
	e.await(waiting.ID, "waiting")
	path := "/executions/" + waiting.ID + "/cancel"

	e.do(req{method: "POST", path: path, body: map[string]any{"reson": "x"}}).wantError(t, http.StatusUnprocessableEntity, "reson")
	res := e.do(req{method: "POST", path: path, body: map[string]any{"reason": "nobody answered"}})
	if res.status != http.StatusOK {
		t.Fatalf("cancel = %d %s", res.status, res.body)
	}
	var ex execution
	res.decode(t, &ex)
	if ex.Status != "cancelled" || ex.Error == nil || ex.Error.Reason != "cancelled" || !strings.Contains(ex.Error.Message, "nobody answered") || ex.Waiting != nil {
		t.Errorf("cancelled execution %+v", ex)
	}
	if got := e.get(waiting.ID); got.Status != "cancelled" {
		t.Errorf("stored status %q", got.Status)
	}
	e.do(req{method: "POST", path: path}).wantError(t, http.StatusConflict, "")
	e.do(req{method: "POST", path: "/executions/nope/cancel"}).wantError(t, http.StatusNotFound, "")

	t.Run("without a body", func(t *testing.T) {
		other := e.start(map[string]any{"input": "ok?", "chain": approval()})
		e.await(other.ID, "waiting")
		res := e.do(req{method: "POST", path: "/executions/" + other.ID + "/cancel"})
		if res.status != http.StatusOK {
			t.Fatalf("cancel = %d %s", res.status, res.body)
		}
	})
}

func TestResumeExecution(t *testing.T) {
	e := newEnv(t)
	started := e.start(map[string]any{"input": "Refund order 42?", "chain": approval()})
	ex := e.await(started.ID, "waiting")
	if ex.Waiting == nil || ex.Waiting.Task != "ask" || ex.Waiting.Kind != "input" || ex.Waiting.Prompt != "Refund order 42?" || ex.CurrentTask != "ask" {
		t.Fatalf("waiting execution %+v (waiting %+v)", ex, ex.Waiting)
	}
	path := "/executions/" + started.ID + "/resume"

	e.do(req{method: "POST", path: path, body: map[string]any{"input": "yes", "inputType": "strng"}}).wantError(t, http.StatusUnprocessableEntity, "inputType")
	e.do(req{method: "POST", path: path, body: map[string]any{"inptu": "yes"}}).wantError(t, http.StatusUnprocessableEntity, "inptu")
	e.do(req{method: "POST", path: "/executions/nope/resume", body: map[string]any{"input": "yes"}}).wantError(t, http.StatusNotFound, "")

	res := e.do(req{method: "POST", path: path, body: map[string]any{"input": "yes"}})
	if res.status != http.StatusAccepted {
		t.Fatalf("resume = %d %s", res.status, res.body)
	}
	ex = e.await(started.ID, "succeeded")
	if ex.Output != "yes" || ex.StepCount != 3 || ex.Waiting != nil {
		t.Errorf("resumed execution %+v", ex)
	}
	// The resume is a step of its own: the paused task, completed with the
	// input given.
	var steps []map[string]any
	e.do(req{method: "GET", path: "/executions/" + started.ID + "/steps"}).decode(t, &steps)
	if len(steps) != 3 || steps[1]["taskID"] != "ask" || steps[1]["output"] != "yes" || steps[2]["taskID"] != "done" {
		t.Errorf("steps %v", steps)
	}
	got := e.do(req{method: "POST", path: path, body: map[string]any{"input": "again"}}).wantError(t, http.StatusUnprocessableEntity, "")
	if !strings.Contains(got.Error.Message, "not waiting") {
		t.Errorf("message %q", got.Error.Message)
	}
}

// TestSyncPathsAnswerAccepted checks that /tasks and /execute answer 202
// with the execution's id when it cannot finish within SyncTimeout or
// waits for input, and that the execution then finishes in the
// background.
func TestSyncPathsAnswerAccepted(t *testing.T) {
	e := newEnv(t, options{cfg: func(c *api.Config) { c.SyncTimeout = 300 * time.Millisecond }})
	e.addOllama("local-ollama")
	e.llm.Script(
		fakellm.Reply{Match: "slow", Text: "late answer", Latency: time.Second},
		fakellm.Reply{Match: "quick", Text: "quick answer"},
	)
	t.Run("tasks", func(t *testing.T) {
		res := e.do(req{method: "POST", path: "/tasks", body: map[string]any{"input": "a slow question", "chain": linear("c",
			map[string]any{"id": "first", "handler": "noop"},
			map[string]any{"id": "ask", "handler": "prompt_to_string"},
		)}})
		if res.status != http.StatusAccepted {
			t.Fatalf("POST /tasks = %d %s, want 202", res.status, res.body)
		}
		var got acceptedBody
		res.decode(t, &got)
		if got.ID == "" || got.Status == "succeeded" || len(got.State) != 1 || got.State[0]["taskID"] != "first" {
			t.Errorf("202 body %s", res.body)
		}
		if ex := e.await(got.ID, "succeeded"); ex.Output != "late answer" || ex.StepCount != 2 {
			t.Errorf("execution %+v", ex)
		}
	})
	t.Run("execute", func(t *testing.T) {
		res := e.do(req{method: "POST", path: "/execute", body: map[string]any{"prompt": "slow one"}})
		if res.status != http.StatusAccepted {
			t.Fatalf("POST /execute = %d %s, want 202", res.status, res.body)
		}
		var got acceptedBody
		res.decode(t, &got)
		if ex := e.await(got.ID, "succeeded"); ex.Output != "late answer" {
			t.Errorf("execution %+v", ex)
		}
	})
	t.Run("quick answers stay 200", func(t *testing.T) {
		res := e.do(req{method: "POST", path: "/execute", body: map[string]any{"prompt": "quick one"}})
		if res.status != http.StatusOK || !strings.Contains(string(res.body), "quick answer") {
			t.Errorf("POST /execute = %d %s", res.status, res.body)
		}
	})
	t.Run("waiting for input", func(t *testing.T) {
		res := e.do(req{method: "POST", path: "/tasks", body: map[string]any{"input": "ok?", "chain": approval()}})
		if res.status != http.StatusAccepted {
			t.Fatalf("POST /tasks = %d %s, want 202", res.status, res.body)
		}
		var got acceptedBody
		res.decode(t, &got)
		if got.Status != "waiting" || len(got.State) != 1 || got.State[0]["taskID"] != "ask" {
			t.Errorf("202 body %s", res.body)
		}
		e.do(req{method: "POST", path: "/executions/" + got.ID + "/resume", body: map[string]any{"input": "fine"}})
		if ex := e.await(got.ID, "succeeded"); ex.Output != "fine" {
			t.Errorf("execution %+v", ex)
		}
	})
}
