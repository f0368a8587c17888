package api_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

// TestSeedBootstrap sends what the seed's scripts/bootstrap.sh sends,
// verbatim, including its "baseURL" spelling.
func TestSeedBootstrap(t *testing.T) {
	e := newEnv(t)
	if res := e.do(req{method: "GET", path: "/health"}); res.status != http.StatusOK {
		t.Fatalf("health = %d", res.status)
	}
	e.do(req{method: "GET", path: "/version"})

	var backends []map[string]any
	e.do(req{method: "GET", path: "/backends"}).decode(t, &backends)
	for _, b := range backends {
		if b["name"] == "local-ollama" {
			t.Fatalf("local-ollama exists before bootstrap: %v", b)
		}
	}
	res := e.do(req{method: "POST", path: "/backends",
		body: `{"name":"local-ollama","baseURL":"` + e.llm.URL() + `","type":"ollama"}`})
	if res.status != http.StatusCreated {
		t.Fatalf("POST /backends = %d %s, want 201", res.status, res.body)
	}
	var created map[string]any
	res.decode(t, &created)
	id := str(created, "id")
	if id == "" || str(created, "baseUrl") != e.llm.URL() {
		t.Fatalf("created backend %v", created)
	}

	for _, g := range []string{"internal_tasks_group", "internal_embed_group", "internal_chat_group"} {
		var members []map[string]any
		e.do(req{method: "GET", path: "/backend-affinity/" + g + "/backends"}).decode(t, &members)
		if len(members) != 0 {
			t.Fatalf("%s has backends before bootstrap: %v", g, members)
		}
		res := e.do(req{method: "POST", path: "/backend-affinity/" + g + "/backends/" + id})
		if res.status != http.StatusOK && res.status != http.StatusCreated {
			t.Fatalf("assign to %s = %d %s", g, res.status, res.body)
		}
		e.do(req{method: "GET", path: "/backend-affinity/" + g + "/backends"}).decode(t, &members)
		if len(members) != 1 || str(members[0], "id") != id {
			t.Errorf("%s backends = %v", g, members)
		}
	}

	// The script then polls the backend's state until the three models
	// show as downloaded.
	eventually(t, func() string {
		var list []struct {
			ID           string
			PulledModels []struct{ Model string }
		}
		e.do(req{method: "GET", path: "/backends"}).decode(t, &list)
		for _, b := range list {
			if b.ID != id {
				continue
			}
			var have []string
			for _, m := range b.PulledModels {
				have = append(have, m.Model)
			}
			for _, want := range []string{embedModel, taskModel, chatModel} {
				if !slices.Contains(have, want) {
					return "local-ollama has pulled " + strings.Join(have, ", ") + ", not " + want
				}
			}
			return ""
		}
		return "local-ollama is not listed"
	})
	var state []struct {
		ID      string
		Name    string
		Models  []string
		Backend struct{ BaseURL string }
	}
	e.do(req{method: "GET", path: "/state"}).decode(t, &state)
	if len(state) != 1 || state[0].Name != "local-ollama" || state[0].Backend.BaseURL != e.llm.URL() {
		t.Fatalf("state = %+v", state)
	}
	slices.Sort(state[0].Models)
	if want := []string{chatModel, taskModel, embedModel}; !slices.Equal(state[0].Models, want) {
		slices.Sort(want)
		if !slices.Equal(state[0].Models, want) {
			t.Errorf("state models = %v, want %v", state[0].Models, want)
		}
	}
}

