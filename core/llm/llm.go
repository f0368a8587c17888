// Package llm implements core.LLM on top of one or more model backends.
//
// A Provider is the client of one backend (an Ollama server, an
// OpenAI-compatible endpoint such as OpenAI itself, vLLM or Gemini's OpenAI
// endpoint); the subpackages ollama and openai implement it. The Router
// holds the configured backends and the declared models and, for every
// request, picks a model and a backend that can serve it, falling over to
// the next candidate when a backend is down or lacks the model.
package llm

import (
	"context"

	"github.com/stepwise-run/stepwise/core"
)

// Provider is the client of one backend. It is given the model to use by
// name, exactly as the backend lists it; the Select field of a request is
// ignored because the router has already chosen.
//
// Errors carry core codes so the router can decide whether another
// candidate may help: ENOTFOUND when the backend does not have the model,
// EUNAVAILABLE when it is down, overloaded or failing, ETIMEOUT for a
// deadline, EINVALID when it refused the request itself.
type Provider interface {
	// Chat continues a conversation, passing streamed content to onDelta
	// when it is not nil.
	Chat(ctx context.Context, model string, req core.ChatRequest, onDelta core.DeltaFunc) (core.Completion, error)
	// Prompt sends one prompt with an optional system instruction.
	Prompt(ctx context.Context, model string, req core.PromptRequest, onDelta core.DeltaFunc) (core.Completion, error)
	// Embed returns the embedding vector of text.
	Embed(ctx context.Context, model, text string) (core.Embedding, error)
	// Models lists the models the backend can serve.
	Models(ctx context.Context) ([]ModelInfo, error)
}

// ModelInfo describes a model a backend lists.
type ModelInfo struct {
	// Name is the model's name as the backend spells it.
	Name string
	// ContextLength is the model's context window in tokens, 0 if unknown.
	ContextLength int
}

// Backend is one configured backend.
type Backend struct {
	// Name identifies the backend in configuration, errors and Usage.
	Name string
	// Type is the kind of backend ("ollama", "openai", "vllm", "gemini",
	// ...); a ModelSelector's Providers are matched against it.
	Type string
	// Provider is the client that talks to the backend.
	Provider Provider
}

// Model is a declared model: what the configuration says it can do.
type Model struct {
	// Name is the model's name; without a ":tag" it means ":latest".
	Name string
	// ContextLength is the context window in tokens, 0 if unknown.
	ContextLength int
	// CanChat, CanPrompt and CanEmbed say which capabilities the model
	// may be used for.
	CanChat, CanPrompt, CanEmbed bool
}

// can reports whether m is declared for capability c.
func (m Model) can(c core.Capability) bool {
	switch c {
	case core.CapChat:
		return m.CanChat
	case core.CapPrompt:
		return m.CanPrompt
	case core.CapEmbed:
		return m.CanEmbed
	}
	return false
}

// Defaults names the model used for each capability when a request does not
// name any.
type Defaults struct {
	// Chat, Prompt and Embed are model names; "" means the capability has
	// no default and a request for it must name its models.
	Chat, Prompt, Embed string
}

// of returns the default model for capability c.
func (d Defaults) of(c core.Capability) string {
	switch c {
	case core.CapChat:
		return d.Chat
	case core.CapPrompt:
		return d.Prompt
	case core.CapEmbed:
		return d.Embed
	}
	return ""
}
