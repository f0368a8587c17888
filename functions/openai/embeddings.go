package openai

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// maxEmbedInputs bounds the texts of one embeddings request, as OpenAI
// does.
const maxEmbedInputs = 2048

// embedding is one vector of an embeddings answer: floats, or their
// little-endian float32 bytes in base64 (what the Python SDK asks for).
type embedding struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"`
}

type embeddingList struct {
	Object string      `json:"object"`
	Data   []embedding `json:"data"`
	Model  string      `json:"model"`
	Usage  struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

// embeddings embeds one text or a list of texts with the model named,
// routed like chat.
func (h *Handler) embeddings(w http.ResponseWriter, r *http.Request) {
	m, err := readObject(r)
	if err == nil {
		err = fields(m, []string{"model", "input", "encoding_format", "user"}, map[string]string{
			"dimensions": "dimensions: shortening embeddings is not supported",
		})
	}
	var (
		name, enc string
		raw       json.RawMessage
	)
	if err == nil {
		err = field(m, "model", &name)
	}
	if err == nil {
		err = field(m, "encoding_format", &enc)
	}
	if err == nil {
		err = webapi.Allowed(r.Context(), "model", name)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	raw = m["input"]
	texts, err := embedInputs(raw)
	switch {
	case err != nil:
	case name == "":
		err = badRequest("model", "model: required: the embedding model, with its tag")
	case enc != "" && enc != "float" && enc != "base64":
		err = badRequest("encoding_format", "encoding_format: %q is not float or base64", enc)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	in := 0
	for _, text := range texts {
		in += len(text)/4 + 1
	}
	ticket, ok := h.admit(w, r, name, in, -1)
	if !ok {
		return
	}
	out := embeddingList{Object: "list", Data: make([]embedding, len(texts)), Model: name}
	used := core.Usage{Model: name}
	defer func() { webapi.Settle(w, r, ticket, webapi.UsageOfCall(used, nil)) }()
	for i, text := range texts {
		e, err := h.models(r.Context()).LLM().Embed(r.Context(), core.EmbedRequest{Select: core.ModelSelector{Models: []string{name}}, Text: text})
		if err != nil {
			writeError(w, r, modelError(err, name))
			return
		}
		used.TokensIn += e.Usage.TokensIn
		used.Model, used.Backend = e.Usage.Model, e.Usage.Backend
		out.Model = e.Usage.Model
		out.Usage.PromptTokens += e.Usage.TokensIn
		var v any = e.Vector
		if enc == "base64" {
			v = floatsBase64(e.Vector)
		}
		out.Data[i] = embedding{Object: "embedding", Index: i, Embedding: v}
	}
	out.Usage.TotalTokens = out.Usage.PromptTokens
	webapi.ShowCost(w, ticket, webapi.UsageOfCall(used, nil))
	webapi.WriteJSON(w, http.StatusOK, out)
}

// embedInputs reads input: a string or an array of strings (token arrays
// are refused: the backends take text).
func embedInputs(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, badRequest("input", "input: required: a text or an array of texts")
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		if one == "" {
			return nil, badRequest("input", "input: empty text")
		}
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, badRequest("input", "input: want a text or an array of texts (token arrays are not supported)")
	}
	if len(many) == 0 || len(many) > maxEmbedInputs {
		return nil, badRequest("input", "input: want 1 to %d texts, got %d", maxEmbedInputs, len(many))
	}
	for i, s := range many {
		if s == "" {
			return nil, badRequest(fmt.Sprintf("input[%d]", i), "input[%d]: empty text", i)
		}
	}
	return many, nil
}

// floatsBase64 encodes a vector as OpenAI's base64 encoding_format does:
// little-endian float32s.
func floatsBase64(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(b)
}