func TestExecute(t *testing.T) {
	e := newEnv(t)
	e.addOllama("local-ollama")
	e.llm.Script(
		fakellm.Reply{Match: "Summarise", Text: "A summary."},
		fakellm.Reply{Match: "explode", Status: http.StatusInternalServerError, Text: "out of memory"},
	)

	t.Run("default task model", func(t *testing.T) {
		var out struct{ ID, Response string }
		res := e.do(req{method: "POST", path: "/execute", body: map[string]any{"prompt": "Summarise this"}})
		if res.status != http.StatusOK {
			t.Fatalf("status %d %s", res.status, res.body)
		}
		res.decode(t, &out)
		if out.Response != "A summary." {
			t.Errorf("response = %q", out.Response)
		}
		sent := last(e.llm.Requests())
		if sent.Model != taskModel || sent.Prompt != "Summarise this" || sent.System == "" {
			t.Errorf("sent model %q prompt %q system %q", sent.Model, sent.Prompt, sent.System)
		}
		if sent.Temperature == nil || *sent.Temperature != 0.1 {
			t.Errorf("temperature = %v, want 0.1", sent.Temperature)
		}
		ex, err := e.store.GetExecution(context.Background(), core.DefaultTenant, out.ID)
		if err != nil {
			t.Fatalf("the execution was not recorded: %v", err)
		}
		if ex.Status != core.StatusSucceeded || ex.Chain.Tasks[0].Handler != core.HandlerPromptToString {
			t.Errorf("execution %s, handler %s", ex.Status, ex.Chain.Tasks[0].Handler)
		}
	})
	t.Run("model_name and routingPolicy", func(t *testing.T) {
		res := e.do(req{method: "POST", path: "/execute", body: map[string]any{"prompt": "Summarise", "model_name": chatModel, "routingPolicy": "round_robin"}})
		if res.status != http.StatusOK {
			t.Fatalf("status %d %s", res.status, res.body)
		}
		if sent := last(e.llm.Requests()); sent.Model != chatModel {
			t.Errorf("model = %q, want %q", sent.Model, chatModel)
		}
	})
	tests := []struct {
		name   string
		body   any
		status int
		param  string
		text   string
	}{
		{"empty prompt", map[string]any{"prompt": " "}, http.StatusBadRequest, "prompt", "required"},
		{"no prompt", map[string]any{}, http.StatusBadRequest, "prompt", "required"},
		{"typo", map[string]any{"promt": "x"}, http.StatusUnprocessableEntity, "promt", `did you mean "prompt"`},
		{"unknown policy", map[string]any{"prompt": "x", "routing_policy": "fastest"}, http.StatusUnprocessableEntity, "routing_policy", "unknown routing policy"},
		{"malformed", `{"prompt":`, http.StatusBadRequest, "", "not valid JSON"},
		{"not an object", `["prompt"]`, http.StatusUnprocessableEntity, "", "must be an object"},
		{"wrong type", map[string]any{"prompt": 42}, http.StatusUnprocessableEntity, "prompt", "want a string"},
		{"undeclared model", map[string]any{"prompt": "x", "model_name": "ghost:1b"}, http.StatusNotFound, "", "ghost:1b"},
		{"backend fails", map[string]any{"prompt": "explode"}, http.StatusBadGateway, "", "local-ollama"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do(req{method: "POST", path: "/execute", body: tt.body})
			got := res.wantError(t, tt.status, tt.param)
			if !strings.Contains(got.Error.Message, tt.text) {
				t.Errorf("message %q does not contain %q", got.Error.Message, tt.text)
			}
		})
	}
}

func TestTasksSeedExample(t *testing.T) {
	e := newEnv(t)
	e.addOllama("local-ollama")
	e.llm.Script(fakellm.Reply{Match: "optimize database", Text: "Add the right indexes."})
	qa, err := os.ReadFile("../../examples/qa.json")
	if err != nil {
		t.Fatal(err)
	}
	res := e.do(req{method: "POST", path: "/tasks", body: qa})
	if res.status != http.StatusOK {
		t.Fatalf("POST /tasks qa.json = %d %s", res.status, res.body)
	}
	var out struct {
		ID         string
		Output     any
		OutputType string
		State      []map[string]any
	}
	res.decode(t, &out)
	if out.Output != "Add the right indexes." || out.OutputType != "string" || out.ID == "" {
		t.Errorf("output %v (%s), id %q", out.Output, out.OutputType, out.ID)
	}
	if len(out.State) != 1 {
		t.Fatalf("state = %v", out.State)
	}
	want := map[string]any{
		"taskID": "generate_response", "taskHandler": "prompt_to_string", "inputType": "string", "outputType": "string",
		"transition": "end", "error": map[string]any{"error": ""}, "input": "What's the best way to optimize database queries?",
		"output": "Add the right indexes.", "inputVar": "generate_response",
	}
	for k, w := range want {
		if !reflect.DeepEqual(out.State[0][k], w) {
			t.Errorf("state[0].%s = %v, want %v", k, out.State[0][k], w)
		}
	}
	if sent := last(e.llm.Requests()); !strings.HasPrefix(sent.System, "You're a senior engineer") {
		t.Errorf("systemInstruction was not sent: system %q", sent.System)
	}
}

