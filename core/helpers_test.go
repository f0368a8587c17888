package core_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/hooks"
	"github.com/stepwise-run/stepwise/infra/mem"
)

// reply is one scripted answer of scriptLLM.
type reply struct {
	match string // substring of the last message or prompt; "" matches all
	text  string
	calls []core.ToolCall
	err   error
	times int // 0 = unlimited
	delay time.Duration
	used  int
}

// scriptLLM is an in-process core.LLM answering from a script, recording
// every request. It streams each answer as word-sized deltas.
type scriptLLM struct {
	mu      sync.Mutex
	replies []*reply
	prompts []core.PromptRequest
	chats   []core.ChatRequest
	embeds  []core.EmbedRequest
}

func newLLM(replies ...*reply) *scriptLLM { return &scriptLLM{replies: replies} }

func (l *scriptLLM) pick(last string) *reply {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.replies {
		if strings.Contains(last, r.match) && (r.times == 0 || r.used < r.times) {
			r.used++
			return r
		}
	}
	return &reply{text: "unscripted: " + last}
}

func (l *scriptLLM) answer(ctx context.Context, last string, onDelta core.DeltaFunc) (core.Completion, error) {
	r := l.pick(last)
	if r.delay > 0 {
		select {
		case <-ctx.Done():
			return core.Completion{}, ctx.Err()
		case <-time.After(r.delay):
		}
	}
	if r.err != nil {
		return core.Completion{}, r.err
	}
	if onDelta != nil {
		for _, w := range strings.SplitAfter(r.text, " ") {
			if w != "" {
				onDelta(core.Delta{Text: w})
			}
		}
	}
	finish := "stop"
	if len(r.calls) > 0 {
		finish = "tool_calls"
	}
	return core.Completion{
		Message:      core.Message{Role: core.RoleAssistant, Content: r.text, ToolCalls: r.calls},
		FinishReason: finish,
		Usage:        core.Usage{TokensIn: len(last)/4 + 1, TokensOut: len(r.text)/4 + 1, Model: "fake:1b", Backend: "script"},
	}, nil
}

func (l *scriptLLM) Chat(ctx context.Context, req core.ChatRequest, onDelta core.DeltaFunc) (core.Completion, error) {
	l.mu.Lock()
	l.chats = append(l.chats, req)
	l.mu.Unlock()
	last := ""
	if n := len(req.Messages); n > 0 {
		last = req.Messages[n-1].Content
	}
	return l.answer(ctx, last, onDelta)
}

func (l *scriptLLM) Prompt(ctx context.Context, req core.PromptRequest, onDelta core.DeltaFunc) (core.Completion, error) {
	l.mu.Lock()
	l.prompts = append(l.prompts, req)
	l.mu.Unlock()
	return l.answer(ctx, req.Prompt, onDelta)
}

func (l *scriptLLM) Embed(_ context.Context, req core.EmbedRequest) (core.Embedding, error) {
	l.mu.Lock()
	l.embeds = append(l.embeds, req)
	l.mu.Unlock()
	return core.Embedding{Vector: []float32{float32(len(req.Text)), 1}, Usage: core.Usage{TokensIn: 1, Model: "embed:latest", Backend: "script"}}, nil
}

// harness is an engine over the in-memory store, a scripted LLM and the
// built-in hooks.
type harness struct {
	engine *core.Engine
	store  *mem.Store
	llm    *scriptLLM
}

func newHarness(llm *scriptLLM) *harness {
	store := mem.New()
	return &harness{
		engine: core.NewEngine(core.EngineConfig{Store: store, LLM: llm, Tools: hooks.NewRegistry(nil, hooks.Echo(), hooks.Print())}),
		store:  store,
		llm:    llm,
	}
}

// mustChain parses and validates a chain document or fails the test.
func mustChain(t testing.TB, doc string) *core.Chain {
	t.Helper()
	c, _, err := core.ParseChain([]byte(doc))
	if err != nil {
		t.Fatalf("ParseChain: %v", err)
	}
	return c
}

// run executes a chain document on input and returns the final execution
// and its steps.
func (h *harness) run(t testing.TB, doc string, input core.Value, obs core.Observer) (*core.Execution, []*core.Step) {
	t.Helper()
	ex, err := h.engine.Execute(context.Background(), core.StartRequest{Chain: mustChain(t, doc), Input: input, TemplateVars: map[string]string{"who": "tester"}}, obs)
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	steps, err := h.store.ListSteps(context.Background(), ex.Tenant, ex.ID, 0, 0)
	if err != nil {
		t.Fatalf("ListSteps: %v", err)
	}
	return ex, steps
}

func toolCall(id, name, args string) core.ToolCall {
	return core.ToolCall{ID: id, Type: "function", Function: core.ToolCallFunction{Name: name, Arguments: args}}
}
