package main_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

// TestServeEvents runs the reference's flow on the real binary: a signed
// webhook → its mapping → a push event → a function (in a child process
// of the server) → sendEvent → a second function that runs a stored chain
// to its end. Then the abuse cases of reliability.md §2.2 as functions:
// each ends as a failed run, the server answers throughout, and a normal
// function still runs after them.
func TestServeEvents(t *testing.T) {
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	dir := t.TempDir()
	s := startServer(t, dir, seedEnv(fake.URL()), "-function-workers", "1")
	created := func(path string, body any) {
		t.Helper()
		if code, out, _ := s.do(http.MethodPost, path, body); code != http.StatusCreated {
			t.Fatalf("POST %s = %d %s", path, code, out)
		}
	}
	created("/mappings", map[string]any{"path": "github", "eventType": "github", "eventTypeField": "$headers.X-GitHub-Event", "eventSource": "github",
		"aggregateType": "repository", "aggregateIDField": "repository.full_name", "version": 1, "signature": map[string]any{"scheme": "github", "secret": "s3cret"}})
	created("/taskchains", map[string]any{"id": "summarize", "tasks": []any{map[string]any{"id": "say", "handler": "noop", "prompt_template": "summary of {{.input.repo}}",
		"transition": map[string]any{"branches": []any{map[string]any{"operator": "default", "goto": "end"}}}}}})
	created("/functions", map[string]any{"name": "onPush", "script": `function onPush(e) { return sendEvent("push.seen", {repo: e.aggregateID, pid: typeof process}) }`})
	created("/functions", map[string]any{"name": "onSeen", "script": `function onSeen(e) { return executeTaskChain("summarize", {repo: e.data.repo}) }`})
	created("/event-triggers", map[string]any{"name": "push", "listenFor": map[string]any{"type": "push"}, "function": "onPush"})
	created("/event-triggers", map[string]any{"name": "seen", "listenFor": map[string]any{"type": "push.seen"}, "function": "onSeen"})

	body := `{"repository": {"full_name": "acme/api"}}`
	mac := hmac.New(sha256.New, []byte("s3cret"))
	mac.Write([]byte(body))
	req, _ := http.NewRequest(http.MethodPost, s.url+"/ingest?path=github", bytes.NewReader([]byte(body)))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", "d-1")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	answered := time.Since(start)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /ingest = %d", resp.StatusCode)
	}

	type run struct {
		Function, Error, Status string
		Result                  map[string]any
		DurationMs              float64 `json:"duration_ms"`
	}
	// runs waits for want runs to be done (a run is listed from its start,
	// as running).
	runs := func(want int) []run {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			var all, done []run
			code, out, _ := s.do(http.MethodGet, "/function-runs", nil)
			if code != http.StatusOK || json.Unmarshal(out, &all) != nil {
				t.Fatalf("GET /function-runs = %d %s", code, out)
			}
			for _, r := range all {
				if r.Status == "done" {
					done = append(done, r)
				}
			}
			if len(done) >= want || time.Now().After(deadline) {
				return done
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	got := runs(2)
	t.Logf("ingest answered in %v; both functions ran within %v", answered, time.Since(start))
	if len(got) != 2 {
		t.Fatalf("runs %+v", got)
	}
	for _, r := range got {
		if r.Error != "" {
			t.Errorf("%s failed: %s", r.Function, r.Error)
		}
		if r.Function == "onSeen" && (r.Result["status"] != "succeeded" || r.Result["response"] != "summary of acme/api") {
			t.Errorf("onSeen's result %v", r.Result)
		}
	}

	// The abuse catalogue, each a function on its own event type.
	abuse := []struct{ name, script string }{
		{"loop", "for (;;) {}"},
		{"bigString", "'x'.repeat(Math.pow(1024, 4))"},
		{"recurse", "function f() { return f() } f()"},
		{"doubling", "var s = 'x'; for (var i = 0; i < 40; i++) s += s"},
		{"regexp", "/^(a+)+\\1$/.test('a'.repeat(30) + 'b')"},
		{"tamper", "Object.prototype.admin = true"},
	}
	for _, a := range abuse {
		created("/functions", map[string]any{"name": a.name, "script": a.script, "timeoutMs": 200})
		created("/event-triggers", map[string]any{"name": a.name, "listenFor": map[string]any{"type": "abuse." + a.name}, "function": a.name})
		created("/events", map[string]any{"event_type": "abuse." + a.name, "aggregate_id": "x", "aggregate_type": "test", "version": 1})
		// The server answers while the function runs.
		if code, _, _ := s.do(http.MethodGet, "/health", nil); code != http.StatusOK {
			t.Errorf("/health = %d while %s runs", code, a.name)
		}
	}
	got = runs(2 + len(abuse))
	failed := map[string]string{}
	for _, r := range got {
		failed[r.Function] = r.Error
	}
	for _, a := range abuse {
		if failed[a.name] == "" {
			t.Errorf("%s: no failed run (runs %+v)", a.name, got)
		}
	}
	created("/functions", map[string]any{"name": "after", "script": "function after(e) { return {ok: ({}).admin === undefined} }"})
	created("/event-triggers", map[string]any{"name": "after", "listenFor": map[string]any{"type": "after"}, "function": "after"})
	created("/events", map[string]any{"event_type": "after", "aggregate_id": "x", "aggregate_type": "test", "version": 1})
	got = runs(3 + len(abuse))
	ok := false
	for _, r := range got {
		ok = ok || r.Function == "after" && r.Error == "" && r.Result["ok"] == true
	}
	if !ok {
		t.Errorf("a function after the abuse: runs %+v", got)
	}
	if code := s.stop(); code != 0 {
		t.Errorf("serve exited %d:\n%s", code, s.logText())
	}
	if strings.Contains(s.logText(), "panic") {
		t.Errorf("the server log has a panic:\n%s", s.logText())
	}
}
