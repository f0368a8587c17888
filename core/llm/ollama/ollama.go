// Package ollama is the llm.Provider for an Ollama server, built on the
// official client in github.com/ollama/ollama/api: its types for every
// call, its Client for listing, showing, embedding and pulling. Streamed
// chat and generate answers are read by this package (see stream.go),
// because the client allocates 8 MiB per streamed call and hides a cut
// connection.
//
// Chat and Prompt stream when given an onDelta, so that it sees text as it
// is generated; without one they ask for the whole answer in one body,
// which costs the server and us less. Either way an answer without its
// final "done" (a connection that breaks mid-answer) is an error rather
// than mistaken for a short answer. Errors carry core codes (see the llm
// package) and name the server URL and the model.
package ollama

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/ollama/ollama/api"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm"
	"github.com/stepwise-run/stepwise/core/llm/internal/wire"
)

var (
	_ llm.Provider = (*Provider)(nil)
	_ llm.Puller   = (*Provider)(nil)
)

// Provider talks to one Ollama server. It is safe for concurrent use.
type Provider struct {
	client *api.Client
	hc     *http.Client
	base   string // without a trailing slash
}

// New returns a Provider for the Ollama server at baseURL (for example
// "http://127.0.0.1:11434"). A nil hc gets a client that bounds connecting
// but not the length of a call: long generations are limited by the
// caller's context only. A baseURL that is not an absolute http or https URL
// is EINVALID.
func New(baseURL string, hc *http.Client) (*Provider, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, core.WrapError(core.EINVALID, err, "ollama base URL %q", baseURL)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, core.Errorf(core.EINVALID, "ollama base URL %q: want http(s)://host[:port]", baseURL)
	}
	if hc == nil {
		hc = wire.NewHTTPClient()
	}
	return &Provider{client: api.NewClient(u, hc), hc: hc, base: strings.TrimRight(baseURL, "/")}, nil
}

// Chat sends the conversation to /api/chat, streaming the answer to onDelta.
func (p *Provider) Chat(ctx context.Context, model string, req core.ChatRequest, onDelta core.DeltaFunc) (core.Completion, error) {
	msgs, err := toMessages(req.Messages)
	if err != nil {
		return core.Completion{}, core.WrapError(core.EINVALID, err, "ollama %s: chat with %s", p.base, model)
	}
	tools, err := toTools(req.Tools)
	if err != nil {
		return core.Completion{}, core.WrapError(core.EINVALID, err, "ollama %s: chat with %s", p.base, model)
	}
	if noTools(req.Options.ToolChoice) {
		tools = nil
	}
	stream := onDelta != nil
	areq := &api.ChatRequest{
		Model:    model,
		Messages: msgs,
		Stream:   &stream,
		Tools:    tools,
		Options:  options(req.Options),
		Format:   format(req.Options.ResponseFormat),
		Think:    think(req.Options.ReasoningEffort),
	}
	var (
		content strings.Builder
		calls   []core.ToolCall
		last    api.ChatResponse
		chunks  int
	)
	err = p.stream(ctx, "/api/chat", areq, func(line []byte) error {
		var r api.ChatResponse
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("undecodable chunk: %w", err)
		}
		chunks++
		if r.Message.Content != "" {
			content.WriteString(r.Message.Content)
			if onDelta != nil {
				onDelta(core.Delta{Text: r.Message.Content})
			}
		}
		for _, tc := range r.Message.ToolCalls {
			// Ollama sends every call whole, in one chunk.
			c := fromToolCall(tc, len(req.Messages), len(calls))
			if onDelta != nil {
				onDelta(core.Delta{ToolCall: &core.ToolCallDelta{Index: len(calls), ID: c.ID, Name: c.Function.Name, Arguments: c.Function.Arguments}})
			}
			calls = append(calls, c)
		}
		if r.Done {
			last = r
		}
		return nil
	})
	if err := p.streamError(ctx, err, last.Done, chunks, "chat", model); err != nil {
		return core.Completion{}, err
	}
	return core.Completion{
		Message:      core.Message{Role: core.RoleAssistant, Content: content.String(), ToolCalls: calls},
		FinishReason: wire.FinishReason(len(calls) > 0, last.DoneReason),
		Usage:        core.Usage{TokensIn: last.PromptEvalCount, TokensOut: last.EvalCount, Model: model},
	}, nil
}

