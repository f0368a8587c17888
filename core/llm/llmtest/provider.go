package llmtest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

// Harness is what ProviderSuite needs to know about one provider: how to
// make it, and the few things its protocol does differently, as data.
type Harness struct {
	// New returns a provider talking to fake in the provider's protocol.
	New func(t *testing.T, fake *fakellm.Server) llm.Provider
	// ChatModel and EmbedModel name a chat model and an embedding model
	// the fake has by default (see fakellm.DefaultModels).
	ChatModel, EmbedModel string
	// ChatPath, PromptPath and EmbedPath are the paths the fake records
	// Chat, Prompt and Embed requests under ("/api/chat",
	// "/v1/chat/completions", ...).
	ChatPath, PromptPath, EmbedPath string
	// PromptAsChat says that Prompt is sent as a chat of an optional
	// system message and a user message; otherwise it is sent as separate
	// system and prompt fields.
	PromptAsChat bool
	// StreamBody holds texts the body of every chat and prompt request
	// must contain besides asking for a stream, such as a request for the
	// usage at the end of the stream.
	StreamBody []string
	// MaxTokensKey is the JSON key the token limit goes under for
	// ChatModel ("num_predict", "max_tokens").
	MaxTokensKey string
	// ZeroTemperature is the JSON number a temperature of 0 goes out as:
	// "0", or the smallest float32 ("1e-45") for a client library that
	// would drop a 0.
	ZeroTemperature string
	// NotFoundText is part of the fake's message for a model it does not
	// have, which the provider's error must keep.
	NotFoundText string
	// ToolResultNamed says that a tool result goes out with the name of
	// its tool (Ollama's tool_name); OpenAI's schema has no such field on
	// tool messages, and strict servers reject one.
	ToolResultNamed bool
}

// ProviderSuite checks an llm.Provider against a fakellm server: streamed
// chat and prompt answers, finish reasons and usage, a tool-call round
// trip, sampling options, embeddings, the model listing, and the error
// codes of failing servers, cut streams and deadlines.
func ProviderSuite(t *testing.T, h Harness) {
	h.validate(t)
	for _, c := range []struct {
		name string
		run  func(*testing.T, Harness)
	}{
		{"ChatStreams", chatStreams},
		{"ChatWithoutDeltaFunc", chatWithoutDeltaFunc},
		{"ChatFinishLength", chatFinishLength},
		{"ToolRoundTrip", toolRoundTrip},
		{"OptionsReachServer", optionsReachServer},
		{"Prompt", prompt},
		{"Embed", embed},
		{"Models", models},
		{"Errors", errorCodes},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, h) })
	}
}

// validate fails at once on a harness that leaves something out, rather
// than letting the suite pass on empty expectations.
func (h Harness) validate(t *testing.T) {
	t.Helper()
	for _, f := range [][2]string{
		{"ChatModel", h.ChatModel}, {"EmbedModel", h.EmbedModel}, {"ChatPath", h.ChatPath}, {"PromptPath", h.PromptPath},
		{"EmbedPath", h.EmbedPath}, {"MaxTokensKey", h.MaxTokensKey}, {"ZeroTemperature", h.ZeroTemperature}, {"NotFoundText", h.NotFoundText},
	} {
		if f[1] == "" {
			t.Fatalf("Harness.%s is empty", f[0])
		}
	}
	if h.New == nil {
		t.Fatal("Harness.New is nil")
	}
	if _, err := strconv.ParseFloat(h.ZeroTemperature, 64); err != nil {
		t.Fatalf("Harness.ZeroTemperature: %v", err)
	}
}

