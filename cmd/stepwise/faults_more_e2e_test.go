package main_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

// postTolerant posts body to path and returns the execution id of a 202,
// or "" when the server died before it answered (a failpoint may be
// reached before the answer is written).
func postTolerant(t *testing.T, srv *server, path, body string) string {
	t.Helper()
	resp, err := http.Post(srv.url+path, "application/json", strings.NewReader(body))
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST %s = %d, want 202", path, resp.StatusCode)
	}
	return strings.TrimPrefix(resp.Header.Get("Location"), "/executions/")
}

// onlyExecution returns the id of the one execution the server has.
func onlyExecution(t *testing.T, srv *server) string {
	t.Helper()
	var list []struct{ ID string }
	srv.must(http.StatusOK, "GET", "/executions", nil, &list)
	if len(list) != 1 {
		t.Fatalf("GET /executions lists %d executions, want 1: %+v", len(list), list)
	}
	return list[0].ID
}

// promptsStarting counts the model calls whose prompt begins with prefix.
func promptsStarting(fake *fakellm.Server, prefix string) int {
	n := 0
	for _, r := range fake.Requests() {
		if strings.HasPrefix(r.Prompt, prefix) {
			n++
		}
	}
	return n
}

func TestServeFailpointsMidChain(t *testing.T) {
	const n = 8
	tests := []struct {
		failpoint string
		// rerun is the step whose model call is made twice: the crash
		// came after it and before its commit. 0 means none is.
		rerun int
	}{
		{core.FailAfterCommitBeforeEnqueue, 0},
		{core.FailAfterStepBeforeCommit, 1},
	}
	for _, tt := range tests {
		t.Run(tt.failpoint, func(t *testing.T) {
			fake := fakellm.Start()
			t.Cleanup(fake.Close)
			fake.Script(fakellm.Reply{Latency: 30 * time.Millisecond})
			dir := t.TempDir()
			env := []string{"TASK_MODEL=llama3.2:1b", "OLLAMA_BACKEND_URL=" + fake.URL()}

			srv := startServer(t, dir, append(env, "STEPWISE_FAILPOINT="+tt.failpoint), quickRecovery...)
			posted := postTolerant(t, srv, "/executions", longChain(n, ""))
			select {
			case <-srv.done:
			case <-time.After(60 * time.Second):
				t.Fatalf("the server never reached failpoint %s:\n%s", tt.failpoint, srv.logText())
			}
			if srv.code != 137 || !strings.Contains(srv.logText(), "failpoint reached") {
				t.Fatalf("exit code %d, want 137 at the failpoint:\n%s", srv.code, srv.logText())
			}

			srv = startServer(t, dir, env, quickRecovery...)
			id := onlyExecution(t, srv)
			if posted != "" && posted != id {
				t.Fatalf("the restarted server has execution %s, the POST made %s", id, posted)
			}
			final := waitExecution(t, srv, id, func(st executionState) bool { return st.Status != "queued" && st.Status != "running" })
			if final.Status != "succeeded" || final.StepCount != n {
				t.Fatalf("after the restart: %+v, want succeeded after %d steps", final, n)
			}
			var want []string
			for i := 1; i <= n; i++ {
				want = append(want, fmt.Sprintf("t%d", i))
			}
			if got := stepTasks(t, srv, id); !slices.Equal(got, want) {
				t.Errorf("steps %v, want each task once, in order", got)
			}
			for i := 1; i <= n; i++ {
				wantCalls := 1
				if i == tt.rerun {
					wantCalls = 2
				}
				if got := promptsStarting(fake, fmt.Sprintf("step %d after", i)); got != wantCalls {
					t.Errorf("step %d asked the model %d times, want %d", i, got, wantCalls)
				}
			}
		})
	}
}