// generateChunk is what Prompt reads of a /api/generate chunk: decoding
// only these fields, rather than api.GenerateResponse's dozen and its
// context array, is most of a chunk's cost saved.
type generateChunk struct {
	Response        string `json:"response"`
	Done            bool   `json:"done"`
	DoneReason      string `json:"done_reason"`
	PromptEvalCount int    `json:"prompt_eval_count"`
	EvalCount       int    `json:"eval_count"`
}

// Prompt sends the prompt and system instruction to /api/generate,
// streaming the answer to onDelta.
func (p *Provider) Prompt(ctx context.Context, model string, req core.PromptRequest, onDelta core.DeltaFunc) (core.Completion, error) {
	stream := onDelta != nil
	areq := &api.GenerateRequest{
		Model:   model,
		System:  req.System,
		Prompt:  req.Prompt,
		Stream:  &stream,
		Options: options(req.Options),
		Format:  format(req.Options.ResponseFormat),
		Think:   think(req.Options.ReasoningEffort),
	}
	var (
		content strings.Builder
		last    generateChunk
		chunks  int
	)
	err := p.stream(ctx, "/api/generate", areq, func(line []byte) error {
		var r generateChunk
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("undecodable chunk: %w", err)
		}
		chunks++
		if r.Response != "" {
			content.WriteString(r.Response)
			if onDelta != nil {
				onDelta(core.Delta{Text: r.Response})
			}
		}
		if r.Done {
			last = r
		}
		return nil
	})
	if err := p.streamError(ctx, err, last.Done, chunks, "prompt", model); err != nil {
		return core.Completion{}, err
	}
	return core.Completion{
		Message:      core.Message{Role: core.RoleAssistant, Content: content.String()},
		FinishReason: wire.FinishReason(false, last.DoneReason),
		Usage:        core.Usage{TokensIn: last.PromptEvalCount, TokensOut: last.EvalCount, Model: model},
	}, nil
}

// Embed returns the first embedding /api/embed gives for text.
func (p *Provider) Embed(ctx context.Context, model, text string) (core.Embedding, error) {
	resp, err := p.client.Embed(ctx, &api.EmbedRequest{Model: model, Input: text})
	if err != nil {
		return core.Embedding{}, p.fail(ctx, err, "embed", model)
	}
	if len(resp.Embeddings) == 0 || len(resp.Embeddings[0]) == 0 {
		return core.Embedding{}, core.Errorf(core.EUNAVAILABLE, "ollama %s: embed with %s: the server returned no embedding", p.base, model)
	}
	return core.Embedding{
		Vector: resp.Embeddings[0],
		Usage:  core.Usage{TokensIn: resp.PromptEvalCount, Model: model},
	}, nil
}

// Models lists the models the server has pulled (/api/tags), with their
// size, digest, date and details. The context length is left unknown
// because the listing does not carry it; Show reads it for one model.
func (p *Provider) Models(ctx context.Context) ([]llm.ModelInfo, error) {
	resp, err := p.client.List(ctx)
	if err != nil {
		return nil, p.fail(ctx, err, "list models", "")
	}
	out := make([]llm.ModelInfo, 0, len(resp.Models))
	for _, m := range resp.Models {
		out = append(out, llm.ModelInfo{
			Name:       m.Name,
			Size:       m.Size,
			Digest:     m.Digest,
			ModifiedAt: m.ModifiedAt,
			Details: llm.ModelDetails{
				ParentModel:       m.Details.ParentModel,
				Format:            m.Details.Format,
				Family:            m.Details.Family,
				Families:          m.Details.Families,
				ParameterSize:     m.Details.ParameterSize,
				QuantizationLevel: m.Details.QuantizationLevel,
			},
		})
	}
	return out, nil
}

// Show describes one model, reading its context length from the
// "<architecture>.context_length" entry of /api/show's model_info (or, if
// the architecture is not named, from any key ending in ".context_length").
func (p *Provider) Show(ctx context.Context, model string) (llm.ModelInfo, error) {
	resp, err := p.client.Show(ctx, &api.ShowRequest{Model: model})
	if err != nil {
		return llm.ModelInfo{}, p.fail(ctx, err, "show", model)
	}
	return llm.ModelInfo{Name: model, ContextLength: contextLength(resp.ModelInfo)}, nil
}