// start returns a fake server, closed when the test ends, and a provider
// talking to it.
func (h Harness) start(t *testing.T) (*fakellm.Server, llm.Provider) {
	t.Helper()
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	return fake, h.New(t, fake)
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

// streamed reports what is wrong with a recorded chat or prompt request
// for a streamed answer, or "".
func (h Harness) streamed(r fakellm.Request) string {
	if !r.Stream {
		return "not streamed"
	}
	for _, s := range h.StreamBody {
		if !strings.Contains(string(r.Raw), s) {
			return "body lacks " + s
		}
	}
	return ""
}

// tokens is the fake's token count of a text: one per four runes, rounded
// up.
func tokens(text string) int { return (utf8.RuneCountInString(text) + 3) / 4 }

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

func ptr[T any](v T) *T { return &v }

func chatStreams(t *testing.T, h Harness) {
	for _, tt := range []struct{ name, text string }{
		{"SpacesAndNewlines", "Roses are red,\n  violets   are blue.\n\nThe end. "},
		{"SingleWord", "Hello"},
		{"LeadingWhitespace", "\n\t indented answer"},
		{"Unicode", "Grüße aus Köln — 你好 世界"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake, p := h.start(t)
			fake.Script(fakellm.Reply{Match: "go", Text: tt.text})
			var deltas []string
			out, err := p.Chat(context.Background(), h.ChatModel, core.ChatRequest{Messages: []core.Message{user("go")}},
				func(d core.Delta) { deltas = append(deltas, d.Text) })
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
			if want := (core.Usage{TokensIn: tokens("go"), TokensOut: tokens(tt.text), Model: h.ChatModel}); out.Usage != want {
				t.Errorf("usage %+v, want %+v", out.Usage, want)
			}
			if r := requests(fake, h.ChatPath); len(r) != 1 {
				t.Errorf("requests = %+v, want one chat", r)
			} else if msg := h.streamed(r[0]); msg != "" {
				t.Errorf("chat request %s", msg)
			}
		})
	}
}

// chatWithoutDeltaFunc asks for a whole answer: nobody reads the pieces,
// so the backend is not asked to stream them.
func chatWithoutDeltaFunc(t *testing.T, h Harness) {
	fake, p := h.start(t)
	out, err := p.Chat(context.Background(), h.ChatModel, core.ChatRequest{Messages: []core.Message{user("ping")}}, nil)
	if err != nil || out.Message.Content != "fake answer to: ping" || out.FinishReason != "stop" {
		t.Fatalf("got %q (finish %q), %v", out.Message.Content, out.FinishReason, err)
	}
	if want := (core.Usage{TokensIn: tokens("ping"), TokensOut: tokens(out.Message.Content), Model: h.ChatModel}); out.Usage != want {
		t.Errorf("usage %+v, want %+v", out.Usage, want)
	}
	if r := requests(fake, h.ChatPath); len(r) != 1 || r[0].Stream {
		t.Errorf("requests = %+v, want one chat asking for a whole answer", r)
	}
}

func chatFinishLength(t *testing.T, h Harness) {
	fake, p := h.start(t)
	fake.Script(fakellm.Reply{Text: "cut short", FinishReason: "length"})
	out, err := p.Chat(context.Background(), h.ChatModel, core.ChatRequest{Messages: []core.Message{user("x")}}, nil)
	if err != nil || out.FinishReason != "length" {
		t.Fatalf("finish %q, error %v", out.FinishReason, err)
	}
}

// tools are the tools offered in the round trip.
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

