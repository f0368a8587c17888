package openai_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	goopenai "github.com/sashabaranov/go-openai"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/functions/openai"
)

// demoChain is the chain the seed's openai-demo.sh stores, in its words.
const demoChain = `{"id": "demo", "debug": true, "token_limit": 4096, "tasks": [
  {"id": "main_task", "handler": "model_execution", "system_instruction": "You are a helpful assistant.",
   "execute_config": {"model": "llama3.2:1b"},
   "transition": {"branches": [{"operator": "default", "goto": "format_response"}]}},
  {"id": "format_response", "handler": "convert_to_openai_chat_response",
   "transition": {"branches": [{"operator": "default", "goto": "end"}]}}]}`

// agentChain answers with the echo hook's help, and passes the client's
// tools on.
const agentChain = `{"id": "agent", "tasks": [
  {"id": "chat", "handler": "chat_completion", "execute_config": {"hooks": ["echo"], "pass_clients_tools": true},
   "transition": {"branches": [{"operator": "equals", "when": "tool-call", "goto": "run"}, {"operator": "default", "goto": "respond"}]}},
  {"id": "run", "handler": "execute_tool_calls", "transition": {"branches": [{"operator": "default", "goto": "chat"}]}},
  {"id": "respond", "handler": "convert_to_openai_chat_response"}]}`

// execution reads an execution through the management API.
func (e *env) execution(id string) (status string, steps int) {
	e.t.Helper()
	var ex struct {
		Status    string `json:"status"`
		StepCount int    `json:"stepCount"`
	}
	res := e.get("/executions/" + id)
	if res.status != http.StatusOK {
		e.t.Fatalf("GET /executions/%s = %d %s", id, res.status, res.body)
	}
	res.decode(e.t, &ex)
	return ex.Status, ex.StepCount
}

func TestChainChat(t *testing.T) {
	e := newEnv(t)
	e.chain(demoChain)
	ctx := context.Background()
	client := e.clientAt("/openai/demo/v1")
	e.ollama.Script(fakellm.Reply{Match: "capital", Text: "The capital of France is Paris."})

	t.Run("whole", func(t *testing.T) {
		resp, err := client.CreateChatCompletion(ctx, goopenai.ChatCompletionRequest{Model: "demo", Messages: user("capital of France?")})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Choices[0].Message.Content != "The capital of France is Paris." || resp.Usage.TotalTokens == 0 {
			t.Errorf("answer %+v", resp)
		}
		id := resp.Header().Get(openai.ExecutionHeader)
		if status, steps := e.execution(id); status != "succeeded" || steps != 2 {
			t.Errorf("execution %s is %s after %d steps", id, status, steps)
		}
		reqs := e.ollama.Requests()
		sent := reqs[len(reqs)-1].Messages
		if sent[0].Role != "system" || sent[0].Content != "You are a helpful assistant." || sent[1].Content != "capital of France?" {
			t.Errorf("the model got %+v", sent)
		}
	})
	t.Run("streamed as generated", func(t *testing.T) {
		hold := make(chan struct{})
		e.ollama.Script(fakellm.Reply{Match: "slowly", Text: "first second third", Hold: hold})
		stream, err := client.CreateChatCompletionStream(ctx, goopenai.ChatCompletionRequest{Model: "demo", Messages: user("answer slowly")})
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		if id := stream.Header().Get(openai.ExecutionHeader); id == "" {
			t.Error("no execution id on the stream")
		}
		first := firstToken(t, stream)
		close(hold)
		rest := readStream(t, stream)
		if first != "first " || first+rest.text != "first second third" || rest.finish != "stop" {
			t.Errorf("first %q, rest %q, finish %q", first, rest.text, rest.finish)
		}
	})
	t.Run("models", func(t *testing.T) {
		list, err := client.ListModels(ctx)
		if err != nil || len(list.Models) != 1 || list.Models[0].ID != ollamaModel {
			t.Errorf("models %+v %v", list, err)
		}
	})
	t.Run("unknown chain", func(t *testing.T) {
		e.post("/openai/nope/v1/chat/completions", `{"model":"x","messages":[{"role":"user","content":"hi"}]}`).
			wantError(t, http.StatusNotFound, "chain_not_found", "chain")
		e.get("/openai/nope/v1/models").wantError(t, http.StatusNotFound, "chain_not_found", "chain")
	})
	t.Run("cut mid-stream", func(t *testing.T) {
		e.ollama.Script(fakellm.Reply{Match: "cut me", Text: "one two three four", CutAfter: 2})
		res := e.post("/openai/demo/v1/chat/completions", `{"model":"demo","stream":true,"messages":[{"role":"user","content":"cut me"}]}`)
		events := sseEvents(string(res.body))
		if len(events) < 2 || !strings.Contains(events[len(events)-1], `"error"`) || strings.Contains(string(res.body), "[DONE]") ||
			!strings.Contains(events[len(events)-2], `"finish_reason":"error"`) {
			t.Errorf("stream %s", res.body)
		}
	})
	t.Run("failed chain", func(t *testing.T) {
		e.ollama.Script(fakellm.Reply{Match: "fail", Status: http.StatusBadRequest, Text: "bad prompt"})
		res := e.post("/openai/demo/v1/chat/completions", `{"model":"demo","messages":[{"role":"user","content":"fail"}]}`)
		msg := res.wantError(t, http.StatusBadGateway, "invalid", "")
		if id := res.header.Get(openai.ExecutionHeader); id == "" || !strings.Contains(msg, id) || !strings.Contains(msg, "main_task") {
			t.Errorf("message %q does not name the execution %s and the task", msg, id)
		}
	})
}