func TestServeBackendFailsThenTimesOut(t *testing.T) {
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	fake.Script(
		fakellm.Reply{Match: "flaky", Status: http.StatusInternalServerError, Text: "backend broke", Times: 2},
		fakellm.Reply{Match: "flaky", Latency: time.Minute, Times: 2},
	)
	dir := t.TempDir()
	srv := startServer(t, dir, []string{"TASK_MODEL=llama3.2:1b", "OLLAMA_BACKEND_URL=" + fake.URL()}, quickRecovery...)
	body := `{"input": "start", "chain": {"id": "flaky", "tasks": [
	  {"id": "warm", "handler": "prompt_to_string", "prompt_template": "warm up", "transition": {"branches": [{"operator": "default", "goto": "call"}]}},
	  {"id": "call", "handler": "prompt_to_string", "prompt_template": "flaky call", "timeout": "500ms",
	   "retry_on_failure": 3, "retry_backoff": "20ms",
	   "transition": {"on_failure": "fallback", "branches": [{"operator": "default", "goto": "end"}]}},
	  {"id": "fallback", "handler": "noop", "prompt_template": "fell back"}]}}`
	var started struct{ ID string }
	srv.must(http.StatusAccepted, "POST", "/executions", body, &started)
	final := waitExecution(t, srv, started.ID, func(st executionState) bool { return st.Status != "queued" && st.Status != "running" })
	if final.Status != "succeeded" || final.Output != "fell back" {
		t.Fatalf("execution %+v, want succeeded through the on_failure task", final)
	}

	var steps []struct {
		Index      int    `json:"index"`
		TaskID     string `json:"taskID"`
		Attempt    int    `json:"attempt"`
		Transition string `json:"transition"`
		Error      struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		} `json:"error"`
	}
	srv.must(http.StatusOK, "GET", "/executions/"+started.ID+"/steps", nil, &steps)
	type attempt struct {
		task       string
		attempt    int
		transition string
		// failure is a piece of the attempt's error and code its error
		// code; both "" for a success.
		failure, code string
	}
	want := []attempt{
		{"warm", 1, "call", "", ""},
		{"call", 1, "call", "500", core.EUNAVAILABLE},
		{"call", 2, "call", "500", core.EUNAVAILABLE},
		{"call", 3, "call", "timed out", core.ETIMEOUT},
		{"call", 4, "fallback", "timed out", core.ETIMEOUT},
		{"fallback", 1, "end", "", ""},
	}
	if len(steps) != len(want) {
		t.Fatalf("%d step records, want %d: %+v", len(steps), len(want), steps)
	}
	for i, s := range steps {
		w := want[i]
		if s.Index != i+1 || s.TaskID != w.task || s.Attempt != w.attempt || s.Transition != w.transition {
			t.Errorf("step %d = %+v, want index %d, task %s attempt %d, then %s", i+1, s, i+1, w.task, w.attempt, w.transition)
		}
		if (w.failure == "") != (s.Error.Error == "") || !strings.Contains(s.Error.Error, w.failure) {
			t.Errorf("step %d error %q, want one mentioning %q", i+1, s.Error.Error, w.failure)
		}
		if s.Error.Code != w.code {
			t.Errorf("step %d error code %q, want %q", i+1, s.Error.Code, w.code)
		}
	}
	if got := promptsStarting(fake, "flaky call"); got != 4 {
		t.Errorf("the backend got %d calls of the flaky task, want 4 (one per attempt)", got)
	}
}

