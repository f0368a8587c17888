package api_test

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

const githubSecret = "gh-webhook-secret"

func githubSign(body string) string {
	m := hmac.New(sha256.New, []byte(githubSecret))
	m.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// TestEventFlow is the reference's flow over HTTP: a GitHub webhook →
// its mapping → a push event → a trigger → a function that sends an
// event → a second function that runs a stored chain; and a function that
// reacts to the chain's execution.succeeded lifecycle event.
func TestEventFlow(t *testing.T) {
	e := newEnv(t)
	created := func(path string, body any) {
		t.Helper()
		if res := e.do(req{method: http.MethodPost, path: path, body: body}); res.status != http.StatusCreated {
			t.Fatalf("POST %s = %d %s", path, res.status, res.body)
		}
	}
	created("/mappings", map[string]any{"path": "github", "eventType": "github", "eventTypeField": "$headers.X-GitHub-Event", "eventSource": "github",
		"aggregateType": "repository", "aggregateIDField": "$.repository.full_name", "version": 1,
		"metadataMapping": map[string]string{"delivery": "$headers.X-GitHub-Delivery"},
		"signature":       map[string]any{"scheme": "github", "secret": githubSecret}})
	created("/taskchains", linear("summarize", map[string]any{"id": "say", "handler": "noop", "prompt_template": "summary of {{.input.repo}}"}))
	created("/functions", map[string]any{"name": "onPush", "scriptType": "goja",
		"script": `function onPush(event) { return sendEvent("push.seen", {repo: event.aggregateID, delivery: event.metadata.delivery}) }`})
	created("/functions", map[string]any{"name": "onSeen", "script": `function onSeen(e) { return executeTaskChain("summarize", {repo: e.data.repo}) }`})
	created("/functions", map[string]any{"name": "onDone", "script": `function onDone(e) { console.log("chain", e.data.chain_id, e.data.status); return e.data.output }`})
	created("/event-triggers", map[string]any{"name": "push", "listenFor": map[string]any{"type": "push"}, "type": "function", "function": "onPush"})
	created("/event-triggers", map[string]any{"name": "seen", "listenFor": map[string]any{"type": "push.seen"}, "function": "onSeen"})
	created("/event-triggers", map[string]any{"name": "done", "listenFor": map[string]any{"type": "execution.succeeded"}, "function": "onDone"})

	var mapping struct{ Signature struct{ Secret string } }
	e.do(req{method: http.MethodGet, path: "/mapping?path=github"}).decode(t, &mapping)
	if mapping.Signature.Secret != "[sealed]" {
		t.Errorf("the mapping shows its secret as %q", mapping.Signature.Secret)
	}

	body := `{"ref": "refs/heads/main", "repository": {"full_name": "acme/api"}}`
	headers := map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-42", "X-Hub-Signature-256": githubSign(body)}
	res := e.do(req{method: http.MethodPost, path: "/ingest?path=github", body: body, header: headers})
	if res.status != http.StatusCreated {
		t.Fatalf("POST /ingest = %d %s", res.status, res.body)
	}
	var raw struct {
		ID       string
		NID      int64
		EventIDs []string `json:"event_ids"`
	}
	res.decode(t, &raw)

	// The chain runs in the background; its lifecycle event reaches onDone.
	type run struct {
		Function, Error, Status string
		Result                  any
		Logs                    []string
	}
	var runs []run
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var all []run
		e.do(req{method: http.MethodGet, path: "/function-runs"}).decode(t, &all)
		runs = runs[:0]
		for _, r := range all {
			if r.Status == "done" {
				runs = append(runs, r)
			}
		}
		if len(runs) >= 3 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	byFn := map[string]int{}
	for i, r := range runs {
		byFn[r.Function] = i
		if r.Error != "" {
			t.Errorf("%s failed: %s", r.Function, r.Error)
		}
	}
	if len(runs) != 3 {
		t.Fatalf("runs %+v, want onPush, onSeen and onDone", runs)
	}
	seen, _ := runs[byFn["onSeen"]].Result.(map[string]any)
	if seen["status"] != "succeeded" || seen["response"] != "summary of acme/api" {
		t.Errorf("onSeen's result %v", seen)
	}
	if done := runs[byFn["onDone"]]; len(done.Logs) != 1 || done.Logs[0] != "chain summarize succeeded" {
		t.Errorf("onDone's run %+v", done)
	}

	var evs []struct {
		ID          string
		EventType   string `json:"event_type"`
		AggregateID string `json:"aggregate_id"`
		Metadata    map[string]string
		Hop         int
	}
	e.do(req{method: http.MethodGet, path: "/events/type?event_type=push.seen"}).decode(t, &evs)
	if len(evs) != 1 || evs[0].Hop != 1 || evs[0].AggregateID != "onPush" {
		t.Errorf("push.seen events %+v", evs)
	}
	e.do(req{method: http.MethodGet, path: "/events/aggregate?event_type=push&aggregate_type=repository&aggregate_id=acme/api"}).decode(t, &evs)
	if len(evs) != 1 || evs[0].Metadata["delivery"] != "d-42" {
		t.Errorf("push events %+v", evs)
	}
	var types []string
	e.do(req{method: http.MethodGet, path: "/events/types"}).decode(t, &types)
	if strings.Join(types, ",") == "" || !strings.Contains(strings.Join(types, ","), "execution.succeeded") {
		t.Errorf("types %v", types)
	}

	t.Run("a redelivery and a replay add nothing", func(t *testing.T) {
		res := e.do(req{method: http.MethodPost, path: "/ingest?path=github", body: body, header: headers})
		if res.status != http.StatusOK || res.header.Get("X-Stepwise-Duplicate") != "true" {
			t.Errorf("redelivery = %d %s", res.status, res.body)
		}
		if res := e.do(req{method: http.MethodPost, path: "/replay?nid=" + raw.ID}); res.status != http.StatusAccepted {
			t.Errorf("POST /replay = %d %s", res.status, res.body)
		}
		var all []any
		e.do(req{method: http.MethodGet, path: "/raw-events"}).decode(t, &all)
		var after []any
		e.do(req{method: http.MethodGet, path: "/function-runs"}).decode(t, &after)
		if len(all) != 1 || len(after) != 3 {
			t.Errorf("%d raw events and %d runs, want 1 and 3", len(all), len(after))
		}
		if res := e.do(req{method: http.MethodGet, path: "/raw-events/" + raw.ID}); res.status != http.StatusOK || !strings.Contains(string(res.body), "acme/api") {
			t.Errorf("GET /raw-events/{id} = %d %s", res.status, res.body)
		}
	})
	t.Run("validation names the field", func(t *testing.T) {
		for _, tt := range []struct {
			path  string
			body  any
			param string
		}{
			{"/functions", map[string]any{"name": "broken", "script": "function ("}, "script"},
			{"/event-triggers", map[string]any{"name": "t", "listenFor": map[string]any{"type": "x"}, "function": "missing"}, "function"},
			{"/event-triggers", map[string]any{"name": "c", "listenFor": map[string]any{"type": "x"}, "type": "chain", "chain": "missing"}, "chain"},
			{"/mappings", map[string]any{"path": "x", "eventType": "t", "eventSource": "s", "aggregateType": "a", "version": 0}, "version"},
			{"/mappings", map[string]any{"path": "github", "eventType": "t", "eventSource": "s", "aggregateType": "a", "version": 1}, "path"},
			{"/events", map[string]any{"event_type": "x", "aggregate_id": "a", "aggregate_type": "t", "version": 1, "created_at": "2020-01-01T00:00:00Z"}, "created_at"},
			{"/events", map[string]any{"event_type": "x", "aggregate_type": "t", "version": 1}, "aggregate_id"},
		} {
			res := e.do(req{method: http.MethodPost, path: tt.path, body: tt.body})
			var body struct{ Error struct{ Param string } }
			res.decode(t, &body)
			if res.status < 400 || body.Error.Param != tt.param {
				t.Errorf("POST %s = %d %s, want an error naming %s", tt.path, res.status, res.body, tt.param)
			}
		}
	})
	t.Run("the stream sees an appended event", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hreq, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+"/events/stream/note", nil)
		resp, err := http.DefaultClient.Do(hreq)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		lines := bufio.NewScanner(resp.Body)
		if !lines.Scan() || lines.Text() != "data: Connected to event stream for type: note" {
			t.Fatalf("first line %q", lines.Text())
		}
		if res := e.do(req{method: http.MethodPost, path: "/events", body: map[string]any{"event_type": "note", "aggregate_id": "n1", "aggregate_type": "note", "version": 1, "data": map[string]any{"text": "hi"}}}); res.status != http.StatusCreated {
			t.Fatalf("POST /events = %d %s", res.status, res.body)
		}
		for lines.Scan() {
			if strings.HasPrefix(lines.Text(), "data: ") {
				if !strings.Contains(lines.Text(), `"aggregate_id":"n1"`) {
					t.Errorf("streamed %s", lines.Text())
				}
				return
			}
		}
		t.Errorf("the stream ended: %v", lines.Err())
	})
}

