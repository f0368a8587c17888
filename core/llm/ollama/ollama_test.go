package ollama_test

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
	"github.com/stepwise-run/stepwise/core/llm"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/core/llm/ollama"
)

const chatModel = "llama3.2:1b"

// start returns a fake server and a provider talking to it.
func start(t *testing.T) (*fakellm.Server, *ollama.Provider) {
	t.Helper()
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	p, err := ollama.New(fake.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return fake, p
}

// requests returns the recorded requests to path.
func requests(fake *fakellm.Server, path string) []fakellm.Request {
	var out []fakellm.Request
	for _, r := range fake.Requests() {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// sameJSON reports whether two JSON texts hold the same value.
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
			if out.Message.Content != tt.text || out.Message.Role != core.RoleAssistant {
				t.Errorf("message = %+v", out.Message)
			}
			if out.FinishReason != "stop" || out.Usage.TokensIn == 0 || out.Usage.TokensOut == 0 || out.Usage.Model != chatModel {
				t.Errorf("finish %q, usage %+v", out.FinishReason, out.Usage)
			}
			if r := requests(fake, "/api/chat"); len(r) != 1 || !r[0].Stream {
				t.Errorf("requests = %+v, want one streamed chat", r)
			}
		})
	}
}

func TestChatWithoutDeltaFunc(t *testing.T) {
	_, p := start(t)
	out, err := p.Chat(context.Background(), chatModel, core.ChatRequest{Messages: []core.Message{user("ping")}}, nil)
	if err != nil || out.Message.Content != "fake answer to: ping" {
		t.Fatalf("got %q, %v", out.Message.Content, err)
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
				"properties": map[string]any{"city": map[string]any{"type": "string"}, "days": map[string]any{"type": "integer"}},
				"required":   []any{"city"},
			},
		}},
		{Type: "function", Function: core.ToolFunction{Name: "get_time"}},
	}
}