func TestTasks(t *testing.T) {
	e := newEnv(t)
	e.addOllama("local-ollama")
	e.llm.Script(fakellm.Reply{Match: "fail now", Status: http.StatusServiceUnavailable, Text: "overloaded"})
	promptTask := func(id string) map[string]any {
		return map[string]any{"id": id, "handler": "raw_string", "systemInstruction": "Answer for {{var:who}} in {{var:request_id}}."}
	}
	chain := func(tasks ...map[string]any) map[string]any {
		return map[string]any{"id": "c", "tasks": tasks}
	}

	t.Run("template vars and request id", func(t *testing.T) {
		res := e.do(req{method: "POST", path: "/tasks", header: map[string]string{"X-Request-ID": "rid-42"},
			body: map[string]any{"input": "hi", "inputType": "string", "template_vars": map[string]any{"who": "ada"}, "chain": chain(promptTask("a"))}})
		if res.status != http.StatusOK {
			t.Fatalf("status %d %s", res.status, res.body)
		}
		if got := last(e.llm.Requests()).System; got != "Answer for ada in rid-42." {
			t.Errorf("system = %q", got)
		}
		if got := res.header.Get("X-Request-ID"); got != "rid-42" {
			t.Errorf("X-Request-ID = %q", got)
		}
	})
	t.Run("template vars as numbers and booleans", func(t *testing.T) {
		task := map[string]any{"id": "a", "handler": "prompt_to_string", "system_instruction": "{{var:n}} {{var:ok}}"}
		res := e.do(req{method: "POST", path: "/tasks", body: map[string]any{"input": "hi", "templateVars": map[string]any{"n": 3.5, "ok": true}, "chain": chain(task)}})
		if res.status != http.StatusOK {
			t.Fatalf("status %d %s", res.status, res.body)
		}
		if got := last(e.llm.Requests()).System; got != "3.5 true" {
			t.Errorf("system = %q", got)
		}
	})
	t.Run("json input is kept", func(t *testing.T) {
		var out struct {
			Output     map[string]any
			OutputType string
		}
		e.do(req{method: "POST", path: "/tasks", body: map[string]any{
			"input": map[string]any{"a": 1, "b": []any{true}}, "inputType": "json",
			"chain": chain(map[string]any{"id": "keep", "handler": "noop"}),
		}}).decode(t, &out)
		if out.OutputType != "json" || out.Output["a"] != float64(1) || !reflect.DeepEqual(out.Output["b"], []any{true}) {
			t.Errorf("output %v (%s)", out.Output, out.OutputType)
		}
	})
	t.Run("routing policy override", func(t *testing.T) {
		c := chain(promptTask("a"))
		c["routing_policy"] = "ordered"
		var out struct{ ID string }
		e.do(req{method: "POST", path: "/tasks", body: map[string]any{"input": "hi", "routingPolicy": "round_robin", "chain": c}}).decode(t, &out)
		ex, err := e.store.GetExecution(context.Background(), core.DefaultTenant, out.ID)
		if err != nil {
			t.Fatal(err)
		}
		if ex.Chain.RoutingPolicy != core.PolicyRoundRobin {
			t.Errorf("routing policy = %q, want round_robin", ex.Chain.RoutingPolicy)
		}
	})
	t.Run("YAML body", func(t *testing.T) {
		body := "input: hi\ninputType: string\nchain:\n  id: y\n  tasks:\n    - id: only\n      handler: noop\n"
		for _, ct := range []string{"application/yaml", "text/yaml", "application/x-yaml"} {
			var out struct{ Output string }
			res := e.do(req{method: "POST", path: "/tasks", body: body, contentType: ct})
			if res.status != http.StatusOK {
				t.Fatalf("%s: status %d %s", ct, res.status, res.body)
			}
			if res.decode(t, &out); out.Output != "hi" {
				t.Errorf("%s: output %q", ct, out.Output)
			}
		}
	})
	t.Run("base64 YAML body", func(t *testing.T) {
		body := base64.StdEncoding.EncodeToString([]byte("input: hi\nchain: {id: b, tasks: [{id: only, handler: noop}]}\n"))
		for _, ct := range []string{"application/x-yaml-base64", "application/yaml;encoding=base64"} {
			res := e.do(req{method: "POST", path: "/tasks", body: body, contentType: ct})
			if res.status != http.StatusOK {
				t.Errorf("%s: status %d %s", ct, res.status, res.body)
			}
		}
	})
	t.Run("failure keeps the steps", func(t *testing.T) {
		res := e.do(req{method: "POST", path: "/tasks", body: map[string]any{
			"input": "fail now", "inputType": "string",
			"chain": chain(
				map[string]any{"id": "greet", "handler": "hook", "hook": map[string]any{"name": "echo"},
					"transition": map[string]any{"branches": []any{map[string]any{"operator": "default", "goto": "ask"}}}},
				map[string]any{"id": "ask", "handler": "prompt_to_string"},
			),
		}})
		got := res.wantError(t, http.StatusServiceUnavailable, "")
		if got.ID == "" || got.Error.Code != core.EUNAVAILABLE || !strings.Contains(got.Error.Message, "local-ollama") {
			t.Errorf("failure %+v", got)
		}
		if len(got.State) != 2 || got.State[0]["taskHandler"] != "hook" || got.State[0]["transition"] != "ask" {
			t.Fatalf("state %v", got.State)
		}
		if msg, _ := got.State[1]["error"].(map[string]any)["error"].(string); msg == "" || got.State[1]["taskID"] != "ask" {
			t.Errorf("failed step %v", got.State[1])
		}
		ex, err := e.store.GetExecution(context.Background(), core.DefaultTenant, got.ID)
		if err != nil || ex.Status != core.StatusFailed {
			t.Errorf("stored execution %v, %v", ex, err)
		}
	})

	tests := []struct {
		name   string
		body   any
		status int
		param  string
		text   []string
	}{
		{"unknown inputType", map[string]any{"input": "x", "inputType": "strng", "chain": chain(promptTask("a"))}, 422, "inputType", []string{`"strng"`, "string"}},
		{"missing chain", map[string]any{"input": "x", "inputType": "string"}, 422, "chain", []string{"required"}},
		{"null chain", map[string]any{"input": "x", "chain": nil}, 422, "chain", []string{"required"}},
		{"chain not an object", map[string]any{"input": "x", "chain": "qa"}, 422, "chain", []string{"object"}},
		{"invalid chain", map[string]any{"input": "x", "chain": chain(map[string]any{"id": "a", "handler": "bogus",
			"transition": map[string]any{"branches": []any{map[string]any{"operator": "default", "goto": "nowhere"}}}})},
			422, "chain.tasks[0].handler", []string{"bogus", "nowhere"}},
		{"unknown chain field", map[string]any{"input": "x", "chain": chain(map[string]any{"id": "a", "handler": "noop", "systemInstructions": "x"})},
			422, "chain.tasks[0].systemInstructions", []string{"system_instruction"}},
		{"unknown hook", map[string]any{"input": "x", "chain": chain(map[string]any{"id": "a", "handler": "hook", "hook": map[string]any{"name": "ecoh"}})},
			422, "chain.tasks[0].hook.name", []string{"ecoh", "echo"}},
		{"unknown field", map[string]any{"inptu": "x", "chain": chain(promptTask("a"))}, 422, "inptu", []string{`did you mean "input"`}},
		{"both spellings", map[string]any{"inputType": "string", "input_type": "string", "chain": chain(promptTask("a"))}, 422, "input_type", []string{"same field"}},
		{"input does not fit", map[string]any{"input": "abc", "inputType": "int", "chain": chain(promptTask("a"))}, 422, "input", []string{"abc"}},
		{"unknown policy", map[string]any{"input": "x", "routing_policy": "fastest", "chain": chain(promptTask("a"))}, 422, "routing_policy", []string{"fastest"}},
		{"chain policy", map[string]any{"input": "x", "chain": map[string]any{"id": "c", "routing_policy": "rnd", "tasks": []any{promptTask("a")}}}, 422, "chain.routing_policy", []string{"rnd"}},
		{"nested template var", map[string]any{"input": "x", "templateVars": map[string]any{"who": map[string]any{}}, "chain": chain(promptTask("a"))}, 422, "templateVars.who", []string{"string"}},
		{"malformed", `{"input": "x", "chain": {`, 400, "", []string{"not valid JSON"}},
		{"empty body", ``, 400, "", []string{"empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do(req{method: "POST", path: "/tasks", body: tt.body})
			got := res.wantError(t, tt.status, tt.param)
			for _, want := range tt.text {
				if !strings.Contains(got.Error.Message, want) {
					t.Errorf("message %q does not contain %q", got.Error.Message, want)
				}
			}
		})
	}
}

