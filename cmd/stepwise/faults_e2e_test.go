package main_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

// quickRecovery are serve flags that make a crashed worker's executions
// continue within seconds: short leases, frequent sweeps, small
// deliveries.
var quickRecovery = []string{"-lease-ttl", "1s", "-sweep-interval", "300ms", "-delivery-steps", "3"}

// longChain is a request body for an n-step chain of prompts, each taking
// the previous answer; with a hook URL, every fourth task instead posts
// the previous answer to it through the webhook hook (a side effect).
func longChain(n int, hookURL string) string {
	var tasks []string
	for i := 1; i <= n; i++ {
		next := "end"
		if i < n {
			next = fmt.Sprintf("t%d", i+1)
		}
		transition := fmt.Sprintf(`"transition": {"branches": [{"operator": "default", "goto": "%s"}]}`, next)
		if hookURL != "" && i%4 == 0 {
			tasks = append(tasks, fmt.Sprintf(`{"id": "t%d", "handler": "hook", "hook": {"name": "webhook", "args": {"url": "%s"}}, %s}`, i, hookURL, transition))
			continue
		}
		tasks = append(tasks, fmt.Sprintf(`{"id": "t%d", "handler": "prompt_to_string", "prompt_template": "step %d after {{.previous_output}}", %s}`, i, i, transition))
	}
	return `{"input": "start", "chain": {"id": "long", "max_steps": 100, "tasks": [` + strings.Join(tasks, ",") + `]}}`
}

// executionState is the part of GET /executions/{id} these tests read.
type executionState struct {
	Status    string `json:"status"`
	StepCount int    `json:"stepCount"`
	Output    any    `json:"output"`
}

// waitExecution polls the execution until done says so, failing after a
// generous bound (a liveness check, not a timing target).
func waitExecution(t *testing.T, srv *server, id string, done func(executionState) bool) executionState {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var st executionState
		status, data, _ := srv.do("GET", "/executions/"+id, nil)
		if status == http.StatusOK && json.Unmarshal(data, &st) == nil && done(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("execution %s: last answer %d %s\nserver log:\n%s", id, status, data, srv.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stepTasks returns the task ids of an execution's step records, in
// index order, failing on a gap or a repeated index.
func stepTasks(t *testing.T, srv *server, id string) []string {
	t.Helper()
	var steps []struct {
		Index  int    `json:"index"`
		TaskID string `json:"taskID"`
	}
	srv.must(http.StatusOK, "GET", "/executions/"+id+"/steps?limit=1000", nil, &steps)
	var tasks []string
	for i, s := range steps {
		if s.Index != i+1 {
			t.Fatalf("step %d has index %d: a gap or a duplicate", i+1, s.Index)
		}
		tasks = append(tasks, s.TaskID)
	}
	return tasks
}

// sideEffects is a webhook receiver that records the Idempotency-Key of
// every call.
type sideEffects struct {
	mu   sync.Mutex
	keys []string
}

func (s *sideEffects) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.keys = append(s.keys, r.Header.Get("Idempotency-Key"))
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("recorded"))
}

func (s *sideEffects) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.keys)
}

func TestServeSurvivesKill9MidChain(t *testing.T) {
	const n = 20
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	fake.Script(fakellm.Reply{Latency: 40 * time.Millisecond}) // every answer takes a while
	effects := &sideEffects{}
	hook := httptest.NewServer(effects)
	t.Cleanup(hook.Close)
	dir := t.TempDir()
	env := []string{"TASK_MODEL=llama3.2:1b", "OLLAMA_BACKEND_URL=" + fake.URL()}
	flags := append([]string{"-webhook-allow-private"}, quickRecovery...)

	srv := startServer(t, dir, env, flags...)
	var started struct{ ID string }
	srv.must(http.StatusAccepted, "POST", "/executions", longChain(n, hook.URL), &started)
	waitExecution(t, srv, started.ID, func(st executionState) bool { return st.StepCount >= 5 })
	if err := srv.cmd.Process.Kill(); err != nil { // kill -9: no shutdown, no last commit
		t.Fatal(err)
	}
	<-srv.done

	srv = startServer(t, dir, env, flags...)
	final := waitExecution(t, srv, started.ID, func(st executionState) bool { return st.Status != "queued" && st.Status != "running" })
	if final.Status != "succeeded" || final.StepCount != n {
		t.Fatalf("after the restart: %+v, want succeeded after %d steps", final, n)
	}
	var want []string
	for i := 1; i <= n; i++ {
		want = append(want, fmt.Sprintf("t%d", i))
	}
	if got := stepTasks(t, srv, started.ID); !slices.Equal(got, want) {
		t.Errorf("steps %v, want each task once, in order", got)
	}
	// Every side effect carried its step's key: a step re-run after the
	// kill repeats its key, never makes a new one.
	keys := effects.seen()
	distinct := slices.Compact(slices.Sorted(slices.Values(keys)))
	var wantKeys []string
	for i := 4; i <= n; i += 4 {
		wantKeys = append(wantKeys, fmt.Sprintf("%s/%d/1", started.ID, i))
	}
	slices.Sort(wantKeys)
	if !slices.Equal(distinct, wantKeys) {
		t.Errorf("idempotency keys %v, want exactly %v", distinct, wantKeys)
	}
	// The same chain run without interruption gives the same output.
	var uninterrupted struct{ Output any }
	srv.must(http.StatusOK, "POST", "/tasks", longChain(n, hook.URL), &uninterrupted)
	if fmt.Sprint(final.Output) != fmt.Sprint(uninterrupted.Output) {
		t.Errorf("output %q, uninterrupted %q", final.Output, uninterrupted.Output)
	}
}

// TestRestartResumesInSeconds is the user story with the default
// flags: a 10-step background execution whose model takes 400 ms a step,
// the server killed with SIGKILL about 2 s in, started again on the same
// file. The execution moves again within seconds (the dead process's
// lease, 3 s by default, then the message sent at start for that moment),
// not after minutes, and ends with every step committed once.
func TestRestartResumesInSeconds(t *testing.T) {
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	fake.Script(fakellm.Reply{Match: "step", Text: "ok", Latency: 400 * time.Millisecond})
	dir := t.TempDir()
	first := startServer(t, dir, seedEnv(fake.URL()))
	var started struct{ ID string }
	first.must(http.StatusAccepted, "POST", "/executions", longChain(10, ""), &started)
	before := waitExecution(t, first, started.ID, func(s executionState) bool { return s.StepCount >= 3 })
	_ = first.cmd.Process.Kill()
	<-first.done

	restart := time.Now()
	second := startServer(t, dir, seedEnv(fake.URL()))
	moved := waitExecution(t, second, started.ID, func(s executionState) bool { return s.StepCount > before.StepCount || s.Status == "succeeded" })
	took := time.Since(restart)
	t.Logf("killed after %d steps; moving again %v after the restart (step %d)", before.StepCount, took.Round(10*time.Millisecond), moved.StepCount)
	// A loose bound: the target is 5 s, a loaded CI machine gets slack.
	if took > 20*time.Second {
		t.Errorf("the execution moved again only %v after the restart", took)
	}
	final := waitExecution(t, second, started.ID, func(s executionState) bool { return s.Status == "succeeded" })
	if final.StepCount != 10 {
		t.Errorf("%d steps, want 10", final.StepCount)
	}
	if tasks := stepTasks(t, second, started.ID); len(tasks) != 10 {
		t.Errorf("steps %v, want each of the 10 tasks once", tasks)
	}
}
