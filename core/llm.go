package core

import "context"

// LLM is the port through which handlers reach language models. An
// implementation resolves a model and a backend for each request from the
// ModelSelector, calls it, and reports which model and backend answered in
// the Usage of the result.
//
// Errors carry a code: EINVALID for a request the backend refused (no
// retry helps), EUNAVAILABLE for a backend that is down, overloaded or
// failing (retryable), ETIMEOUT for a deadline, ENOTFOUND when no declared
// model fits the selector.
type LLM interface {
	// Chat continues a conversation. onDelta, if not nil, receives the
	// content of the answer as the backend streams it; the returned
	// Completion holds the whole answer either way.
	Chat(ctx context.Context, req ChatRequest, onDelta DeltaFunc) (Completion, error)
	// Prompt sends one prompt with an optional system instruction.
	Prompt(ctx context.Context, req PromptRequest, onDelta DeltaFunc) (Completion, error)
	// Embed returns the embedding vector of a text.
	Embed(ctx context.Context, req EmbedRequest) (Embedding, error)
}

// DeltaFunc receives a piece of generated text as it streams.
type DeltaFunc func(text string)

// Capability is what a request needs a model to be able to do.
type Capability string

// Capabilities.
const (
	CapChat   Capability = "chat"
	CapPrompt Capability = "prompt"
	CapEmbed  Capability = "embed"
)

// ModelSelector says which models and providers may serve a request. Empty
// lists mean the default model for the capability and any provider.
type ModelSelector struct {
	// Models in order of preference, matched by full name including the
	// ":tag" (a name without a tag means ":latest").
	Models []string
	// Providers are backend types allowed to serve (ollama, openai, vllm,
	// gemini, ...).
	Providers []string
	// ContextTokens is the estimated size of the request; a model whose
	// declared context is smaller is not chosen.
	ContextTokens int
	// Policy is the routing policy (one of RoutingPolicies) that orders the
	// backends able to serve a model; "" means the router's default.
	Policy string
}

// GenOptions are the sampling options passed on to the backend. Nil and
// zero mean "the backend's default".
type GenOptions struct {
	Temperature *float64
	TopP        *float64
	MaxTokens   int
	Stop        []string
}

// ChatRequest asks a model to continue Messages, optionally offering Tools.
type ChatRequest struct {
	Select   ModelSelector
	Messages []Message
	Tools    []Tool
	Options  GenOptions
}

// PromptRequest sends Prompt with the System instruction.
type PromptRequest struct {
	Select  ModelSelector
	System  string
	Prompt  string
	Options GenOptions
}

// EmbedRequest asks for the embedding of Text.
type EmbedRequest struct {
	Select ModelSelector
	Text   string
}

// Completion is a model's answer: an assistant message, possibly with tool
// calls, and what it cost.
type Completion struct {
	Message Message
	// FinishReason is "stop", "length" or "tool_calls".
	FinishReason string
	Usage        Usage
}

// Usage records the tokens of one model call and who served it.
type Usage struct {
	TokensIn  int
	TokensOut int
	// Model is the model that answered, with its tag.
	Model string
	// Backend is the name of the backend that answered.
	Backend string
}

// Embedding is an embedding vector and what it cost.
type Embedding struct {
	Vector []float32
	Usage  Usage
}
