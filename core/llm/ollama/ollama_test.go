package ollama_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/core/llm/llmtest"
	"github.com/stepwise-run/stepwise/core/llm/ollama"
)

const chatModel = "llama3.2:1b"

// start returns a fake server and a provider talking to it.
func start(t *testing.T) (*fakellm.Server, *ollama.Provider) {
	t.Helper()
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	return fake, connect(t, fake)
}

// connect returns a provider talking to fake.
func connect(t *testing.T, fake *fakellm.Server) *ollama.Provider {
	t.Helper()
	p, err := ollama.New(fake.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func user(text string) core.Message { return core.Message{Role: core.RoleUser, Content: text} }

// TestProvider runs the suite every provider passes.
func TestProvider(t *testing.T) {
	llmtest.ProviderSuite(t, llmtest.Harness{
		New:       func(t *testing.T, fake *fakellm.Server) llm.Provider { return connect(t, fake) },
		ChatModel: chatModel, EmbedModel: "nomic-embed-text:latest",
		ChatPath: "/api/chat", PromptPath: "/api/generate", EmbedPath: "/api/embed",
		MaxTokensKey: "num_predict", ZeroTemperature: "0", NotFoundText: "not found",
		ToolResultNamed: true,
	})
}

func TestNew(t *testing.T) {
	for _, tt := range []struct {
		name, url string
		ok        bool
	}{
		{"http with port", "http://127.0.0.1:11434", true},
		{"https with path", "https://gpu.example.com/ollama/", true},
		{"empty", "", false},
		{"no scheme", "localhost:11434", false},
		{"other scheme", "ftp://host", false},
		{"unparsable", "http://[::1", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ollama.New(tt.url, nil)
			if tt.ok != (err == nil) {
				t.Fatalf("New(%q) error = %v, want ok=%v", tt.url, err, tt.ok)
			}
			if err != nil && core.ErrorCode(err) != core.EINVALID {
				t.Errorf("code %q, want invalid", core.ErrorCode(err))
			}
		})
	}
}

func TestToolArgumentsMustBeAnObject(t *testing.T) {
	fake, p := start(t)
	msgs := []core.Message{
		user("x"),
		{Role: core.RoleAssistant, ToolCalls: []core.ToolCall{{ID: "c1", Type: "function",
			Function: core.ToolCallFunction{Name: "f", Arguments: `["not", "an", "object"]`}}}},
	}
	_, err := p.Chat(context.Background(), chatModel, core.ChatRequest{Messages: msgs}, nil)
	if core.ErrorCode(err) != core.EINVALID {
		t.Fatalf("error = %v, want invalid", err)
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("%d requests sent, want none", n)
	}
}

// TestToolCallIDs checks the ids made for tool calls that come without one,
// as older Ollama servers send them.
func TestToolCallIDs(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprintln(w, `{"model":"m","message":{"role":"assistant","content":"","tool_calls":[`+
			`{"function":{"name":"a","arguments":{"x":1}}},{"function":{"name":"b","arguments":{}}}]},"done":false}`)
		fmt.Fprintln(w, `{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}`)
	}))
	defer srv.Close()
	p, err := ollama.New(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := func(msgs []core.Message) []string {
		out, err := p.Chat(context.Background(), "m", core.ChatRequest{Messages: msgs}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range out.Message.ToolCalls {
			ids = append(ids, c.ID)
		}
		return ids
	}
	turn1 := ids([]core.Message{user("go")})
	again := ids([]core.Message{user("go")})
	turn2 := ids([]core.Message{user("go"), {Role: core.RoleAssistant}, {Role: core.RoleTool, Content: "r"}})
	if len(turn1) != 2 || turn1[0] == "" || turn1[0] == turn1[1] {
		t.Fatalf("ids %q, want two distinct ids", turn1)
	}
	if !slices.Equal(turn1, again) {
		t.Errorf("ids %q then %q, want them deterministic", turn1, again)
	}
	if slices.ContainsFunc(turn2, func(id string) bool { return slices.Contains(turn1, id) }) {
		t.Errorf("ids of a later turn %q repeat %q", turn2, turn1)
	}
}

// TestStreamErrors feeds answers that break in ways fakellm does not
// script: it always drops the connection, never ends a body cleanly.
func TestStreamErrors(t *testing.T) {
	const half = `{"model":"m","message":{"role":"assistant","content":"half"},"done":false}` + "\n"
	for _, tt := range []struct{ name, body, msg string }{
		{"body ending without the final chunk", half, "before the final one"},
		{"empty body", "", "without answering"},
		{"error line mid-stream", half + `{"error":"engine overloaded"}` + "\n", "engine overloaded"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/x-ndjson")
				fmt.Fprint(w, tt.body)
			}))
			defer srv.Close()
			p, err := ollama.New(srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Prompt(context.Background(), "m", core.PromptRequest{Prompt: "q"}, func(core.Delta) {})
			llmtest.WantError(t, err, core.EUNAVAILABLE, srv.URL, tt.msg)
		})
	}
}

