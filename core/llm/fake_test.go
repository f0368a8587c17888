package llm_test

import (
	"context"
	"sync"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm"
)

// fakeProvider is a Provider whose listing and per-model failures are set
// by the test, and which records what it was asked.
type fakeProvider struct {
	name    string
	models  []string
	listErr error
	fail    map[string]error // model → error its calls return
	partial bool             // stream a delta before failing
	delay   time.Duration    // Models waits this long, to pile up callers

	mu        sync.Mutex
	listCalls int
	calls     []string // "chat:model", ...
}

func (f *fakeProvider) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeProvider) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeProvider) lists() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.listCalls
}

func (f *fakeProvider) Chat(ctx context.Context, model string, req core.ChatRequest, onDelta core.DeltaFunc) (core.Completion, error) {
	f.record("chat:" + model)
	if err := f.fail[model]; err != nil {
		if f.partial && onDelta != nil {
			onDelta(core.Delta{Text: "half an ans"})
		}
		return core.Completion{}, err
	}
	if onDelta != nil {
		onDelta(core.Delta{Text: "from "})
		onDelta(core.Delta{Text: f.name})
	}
	return core.Completion{
		Message:      core.Message{Role: core.RoleAssistant, Content: "from " + f.name},
		FinishReason: "stop",
		Usage:        core.Usage{TokensIn: 3, TokensOut: 2},
	}, nil
}

func (f *fakeProvider) Prompt(ctx context.Context, model string, req core.PromptRequest, onDelta core.DeltaFunc) (core.Completion, error) {
	f.record("prompt:" + model)
	if err := f.fail[model]; err != nil {
		return core.Completion{}, err
	}
	return core.Completion{
		Message: core.Message{Role: core.RoleAssistant, Content: req.System + "|" + req.Prompt},
		Usage:   core.Usage{TokensIn: 5, TokensOut: 1},
	}, nil
}

func (f *fakeProvider) Embed(ctx context.Context, model, text string) (core.Embedding, error) {
	f.record("embed:" + model)
	if err := f.fail[model]; err != nil {
		return core.Embedding{}, err
	}
	return core.Embedding{Vector: []float32{1, 2}, Usage: core.Usage{TokensIn: 7}}, nil
}

func (f *fakeProvider) Models(ctx context.Context) ([]llm.ModelInfo, error) {
	f.mu.Lock()
	f.listCalls++
	f.mu.Unlock()
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	if f.listErr != nil {
		return nil, f.listErr
	}
	out := make([]llm.ModelInfo, len(f.models))
	for i, m := range f.models {
		out[i] = llm.ModelInfo{Name: m}
	}
	return out, nil
}

// backend is a shorthand for a test backend of type ollama.
func backend(name string, models ...string) *fakeProvider {
	return &fakeProvider{name: name, models: models}
}

func unavailable(msg string) error { return core.Errorf(core.EUNAVAILABLE, "%s", msg) }

// route runs one request of capability c through r and reports the model
// and backend that answered.
func route(ctx context.Context, r *llm.Router, c core.Capability, sel core.ModelSelector) (model, backend string, err error) {
	switch c {
	case core.CapPrompt:
		out, err := r.Prompt(ctx, core.PromptRequest{Select: sel, System: "s", Prompt: "p"}, nil)
		return out.Usage.Model, out.Usage.Backend, err
	case core.CapEmbed:
		out, err := r.Embed(ctx, core.EmbedRequest{Select: sel, Text: "t"})
		return out.Usage.Model, out.Usage.Backend, err
	default:
		out, err := r.Chat(ctx, core.ChatRequest{Select: sel, Messages: []core.Message{{Role: core.RoleUser, Content: "hi"}}}, nil)
		return out.Usage.Model, out.Usage.Backend, err
	}
}

// ctxProvider answers chat only when its context is done, the way a real
// provider reports a caller's deadline.
type ctxProvider struct{ fakeProvider }

func (p *ctxProvider) Chat(ctx context.Context, model string, req core.ChatRequest, onDelta core.DeltaFunc) (core.Completion, error) {
	p.record("chat:" + model)
	<-ctx.Done()
	return core.Completion{}, core.WrapError(core.ETIMEOUT, ctx.Err(), "waited")
}
