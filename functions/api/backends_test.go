package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/functions/api"
)

func TestBackends(t *testing.T) {
	e := newEnv(t)
	id := e.addOllama("local-ollama")

	t.Run("get merges live state", func(t *testing.T) {
		eventually(t, func() string {
			var b struct {
				Name         string
				Models       []string
				PulledModels []struct{ Name string }
				Reachable    bool
				CreatedAt    time.Time
			}
			e.do(req{method: "GET", path: "/backends/" + id}).decode(t, &b)
			if b.Name != "local-ollama" || b.CreatedAt.IsZero() || b.Models == nil || !b.Reachable {
				return "backend view incomplete"
			}
			if len(b.PulledModels) != len(fakellm.DefaultModels()) {
				return "pulledModels not listed yet"
			}
			return ""
		})
	})
	t.Run("unreachable backend shows its error", func(t *testing.T) {
		var down struct{ ID string }
		e.do(req{method: "POST", path: "/backends", body: map[string]any{"name": "down", "baseUrl": "http://127.0.0.1:1", "type": "ollama"}}).decode(t, &down)
		var b struct {
			Reachable bool
			Error     string
		}
		e.do(req{method: "GET", path: "/backends/" + down.ID}).decode(t, &b)
		if b.Reachable || !strings.Contains(b.Error, "127.0.0.1:1") {
			t.Errorf("down backend = %+v, want unreachable with an error naming it", b)
		}
		if res := e.do(req{method: "DELETE", path: "/backends/" + down.ID}); res.status != http.StatusOK {
			t.Fatalf("DELETE = %d %s", res.status, res.body)
		}
	})
	t.Run("replace", func(t *testing.T) {
		var b struct{ ID, Name, BaseURL string }
		res := e.do(req{method: "PUT", path: "/backends/" + id, body: map[string]any{"name": "renamed", "baseUrl": e.llm.URL() + "/", "type": "OLLAMA"}})
		if res.status != http.StatusOK {
			t.Fatalf("PUT = %d %s", res.status, res.body)
		}
		res.decode(t, &b)
		if b.ID != id || b.Name != "renamed" || b.BaseURL != e.llm.URL() {
			t.Errorf("replaced %+v", b)
		}
	})

	tests := []struct {
		name, method, path string
		body               any
		status             int
		param, text        string
	}{
		{"no type", "POST", "/backends", map[string]any{"name": "b", "baseUrl": "http://127.0.0.1:1"}, 422, "type", "required"},
		{"unknown type", "POST", "/backends", map[string]any{"name": "b", "baseUrl": "http://127.0.0.1:1", "type": "tgi"}, 422, "type", "tgi"},
		{"bad URL", "POST", "/backends", map[string]any{"name": "b", "baseUrl": "ftp://x", "type": "ollama"}, 422, "baseUrl", "ftp://x"},
		{"duplicate name", "POST", "/backends", map[string]any{"name": "renamed", "baseUrl": "http://127.0.0.1:1", "type": "ollama"}, 409, "name", "renamed"},
		{"duplicate URL", "POST", "/backends", map[string]any{"name": "b", "baseURL": e.llm.URL(), "type": "ollama"}, 409, "baseUrl", e.llm.URL()},
		{"typo", "POST", "/backends", map[string]any{"name": "b", "base_url": "http://127.0.0.1:1", "type": "ollama"}, 422, "base_url", `did you mean "baseUrl"`},
		{"both spellings", "POST", "/backends", map[string]any{"name": "b", "baseUrl": "http://a", "baseURL": "http://a", "type": "ollama"}, 422, "baseUrl", "same field"},
		{"id mismatch", "PUT", "/backends/" + id, map[string]any{"id": "other", "name": "b", "baseUrl": "http://127.0.0.1:1", "type": "ollama"}, 422, "id", "other"},
		{"get missing", "GET", "/backends/ghost", nil, 404, "", "ghost"},
		{"replace missing", "PUT", "/backends/ghost", map[string]any{"name": "g", "baseUrl": "http://127.0.0.1:2", "type": "ollama"}, 404, "", "ghost"},
		{"delete missing", "DELETE", "/backends/ghost", nil, 404, "", "ghost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.do(req{method: tt.method, path: tt.path, body: tt.body}).wantError(t, tt.status, tt.param)
			if !strings.Contains(got.Error.Message, tt.text) {
				t.Errorf("message %q does not contain %q", got.Error.Message, tt.text)
			}
		})
	}

	t.Run("delete", func(t *testing.T) {
		var msg string
		e.do(req{method: "DELETE", path: "/backends/" + id}).decode(t, &msg)
		if msg != "backend removed" {
			t.Errorf("DELETE = %q", msg)
		}
		var state []any
		e.do(req{method: "GET", path: "/state"}).decode(t, &state)
		if len(state) != 0 {
			t.Errorf("state after delete = %v", state)
		}
	})
}

