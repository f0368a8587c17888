package openai_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/core/llm/llmtest"
	"github.com/stepwise-run/stepwise/core/llm/openai"
)

const chatModel = "qwen2.5:7b"

// start returns a fake server and a provider talking to its /v1 API.
func start(t *testing.T) (*fakellm.Server, *openai.Provider) {
	t.Helper()
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	return fake, connect(t, fake)
}

// connect returns a provider talking to fake's /v1 API.
func connect(t *testing.T, fake *fakellm.Server) *openai.Provider {
	t.Helper()
	p, err := openai.New(openai.Config{BaseURL: fake.URL() + "/v1", APIKey: "sk-test"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// rawServer returns a provider talking to a handler that writes body as an
// event stream, for answers fakellm does not give.
func rawServer(t *testing.T, body string) *openai.Provider {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	p, err := openai.New(openai.Config{BaseURL: srv.URL + "/v1"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func user(text string) core.Message { return core.Message{Role: core.RoleUser, Content: text} }

func ptr[T any](v T) *T { return &v }

// TestProvider runs the suite every provider passes.
func TestProvider(t *testing.T) {
	llmtest.ProviderSuite(t, llmtest.Harness{
		New:       func(t *testing.T, fake *fakellm.Server) llm.Provider { return connect(t, fake) },
		ChatModel: chatModel, EmbedModel: "nomic-embed-text:latest",
		// Prompt is a chat too, and every stream asks for the usage.
		ChatPath: "/v1/chat/completions", StreamBody: []string{`"include_usage":true`},
		PromptPath: "/v1/chat/completions", PromptAsChat: true,
		EmbedPath:    "/v1/embeddings",
		MaxTokensKey: "max_tokens", NotFoundText: "does not exist",
		ZeroTemperature: "1e-45", // go-openai drops a 0; see applyOptions
	})
}

func TestNew(t *testing.T) {
	for _, tt := range []struct {
		name, url string
		ok        bool
	}{
		{"default endpoint", "", true},
		{"vllm", "http://127.0.0.1:8000/v1", true},
		{"gemini", "https://generativelanguage.googleapis.com/v1beta/openai/", true},
		{"no scheme", "api.openai.com/v1", false},
		{"other scheme", "ws://host/v1", false},
		{"unparsable", "http://[::1", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := openai.New(openai.Config{BaseURL: tt.url})
			if tt.ok != (err == nil) {
				t.Fatalf("New(%q) error = %v, want ok=%v", tt.url, err, tt.ok)
			}
			if err != nil && core.ErrorCode(err) != core.EINVALID {
				t.Errorf("code %q, want invalid", core.ErrorCode(err))
			}
		})
	}
}

// TestToolCallAssembly feeds tool-call deltas in the shapes servers send.
func TestToolCallAssembly(t *testing.T) {
	chunk := func(delta string, finish string) string {
		f := "null"
		if finish != "" {
			f = `"` + finish + `"`
		}
		return `data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":` + delta + `,"finish_reason":` + f + "}]}\n\n"
	}
	type call struct{ id, name, args string }
	for _, tt := range []struct {
		name string
		body string
		want []call
	}{
		{
			name: "interleaved by index",
			body: chunk(`{"tool_calls":[{"index":0,"id":"a","type":"function","function":{"name":"f","arguments":""}}]}`, "") +
				chunk(`{"tool_calls":[{"index":1,"id":"b","type":"function","function":{"name":"g","arguments":"{\"y\""}}]}`, "") +
				chunk(`{"tool_calls":[{"index":0,"function":{"arguments":"{\"x\":"}}]}`, "") +
				chunk(`{"tool_calls":[{"index":1,"function":{"arguments":":2}"}}]}`, "") +
				chunk(`{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}`, "") +
				chunk(`{}`, "tool_calls") + "data: [DONE]\n\n",
			want: []call{{"a", "f", `{"x":1}`}, {"b", "g", `{"y":2}`}},
		},
		{
			name: "whole calls without index",
			body: chunk(`{"tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]}`, "") +
				chunk(`{"tool_calls":[{"id":"b","type":"function","function":{"name":"g","arguments":"{\"z\":true}"}}]}`, "") +
				chunk(`{}`, "stop") + "data: [DONE]\n\n",
			want: []call{{"a", "f", `{}`}, {"b", "g", `{"z":true}`}},
		},
		{
			name: "missing id and arguments are filled in",
			body: chunk(`{"tool_calls":[{"index":0,"function":{"name":"f"}}]}`, "") +
				chunk(`{}`, "tool_calls") + "data: [DONE]\n\n",
			want: []call{{"call_1_0", "f", `{}`}},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := rawServer(t, tt.body)
			out, err := p.Chat(context.Background(), "m", core.ChatRequest{Messages: []core.Message{user("x")}}, func(core.Delta) {})
			if err != nil {
				t.Fatal(err)
			}
			var got []call
			for _, c := range out.Message.ToolCalls {
				got = append(got, call{c.ID, c.Function.Name, c.Function.Arguments})
			}
			if !reflect.DeepEqual(got, tt.want) || out.FinishReason != "tool_calls" {
				t.Errorf("calls %+v (finish %q), want %+v", got, out.FinishReason, tt.want)
			}
		})
	}
}

// TestMaxTokensField checks which field carries the token limit: max_tokens,
// which vLLM and older servers know, except for OpenAI's reasoning models,
// which refuse it.
func TestMaxTokensField(t *testing.T) {
	for _, tt := range []struct {
		name    string
		model   string
		opts    core.GenOptions
		wantRaw []string
		denyRaw []string
	}{
		{
			name:    "ordinary model gets max_tokens",
			model:   chatModel,
			opts:    core.GenOptions{Temperature: ptr(0.25), TopP: ptr(0.5), MaxTokens: 64, Stop: []string{"END"}},
			wantRaw: []string{`"max_tokens":64`},
			denyRaw: []string{"max_completion_tokens"},
		},
		{
			name:    "reasoning model gets max_completion_tokens",
			model:   "o3-mini",
			opts:    core.GenOptions{MaxTokens: 99},
			wantRaw: []string{`"max_completion_tokens":99`},
			denyRaw: []string{`"max_tokens"`, "temperature"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake, p := start(t)
			fake.SetModels(fakellm.Model{Name: tt.model})
			if _, err := p.Chat(context.Background(), tt.model, core.ChatRequest{Messages: []core.Message{user("c")}, Options: tt.opts}, nil); err != nil {
				t.Fatal(err)
			}
			recs := fake.Requests()
			if len(recs) != 1 || recs[0].MaxTokens != tt.opts.MaxTokens {
				t.Fatalf("server got %+v, want one request with max %d", recs, tt.opts.MaxTokens)
			}
			for _, s := range tt.wantRaw {
				if !strings.Contains(string(recs[0].Raw), s) {
					t.Errorf("body %s lacks %s", recs[0].Raw, s)
				}
			}
			for _, s := range tt.denyRaw {
				if strings.Contains(string(recs[0].Raw), s) {
					t.Errorf("body %s has %s", recs[0].Raw, s)
				}
			}
		})
	}
}

// TestStreamErrors feeds event streams that break in ways fakellm does not
// script.
func TestStreamErrors(t *testing.T) {
	for _, tt := range []struct {
		name, body, msg string
	}{
		{
			name: "stream ending without finish reason", msg: "cut",
			body: `data: {"choices":[{"index":0,"delta":{"content":"half"}}]}` + "\n\n",
		},
		{
			name: "error event mid-stream", msg: "overloaded",
			body: `data: {"choices":[{"index":0,"delta":{"content":"half"}}]}` + "\n\n" +
				`data: {"error":{"message":"engine overloaded","type":"server_error"}}` + "\n\n",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := rawServer(t, tt.body)
			_, err := p.Chat(context.Background(), "m", core.ChatRequest{Messages: []core.Message{user("q")}}, func(core.Delta) {})
			llmtest.WantError(t, err, core.EUNAVAILABLE, "http://127.0.0.1:", tt.msg)
		})
	}
}

// TestUsageDetails: the cached and reasoning tokens a server reports
// reach the completion's usage, whole and streamed.
func TestUsageDetails(t *testing.T) {
	for _, tt := range []struct {
		name    string
		onDelta core.DeltaFunc
	}{{"whole", nil}, {"streamed", func(core.Delta) {}}} {
		t.Run(tt.name, func(t *testing.T) {
			fake, p := start(t)
			fake.Script(fakellm.Reply{Text: "thought about it", CachedTokens: 3, ReasoningTokens: 7})
			out, err := p.Chat(context.Background(), chatModel, core.ChatRequest{Messages: []core.Message{user("x")}}, tt.onDelta)
			if err != nil || out.Usage.CachedIn != 3 || out.Usage.Reasoning != 7 || out.Usage.TokensIn == 0 {
				t.Errorf("usage %+v, %v", out.Usage, err)
			}
		})
	}
}
