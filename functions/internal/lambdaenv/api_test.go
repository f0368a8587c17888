package lambdaenv_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

// linear is a chain of tasks run one after the other.
func linear(id string, tasks ...map[string]any) map[string]any {
	list := make([]any, len(tasks))
	for i, t := range tasks {
		if i+1 < len(tasks) {
			t["transition"] = map[string]any{"branches": []any{map[string]any{"operator": "default", "goto": tasks[i+1]["id"]}}}
		}
		list[i] = t
	}
	return map[string]any{"id": id, "tasks": list}
}

// prompts is a chain of n prompt_to_string tasks, each asking the task
// model.
func prompts(id string, n int) map[string]any {
	tasks := make([]map[string]any, n)
	for i := range tasks {
		tasks[i] = map[string]any{"id": "ask" + string(rune('a'+i)), "handler": "prompt_to_string", "prompt_template": "step {{.input}}"}
	}
	return linear(id, tasks...)
}

// TestAPIGatewayEvents invokes the API function with API Gateway HTTP API
// events (payload format 2.0) over DynamoDB and SQS on the emulator.
func TestAPIGatewayEvents(t *testing.T) {
	d := deploy(t, nil)
	d.llm.Script(fakellm.Reply{Match: "capital", Text: "Paris."}, fakellm.Reply{Match: "chat with the chain", Text: "chained answer"})
	stored := linear("geo", map[string]any{"id": "ask", "handler": "prompt_to_string"})
	chat := linear("talk", map[string]any{"id": "chat", "handler": "chat_completion"}, map[string]any{"id": "respond", "handler": "convert_to_openai_chat_response"})
	userMsg := []map[string]any{{"role": "user", "content": "chat with the chain"}}

	tests := []struct {
		name     string
		method   string
		path     string
		body     any
		base64   bool
		status   int
		contains string
	}{
		{"health", http.MethodGet, "/health", nil, false, http.StatusOK, ""},
		{"store a chain", http.MethodPost, "/taskchains", stored, false, http.StatusCreated, `"geo"`},
		{"read it back", http.MethodGet, "/taskchains/geo", nil, false, http.StatusOK, `"prompt_to_string"`},
		{"base64 body (binary media)", http.MethodPost, "/taskchains", linear("geo2", map[string]any{"id": "t", "handler": "noop"}), true, http.StatusCreated, `"geo2"`},
		{"run a chain in the request", http.MethodPost, "/tasks", map[string]any{"input": "capital of France?", "chain": stored}, false, http.StatusOK, `"Paris."`},
		{"unknown route", http.MethodGet, "/nope", nil, false, http.StatusNotFound, `"error"`},
		{"unknown field", http.MethodPost, "/tasks", map[string]any{"input": "x", "chian": stored}, false, http.StatusUnprocessableEntity, `chian`},
		{"store a chat chain", http.MethodPost, "/taskchains", chat, false, http.StatusCreated, `"talk"`},
		{"OpenAI per-chain request", http.MethodPost, "/openai/talk/v1/chat/completions", map[string]any{"model": "talk", "messages": userMsg}, false,
			http.StatusOK, `"content":"chained answer"`},
		{"OpenAI per-chain request, streamed (buffered by API Gateway)", http.MethodPost, "/openai/talk/v1/chat/completions",
			map[string]any{"model": "talk", "stream": true, "messages": userMsg}, false, http.StatusOK, `data: [DONE]`},
		{"OpenAI models", http.MethodGet, "/v1/models", nil, false, http.StatusOK, `"object":"list"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := d.call(tt.method, tt.path, tt.body, tt.base64)
			wantStatus(t, tt.method+" "+tt.path, res, tt.status)
			if !strings.Contains(string(res.body), tt.contains) {
				t.Errorf("body %s lacks %s", res.body, tt.contains)
			}
		})
	}

	t.Run("the model was asked once, through the Ollama backend", func(t *testing.T) {
		n := 0
		for _, r := range d.llm.Requests() {
			if strings.Contains(asked(r), "capital of France?") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d model requests carried the input, want 1: %+v", n, d.llm.Requests())
		}
	})
}

// asked is the text a model request carried.
func asked(r fakellm.Request) string {
	text := r.Prompt
	for _, m := range r.Messages {
		text += "\n" + m.Content
	}
	return text
}

// TestLargeOutputGoesToTheBucket: an output above a DynamoDB item's size
// is stored in the S3 bucket (STEPWISE_BUCKET) and comes back whole.
func TestLargeOutputGoesToTheBucket(t *testing.T) {
	d := deploy(t, nil)
	big := strings.Repeat("0123456789abcdef", 40000) // 640 KB
	res := d.call("POST", "/tasks", map[string]any{
		"input": big, "chain": map[string]any{"id": "big", "tasks": []any{map[string]any{"id": "pass", "handler": "noop"}}},
	}, false)
	if res.status != http.StatusOK {
		t.Fatalf("POST /tasks = %d %.300s", res.status, res.body)
	}
	var out struct {
		ID     string `json:"id"`
		Output string `json:"output"`
	}
	res.decode(t, &out)
	if out.Output != big {
		t.Fatalf("output of %d bytes, want the %d-byte input back", len(out.Output), len(big))
	}
	var ex struct{ Output string }
	d.call("GET", "/executions/"+out.ID, nil, false).decode(t, &ex)
	if ex.Output != big {
		t.Errorf("GET /executions/{id} output of %d bytes, want %d", len(ex.Output), len(big))
	}
}
