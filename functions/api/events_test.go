package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

// sse is one server-sent event.
type sse struct {
	id, event string
	data      map[string]any
}

// readEvents parses an event stream, skipping comment lines.
func readEvents(t *testing.T, body []byte) []sse {
	t.Helper()
	var out []sse
	for _, block := range strings.Split(string(body), "\n\n") {
		var ev sse
		var data string
		for _, line := range strings.Split(block, "\n") {
			switch {
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				ev.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = strings.TrimPrefix(line, "data: ")
			}
		}
		if ev.event == "" && data == "" {
			continue
		}
		if err := json.Unmarshal([]byte(data), &ev.data); err != nil {
			t.Fatalf("event %q: data %q is not JSON: %v", ev.event, data, err)
		}
		out = append(out, ev)
	}
	return out
}

// wantSteps checks that events are steps from..to, each once and in order,
// followed by the end event with the status.
func wantSteps(t *testing.T, events []sse, from, to int, status string) {
	t.Helper()
	if len(events) != to-from+2 {
		t.Fatalf("%d events, want steps %d..%d and the end: %+v", len(events), from, to, events)
	}
	for i, ev := range events[:len(events)-1] {
		want := from + i
		if ev.event != "step" || ev.id != fmt.Sprint(want) || ev.data["index"] != float64(want) || ev.data["taskID"] == "" {
			t.Errorf("event %d = %+v, want step %d", i, ev, want)
		}
	}
	end := events[len(events)-1]
	if end.event != "end" || end.data["status"] != status || end.data["stepCount"] != float64(to) {
		t.Errorf("last event %+v, want the end of a %s execution of %d steps", end, status, to)
	}
}

func TestExecutionEvents(t *testing.T) {
	e := newEnv(t)
	e.addOllama("local-ollama")
	// Each model step takes a while, so the stream opens while the
	// execution runs and sees steps as they commit.
	e.llm.Script(fakellm.Reply{Match: "slow", Latency: 150 * time.Millisecond})
	chain := linear("events",
		map[string]any{"id": "one", "handler": "prompt_to_string"},
		map[string]any{"id": "two", "handler": "prompt_to_string"},
		map[string]any{"id": "three", "handler": "noop"},
	)
	started := e.start(map[string]any{"input": "a slow start", "chain": chain})
	path := started.Links.Events

	t.Run("live", func(t *testing.T) {
		res := e.do(req{method: "GET", path: path})
		if res.status != http.StatusOK || !strings.HasPrefix(res.header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("GET %s = %d %s", path, res.status, res.header.Get("Content-Type"))
		}
		wantSteps(t, readEvents(t, res.body), 1, 3, "succeeded")
	})
	t.Run("late client gets the past steps first", func(t *testing.T) {
		wantSteps(t, readEvents(t, e.do(req{method: "GET", path: path}).body), 1, 3, "succeeded")
	})
	t.Run("Last-Event-ID resumes after that step", func(t *testing.T) {
		res := e.do(req{method: "GET", path: path, header: map[string]string{"Last-Event-ID": "2"}})
		wantSteps(t, readEvents(t, res.body), 3, 3, "succeeded")
	})
	t.Run("waiting ends the stream", func(t *testing.T) {
		waiting := e.start(map[string]any{"input": "ok?", "chain": approval()})
		events := readEvents(t, e.do(req{method: "GET", path: waiting.Links.Events}).body)
		wantSteps(t, events, 1, 1, "waiting")
		if w, _ := events[1].data["waiting"].(map[string]any); w["task"] != "ask" {
			t.Errorf("end event %v does not say what the execution waits for", events[1].data)
		}
	})
	t.Run("more steps than a page", func(t *testing.T) {
		var tasks []map[string]any
		for i := range 120 {
			tasks = append(tasks, map[string]any{"id": fmt.Sprintf("n%d", i), "handler": "noop"})
		}
		long := linear("long", tasks...)
		long["max_steps"] = 200
		done := e.start(map[string]any{"input": "x", "chain": long})
		wantSteps(t, readEvents(t, e.do(req{method: "GET", path: done.Links.Events}).body), 1, 120, "succeeded")
	})
	t.Run("bad Last-Event-ID", func(t *testing.T) {
		e.do(req{method: "GET", path: path, header: map[string]string{"Last-Event-ID": "x"}}).wantError(t, http.StatusBadRequest, "Last-Event-ID")
	})
	t.Run("unknown execution", func(t *testing.T) {
		e.do(req{method: "GET", path: "/executions/nope/events"}).wantError(t, http.StatusNotFound, "")
	})
}

// TestExecutionEventsEndOnClose checks that Close ends the stream of an
// execution that is still running, without an end event.
func TestExecutionEventsEndOnClose(t *testing.T) {
	e := newEnv(t)
	e.addOllama("local-ollama")
	e.llm.Script(fakellm.Reply{Match: "forever", Latency: time.Hour})
	started := e.start(map[string]any{"input": "forever", "chain": linear("slow", map[string]any{"id": "ask", "handler": "prompt_to_string"})})
	e.await(started.ID, "running")
	e.api.Close()
	res := e.do(req{method: "GET", path: started.Links.Events})
	if res.status != http.StatusOK {
		t.Fatalf("GET events = %d %s", res.status, res.body)
	}
	if events := readEvents(t, res.body); len(events) != 0 {
		t.Errorf("events after Close: %+v", events)
	}
}