func TestToolRoundTrip(t *testing.T) {
	fake, p := start(t)
	fake.Script(
		fakellm.Reply{Match: "weather", ToolCalls: []fakellm.Call{
			{ID: "call_w1", Name: "get_weather", Arguments: map[string]any{"city": "Paris", "days": 2}},
			{Name: "get_time", Arguments: map[string]any{"tz": "CET"}},
		}},
		fakellm.Reply{Match: "12:00", Text: "Sunny in Paris at noon."},
	)
	ctx := context.Background()
	msgs := []core.Message{{Role: core.RoleSystem, Content: "be brief"}, user("weather and time in Paris?")}

	first, err := p.Chat(ctx, chatModel, core.ChatRequest{Messages: msgs, Tools: tools()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	calls := first.Message.ToolCalls
	if first.FinishReason != "tool_calls" || len(calls) != 2 {
		t.Fatalf("finish %q, calls %+v", first.FinishReason, calls)
	}
	if calls[0].ID != "call_w1" || calls[0].Function.Name != "get_weather" || !sameJSON(t, calls[0].Function.Arguments, `{"city":"Paris","days":2}`) {
		t.Errorf("first call = %+v", calls[0])
	}
	if calls[1].ID == "" || calls[1].ID == calls[0].ID || calls[1].Function.Name != "get_time" || calls[1].Type != "function" {
		t.Errorf("second call = %+v", calls[1])
	}

	msgs = append(msgs, first.Message,
		core.Message{Role: core.RoleTool, ToolCallID: calls[0].ID, Content: `{"sky":"sunny"}`},
		core.Message{Role: core.RoleTool, ToolCallID: calls[1].ID, Name: "get_time", Content: "12:00"},
	)
	second, err := p.Chat(ctx, chatModel, core.ChatRequest{Messages: msgs, Tools: tools()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if second.Message.Content != "Sunny in Paris at noon." || second.FinishReason != "stop" {
		t.Errorf("second answer = %+v", second)
	}

	recs := requests(fake, "/api/chat")
	if len(recs) != 2 {
		t.Fatalf("%d chat requests, want 2", len(recs))
	}
	for i, r := range recs {
		if !slices.Equal(r.Tools, []string{"get_weather", "get_time"}) {
			t.Errorf("request %d offered tools %q", i, r.Tools)
		}
	}
	sent := recs[1].Messages
	if len(sent) != 5 {
		t.Fatalf("second request has %d messages, want 5", len(sent))
	}
	asst := sent[2]
	if asst.Role != core.RoleAssistant || len(asst.ToolCalls) != 2 {
		t.Fatalf("assistant message sent as %+v", asst)
	}
	for i, c := range asst.ToolCalls {
		if c.ID != calls[i].ID || c.Function.Name != calls[i].Function.Name || !sameJSON(t, c.Function.Arguments, calls[i].Function.Arguments) {
			t.Errorf("tool call %d sent as %+v, want %+v", i, c, calls[i])
		}
	}
	for i, want := range []struct{ id, name, content string }{
		{calls[0].ID, "get_weather", `{"sky":"sunny"}`},
		{calls[1].ID, "get_time", "12:00"},
	} {
		m := sent[3+i]
		if m.Role != core.RoleTool || m.ToolCallID != want.id || m.Name != want.name || m.Content != want.content {
			t.Errorf("tool message %d sent as %+v, want id %q name %q", i, m, want.id, want.name)
		}
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
	if n := len(requests(fake, "/api/chat")); n != 0 {
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

func ptr[T any](v T) *T { return &v }

func TestOptionsReachServer(t *testing.T) {
	for _, tt := range []struct {
		name     string
		prompt   bool
		opts     core.GenOptions
		wantTemp *float64
		wantMax  int
		wantStop []string
		wantRaw  []string
		denyRaw  []string
	}{
		{
			name:     "all set on chat",
			opts:     core.GenOptions{Temperature: ptr(0.3), TopP: ptr(0.9), MaxTokens: 64, Stop: []string{"END", "\n\n"}},
			wantTemp: ptr(0.3), wantMax: 64, wantStop: []string{"END", "\n\n"},
			wantRaw: []string{`"top_p":0.9`, `"num_predict":64`},
		},
		{
			name: "temperature zero is sent", opts: core.GenOptions{Temperature: ptr(0.0)},
			wantTemp: ptr(0.0), wantRaw: []string{`"temperature":0`},
		},
		{
			name: "nothing set sends nothing", opts: core.GenOptions{},
			denyRaw: []string{"temperature", "num_predict", "top_p", "stop"},
		},
		{
			name: "all set on prompt", prompt: true,
			opts:     core.GenOptions{Temperature: ptr(1.5), MaxTokens: 7, Stop: []string{"###"}},
			wantTemp: ptr(1.5), wantMax: 7, wantStop: []string{"###"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake, p := start(t)
			var err error
			if tt.prompt {
				_, err = p.Prompt(context.Background(), chatModel, core.PromptRequest{Prompt: "p", Options: tt.opts}, nil)
			} else {
				_, err = p.Chat(context.Background(), chatModel, core.ChatRequest{Messages: []core.Message{user("c")}, Options: tt.opts}, nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			recs := fake.Requests()
			if len(recs) != 1 {
				t.Fatalf("%d requests", len(recs))
			}
			r := recs[0]
			if !reflect.DeepEqual(r.Temperature, tt.wantTemp) || r.MaxTokens != tt.wantMax || !slices.Equal(r.Stop, tt.wantStop) {
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
	fake, p := start(t)
	var deltas []string
	out, err := p.Prompt(context.Background(), chatModel, core.PromptRequest{System: "Answer in French.", Prompt: "say hi"},
		func(s string) { deltas = append(deltas, s) })
	if err != nil {
		t.Fatal(err)
	}
	const want = "fake answer to: say hi"
	if out.Message.Content != want || strings.Join(deltas, "") != want || len(deltas) < 2 {
		t.Errorf("content %q, deltas %q", out.Message.Content, deltas)
	}
	recs := requests(fake, "/api/generate")
	if len(recs) != 1 || recs[0].System != "Answer in French." || recs[0].Prompt != "say hi" || !recs[0].Stream {
		t.Errorf("server got %+v", recs)
	}
	if out.Usage.TokensIn != 6 || out.Usage.TokensOut != 6 { // (17+6+3)/4 and (22+3)/4 runes
		t.Errorf("usage %+v", out.Usage)
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
		if !slices.Equal(e.Vector, []float32{0.25, -0.5, 1}) || e.Usage.TokensIn == 0 || e.Usage.Model != model {
			t.Errorf("got %+v", e)
		}
		r := requests(fake, "/api/embed")
		if len(r) == 0 || r[len(r)-1].Prompt != "a scripted text" {
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

func TestModelsAndShow(t *testing.T) {
	fake, p := start(t)
	ctx := context.Background()
	models, err := p.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range models {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"llama3.2:1b", "qwen2.5:7b", "nomic-embed-text:latest"}) {
		t.Errorf("models %q", names)
	}

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
	_, p := start(t)
	ctx := context.Background()
	var steps []ollama.Progress
	if err := p.Pull(ctx, "phi4:14b", func(pr ollama.Progress) { steps = append(steps, pr) }); err != nil {
		t.Fatal(err)
	}
	if len(steps) < 3 || steps[0].Status != "pulling manifest" || steps[len(steps)-1].Status != "success" {
		t.Fatalf("steps %+v", steps)
	}
	var sawBytes bool
	for _, s := range steps {
		if s.Total > 0 && s.Completed == s.Total {
			sawBytes = true
		}
	}
	if !sawBytes {
		t.Errorf("no step completed a download: %+v", steps)
	}
	models, err := p.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(models, func(m llm.ModelInfo) bool { return m.Name == "phi4:14b" }) {
		t.Errorf("pulled model not listed: %+v", models)
	}
}

// refusedURL returns the URL of a port nothing listens on.
func refusedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	return url
}

func TestErrors(t *testing.T) {
	type call func(ctx context.Context, p *ollama.Provider) error
	chat := func(model string) call {
		return func(ctx context.Context, p *ollama.Provider) error {
			_, err := p.Chat(ctx, model, core.ChatRequest{Messages: []core.Message{user("q")}}, nil)
			return err
		}
	}
	prompt := func(ctx context.Context, p *ollama.Provider) error {
		_, err := p.Prompt(ctx, chatModel, core.PromptRequest{Prompt: "q"}, nil)
		return err
	}
	embed := func(ctx context.Context, p *ollama.Provider) error {
		_, err := p.Embed(ctx, "nomic-embed-text", "q")
		return err
	}
	list := func(ctx context.Context, p *ollama.Provider) error {
		_, err := p.Models(ctx)
		return err
	}
	for _, tt := range []struct {
		name    string
		reply   fakellm.Reply
		refused bool
		timeout time.Duration
		call    call
		code    string
		msg     []string
	}{
		{name: "unknown model", call: chat("nope:1b"), code: core.ENOTFOUND, msg: []string{"nope:1b", "not found"}},
		{name: "500", reply: fakellm.Reply{Status: 500}, call: chat(chatModel), code: core.EUNAVAILABLE, msg: []string{chatModel}},
		{name: "503 on prompt", reply: fakellm.Reply{Status: 503}, call: prompt, code: core.EUNAVAILABLE},
		{name: "429", reply: fakellm.Reply{Status: 429}, call: chat(chatModel), code: core.EUNAVAILABLE},
		{name: "400", reply: fakellm.Reply{Status: 400, Text: "bad options"}, call: chat(chatModel), code: core.EINVALID, msg: []string{"bad options"}},
		{name: "400 on embed", reply: fakellm.Reply{Status: 400}, call: embed, code: core.EINVALID},
		{name: "503 on embed", reply: fakellm.Reply{Status: 503}, call: embed, code: core.EUNAVAILABLE},
		{name: "connection refused on chat", refused: true, call: chat(chatModel), code: core.EUNAVAILABLE},
		{name: "connection refused on listing", refused: true, call: list, code: core.EUNAVAILABLE},
		{name: "cut chat stream", reply: fakellm.Reply{Text: "one two three four", CutAfter: 2}, call: chat(chatModel), code: core.EUNAVAILABLE, msg: []string{"cut"}},
		{name: "cut prompt stream", reply: fakellm.Reply{Text: "one two three", CutAfter: 1}, call: prompt, code: core.EUNAVAILABLE, msg: []string{"cut"}},
		{name: "deadline on chat", reply: fakellm.Reply{Latency: 5 * time.Second}, timeout: 50 * time.Millisecond, call: chat(chatModel), code: core.ETIMEOUT},
		{name: "deadline on embed", reply: fakellm.Reply{Latency: 5 * time.Second}, timeout: 50 * time.Millisecond, call: embed, code: core.ETIMEOUT},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake, p := start(t)
			fake.Script(tt.reply)
			if tt.refused {
				var err error
				if p, err = ollama.New(refusedURL(t), nil); err != nil {
					t.Fatal(err)
				}
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
