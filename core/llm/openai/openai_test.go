package openai_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/core/llm/openai"
)

const chatModel = "qwen2.5:7b"

// start returns a fake server and a provider talking to its /v1 API.
func start(t *testing.T) (*fakellm.Server, *openai.Provider) {
	t.Helper()
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	p, err := openai.New(openai.Config{BaseURL: fake.URL() + "/v1", APIKey: "sk-test"})
	if err != nil {
		t.Fatal(err)
	}
	return fake, p
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

func requests(fake *fakellm.Server, path string) []fakellm.Request {
	var out []fakellm.Request
	for _, r := range fake.Requests() {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal([]byte(a), &va); err != nil {
		t.Fatalf("bad JSON %q: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &vb); err != nil {
		t.Fatalf("bad JSON %q: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

func user(text string) core.Message { return core.Message{Role: core.RoleUser, Content: text} }

func ptr[T any](v T) *T { return &v }

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

func TestChatStreams(t *testing.T) {
	for _, tt := range []struct{ name, text string }{
		{"spaces and newlines", "Roses are red,\n  violets   are blue.\n\nThe end. "},
		{"single word", "Hello"},
		{"leading whitespace", "\n\t indented answer"},
		{"unicode", "Grüße aus Köln — 你好 世界"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake, p := start(t)
			fake.Script(fakellm.Reply{Match: "go", Text: tt.text})
			var deltas []string
			out, err := p.Chat(context.Background(), chatModel, core.ChatRequest{Messages: []core.Message{user("go")}},
				func(s string) { deltas = append(deltas, s) })
			if err != nil {
				t.Fatal(err)
			}
			if len(deltas) < 2 {
				t.Errorf("got %d deltas, want several", len(deltas))
			}
			if got := strings.Join(deltas, ""); got != tt.text {
				t.Errorf("deltas join to %q, want %q", got, tt.text)
			}
			if out.Message.Content != tt.text || out.Message.Role != core.RoleAssistant || out.FinishReason != "stop" {
				t.Errorf("got %+v", out)
			}
			// Usage comes from the usage chunk: the fake counts a token
			// per four runes, rounded up.
			wantOut := (len([]rune(tt.text)) + 3) / 4
			if out.Usage.TokensIn != 1 || out.Usage.TokensOut != wantOut || out.Usage.Model != chatModel {
				t.Errorf("usage %+v, want 1 in and %d out", out.Usage, wantOut)
			}
			r := requests(fake, "/v1/chat/completions")
			if len(r) != 1 || !r[0].Stream || !strings.Contains(string(r[0].Raw), `"include_usage":true`) {
				t.Errorf("requests = %+v", r)
			}
		})
	}
}

func TestChatFinishLength(t *testing.T) {
	fake, p := start(t)
	fake.Script(fakellm.Reply{Text: "cut short", FinishReason: "length"})
	out, err := p.Chat(context.Background(), chatModel, core.ChatRequest{Messages: []core.Message{user("x")}}, nil)
	if err != nil || out.FinishReason != "length" {
		t.Fatalf("finish %q, error %v", out.FinishReason, err)
	}
}

// tools are the tools offered in the round-trip tests.
func tools() []core.Tool {
	return []core.Tool{
		{Type: "function", Function: core.ToolFunction{
			Name: "get_weather", Description: "Weather in a city",
			Parameters: map[string]any{
				"type":       "object",
				"properties": map[string]any{"city": map[string]any{"type": "string"}},
				"required":   []any{"city"},
			},
		}},
		{Type: "function", Function: core.ToolFunction{Name: "get_time"}},
	}
}

func TestToolRoundTrip(t *testing.T) {
	fake, p := start(t)
	fake.Script(
		fakellm.Reply{Match: "weather", Text: "Let me check.", ToolCalls: []fakellm.Call{
			{ID: "call_w1", Name: "get_weather", Arguments: map[string]any{"city": "Paris", "units": map[string]any{"temp": "C"}}},
			{ID: "call_t2", Name: "get_time", Arguments: map[string]any{"tz": "Europe/Paris"}},
		}},
		fakellm.Reply{Match: "12:00", Text: "Sunny in Paris at noon."},
	)
	ctx := context.Background()
	msgs := []core.Message{{Role: core.RoleSystem, Content: "be brief"}, user("weather and time in Paris?")}

	var deltas []string
	first, err := p.Chat(ctx, chatModel, core.ChatRequest{Messages: msgs, Tools: tools()}, func(s string) { deltas = append(deltas, s) })
	if err != nil {
		t.Fatal(err)
	}
	calls := first.Message.ToolCalls
	if first.FinishReason != "tool_calls" || len(calls) != 2 || first.Message.Content != "Let me check." {
		t.Fatalf("got %+v", first)
	}
	if strings.Join(deltas, "") != "Let me check." {
		t.Errorf("deltas %q", deltas)
	}
	for i, want := range []struct{ id, name, args string }{
		{"call_w1", "get_weather", `{"city":"Paris","units":{"temp":"C"}}`},
		{"call_t2", "get_time", `{"tz":"Europe/Paris"}`},
	} {
		c := calls[i]
		if c.ID != want.id || c.Type != "function" || c.Function.Name != want.name || !sameJSON(t, c.Function.Arguments, want.args) {
			t.Errorf("call %d = %+v, want %s %s %s", i, c, want.id, want.name, want.args)
		}
	}

	msgs = append(msgs, first.Message,
		core.Message{Role: core.RoleTool, ToolCallID: "call_w1", Content: `{"sky":"sunny"}`},
		core.Message{Role: core.RoleTool, ToolCallID: "call_t2", Name: "get_time", Content: "12:00"},
	)
	second, err := p.Chat(ctx, chatModel, core.ChatRequest{Messages: msgs, Tools: tools()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if second.Message.Content != "Sunny in Paris at noon." || len(second.Message.ToolCalls) != 0 {
		t.Errorf("second answer = %+v", second)
	}

	recs := requests(fake, "/v1/chat/completions")
	if len(recs) != 2 {
		t.Fatalf("%d chat requests, want 2", len(recs))
	}
	if !slices.Equal(recs[0].Tools, []string{"get_weather", "get_time"}) {
		t.Errorf("tools offered %q", recs[0].Tools)
	}
	sent := recs[1].Messages
	if len(sent) != 5 {
		t.Fatalf("second request has %d messages, want 5", len(sent))
	}
	asst := sent[2]
	if asst.Role != core.RoleAssistant || asst.Content != "Let me check." || len(asst.ToolCalls) != 2 {
		t.Fatalf("assistant message sent as %+v", asst)
	}
	for i, c := range asst.ToolCalls {
		if c.ID != calls[i].ID || c.Function.Name != calls[i].Function.Name || c.Function.Arguments != calls[i].Function.Arguments {
			t.Errorf("tool call %d sent as %+v, want %+v", i, c, calls[i])
		}
	}
	for i, want := range []struct{ id, name, content string }{
		{"call_w1", "get_weather", `{"sky":"sunny"}`},
		{"call_t2", "get_time", "12:00"},
	} {
		m := sent[3+i]
		if m.Role != core.RoleTool || m.ToolCallID != want.id || m.Name != want.name || m.Content != want.content {
			t.Errorf("tool message %d sent as %+v, want id %q name %q", i, m, want.id, want.name)
		}
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
			out, err := p.Chat(context.Background(), "m", core.ChatRequest{Messages: []core.Message{user("x")}}, nil)
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

func TestOptionsReachServer(t *testing.T) {
	for _, tt := range []struct {
		name     string
		model    string
		prompt   bool
		opts     core.GenOptions
		wantTemp func(*float64) bool
		wantMax  int
		wantStop []string
		wantRaw  []string
		denyRaw  []string
	}{
		{
			name:     "all set on chat",
			opts:     core.GenOptions{Temperature: ptr(0.25), TopP: ptr(0.5), MaxTokens: 64, Stop: []string{"END", "\n\n"}},
			wantTemp: func(v *float64) bool { return v != nil && *v == 0.25 },
			wantMax:  64, wantStop: []string{"END", "\n\n"},
			wantRaw: []string{`"top_p":0.5`, `"max_tokens":64`},
			denyRaw: []string{"max_completion_tokens"},
		},
		{
			name:     "temperature zero survives go-openai's omitempty",
			opts:     core.GenOptions{Temperature: ptr(0.0)},
			wantTemp: func(v *float64) bool { return v != nil && *v < 1e-30 },
		},
		{
			name:     "nothing set sends nothing",
			wantTemp: func(v *float64) bool { return v == nil },
			denyRaw:  []string{"temperature", "max_tokens", "top_p", `"stop"`},
		},
		{
			name:     "reasoning models get max_completion_tokens",
			model:    "o3-mini",
			opts:     core.GenOptions{MaxTokens: 99},
			wantTemp: func(v *float64) bool { return v == nil },
			wantMax:  99,
			wantRaw:  []string{`"max_completion_tokens":99`},
			denyRaw:  []string{`"max_tokens"`},
		},
		{
			name: "all set on prompt", prompt: true,
			opts:     core.GenOptions{Temperature: ptr(1.5), MaxTokens: 7, Stop: []string{"###"}},
			wantTemp: func(v *float64) bool { return v != nil && *v == 1.5 },
			wantMax:  7, wantStop: []string{"###"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake, p := start(t)
			model := chatModel
			if tt.model != "" {
				model = tt.model
				fake.SetModels(fakellm.Model{Name: model})
			}
			var err error
			if tt.prompt {
				_, err = p.Prompt(context.Background(), model, core.PromptRequest{Prompt: "p", Options: tt.opts}, nil)
			} else {
				_, err = p.Chat(context.Background(), model, core.ChatRequest{Messages: []core.Message{user("c")}, Options: tt.opts}, nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			recs := fake.Requests()
			if len(recs) != 1 {
				t.Fatalf("%d requests", len(recs))
			}
			r := recs[0]
			if !tt.wantTemp(r.Temperature) || r.MaxTokens != tt.wantMax || !slices.Equal(r.Stop, tt.wantStop) {
				t.Errorf("server got temperature %v, max %d, stop %q", r.Temperature, r.MaxTokens, r.Stop)
			}
			for _, s := range tt.wantRaw {
				if !strings.Contains(string(r.Raw), s) {
					t.Errorf("body %s lacks %s", r.Raw, s)
				}
			}
			for _, s := range tt.denyRaw {
				if strings.Contains(string(r.Raw), s) {
					t.Errorf("body %s has %s", r.Raw, s)
				}
			}
		})
	}
}

func TestPrompt(t *testing.T) {
	for _, tt := range []struct {
		name, system string
		want         []core.Message
	}{
		{"with system", "Answer in French.", []core.Message{{Role: core.RoleSystem, Content: "Answer in French."}, user("say hi")}},
		{"without system", "", []core.Message{user("say hi")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake, p := start(t)
			var deltas []string
			out, err := p.Prompt(context.Background(), chatModel, core.PromptRequest{System: tt.system, Prompt: "say hi"},
				func(s string) { deltas = append(deltas, s) })
			if err != nil {
				t.Fatal(err)
			}
			const want = "fake answer to: say hi"
			if out.Message.Content != want || strings.Join(deltas, "") != want {
				t.Errorf("content %q, deltas %q", out.Message.Content, deltas)
			}
			recs := requests(fake, "/v1/chat/completions")
			if len(recs) != 1 || !reflect.DeepEqual(recs[0].Messages, tt.want) {
				t.Errorf("server got %+v, want messages %+v", recs, tt.want)
			}
		})
	}
}

func TestEmbed(t *testing.T) {
	fake, p := start(t)
	ctx := context.Background()
	const model = "nomic-embed-text:latest"

	t.Run("scripted vector", func(t *testing.T) {
		fake.Script(fakellm.Reply{Match: "scripted", Embedding: []float32{0.25, -0.5, 1}})
		e, err := p.Embed(ctx, model, "a scripted text")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(e.Vector, []float32{0.25, -0.5, 1}) || e.Usage.TokensIn != 4 || e.Usage.Model != model {
			t.Errorf("got %+v", e)
		}
		r := requests(fake, "/v1/embeddings")
		if len(r) == 0 || r[len(r)-1].Prompt != "a scripted text" || r[len(r)-1].Model != model {
			t.Errorf("server got %+v", r)
		}
	})
	t.Run("default vectors follow the text", func(t *testing.T) {
		a1, err1 := p.Embed(ctx, model, "alpha")
		a2, err2 := p.Embed(ctx, model, "alpha")
		b, err3 := p.Embed(ctx, model, "beta")
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatal(err)
		}
		if len(a1.Vector) == 0 || !slices.Equal(a1.Vector, a2.Vector) || slices.Equal(a1.Vector, b.Vector) {
			t.Errorf("alpha %v, alpha %v, beta %v", a1.Vector, a2.Vector, b.Vector)
		}
	})
}

func TestModels(t *testing.T) {
	_, p := start(t)
	models, err := p.Models(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range models {
		names = append(names, m.Name)
		if m.ContextLength != 0 {
			t.Errorf("%s has context length %d, want unknown", m.Name, m.ContextLength)
		}
	}
	if !slices.Equal(names, []string{"llama3.2:1b", "qwen2.5:7b", "nomic-embed-text:latest"}) {
		t.Errorf("models %q", names)
	}
}

func refusedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/v1"
	ln.Close()
	return url
}

func TestErrors(t *testing.T) {
	type call func(ctx context.Context, p *openai.Provider) error
	chat := func(model string) call {
		return func(ctx context.Context, p *openai.Provider) error {
			_, err := p.Chat(ctx, model, core.ChatRequest{Messages: []core.Message{user("q")}}, nil)
			return err
		}
	}
	prompt := func(ctx context.Context, p *openai.Provider) error {
		_, err := p.Prompt(ctx, chatModel, core.PromptRequest{Prompt: "q"}, nil)
		return err
	}
	embed := func(model string) call {
		return func(ctx context.Context, p *openai.Provider) error {
			_, err := p.Embed(ctx, model, "q")
			return err
		}
	}
	list := func(ctx context.Context, p *openai.Provider) error {
		_, err := p.Models(ctx)
		return err
	}
	for _, tt := range []struct {
		name    string
		reply   fakellm.Reply
		refused bool
		raw     string // event stream body from a bare server instead of fakellm
		timeout time.Duration
		call    call
		code    string
		msg     []string
	}{
		{name: "unknown model", call: chat("nope:1b"), code: core.ENOTFOUND, msg: []string{"nope:1b", "does not exist"}},
		{name: "unknown embedding model", call: embed("nope:1b"), code: core.ENOTFOUND},
		{name: "500", reply: fakellm.Reply{Status: 500}, call: chat(chatModel), code: core.EUNAVAILABLE, msg: []string{chatModel, "500"}},
		{name: "503 on prompt", reply: fakellm.Reply{Status: 503}, call: prompt, code: core.EUNAVAILABLE},
		{name: "429", reply: fakellm.Reply{Status: 429}, call: chat(chatModel), code: core.EUNAVAILABLE},
		{name: "400", reply: fakellm.Reply{Status: 400, Text: "bad tools"}, call: chat(chatModel), code: core.EINVALID, msg: []string{"bad tools"}},
		{name: "400 on embed", reply: fakellm.Reply{Status: 400}, call: embed("nomic-embed-text"), code: core.EINVALID},
		{name: "401", reply: fakellm.Reply{Status: 401}, call: chat(chatModel), code: core.EINVALID},
		{name: "connection refused on chat", refused: true, call: chat(chatModel), code: core.EUNAVAILABLE},
		{name: "connection refused on listing", refused: true, call: list, code: core.EUNAVAILABLE},
		{name: "cut stream", reply: fakellm.Reply{Text: "one two three four", CutAfter: 2}, call: chat(chatModel), code: core.EUNAVAILABLE, msg: []string{"cut"}},
		{name: "cut before usage", reply: fakellm.Reply{Text: "one two", CutAfter: 99}, call: prompt, code: core.EUNAVAILABLE, msg: []string{"cut"}},
		{
			name: "stream ending without finish reason", call: chat("m"), code: core.EUNAVAILABLE, msg: []string{"cut"},
			raw: `data: {"choices":[{"index":0,"delta":{"content":"half"}}]}` + "\n\n",
		},
		{
			name: "error event mid-stream", call: chat("m"), code: core.EUNAVAILABLE, msg: []string{"overloaded"},
			raw: `data: {"choices":[{"index":0,"delta":{"content":"half"}}]}` + "\n\n" +
				`data: {"error":{"message":"engine overloaded","type":"server_error"}}` + "\n\n",
		},
		{name: "deadline on chat", reply: fakellm.Reply{Latency: 5 * time.Second}, timeout: 50 * time.Millisecond, call: chat(chatModel), code: core.ETIMEOUT},
		{name: "deadline on embed", reply: fakellm.Reply{Latency: 5 * time.Second}, timeout: 50 * time.Millisecond, call: embed("nomic-embed-text"), code: core.ETIMEOUT},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake, p := start(t)
			fake.Script(tt.reply)
			switch {
			case tt.refused:
				var err error
				if p, err = openai.New(openai.Config{BaseURL: refusedURL(t)}); err != nil {
					t.Fatal(err)
				}
			case tt.raw != "":
				p = rawServer(t, tt.raw)
			}
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			err := tt.call(ctx, p)
			t.Logf("error: %v", err)
			if core.ErrorCode(err) != tt.code {
				t.Fatalf("error = %v (code %q), want code %q", err, core.ErrorCode(err), tt.code)
			}
			if tt.code == core.ETIMEOUT && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %v does not wrap the deadline", err)
			}
			if !strings.Contains(err.Error(), "http://127.0.0.1:") {
				t.Errorf("error %q does not name the server", err)
			}
			for _, s := range tt.msg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}
