package fleet

import (
	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/llm"
	"github.com/stepwise-run/stepwise/core/llm/ollama"
	"github.com/stepwise-run/stepwise/core/llm/openai"
)

// NewProvider builds the client of a backend by its type: Ollama's own
// protocol, or the OpenAI protocol for openai, vllm and gemini (Gemini's
// OpenAI-compatible endpoint). It is the Config.NewProvider of every
// stepwise process.
func NewProvider(b catalog.Backend, apiKey string) (llm.Provider, error) {
	switch b.Type {
	case catalog.TypeOllama:
		return ollama.New(b.BaseURL, nil)
	case catalog.TypeOpenAI, catalog.TypeVLLM, catalog.TypeGemini:
		return openai.New(openai.Config{BaseURL: b.BaseURL, APIKey: apiKey})
	}
	return nil, core.Errorf(core.EINVALID, "backend %s: unsupported type %q", b.Name, b.Type)
}
