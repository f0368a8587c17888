package coretest

import (
	"context"
	"sync"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// EchoLLM is a core.LLM for the engine's tests: it answers every prompt
// with "done: <prompt>" after Delay. While Gate is not nil, each call
// first waits for it to close (a worker stuck in a model call); a gate
// never closed holds the call until its context ends. Set the fields
// before the first call.
type EchoLLM struct {
	Delay time.Duration
	Gate  chan struct{}

	mu    sync.Mutex
	calls int
}

// Calls is the number of calls that reached the model.
func (l *EchoLLM) Calls() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

func (l *EchoLLM) answer(ctx context.Context, text string) (core.Completion, error) {
	l.mu.Lock()
	l.calls++
	l.mu.Unlock()
	if l.Gate != nil {
		select {
		case <-ctx.Done():
			return core.Completion{}, ctx.Err()
		case <-l.Gate:
		}
	}
	if l.Delay > 0 {
		select {
		case <-ctx.Done():
			return core.Completion{}, ctx.Err()
		case <-time.After(l.Delay):
		}
	}
	// A token each way, so that every call is metered.
	return core.Completion{Message: core.Message{Role: core.RoleAssistant, Content: "done: " + text}, FinishReason: "stop",
		Usage: core.Usage{TokensIn: 1, TokensOut: 1, Model: "echo"}}, nil
}

// Prompt implements core.LLM.
func (l *EchoLLM) Prompt(ctx context.Context, req core.PromptRequest, _ core.DeltaFunc) (core.Completion, error) {
	return l.answer(ctx, req.Prompt)
}

// Chat implements core.LLM: it answers the last message.
func (l *EchoLLM) Chat(ctx context.Context, req core.ChatRequest, _ core.DeltaFunc) (core.Completion, error) {
	return l.answer(ctx, req.Messages[len(req.Messages)-1].Content)
}

// Embed implements core.LLM with a one-dimensional vector.
func (l *EchoLLM) Embed(context.Context, core.EmbedRequest) (core.Embedding, error) {
	return core.Embedding{Vector: []float32{1}}, nil
}