func TestServeWaitingExecutionSurvivesRestart(t *testing.T) {
	tests := []struct {
		name string
		stop func(t *testing.T, srv *server)
	}{
		{"SIGTERM", func(t *testing.T, srv *server) {
			if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
		}},
		{"Kill9", func(t *testing.T, srv *server) {
			if err := srv.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := fakellm.Start()
			t.Cleanup(fake.Close)
			dir := t.TempDir()
			env := []string{"TASK_MODEL=llama3.2:1b", "OLLAMA_BACKEND_URL=" + fake.URL()}
			body := `{"input": "v2", "chain": {"id": "approve", "tasks": [
			  {"id": "draft", "handler": "prompt_to_string", "prompt_template": "draft notes for {{.input}}", "transition": {"branches": [{"operator": "default", "goto": "ask"}]}},
			  {"id": "ask", "handler": "await_input", "prompt_template": "Ship it? yes or no", "transition": {"branches": [
			    {"operator": "equals", "when": "yes", "goto": "ship"}, {"operator": "equals", "when": "no", "goto": "end"}]}},
			  {"id": "ship", "handler": "prompt_to_string", "prompt_template": "ship {{.input}} ({{.ask}})"}]}}`

			srv := startServer(t, dir, env, quickRecovery...)
			var started struct{ ID string }
			srv.must(http.StatusAccepted, "POST", "/executions", body, &started)
			waitExecution(t, srv, started.ID, func(st executionState) bool { return st.Status == "waiting" })
			tt.stop(t, srv)
			<-srv.done

			srv = startServer(t, dir, env, quickRecovery...)
			var waiting struct {
				Status  string `json:"status"`
				Waiting struct {
					Task   string `json:"task"`
					Kind   string `json:"kind"`
					Prompt string `json:"prompt"`
				} `json:"waiting"`
			}
			srv.must(http.StatusOK, "GET", "/executions/"+started.ID, nil, &waiting)
			if waiting.Status != "waiting" || waiting.Waiting.Task != "ask" || waiting.Waiting.Kind != "input" || waiting.Waiting.Prompt != "Ship it? yes or no" {
				t.Fatalf("after the restart: %+v, want waiting on ask for input", waiting)
			}
			srv.must(http.StatusAccepted, "POST", "/executions/"+started.ID+"/resume", `{"input": "yes"}`, nil)
			final := waitExecution(t, srv, started.ID, func(st executionState) bool { return st.Status != "queued" && st.Status != "running" })
			if final.Status != "succeeded" || final.StepCount != 4 {
				t.Fatalf("after the resume: %+v, want succeeded after 4 steps", final)
			}
			// The pause and the resume are both recorded on ask.
			if got, want := stepTasks(t, srv, started.ID), []string{"draft", "ask", "ask", "ship"}; !slices.Equal(got, want) {
				t.Errorf("steps %v, want %v", got, want)
			}
			if promptsStarting(fake, "draft notes for v2") != 1 || promptsStarting(fake, "ship v2 (yes)") != 1 {
				t.Errorf("model calls %+v: want the draft once (not re-run after the restart) and the ship step once, with the resume's input", fake.Requests())
			}
		})
	}
}

// TestServeStepLongerThanTheLease: a model call that takes three leases'
// time keeps its lease alive, so the sweeper never hands the execution to
// another worker and the step runs once.
func TestServeStepLongerThanTheLease(t *testing.T) {
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	fake.Script(fakellm.Reply{Match: "slow thought", Text: "finally", Latency: 3 * time.Second})
	srv := startServer(t, t.TempDir(), []string{"TASK_MODEL=llama3.2:1b", "OLLAMA_BACKEND_URL=" + fake.URL()},
		"-lease-ttl", "1s", "-sweep-interval", "200ms")
	body := `{"input": "slow thought", "chain": {"id": "slow", "tasks": [{"id": "think", "handler": "prompt_to_string"}]}}`
	var started struct{ ID string }
	srv.must(http.StatusAccepted, "POST", "/executions", body, &started)
	final := waitExecution(t, srv, started.ID, func(st executionState) bool { return st.Status != "queued" && st.Status != "running" })
	if final.Status != "succeeded" || final.Output != "finally" {
		t.Fatalf("execution %+v, want succeeded with the slow answer", final)
	}
	if n := promptsStarting(fake, "slow thought"); n != 1 {
		t.Errorf("the model was asked %d times, want once: the lease lapsed mid-step", n)
	}
}