// toolRoundTrip has the model call two tools, sends their results back
// and checks what the server was sent at each turn.
func toolRoundTrip(t *testing.T, h Harness) {
	for _, tt := range []struct {
		name     string
		preamble string // text the model says before its calls
		timeID   string // id of the get_time call; "" leaves it to the server
	}{
		{"CallsOnlyOneIDMadeByServer", "", ""},
		{"TextBeforeCallsWithIDs", "Let me check.", "call_t2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake, p := h.start(t)
			fake.Script(
				fakellm.Reply{Match: "weather", Text: tt.preamble, ToolCalls: []fakellm.Call{
					{ID: "call_w1", Name: "get_weather", Arguments: map[string]any{"city": "Paris", "days": 2, "units": map[string]any{"temp": "C"}}},
					{ID: tt.timeID, Name: "get_time", Arguments: map[string]any{"tz": "Europe/Paris"}},
				}},
				fakellm.Reply{Match: "12:00", Text: "Sunny in Paris at noon."},
			)
			ctx := context.Background()
			msgs := []core.Message{{Role: core.RoleSystem, Content: "be brief"}, user("weather and time in Paris?")}

			var deltas []string
			var streamed []core.ToolCall // assembled from the tool-call deltas, by index
			first, err := p.Chat(ctx, h.ChatModel, core.ChatRequest{Messages: msgs, Tools: tools()}, func(d core.Delta) {
				deltas = append(deltas, d.Text)
				if tc := d.ToolCall; tc != nil {
					for len(streamed) <= tc.Index {
						streamed = append(streamed, core.ToolCall{Type: "function"})
					}
					c := &streamed[tc.Index]
					if tc.ID != "" {
						if c.ID != "" {
							t.Errorf("call %d got a second id %q after %q", tc.Index, tc.ID, c.ID)
						}
						c.ID = tc.ID
					}
					if tc.Name != "" {
						c.Function.Name = tc.Name
					}
					c.Function.Arguments += tc.Arguments
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			calls := first.Message.ToolCalls
			if first.FinishReason != "tool_calls" || len(calls) != 2 || first.Message.Content != tt.preamble {
				t.Fatalf("got %+v", first)
			}
			if strings.Join(deltas, "") != tt.preamble {
				t.Errorf("deltas %q, want %q", deltas, tt.preamble)
			}
			// The streamed pieces of each call add up to the call the answer
			// holds, parallel calls apart.
			if len(streamed) != len(calls) {
				t.Errorf("tool-call deltas make %d calls, the answer has %d", len(streamed), len(calls))
			}
			for i := range min(len(streamed), len(calls)) {
				if streamed[i].ID != calls[i].ID || streamed[i].Function.Name != calls[i].Function.Name ||
					!sameJSON(t, streamed[i].Function.Arguments, calls[i].Function.Arguments) {
					t.Errorf("call %d streamed as %+v, answered as %+v", i, streamed[i], calls[i])
				}
			}
			for i, want := range []struct{ id, name, args string }{
				{"call_w1", "get_weather", `{"city":"Paris","days":2,"units":{"temp":"C"}}`},
				{tt.timeID, "get_time", `{"tz":"Europe/Paris"}`},
			} {
				c := calls[i]
				if c.Type != "function" || c.Function.Name != want.name || !sameJSON(t, c.Function.Arguments, want.args) {
					t.Errorf("call %d = %+v, want %s %s", i, c, want.name, want.args)
				}
				if want.id != "" && c.ID != want.id {
					t.Errorf("call %d has id %q, want %q", i, c.ID, want.id)
				}
			}
			if calls[1].ID == "" || calls[1].ID == calls[0].ID {
				t.Errorf("call ids %q and %q, want two distinct ids", calls[0].ID, calls[1].ID)
			}

			msgs = append(msgs, first.Message,
				core.Message{Role: core.RoleTool, ToolCallID: calls[0].ID, Content: `{"sky":"sunny"}`},
				core.Message{Role: core.RoleTool, ToolCallID: calls[1].ID, Name: "get_time", Content: "12:00"},
			)
			second, err := p.Chat(ctx, h.ChatModel, core.ChatRequest{Messages: msgs, Tools: tools()}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if second.Message.Content != "Sunny in Paris at noon." || len(second.Message.ToolCalls) != 0 || second.FinishReason != "stop" {
				t.Errorf("second answer = %+v", second)
			}

			recs := requests(fake, h.ChatPath)
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
			if asst.Role != core.RoleAssistant || asst.Content != tt.preamble || len(asst.ToolCalls) != 2 {
				t.Fatalf("assistant message sent as %+v", asst)
			}
			for i, c := range asst.ToolCalls {
				if c.ID != calls[i].ID || c.Function.Name != calls[i].Function.Name || c.Function.Arguments != calls[i].Function.Arguments {
					t.Errorf("tool call %d sent as %+v, want %+v", i, c, calls[i])
				}
			}
			for i, want := range []struct{ id, name, content string }{
				{calls[0].ID, "get_weather", `{"sky":"sunny"}`},
				{calls[1].ID, "get_time", "12:00"},
			} {
				if !h.ToolResultNamed {
					want.name = ""
				}
				m := sent[3+i]
				if m.Role != core.RoleTool || m.ToolCallID != want.id || m.Name != want.name || m.Content != want.content {
					t.Errorf("tool message %d sent as %+v, want id %q name %q", i, m, want.id, want.name)
				}
			}
		})
	}
}

func optionsReachServer(t *testing.T, h Harness) {
	zero, _ := strconv.ParseFloat(h.ZeroTemperature, 64) // checked by validate
	maxKey := `"` + h.MaxTokensKey + `"`
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
			name:     "AllSetOnChat",
			opts:     core.GenOptions{Temperature: ptr(0.25), TopP: ptr(0.5), MaxTokens: 64, Stop: []string{"END", "\n\n"}},
			wantTemp: ptr(0.25), wantMax: 64, wantStop: []string{"END", "\n\n"},
			wantRaw: []string{`"top_p":0.5`, maxKey + `:64`},
		},
		{
			name: "TemperatureZeroIsSent", opts: core.GenOptions{Temperature: ptr(0.0)},
			wantTemp: &zero, wantRaw: []string{`"temperature":` + h.ZeroTemperature},
		},
		{
			name: "NothingSetSendsNothing", opts: core.GenOptions{},
			denyRaw: []string{`"temperature"`, maxKey, `"top_p"`, `"stop"`},
		},
		{
			name: "AllSetOnPrompt", prompt: true,
			opts:     core.GenOptions{Temperature: ptr(1.5), MaxTokens: 7, Stop: []string{"###"}},
			wantTemp: ptr(1.5), wantMax: 7, wantStop: []string{"###"},
			wantRaw: []string{maxKey + `:7`},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake, p := h.start(t)
			var err error
			if tt.prompt {
				_, err = p.Prompt(context.Background(), h.ChatModel, core.PromptRequest{Prompt: "p", Options: tt.opts}, nil)
			} else {
				_, err = p.Chat(context.Background(), h.ChatModel, core.ChatRequest{Messages: []core.Message{user("c")}, Options: tt.opts}, nil)
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

func prompt(t *testing.T, h Harness) {
	for _, tt := range []struct{ name, system string }{
		{"WithSystem", "Answer in French."},
		{"WithoutSystem", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake, p := h.start(t)
			var deltas []string
			out, err := p.Prompt(context.Background(), h.ChatModel, core.PromptRequest{System: tt.system, Prompt: "say hi"},
				func(d core.Delta) { deltas = append(deltas, d.Text) })
			if err != nil {
				t.Fatal(err)
			}
			const want = "fake answer to: say hi"
			if out.Message.Content != want || strings.Join(deltas, "") != want || len(deltas) < 2 || out.FinishReason != "stop" {
				t.Errorf("content %q, deltas %q, finish %q", out.Message.Content, deltas, out.FinishReason)
			}
			if u := (core.Usage{TokensIn: tokens(tt.system + "say hi"), TokensOut: tokens(want), Model: h.ChatModel}); out.Usage != u {
				t.Errorf("usage %+v, want %+v", out.Usage, u)
			}
			recs := requests(fake, h.PromptPath)
			if len(recs) != 1 {
				t.Fatalf("server got %+v, want one request", recs)
			}
			r := recs[0]
			if msg := h.streamed(r); msg != "" {
				t.Errorf("prompt request %s", msg)
			}
			var wantMsgs []core.Message
			wantSystem, wantPrompt := tt.system, "say hi"
			if h.PromptAsChat {
				if tt.system != "" {
					wantMsgs = append(wantMsgs, core.Message{Role: core.RoleSystem, Content: tt.system})
				}
				wantMsgs, wantSystem, wantPrompt = append(wantMsgs, user("say hi")), "", ""
			}
			if !reflect.DeepEqual(r.Messages, wantMsgs) || r.System != wantSystem || r.Prompt != wantPrompt {
				t.Errorf("server got messages %+v, system %q, prompt %q; want %+v, %q, %q",
					r.Messages, r.System, r.Prompt, wantMsgs, wantSystem, wantPrompt)
			}
		})
	}
}

func embed(t *testing.T, h Harness) {
	fake, p := h.start(t)
	ctx := context.Background()

	t.Run("ScriptedVector", func(t *testing.T) {
		fake.Script(fakellm.Reply{Match: "scripted", Embedding: []float32{0.25, -0.5, 1}})
		const text = "a scripted text"
		e, err := p.Embed(ctx, h.EmbedModel, text)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(e.Vector, []float32{0.25, -0.5, 1}) || e.Usage != (core.Usage{TokensIn: tokens(text), Model: h.EmbedModel}) {
			t.Errorf("got %+v", e)
		}
		r := requests(fake, h.EmbedPath)
		if len(r) == 0 || r[len(r)-1].Prompt != text || r[len(r)-1].Model != h.EmbedModel {
			t.Errorf("server got %+v", r)
		}
	})
	t.Run("DefaultVectorsFollowTheText", func(t *testing.T) {
		a1, err1 := p.Embed(ctx, h.EmbedModel, "alpha")
		a2, err2 := p.Embed(ctx, h.EmbedModel, "alpha")
		b, err3 := p.Embed(ctx, h.EmbedModel, "beta")
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatal(err)
		}
		if len(a1.Vector) == 0 || !slices.Equal(a1.Vector, a2.Vector) || slices.Equal(a1.Vector, b.Vector) {
			t.Errorf("alpha %v, alpha %v, beta %v", a1.Vector, a2.Vector, b.Vector)
		}
	})
}

// models checks the listing. Neither of the fake's listings carries a
// context length, so a provider reporting one has made it up.
func models(t *testing.T, h Harness) {
	_, p := h.start(t)
	got, err := p.Models(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names, want []string
	for _, m := range got {
		names = append(names, m.Name)
		if m.ContextLength != 0 {
			t.Errorf("%s has context length %d, want unknown", m.Name, m.ContextLength)
		}
	}
	for _, m := range fakellm.DefaultModels() {
		want = append(want, m.Name)
	}
	if !slices.Equal(names, want) {
		t.Errorf("models %q, want %q", names, want)
	}
}

// op is the provider call an error case makes.
type op int

const (
	opChat op = iota
	opPrompt
	opEmbed
	opModels
)

// call makes the call with model, or the harness's model for it when "";
// chat and prompt stream their answers to onDelta when it is not nil.
func (o op) call(ctx context.Context, h Harness, p llm.Provider, model string, onDelta core.DeltaFunc) error {
	var err error
	switch o {
	case opChat:
		_, err = p.Chat(ctx, cmp.Or(model, h.ChatModel), core.ChatRequest{Messages: []core.Message{user("q")}}, onDelta)
	case opPrompt:
		_, err = p.Prompt(ctx, cmp.Or(model, h.ChatModel), core.PromptRequest{Prompt: "q"}, onDelta)
	case opEmbed:
		_, err = p.Embed(ctx, cmp.Or(model, h.EmbedModel), "q")
	case opModels:
		_, err = p.Models(ctx)
	}
	return err
}

// errorCodes checks the code and the message of each way a call fails.
func errorCodes(t *testing.T, h Harness) {
	const deadline, slow = 50 * time.Millisecond, 5 * time.Second
	for _, tt := range []struct {
		name    string
		reply   fakellm.Reply
		refused bool // the server is down
		timeout time.Duration
		op      op
		model   string
		code    string
		msg     []string
		oneLine bool // the error must fit on one short line
		// upstream: the backend itself refused or failed the call
		// (core.Upstream; the API answers 502). A missing model, an
		// overloaded backend (429, 503), one that is down and a deadline
		// are not.
		upstream bool
		stream   bool // the answer is streamed
	}{
		{name: "UnknownChatModel", op: opChat, model: "nope:1b", code: core.ENOTFOUND, msg: []string{"nope:1b", h.NotFoundText}},
		{name: "UnknownEmbeddingModel", op: opEmbed, model: "nope:1b", code: core.ENOTFOUND, msg: []string{"nope:1b", h.NotFoundText}},
		{name: "500OnChat", reply: fakellm.Reply{Status: 500}, op: opChat, code: core.EUNAVAILABLE, msg: []string{h.ChatModel, "500"}, upstream: true},
		{name: "503OnPrompt", reply: fakellm.Reply{Status: 503}, op: opPrompt, code: core.EUNAVAILABLE},
		{name: "429OnChat", reply: fakellm.Reply{Status: 429}, op: opChat, code: core.EUNAVAILABLE},
		{name: "400OnChat", reply: fakellm.Reply{Status: 400, Text: "bad options"}, op: opChat, code: core.EINVALID, msg: []string{"bad options"}, upstream: true},
		{name: "401OnChat", reply: fakellm.Reply{Status: 401}, op: opChat, code: core.EINVALID, upstream: true},
		{name: "400OnEmbed", reply: fakellm.Reply{Status: 400}, op: opEmbed, code: core.EINVALID, upstream: true},
		{name: "403OnChat", reply: fakellm.Reply{Status: 403}, op: opChat, code: core.EINVALID, msg: []string{"403"}, upstream: true},
		{name: "422OnEmbed", reply: fakellm.Reply{Status: 422}, op: opEmbed, code: core.EINVALID, msg: []string{"422"}, upstream: true},
		{name: "504OnChat", reply: fakellm.Reply{Status: 504}, op: opChat, code: core.EUNAVAILABLE, msg: []string{"504"}, upstream: true},
		{name: "503OnEmbed", reply: fakellm.Reply{Status: 503}, op: opEmbed, code: core.EUNAVAILABLE},
		{name: "ErrorPageIsBrief", reply: fakellm.Reply{Status: 502, Text: "<html>\n<body>\n<h1>Bad Gateway</h1>\n" + strings.Repeat("<p>upstream trouble</p>\n", 200) + "</body>\n</html>"},
			op: opChat, code: core.EUNAVAILABLE, msg: []string{"Bad Gateway"}, oneLine: true, upstream: true},
		{name: "ConnectionRefusedOnChat", refused: true, op: opChat, code: core.EUNAVAILABLE},
		{name: "ConnectionRefusedOnListing", refused: true, op: opModels, code: core.EUNAVAILABLE},
		{name: "CutChatStream", reply: fakellm.Reply{Text: "one two three four", CutAfter: 2}, op: opChat, stream: true, code: core.EUNAVAILABLE, msg: []string{"cut"}},
		{name: "CutPromptStreamEarly", reply: fakellm.Reply{Text: "one two three", CutAfter: 1}, op: opPrompt, stream: true, code: core.EUNAVAILABLE, msg: []string{"cut"}},
		{name: "CutPromptStreamAtTheEnd", reply: fakellm.Reply{Text: "one two", CutAfter: 99}, op: opPrompt, stream: true, code: core.EUNAVAILABLE, msg: []string{"cut"}},
		{name: "CutWholeChat", reply: fakellm.Reply{Text: "one two", CutAfter: 1}, op: opChat, code: core.EUNAVAILABLE, msg: []string{"cut"}},
		{name: "CutWholePrompt", reply: fakellm.Reply{Text: "one two", CutAfter: 1}, op: opPrompt, code: core.EUNAVAILABLE, msg: []string{"cut"}},
		{name: "DeadlineOnStreamedChat", reply: fakellm.Reply{Latency: slow}, timeout: deadline, op: opChat, stream: true, code: core.ETIMEOUT},
		{name: "DeadlineOnChat", reply: fakellm.Reply{Latency: slow}, timeout: deadline, op: opChat, code: core.ETIMEOUT},
		{name: "DeadlineOnEmbed", reply: fakellm.Reply{Latency: slow}, timeout: deadline, op: opEmbed, code: core.ETIMEOUT},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake, p := h.start(t)
			fake.Script(tt.reply)
			if tt.refused {
				fake.Close() // nothing listens on its port any more
			}
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			var onDelta core.DeltaFunc
			if tt.stream {
				onDelta = func(core.Delta) {}
			}
			err := tt.op.call(ctx, h, p, tt.model, onDelta)
			WantError(t, err, tt.code, append([]string{fake.URL()}, tt.msg...)...)
			if core.IsUpstream(err) != tt.upstream {
				t.Errorf("IsUpstream(%v) = %v, want %v", err, core.IsUpstream(err), tt.upstream)
			}
			if tt.oneLine && (strings.Contains(err.Error(), "\n") || len(err.Error()) > 600) {
				t.Errorf("error is %d bytes over several lines, want one short line: %q", len(err.Error()), err)
			}
		})
	}
}

// WantError checks that err has code, wraps the context's deadline if the
// code is ETIMEOUT, and mentions each of mentions (such as the server's URL
// and the model).
func WantError(t *testing.T, err error, code string, mentions ...string) {
	t.Helper()
	t.Logf("error: %v", err)
	if core.ErrorCode(err) != code {
		t.Fatalf("error = %v (code %q), want code %q", err, core.ErrorCode(err), code)
	}
	if code == core.ETIMEOUT && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap the deadline", err)
	}
	for _, s := range mentions {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}
