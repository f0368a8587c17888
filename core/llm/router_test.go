package llm_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm"
)

func TestRouterResolution(t *testing.T) {
	tests := []struct {
		name     string
		backends []*fakeProvider
		types    []string // backend types; "ollama" when shorter
		models   []llm.Model
		defaults llm.Defaults
		cap      core.Capability
		sel      core.ModelSelector

		wantModel, wantBackend string
		wantCode               string
		wantMsg                []string
		wantCalls              map[string][]string // backend → calls made
	}{
		{
			name:     "tag 7b is not served by a backend with 0.5b",
			backends: []*fakeProvider{backend("a", "qwen2.5:0.5b")},
			sel:      core.ModelSelector{Models: []string{"qwen2.5:7b"}},
			wantCode: core.ENOTFOUND,
			wantMsg:  []string{`"qwen2.5:7b"`, "chat", "a does not list qwen2.5:7b"},
		},
		{
			name:        "the backend with the exact tag serves",
			backends:    []*fakeProvider{backend("a", "qwen2.5:0.5b"), backend("b", "qwen2.5:7b")},
			sel:         core.ModelSelector{Models: []string{"qwen2.5:7b"}},
			wantModel:   "qwen2.5:7b",
			wantBackend: "b",
			wantCalls:   map[string][]string{"a": nil, "b": {"chat:qwen2.5:7b"}},
		},
		{
			name:        "a name without tag means latest",
			backends:    []*fakeProvider{backend("a", "llama3:latest")},
			sel:         core.ModelSelector{Models: []string{"llama3"}},
			wantModel:   "llama3:latest",
			wantBackend: "a",
		},
		{
			name:        "latest matches a listing without tag, spelled as listed",
			backends:    []*fakeProvider{backend("a", "gpt-4o")},
			sel:         core.ModelSelector{Models: []string{"gpt-4o:latest"}},
			wantModel:   "gpt-4o",
			wantBackend: "a",
		},
		{
			name:     "a name without tag does not match another tag",
			backends: []*fakeProvider{backend("a", "llama3:8b")},
			sel:      core.ModelSelector{Models: []string{"llama3"}},
			wantCode: core.ENOTFOUND,
		},
		{
			name:     "case is not folded for an untagged listing",
			backends: []*fakeProvider{backend("a", "Llama3")},
			sel:      core.ModelSelector{Models: []string{"llama3"}},
			wantCode: core.ENOTFOUND,
		},
		{
			name:     "case is not folded",
			backends: []*fakeProvider{backend("a", "Llama3:latest")},
			sel:      core.ModelSelector{Models: []string{"llama3"}},
			wantCode: core.ENOTFOUND,
		},
		{
			name:     "an org prefix is not dropped",
			backends: []*fakeProvider{backend("a", "meta/llama3:latest")},
			sel:      core.ModelSelector{Models: []string{"llama3"}},
			wantCode: core.ENOTFOUND,
		},
		{
			name:        "a registry port is not a tag",
			backends:    []*fakeProvider{backend("a", "localhost:5000/llama3:latest")},
			sel:         core.ModelSelector{Models: []string{"localhost:5000/llama3"}},
			wantModel:   "localhost:5000/llama3:latest",
			wantBackend: "a",
		},
		{
			name:        "models are tried in preference order",
			backends:    []*fakeProvider{backend("a", "small:1b", "big:70b")},
			sel:         core.ModelSelector{Models: []string{"missing:1b", "big:70b", "small:1b"}},
			wantModel:   "big:70b",
			wantBackend: "a",
		},
		{
			name:        "the default model serves when none is named",
			backends:    []*fakeProvider{backend("a", "llama3:latest", "nomic:latest")},
			defaults:    llm.Defaults{Chat: "llama3", Embed: "nomic"},
			cap:         core.CapEmbed,
			wantModel:   "nomic:latest",
			wantBackend: "a",
		},
		{
			name:     "no default for the capability",
			backends: []*fakeProvider{backend("a", "llama3:latest")},
			defaults: llm.Defaults{Chat: "llama3"},
			cap:      core.CapPrompt,
			wantCode: core.ENOTFOUND,
			wantMsg:  []string{"no default model is configured for prompt"},
		},
		{
			name:      "a declared model lacking the capability is skipped",
			backends:  []*fakeProvider{backend("a", "nomic:latest")},
			models:    []llm.Model{{Name: "nomic", CanEmbed: true}},
			sel:       core.ModelSelector{Models: []string{"nomic"}},
			wantCode:  core.ENOTFOUND,
			wantMsg:   []string{"nomic is not declared for chat"},
			wantCalls: map[string][]string{"a": nil},
		},
		{
			name:        "a declared model with the capability serves",
			backends:    []*fakeProvider{backend("a", "nomic:latest")},
			models:      []llm.Model{{Name: "nomic:latest", CanEmbed: true}},
			cap:         core.CapEmbed,
			sel:         core.ModelSelector{Models: []string{"nomic"}},
			wantModel:   "nomic:latest",
			wantBackend: "a",
		},
		{
			name:     "a context too small moves on to the next model",
			backends: []*fakeProvider{backend("a", "small:1b", "big:8b")},
			models: []llm.Model{
				{Name: "small:1b", ContextLength: 4096, CanChat: true},
				{Name: "big:8b", ContextLength: 32768, CanChat: true},
			},
			sel:         core.ModelSelector{Models: []string{"small:1b", "big:8b"}, ContextTokens: 8000},
			wantModel:   "big:8b",
			wantBackend: "a",
			wantCalls:   map[string][]string{"a": {"chat:big:8b"}},
		},
		{
			name:        "an unknown context length is accepted",
			backends:    []*fakeProvider{backend("a", "m:1b")},
			models:      []llm.Model{{Name: "m:1b", CanChat: true}},
			sel:         core.ModelSelector{Models: []string{"m:1b"}, ContextTokens: 1 << 20},
			wantModel:   "m:1b",
			wantBackend: "a",
		},
		{
			name:     "a context too small for every model",
			backends: []*fakeProvider{backend("a", "small:1b")},
			models:   []llm.Model{{Name: "small:1b", ContextLength: 4096, CanChat: true}},
			sel:      core.ModelSelector{Models: []string{"small:1b"}, ContextTokens: 8000},
			wantCode: core.ENOTFOUND,
			wantMsg:  []string{"context of 4096 tokens", "8000"},
		},
		{
			name:        "an undeclared listed model serves any capability",
			backends:    []*fakeProvider{backend("a", "llama3:latest")},
			models:      []llm.Model{{Name: "other", CanChat: true}},
			cap:         core.CapEmbed,
			sel:         core.ModelSelector{Models: []string{"llama3"}, ContextTokens: 1 << 20},
			wantModel:   "llama3:latest",
			wantBackend: "a",
		},
		{
			name:        "providers filter backends by type",
			backends:    []*fakeProvider{backend("local", "m:1b"), backend("cloud", "m:1b")},
			types:       []string{"ollama", "openai"},
			sel:         core.ModelSelector{Models: []string{"m:1b"}, Providers: []string{"openai"}},
			wantModel:   "m:1b",
			wantBackend: "cloud",
			wantCalls:   map[string][]string{"local": nil},
		},
		{
			name:     "no backend of the wanted provider",
			backends: []*fakeProvider{backend("local", "m:1b")},
			sel:      core.ModelSelector{Models: []string{"m:1b"}, Providers: []string{"gemini"}},
			wantCode: core.ENOTFOUND,
			wantMsg:  []string{"gemini"},
		},
		{
			name: "an unavailable backend falls over to the next",
			backends: []*fakeProvider{
				{name: "a", models: []string{"m:1b"}, fail: map[string]error{"m:1b": unavailable("503 overloaded")}},
				backend("b", "m:1b"),
			},
			sel:         core.ModelSelector{Models: []string{"m:1b"}},
			wantModel:   "m:1b",
			wantBackend: "b",
			wantCalls:   map[string][]string{"a": {"chat:m:1b"}, "b": {"chat:m:1b"}},
		},
		{
			name: "a backend timing out on its own falls over",
			backends: []*fakeProvider{
				{name: "a", models: []string{"m:1b"}, fail: map[string]error{"m:1b": core.Errorf(core.ETIMEOUT, "read timeout")}},
				backend("b", "m:1b"),
			},
			cap:         core.CapPrompt,
			sel:         core.ModelSelector{Models: []string{"m:1b"}},
			wantModel:   "m:1b",
			wantBackend: "b",
		},
		{
			name: "a backend without the model falls over",
			backends: []*fakeProvider{
				{name: "a", models: []string{"m:1b"}, fail: map[string]error{"m:1b": core.Errorf(core.ENOTFOUND, "model not found")}},
				backend("b", "m:1b"),
			},
			cap:         core.CapEmbed,
			sel:         core.ModelSelector{Models: []string{"m:1b"}},
			wantModel:   "m:1b",
			wantBackend: "b",
		},
		{
			name: "a refused request is returned at once",
			backends: []*fakeProvider{
				{name: "a", models: []string{"m:1b"}, fail: map[string]error{"m:1b": core.Errorf(core.EINVALID, "bad tools")}},
				backend("b", "m:1b"),
			},
			sel:       core.ModelSelector{Models: []string{"m:1b"}},
			wantCode:  core.EINVALID,
			wantMsg:   []string{"bad tools"},
			wantCalls: map[string][]string{"b": nil},
		},
		{
			name: "an error without a code is returned at once",
			backends: []*fakeProvider{
				{name: "a", models: []string{"m:1b"}, fail: map[string]error{"m:1b": errors.New("boom")}},
				backend("b", "m:1b"),
			},
			sel:       core.ModelSelector{Models: []string{"m:1b"}},
			wantCode:  core.EINTERNAL,
			wantCalls: map[string][]string{"b": nil},
		},
		{
			name: "a backend whose listing fails is skipped",
			backends: []*fakeProvider{
				{name: "a", listErr: unavailable("connection refused")},
				backend("b", "m:1b"),
			},
			sel:         core.ModelSelector{Models: []string{"m:1b"}},
			wantModel:   "m:1b",
			wantBackend: "b",
		},
		{
			name: "every candidate failing names each reason",
			backends: []*fakeProvider{
				{name: "a", listErr: unavailable("connection refused")},
				{name: "b", models: []string{"m:1b"}, fail: map[string]error{"m:1b": unavailable("503 overloaded")}},
				backend("c", "other:1b"),
			},
			sel:      core.ModelSelector{Models: []string{"m:1b", "n:2b"}},
			wantCode: core.EUNAVAILABLE,
			wantMsg: []string{
				`"m:1b"`, `"n:2b"`, "chat",
				"a: listing models failed: connection refused",
				"b: 503 overloaded",
				"c does not list m:1b", "c does not list n:2b",
			},
		},
		{
			name: "no backend having the model is not found",
			backends: []*fakeProvider{
				{name: "a", models: []string{"m:1b"}, fail: map[string]error{"m:1b": core.Errorf(core.ENOTFOUND, "gone")}},
				backend("b"),
			},
			sel:      core.ModelSelector{Models: []string{"m:1b"}},
			wantCode: core.ENOTFOUND,
			wantMsg:  []string{"a: gone", "b does not list m:1b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var backends []llm.Backend
			for i, p := range tt.backends {
				typ := "ollama"
				if i < len(tt.types) {
					typ = tt.types[i]
				}
				backends = append(backends, llm.Backend{Name: p.name, Type: typ, Provider: p})
			}
			r := llm.NewRouter(backends, tt.models, tt.defaults)
			c := tt.cap
			if c == "" {
				c = core.CapChat
			}
			model, backend, err := route(context.Background(), r, c, tt.sel)
			if tt.wantCode != "" {
				if core.ErrorCode(err) != tt.wantCode {
					t.Fatalf("error = %v (code %q), want code %q", err, core.ErrorCode(err), tt.wantCode)
				}
				for _, s := range tt.wantMsg {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
			} else {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if model != tt.wantModel || backend != tt.wantBackend {
					t.Errorf("served by %s on %s, want %s on %s", model, backend, tt.wantModel, tt.wantBackend)
				}
			}
			for _, p := range tt.backends {
				want, ok := tt.wantCalls[p.name]
				if !ok {
					continue
				}
				if got := p.called(); strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("backend %s got calls %q, want %q", p.name, got, want)
				}
			}
		})
	}
}