// TestFunctionBuiltins: executeTask runs a prompt on the model; httpFetch
// goes through the egress guard; sendEvent stops at its per-run bound.
func TestFunctionBuiltins(t *testing.T) {
	e := newEnv(t)
	e.addOllama("local-ollama")
	e.llm.Script(fakellm.Reply{Match: "say hi", Text: "hi there"})
	script := `function probe(e) {
  var t = executeTask("say hi");
  var f = httpFetch("http://127.0.0.1:1/");
  var sent = 0;
  for (var i = 0; i < 12; i++) { if (sendEvent("probe.out", {i: i}).success) sent++ }
  return {task: t.response, fetched: f.ok, fetchError: f.error, sent: sent}
}`
	if res := e.do(req{method: http.MethodPost, path: "/functions", body: map[string]any{"name": "probe", "script": script}}); res.status != http.StatusCreated {
		t.Fatalf("POST /functions = %d %s", res.status, res.body)
	}
	if res := e.do(req{method: http.MethodPost, path: "/event-triggers", body: map[string]any{"name": "probe", "listenFor": map[string]any{"type": "probe"}, "function": "probe"}}); res.status != http.StatusCreated {
		t.Fatalf("POST /event-triggers = %d %s", res.status, res.body)
	}
	if res := e.do(req{method: http.MethodPost, path: "/events", body: map[string]any{"event_type": "probe", "aggregate_id": "p", "aggregate_type": "t", "version": 1}}); res.status != http.StatusCreated {
		t.Fatalf("POST /events = %d %s", res.status, res.body)
	}
	var runs []struct {
		Error  string
		Result map[string]any
	}
	e.do(req{method: http.MethodGet, path: "/functions/probe/runs"}).decode(t, &runs)
	if len(runs) != 1 || runs[0].Error != "" {
		t.Fatalf("runs %+v", runs)
	}
	r := runs[0].Result
	if r["task"] != "hi there" || r["fetched"] != false || !strings.Contains(fmt.Sprint(r["fetchError"]), "egress") || r["sent"] != 10.0 {
		t.Errorf("result %v: want the model's answer, the fetch refused by the egress guard, 10 events sent", r)
	}
}