// contextLength finds the context length in an /api/show model_info map.
func contextLength(info map[string]any) int {
	if arch, ok := info["general.architecture"].(string); ok {
		if n := number(info[arch+".context_length"]); n > 0 {
			return n
		}
	}
	for k, v := range info {
		if strings.HasSuffix(k, ".context_length") {
			if n := number(v); n > 0 {
				return n
			}
		}
	}
	return 0
}

// number converts a decoded JSON number to an int.
func number(v any) int {
	switch n := v.(type) {
	case float64:
		return int(n)
	case json.Number:
		i, _ := n.Int64()
		return int(i)
	case int:
		return n
	}
	return 0
}

// Pull implements llm.Puller: it asks the server to download model,
// reporting each progress step to progress when it is not nil, and returns
// once the server reports success. A stream that ends without success is
// EUNAVAILABLE; the caller's context ending is ETIMEOUT.
func (p *Provider) Pull(ctx context.Context, model string, progress func(llm.PullProgress)) error {
	stream := true
	var success bool
	err := p.client.Pull(ctx, &api.PullRequest{Model: model, Stream: &stream}, func(r api.ProgressResponse) error {
		if r.Status == "success" {
			success = true
		}
		if progress != nil {
			progress(llm.PullProgress{Status: r.Status, Digest: r.Digest, Total: r.Total, Completed: r.Completed})
		}
		return nil
	})
	if err != nil {
		return p.fail(ctx, err, "pull", model)
	}
	if !success {
		if cerr := wire.ContextError(ctx, "ollama %s: pull %s", p.base, model); cerr != nil {
			return cerr
		}
		return core.Errorf(core.EUNAVAILABLE, "ollama %s: pull %s: the progress stream was cut before success", p.base, model)
	}
	return nil
}

// streamError turns the outcome of a streamed call into an error. A body
// that ends cleanly but without the final done chunk is a cut stream too:
// a proxy may close the connection between two lines.
func (p *Provider) streamError(ctx context.Context, err error, done bool, chunks int, op, model string) error {
	if err == nil && done {
		return nil
	}
	if cerr := wire.ContextError(ctx, "ollama %s: %s with %s", p.base, op, model); cerr != nil {
		return cerr
	}
	if chunks == 0 && errors.Is(err, errCut) {
		return core.WrapError(core.EUNAVAILABLE, wire.Brief(err), "ollama %s: %s with %s: the answer was cut before its end", p.base, op, model)
	}
	if err != nil && (chunks == 0 || isStatus(err)) {
		return p.fail(ctx, err, op, model)
	}
	if chunks == 0 {
		return core.Errorf(core.EUNAVAILABLE, "ollama %s: %s with %s: the server closed the stream without answering", p.base, op, model)
	}
	if err != nil {
		return core.WrapError(core.EUNAVAILABLE, wire.Brief(err), "ollama %s: %s with %s: the stream was cut after %d chunk(s)", p.base, op, model, chunks)
	}
	return core.Errorf(core.EUNAVAILABLE, "ollama %s: %s with %s: the stream was cut after %d chunk(s), before the final one", p.base, op, model, chunks)
}

// isStatus reports whether err is an HTTP error status from the server.
func isStatus(err error) bool {
	var se api.StatusError
	var ae api.AuthorizationError
	return errors.As(err, &se) || errors.As(err, &ae)
}

// fail maps an error from the Ollama client to a core error naming the
// server, the operation and the model.
func (p *Provider) fail(ctx context.Context, err error, op, model string) error {
	what := op
	if model != "" {
		what += " with " + model
	}
	if cerr := wire.ContextError(ctx, "ollama %s: %s", p.base, what); cerr != nil {
		return cerr
	}
	var se api.StatusError
	if errors.As(err, &se) {
		if se.Status == "" {
			// Non-streamed calls report the code only, not the status
			// line; keep it visible.
			what += fmt.Sprintf(": HTTP %d", se.StatusCode)
		}
		return wire.StatusError(se.StatusCode, err, "ollama %s: %s", p.base, what)
	}
	var ae api.AuthorizationError
	if errors.As(err, &ae) {
		if ae.Status == "" {
			// The client drops the body of a non-streamed 401 and says
			// only that something went wrong; say what it was.
			what += fmt.Sprintf(": HTTP %d", ae.StatusCode)
		}
		return wire.StatusError(ae.StatusCode, err, "ollama %s: %s", p.base, what)
	}
	return core.WrapError(wire.TransportCode(err), wire.Brief(err), "ollama %s: %s", p.base, what)
}