func TestShow(t *testing.T) {
	fake, p := start(t)
	ctx := context.Background()
	fake.SetModels(fakellm.Model{Name: "mistral:7b", ContextLength: 12345})
	for _, tt := range []struct {
		name, model string
		ctxLen      int
		code        string
	}{
		{"context length from model_info", "mistral:7b", 12345, ""},
		{"unknown model", "llama3.2:1b", 0, core.ENOTFOUND},
	} {
		t.Run(tt.name, func(t *testing.T) {
			info, err := p.Show(ctx, tt.model)
			if core.ErrorCode(err) != tt.code {
				t.Fatalf("error %v, want code %q", err, tt.code)
			}
			if info.ContextLength != tt.ctxLen {
				t.Errorf("context length %d, want %d", info.ContextLength, tt.ctxLen)
			}
		})
	}
}

func TestPull(t *testing.T) {
	t.Run("progress ends with success and the model is listed", func(t *testing.T) {
		_, p := start(t)
		ctx := context.Background()
		var steps []llm.PullProgress
		if err := p.Pull(ctx, "phi4:14b", func(pr llm.PullProgress) { steps = append(steps, pr) }); err != nil {
			t.Fatal(err)
		}
		if len(steps) < 3 || steps[0].Status != "pulling manifest" || steps[len(steps)-1].Status != "success" {
			t.Fatalf("steps %+v", steps)
		}
		var sawBytes bool
		for _, s := range steps {
			if s.Total > 0 && s.Completed == s.Total && s.Digest != "" {
				sawBytes = true
			}
		}
		if !sawBytes {
			t.Errorf("no step completed a download of a digest: %+v", steps)
		}
		models, err := p.Models(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(models, func(m llm.ModelInfo) bool { return m.Name == "phi4:14b" }) {
			t.Errorf("pulled model not listed: %+v", models)
		}
	})
	for _, tt := range []struct {
		name   string
		reply  fakellm.Reply
		cancel bool
		code   string
		msg    string
	}{
		{name: "a failing server", reply: fakellm.Reply{Status: 500, Text: "disk full"}, code: core.EUNAVAILABLE, msg: "disk full"},
		{name: "a stream cut before success", reply: fakellm.Reply{CutAfter: 3}, code: core.EUNAVAILABLE, msg: "before success"},
		{name: "the caller canceling", reply: fakellm.Reply{Latency: time.Minute}, cancel: true, code: core.ETIMEOUT},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake, p := start(t)
			fake.Script(tt.reply)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err := p.Pull(ctx, "phi4:14b", func(pr llm.PullProgress) {
				if tt.cancel {
					cancel()
				}
			})
			if core.ErrorCode(err) != tt.code || !strings.Contains(fmt.Sprint(err), tt.msg) || !strings.Contains(fmt.Sprint(err), "phi4:14b") {
				t.Fatalf("error %v, want code %q mentioning %q and the model", err, tt.code, tt.msg)
			}
			models, err := p.Models(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if slices.ContainsFunc(models, func(m llm.ModelInfo) bool { return m.Name == "phi4:14b" }) {
				t.Errorf("a failed pull left the model listed")
			}
		})
	}
}

func TestModelsDetails(t *testing.T) {
	fake, p := start(t)
	fake.SetModels(fakellm.Model{Name: "llama3.2:1b"})
	models, err := p.Models(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(models) != 1 {
		t.Fatalf("models %+v", models)
	}
	m := models[0]
	if m.Name != "llama3.2:1b" || m.Size <= 0 || m.Digest == "" || m.ModifiedAt.IsZero() ||
		m.Details.Format != "gguf" || m.Details.Family != "llama" || !slices.Equal(m.Details.Families, []string{"llama"}) ||
		m.Details.ParameterSize == "" || m.Details.QuantizationLevel == "" {
		t.Errorf("listing %+v", m)
	}
}