func TestEmbed(t *testing.T) {
	e := newEnv(t)
	e.addOllama("local-ollama")
	var out struct{ Vector []float64 }
	e.do(req{method: "POST", path: "/embed", body: map[string]any{"text": "hello"}}).decode(t, &out)
	if len(out.Vector) != 16 {
		t.Errorf("vector of %d dimensions, want 16", len(out.Vector))
	}
	if sent := last(e.llm.Requests()); sent.Model != embedModel || sent.Prompt != "hello" {
		t.Errorf("embedded %q with %q", sent.Prompt, sent.Model)
	}
	e.do(req{method: "POST", path: "/embed", body: map[string]any{"text": ""}}).wantError(t, http.StatusUnprocessableEntity, "text")
}

// last returns the last model call the fake received, passing over the
// model listings the fleet's background cycle sends at any time.
func last(rs []fakellm.Request) fakellm.Request {
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].Method == http.MethodPost {
			return rs[i]
		}
	}
	return fakellm.Request{}
}

func TestNoDefaultModels(t *testing.T) {
	e := newEnv(t, options{noDefaults: true})
	e.addOllama("local-ollama")
	got := e.do(req{method: "POST", path: "/execute", body: map[string]any{"prompt": "hi"}}).wantError(t, http.StatusUnprocessableEntity, "model_name")
	if !strings.Contains(got.Error.Message, "TASK_MODEL") || !strings.Contains(got.Error.Message, "internal_tasks_group") {
		t.Errorf("message %q does not say how to configure a default", got.Error.Message)
	}
	got = e.do(req{method: "POST", path: "/embed", body: map[string]any{"text": "hi"}}).wantError(t, http.StatusUnprocessableEntity, "")
	if !strings.Contains(got.Error.Message, "EMBED_MODEL") {
		t.Errorf("message %q does not say how to configure a default", got.Error.Message)
	}
	var d struct{ ModelName, TaskModel string }
	e.do(req{method: "GET", path: "/defaultmodel"}).decode(t, &d)
	if d.ModelName != "" || d.TaskModel != "" {
		t.Errorf("/defaultmodel = %+v, want none", d)
	}
	// A model assigned to the tasks group becomes the default.
	e.do(req{method: "POST", path: "/models", body: map[string]any{"model": taskModel, "contextLength": 4096, "canPrompt": true}})
	e.do(req{method: "POST", path: "/model-affinity/internal_tasks_group/models/" + taskModel})
	var out struct{ Response string }
	res := e.do(req{method: "POST", path: "/execute", body: map[string]any{"prompt": "hi"}})
	if res.status != http.StatusOK {
		t.Fatalf("/execute after assigning a task model = %d %s", res.status, res.body)
	}
	res.decode(t, &out)
	if sent := last(e.llm.Requests()); sent.Model != taskModel {
		t.Errorf("sent to %q, want the group's model %q", sent.Model, taskModel)
	}
}
