package llm_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/core/llm/ollama"
	"github.com/stepwise-run/stepwise/core/llm/openai"
)

// liveBackend is a backend of the given protocol on a fresh fake server, or
// on a port nothing listens on when down is true.
func liveBackend(t *testing.T, name, protocol string, down bool) (llm.Backend, *fakellm.Server) {
	t.Helper()
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	base := fake.URL()
	if down {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base = "http://" + ln.Addr().String()
		ln.Close()
	}
	var (
		p   llm.Provider
		err error
	)
	if protocol == "ollama" {
		p, err = ollama.New(base, nil)
	} else {
		p, err = openai.New(openai.Config{BaseURL: base + "/v1"})
	}
	if err != nil {
		t.Fatal(err)
	}
	return llm.Backend{Name: name, Type: protocol, Provider: p}, fake
}

// served counts the chat and generate requests a fake answered.
func served(fake *fakellm.Server) int {
	n := 0
	for _, r := range fake.Requests() {
		if strings.HasSuffix(r.Path, "/chat") || strings.HasSuffix(r.Path, "/generate") || strings.HasSuffix(r.Path, "/completions") {
			n++
		}
	}
	return n
}

func TestRouterOverLoopback(t *testing.T) {
	for _, tt := range []struct {
		name        string
		protocol    string
		firstDown   bool
		firstReply  fakellm.Reply
		firstModels []fakellm.Model
		model       string
		wantBackend string
		wantModel   string
		wantFirst   int    // requests the first backend saw
		wantErr     string // code of the expected error
	}{
		{
			name: "ollama: the second serves when the first answers 503", protocol: "ollama",
			firstReply: fakellm.Reply{Status: 503}, model: "llama3.2:1b",
			wantBackend: "second", wantModel: "llama3.2:1b", wantFirst: 1,
		},
		{
			name: "ollama: the second serves when the first is down", protocol: "ollama",
			firstDown: true, model: "qwen2.5:7b",
			wantBackend: "second", wantModel: "qwen2.5:7b",
		},
		{
			name: "ollama: a stream cut after text reached the caller is not retried", protocol: "ollama",
			firstReply: fakellm.Reply{CutAfter: 1}, model: "llama3.2:1b",
			wantErr: core.EUNAVAILABLE, wantFirst: 1,
		},
		{
			name: "openai: a stream cut before any text is retried", protocol: "openai",
			firstReply: fakellm.Reply{CutAfter: 1}, model: "llama3.2:1b",
			wantBackend: "second", wantModel: "llama3.2:1b", wantFirst: 1,
		},
		{
			name: "ollama: a backend with another tag is passed over", protocol: "ollama",
			firstModels: []fakellm.Model{{Name: "qwen2.5:0.5b"}}, model: "qwen2.5:7b",
			wantBackend: "second", wantModel: "qwen2.5:7b",
		},
		{
			name: "ollama: a name without tag finds latest", protocol: "ollama",
			firstModels: []fakellm.Model{{Name: "llama3:latest"}}, model: "llama3",
			wantBackend: "first", wantModel: "llama3:latest", wantFirst: 1,
		},
		{
			name: "openai: the second serves when the first answers 503", protocol: "openai",
			firstReply: fakellm.Reply{Status: 503}, model: "qwen2.5:7b",
			wantBackend: "second", wantModel: "qwen2.5:7b", wantFirst: 1,
		},
		{
			name: "openai: the second serves when the first is down", protocol: "openai",
			firstDown: true, model: "qwen2.5:7b",
			wantBackend: "second", wantModel: "qwen2.5:7b",
		},
		{
			name: "openai: the first serves when healthy", protocol: "openai",
			model: "llama3.2:1b", wantBackend: "first", wantModel: "llama3.2:1b", wantFirst: 1,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			first, fake1 := liveBackend(t, "first", tt.protocol, tt.firstDown)
			second, fake2 := liveBackend(t, "second", tt.protocol, false)
			fake1.Script(tt.firstReply)
			if tt.firstModels != nil {
				fake1.SetModels(tt.firstModels...)
			}
			fake2.Script(fakellm.Reply{Text: "from second"})
			r := llm.NewRouter([]llm.Backend{first, second}, nil, llm.Defaults{})

			var deltas strings.Builder
			out, err := r.Chat(context.Background(), core.ChatRequest{
				Select:   core.ModelSelector{Models: []string{tt.model}},
				Messages: []core.Message{{Role: core.RoleUser, Content: "hello"}},
			}, func(d core.Delta) { deltas.WriteString(d.Text) })
			if n := served(fake1); n != tt.wantFirst {
				t.Errorf("first backend saw %d requests, want %d", n, tt.wantFirst)
			}
			if tt.wantErr != "" {
				if core.ErrorCode(err) != tt.wantErr || served(fake2) != 0 {
					t.Fatalf("error %v, second saw %d requests; want code %q and none", err, served(fake2), tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if deltas.String() != out.Message.Content {
				t.Errorf("caller saw %q, answer is %q", deltas.String(), out.Message.Content)
			}
			if out.Usage.Backend != tt.wantBackend || out.Usage.Model != tt.wantModel {
				t.Errorf("served by %s on %s, want %s on %s", out.Usage.Model, out.Usage.Backend, tt.wantModel, tt.wantBackend)
			}
			if out.Usage.TokensIn == 0 || out.Usage.TokensOut == 0 {
				t.Errorf("usage %+v", out.Usage)
			}
			if tt.wantBackend == "second" && out.Message.Content != "from second" {
				t.Errorf("content %q", out.Message.Content)
			}
		})
	}
}

func TestRouterOverLoopbackAllFail(t *testing.T) {
	first, fake1 := liveBackend(t, "first", "ollama", false)
	down, _ := liveBackend(t, "down", "openai", true)
	fake1.Script(fakellm.Reply{Status: 503})
	r := llm.NewRouter([]llm.Backend{first, down}, nil, llm.Defaults{Prompt: "llama3.2:1b"})
	_, err := r.Prompt(context.Background(), core.PromptRequest{Prompt: "x"}, nil)
	if core.ErrorCode(err) != core.EUNAVAILABLE {
		t.Fatalf("error = %v, want unavailable", err)
	}
	for _, s := range []string{`"llama3.2:1b"`, "prompt", "first: ollama http://", "503", "down: listing models failed", "connection refused"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func TestDefaultModelProvider(t *testing.T) {
	local, localFake := liveBackend(t, "local", "ollama", false)
	cloud, cloudFake := liveBackend(t, "cloud", "openai", false)
	tests := []struct {
		name     string
		defaults llm.Defaults
		sel      core.ModelSelector
		want     string
	}{
		{"DefaultsProviderPicksTheCloud", llm.Defaults{Prompt: "llama3.2:1b", PromptProvider: "openai"}, core.ModelSelector{}, "cloud"},
		{"NoProviderTakesTheFirst", llm.Defaults{Prompt: "llama3.2:1b"}, core.ModelSelector{}, "local"},
		{"RequestProvidersWin", llm.Defaults{Prompt: "llama3.2:1b", PromptProvider: "openai"}, core.ModelSelector{Providers: []string{"ollama"}}, "local"},
		{"NamedModelIgnoresIt", llm.Defaults{Prompt: "qwen2.5:7b", PromptProvider: "openai"}, core.ModelSelector{Models: []string{"llama3.2:1b"}}, "local"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := llm.NewRouter([]llm.Backend{local, cloud}, nil, tt.defaults)
			out, err := r.Prompt(context.Background(), core.PromptRequest{Select: tt.sel, Prompt: "hi"}, nil)
			if err != nil || out.Usage.Backend != tt.want {
				t.Fatalf("served by %q (%v), want %s", out.Usage.Backend, err, tt.want)
			}
		})
	}
	if served(localFake) == 0 || served(cloudFake) == 0 {
		t.Error("one of the backends never served; the cases prove nothing")
	}
}
