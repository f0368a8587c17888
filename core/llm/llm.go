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
	"strings"
	"time"

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

// ModelInfo describes a model a backend lists. Only Name is always set;
// the rest is what the backend's listing happens to carry (Ollama's
// /api/tags gives size, digest, date and details, OpenAI's /models none of
// them), shown on the state page and never used for routing.
type ModelInfo struct {
	// Name is the model's name as the backend spells it.
	Name string
	// ContextLength is the model's context window in tokens, 0 if unknown.
	ContextLength int
	// Size is the model's size on the backend in bytes, 0 if unknown.
	Size int64
	// Digest identifies the model's content, "" if unknown.
	Digest string
	// ModifiedAt is when the backend last changed the model, zero if
	// unknown.
	ModifiedAt time.Time
	// Details describe the model's format and family.
	Details ModelDetails
}

// ModelDetails describe a model as Ollama reports it. The JSON names are
// those of the state the API shows.
type ModelDetails struct {
	// ParentModel is the model this one was derived from, if any.
	ParentModel string `json:"parentModel"`
	// Format is the weights' file format ("gguf").
	Format string `json:"format"`
	// Family and Families name the model architecture ("llama").
	Family   string   `json:"family"`
	Families []string `json:"families"`
	// ParameterSize is the parameter count as written by the backend
	// ("8.0B").
	ParameterSize string `json:"parameterSize"`
	// QuantizationLevel is the weights' quantization ("Q4_K_M").
	QuantizationLevel string `json:"quantizationLevel"`
}

// PullProgress is one step of downloading a model onto a backend.
type PullProgress struct {
	// Status is the backend's description of the step ("pulling
	// manifest", "success", ...).
	Status string
	// Digest names the layer being downloaded, when the step downloads
	// one.
	Digest string
	// Total and Completed count the bytes of that layer.
	Total, Completed int64
}

// Puller is a Provider that can download a model onto its backend (Ollama
// can; OpenAI-compatible servers serve what they are given). It is a
// separate interface so that routing never depends on it.
type Puller interface {
	// Pull downloads model, passing each progress step to progress when it
	// is not nil, and returns once the backend reports success.
	Pull(ctx context.Context, model string, progress func(PullProgress)) error
}

// Backend is one configured backend.
type Backend struct {
	// ID identifies the backend across rebuilds of the router: health,
	// in-flight counts and model listings are kept by ID (in a Health and
	// a Cache), so a rebuilt router still knows which backends failed a
	// moment ago and what they list. IDs are unique within a router. ""
	// means Name.
	ID string
	// Name identifies the backend in configuration, errors and Usage.
	Name string
	// Type is the kind of backend ("ollama", "openai", "vllm", "gemini",
	// ...); a ModelSelector's Providers are matched against it.
	Type string
	// Provider is the client that talks to the backend.
	Provider Provider
	// Models, when not nil, are the only models the backend may serve
	// (names compared by ModelKey); nil means every model it lists. An
	// affinity group's backend gets its groups' models here.
	Models []string
}

// ModelKey returns the form in which model names are compared: the name
// with its tag made explicit, because a name without a ":tag" means
// ":latest" ("llama3" and "llama3:latest" are the same model). A ":"
// counts as a tag separator only after the last "/", so that a registry
// host with a port ("localhost:5000/llama3") is not taken for a tag.
// Nothing else is normalised: "qwen2.5:7b" and "qwen2.5:0.5b" differ, and
// neither case nor an "org/" prefix is ever ignored.
func ModelKey(name string) string {
	if strings.LastIndex(name, ":") > strings.LastIndex(name, "/") {
		return name
	}
	return name + ":latest"
}

// Model is a declared model: what the configuration says it can do.
type Model struct {
	// Name is the model's name; without a ":tag" it means ":latest"
	// (see ModelKey).
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
	// ChatProvider, PromptProvider and EmbedProvider, when set, are the
	// backend type allowed to serve the default model of their capability,
	// for requests that name neither models nor providers.
	ChatProvider, PromptProvider, EmbedProvider string
}

// of returns the default model for capability c and the backend type
// allowed to serve it ("" for any).
func (d Defaults) of(c core.Capability) (model, provider string) {
	switch c {
	case core.CapChat:
		return d.Chat, d.ChatProvider
	case core.CapPrompt:
		return d.Prompt, d.PromptProvider
	case core.CapEmbed:
		return d.Embed, d.EmbedProvider
	}
	return "", ""
}
