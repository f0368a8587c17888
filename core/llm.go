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

// DeltaFunc receives a piece of an answer as the backend streams it.
type DeltaFunc func(Delta)

// Delta is one piece of a streamed answer: some text of the message's
// content, or a piece of one of its tool calls.
type Delta struct {
	// Text continues the message's content.
	Text string
	// ToolCall, when not nil, continues one tool call of the answer.
	ToolCall *ToolCallDelta
}

// ToolCallDelta is a piece of a streamed tool call. The first piece of a
// call carries its ID and Name; every piece may carry some of its
// arguments' JSON text. Pieces of one call share its Index, the call's
// position in the answer counted from 0, so parallel calls stay apart.
type ToolCallDelta struct {
	Index     int
	ID        string
	Name      string
	Arguments string
}

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
// zero mean "the backend's default". Backends that lack an option ignore
// it, as the provider packages document (Ollama has no tool_choice).
type GenOptions struct {
	Temperature *float64
	TopP        *float64
	MaxTokens   int
	Stop        []string
	// Seed asks for reproducible sampling.
	Seed *int
	// PresencePenalty and FrequencyPenalty discourage repetition.
	PresencePenalty  *float64
	FrequencyPenalty *float64
	// ResponseFormat constrains the answer to JSON; nil means text.
	ResponseFormat *ResponseFormat
	// ToolChoice is OpenAI's tool_choice as given: "auto", "none",
	// "required", or an object naming one function; nil means the
	// backend's default.
	ToolChoice any
	// ParallelToolCalls, when set, allows or forbids several tool calls
	// in one answer.
	ParallelToolCalls *bool
	// ReasoningEffort is a reasoning model's effort ("low", "medium",
	// "high"); "" means the model's default.
	ReasoningEffort string
	// User identifies the end user to the backend.
	User string
}

// ResponseFormat is what shape an answer must have.
type ResponseFormat struct {
	// Type is "text", "json_object" or "json_schema".
	Type string `json:"type"`
	// JSONSchema is the schema of a json_schema answer.
	JSONSchema *JSONSchemaFormat `json:"json_schema,omitempty"`
}

// JSONSchemaFormat names and gives the schema a json_schema answer
// follows.
type JSONSchemaFormat struct {
	Name        string         `json:"name"`
	Description string         `json:"description,omitempty"`
	Schema      map[string]any `json:"schema,omitempty"`
	Strict      *bool          `json:"strict,omitempty"`
}

// ChatRequest asks a model to continue Messages, optionally offering Tools.
// Tenant, in this and the other requests, is the tenant whose backends
// serve it ("" is DefaultTenant); the engine sets the execution's.
type ChatRequest struct {
	Tenant   string
	Select   ModelSelector
	Messages []Message
	Tools    []Tool
	Options  GenOptions
}

// PromptRequest sends Prompt with the System instruction.
type PromptRequest struct {
	Tenant  string
	Select  ModelSelector
	System  string
	Prompt  string
	Options GenOptions
}

// EmbedRequest asks for the embedding of Text.
type EmbedRequest struct {
	Tenant string
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
	// CachedIn and Reasoning are the input tokens read from the backend's
	// prompt cache and the output tokens spent reasoning, as far as the
	// backend reports them (OpenAI's API does; Ollama's does not): part of
	// TokensIn and TokensOut, not more.
	CachedIn  int
	Reasoning int
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