func TestRouterResult(t *testing.T) {
	a := backend("local", "llama3:latest")
	r := llm.NewRouter([]llm.Backend{{Name: "local", Type: "ollama", Provider: a}}, nil,
		llm.Defaults{Chat: "llama3", Prompt: "llama3", Embed: "llama3"})
	ctx := context.Background()

	t.Run("chat streams and fills usage", func(t *testing.T) {
		var deltas []string
		out, err := r.Chat(ctx, core.ChatRequest{Messages: []core.Message{{Role: core.RoleUser, Content: "hi"}}},
			func(d core.Delta) { deltas = append(deltas, d.Text) })
		if err != nil {
			t.Fatal(err)
		}
		want := core.Usage{TokensIn: 3, TokensOut: 2, Model: "llama3:latest", Backend: "local"}
		if out.Usage != want || out.Message.Content != "from local" || strings.Join(deltas, "") != "from local" {
			t.Errorf("got %+v, deltas %q", out, deltas)
		}
	})
	t.Run("prompt fills usage", func(t *testing.T) {
		out, err := r.Prompt(ctx, core.PromptRequest{System: "sys", Prompt: "p"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := core.Usage{TokensIn: 5, TokensOut: 1, Model: "llama3:latest", Backend: "local"}
		if out.Usage != want || out.Message.Content != "sys|p" {
			t.Errorf("got %+v", out)
		}
	})
	t.Run("embed fills usage", func(t *testing.T) {
		out, err := r.Embed(ctx, core.EmbedRequest{Text: "x"})
		if err != nil {
			t.Fatal(err)
		}
		want := core.Usage{TokensIn: 7, Model: "llama3:latest", Backend: "local"}
		if out.Usage != want || len(out.Vector) != 2 {
			t.Errorf("got %+v", out)
		}
	})
}

func TestModelKey(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"no tag means latest", "llama3", "llama3:latest"},
		{"a tag is kept", "qwen2.5:7b", "qwen2.5:7b"},
		{"latest is kept", "llama3:latest", "llama3:latest"},
		{"an org prefix is kept", "org/llama3", "org/llama3:latest"},
		{"a registry port is not a tag", "localhost:5000/llama3", "localhost:5000/llama3:latest"},
		{"a tag after a registry port", "localhost:5000/llama3:8b", "localhost:5000/llama3:8b"},
		{"case is kept", "Llama3", "Llama3:latest"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := llm.ModelKey(tt.in); got != tt.want {
				t.Errorf("ModelKey(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