// TestChainTools: the model calls a hook of the chain (run by the chain,
// never shown to the client), then the client's own tool (returned as
// tool_calls); the follow-up with its result resumes the same execution.
func TestChainTools(t *testing.T) {
	e := newEnv(t)
	e.chain(agentChain)
	ctx := context.Background()
	client := e.clientAt("/openai/agent/v1")
	e.ollama.Script(
		fakellm.Reply{Match: "plan the trip", ToolCalls: []fakellm.Call{{ID: "call_echo", Name: "echo", Arguments: map[string]any{"input": "packing list"}}}},
		fakellm.Reply{Match: "packing list", ToolCalls: []fakellm.Call{{ID: "call_w", Name: "get_weather", Arguments: map[string]any{"city": "Paris"}}}},
		fakellm.Reply{Match: "18C", Text: "Pack light: 18C in Paris."},
	)
	req := goopenai.ChatCompletionRequest{Model: ollamaModel, Messages: user("plan the trip"), Tools: []goopenai.Tool{weatherTool}}
	first, err := client.CreateChatCompletion(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	choice := first.Choices[0]
	if choice.FinishReason != "tool_calls" || len(choice.Message.ToolCalls) != 1 || choice.Message.ToolCalls[0].Function.Name != "get_weather" {
		t.Fatalf("first answer %+v", choice)
	}
	id := first.Header().Get(openai.ExecutionHeader)
	if status, _ := e.execution(id); status != "waiting" {
		t.Fatalf("execution is %s, want waiting for the client's tool", status)
	}

	req.Messages = append(req.Messages, choice.Message,
		goopenai.ChatCompletionMessage{Role: "tool", ToolCallID: "call_w", Content: "18C"})
	stream, err := client.CreateChatCompletionStream(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if got := stream.Header().Get(openai.ExecutionHeader); got != id {
		t.Errorf("follow-up ran execution %s, want the waiting %s resumed", got, id)
	}
	got := readStream(t, stream)
	if len(got.calls) > 0 {
		t.Errorf("a tool call reached the client: %+v", got.calls)
	}
	if got.text != "Pack light: 18C in Paris." {
		t.Errorf("answer %q", got.text)
	}
	if status, _ := e.execution(id); status != "succeeded" {
		t.Errorf("execution is %s", status)
	}
	// The hook's result reached the model before the client's tool was
	// asked for, and the client's result after.
	reqs := e.ollama.Requests()
	last := reqs[len(reqs)-1].Messages
	var roles []string
	for _, m := range last {
		roles = append(roles, m.Role)
	}
	if strings.Join(roles, ",") != "user,assistant,tool,assistant,tool" {
		t.Errorf("the model's last conversation %v", roles)
	}
}