// TestQueue holds one download on the fake server so that another waits
// in the queue, then removes and cancels them.
func TestQueue(t *testing.T) {
	e := newEnv(t)
	e.llm.Script(fakellm.Reply{Match: "held", Latency: time.Minute})
	id := e.addOllama("local-ollama")
	e.do(req{method: "POST", path: "/backend-affinity/internal_tasks_group/backends/" + id})
	for _, m := range []string{"held-a:1b", "held-b:1b"} {
		e.do(req{method: "POST", path: "/models", body: map[string]any{"model": m, "contextLength": 2048, "canPrompt": true}})
		e.do(req{method: "POST", path: "/model-affinity/internal_tasks_group/models/" + m})
	}
	var queued string
	eventually(t, func() string {
		var jobs []struct {
			TaskType string
			ModelJob struct{ URL, Model string }
		}
		e.do(req{method: "GET", path: "/queue"}).decode(t, &jobs)
		if len(jobs) == 0 {
			return "nothing queued"
		}
		if jobs[0].TaskType != "model_download" || jobs[0].ModelJob.URL != e.llm.URL() {
			return "unexpected job"
		}
		queued = jobs[0].ModelJob.Model
		return ""
	})
	var msg string
	e.do(req{method: "DELETE", path: "/queue/" + queued}).decode(t, &msg)
	if msg != "Model removed from queue" {
		t.Errorf("DELETE /queue/%s = %q", queued, msg)
	}
	e.do(req{method: "DELETE", path: "/queue/library/never:1b"}).wantError(t, http.StatusNotFound, "")
	e.do(req{method: "DELETE", path: "/queue/cancel?model=held-a:1b"}).decode(t, &msg)
	if msg != "Model download cancellation initiated" {
		t.Errorf("cancel = %q", msg)
	}
	e.do(req{method: "DELETE", path: "/queue/cancel?url=" + e.llm.URL()}).decode(t, &msg)
	e.do(req{method: "DELETE", path: "/queue/cancel"}).wantError(t, http.StatusBadRequest, "url")
}

// stream opens an event stream and checks its head against the document;
// lines delivers its lines until the client stops.
func (e *env) stream(path string) (lines <-chan string) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	hr, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := e.srv.Client().Do(hr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.check(hr, nil, &response{status: res.StatusCode, header: res.Header})
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		e.t.Fatalf("GET %s = %d %s", path, res.StatusCode, res.Header.Get("Content-Type"))
	}
	out := make(chan string)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(out)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			select {
			case out <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	e.t.Cleanup(func() { cancel(); res.Body.Close(); <-done })
	return out
}

// next returns the first line that keep accepts, failing after a while.
func next(t *testing.T, lines <-chan string, keep func(string) bool) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the stream ended")
			}
			if keep(l) {
				return l
			}
		case <-timeout:
			t.Fatal("no such line on the stream")
		}
	}
}

func TestDownloadProgressStream(t *testing.T) {
	e := newEnv(t)
	id := e.addOllama("local-ollama")
	e.do(req{method: "POST", path: "/backend-affinity/internal_tasks_group/backends/" + id})
	lines := e.stream("/queue/inProgress")
	e.do(req{method: "POST", path: "/models", body: map[string]any{"model": "phi3:mini", "contextLength": 4096, "canPrompt": true}})
	e.do(req{method: "POST", path: "/model-affinity/internal_tasks_group/models/phi3:mini"})

	line := next(t, lines, func(l string) bool { return strings.HasPrefix(l, "data: ") && strings.Contains(l, "phi3:mini") })
	var p struct {
		Status, Digest, Model, BaseURL string
		Total, Completed               int64
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &p); err != nil {
		t.Fatalf("event %q: %v", line, err)
	}
	if p.Model != "phi3:mini" || p.BaseURL != e.llm.URL() || p.Status == "" {
		t.Errorf("progress %+v", p)
	}
	e.checkSchema("Progress", []byte(strings.TrimPrefix(line, "data: ")))
	eventually(t, func() string {
		var b struct{ PulledModels []struct{ Model string } }
		e.do(req{method: "GET", path: "/backends/" + id}).decode(t, &b)
		for _, m := range b.PulledModels {
			if m.Model == "phi3:mini" {
				return ""
			}
		}
		return "phi3:mini was not pulled"
	})
}

func TestStreamHeartbeat(t *testing.T) {
	e := newEnv(t, options{cfg: func(c *api.Config) { c.Heartbeat = 10 * time.Millisecond }})
	lines := e.stream("/queue/inProgress")
	beats := 0
	next(t, lines, func(l string) bool {
		if l == ": heartbeat" {
			beats++
		}
		return beats == 2
	})
}

func TestCloseEndsStreams(t *testing.T) {
	e := newEnv(t, options{cfg: func(c *api.Config) { c.Heartbeat = time.Hour }})
	lines := e.stream("/queue/inProgress")
	e.api.Close()
	e.api.Close() // twice is fine
	select {
	case l, ok := <-lines:
		if ok {
			t.Fatalf("got line %q, want the stream to end", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream is still open after Close")
	}
}
