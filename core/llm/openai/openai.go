// Package openai is the llm.Provider for OpenAI and every server that speaks
// its chat completions API (vLLM, Gemini's OpenAI endpoint, llama.cpp's
// server, ...), built on github.com/sashabaranov/go-openai.
//
// Chat and Prompt stream when given an onDelta, asking for the usage in a
// final chunk, so that onDelta sees text as it is generated and a
// connection that breaks mid-answer is noticed; without one they ask for
// the whole answer in one body, which costs the server and us far less
// (the proxy's non-streamed requests). Errors carry core codes (see the
// llm package) and name the server URL and the model.
package openai

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"

	goopenai "github.com/sashabaranov/go-openai"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm"
	"github.com/stepwise-run/stepwise/core/llm/internal/wire"
)

var _ llm.Provider = (*Provider)(nil)

// DefaultBaseURL is OpenAI's own endpoint, used when Config.BaseURL is empty.
const DefaultBaseURL = "https://api.openai.com/v1"

// Config configures a Provider.
type Config struct {
	// BaseURL is the API root including its version path, such as
	// "https://api.openai.com/v1" or "http://127.0.0.1:8000/v1".
	BaseURL string
	// APIKey is sent as a bearer token; servers without authentication
	// (a local vLLM) need none.
	APIKey string
	// HTTPClient is used for every call; nil means a client that bounds
	// connecting but not the length of a call, which is left to the
	// caller's context.
	HTTPClient *http.Client
}

// Provider talks to one OpenAI-compatible server. It is safe for concurrent
// use.
type Provider struct {
	client *goopenai.Client
	base   string // for error messages
}

// New returns a Provider for cfg. A BaseURL that is not an absolute http or
// https URL is EINVALID.
func New(cfg Config) (*Provider, error) {
	base := cfg.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, core.WrapError(core.EINVALID, err, "openai base URL %q", base)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, core.Errorf(core.EINVALID, "openai base URL %q: want http(s)://host[:port]/path", base)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = wire.NewHTTPClient()
	}
	gc := goopenai.DefaultConfig(cfg.APIKey)
	gc.BaseURL = strings.TrimRight(base, "/")
	// go-openai stops reading a stream at [DONE]; the client must still
	// read its end for the connection to be kept.
	gc.HTTPClient = wire.Reusing(hc)
	return &Provider{client: goopenai.NewClientWithConfig(gc), base: gc.BaseURL}, nil
}

// Chat sends the conversation to /chat/completions, streaming the answer to
// onDelta.
func (p *Provider) Chat(ctx context.Context, model string, req core.ChatRequest, onDelta core.DeltaFunc) (core.Completion, error) {
	return p.complete(ctx, "chat", model, toMessages(req.Messages), toTools(req.Tools), req.Options, len(req.Messages), onDelta)
}

// Prompt sends the system instruction (if any) and the prompt as a chat of
// one user message.
func (p *Provider) Prompt(ctx context.Context, model string, req core.PromptRequest, onDelta core.DeltaFunc) (core.Completion, error) {
	var msgs []goopenai.ChatCompletionMessage
	if req.System != "" {
		msgs = append(msgs, goopenai.ChatCompletionMessage{Role: core.RoleSystem, Content: req.System})
	}
	msgs = append(msgs, goopenai.ChatCompletionMessage{Role: core.RoleUser, Content: req.Prompt})
	return p.complete(ctx, "prompt", model, msgs, nil, req.Options, len(msgs), onDelta)
}

// complete runs one chat completion, streamed to onDelta if there is one,
// and assembles the answer.
func (p *Provider) complete(ctx context.Context, op, model string, msgs []goopenai.ChatCompletionMessage,
	tools []goopenai.Tool, opts core.GenOptions, messages int, onDelta core.DeltaFunc) (core.Completion, error) {
	req := goopenai.ChatCompletionRequest{Model: model, Messages: msgs, Tools: tools}
	applyOptions(&req, opts)
	if onDelta == nil {
		return p.whole(ctx, req, op, messages)
	}
	req.StreamOptions = &goopenai.StreamOptions{IncludeUsage: true}
	stream, err := p.client.CreateChatCompletionStream(ctx, req)
	if err != nil {
		return core.Completion{}, p.fail(ctx, err, op, model)
	}
	defer stream.Close()

	var (
		content strings.Builder
		calls   toolCalls
		finish  string
		usage   core.Usage
		chunks  int
	)
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return core.Completion{}, p.cut(ctx, err, chunks, op, model)
		}
		chunks++
		if resp.Usage != nil {
			usage = usageOf(*resp.Usage)
		}
		for _, ch := range resp.Choices {
			if ch.Index != 0 {
				continue // only one choice is asked for
			}
			if d := ch.Delta.Content; d != "" {
				content.WriteString(d)
				if onDelta != nil {
					onDelta(core.Delta{Text: d})
				}
			}
			for i, tc := range ch.Delta.ToolCalls {
				d := calls.add(i, tc, messages)
				if onDelta != nil {
					onDelta(core.Delta{ToolCall: &d})
				}
			}
			if ch.FinishReason != "" {
				finish = string(ch.FinishReason)
			}
		}
	}
	// go-openai reports a body that simply ends exactly like one that ended
	// with "data: [DONE]", so the finish reason, which every compatible
	// server sends before [DONE], is what proves the answer is whole.
	if finish == "" {
		if cerr := wire.ContextError(ctx, "openai %s: %s with %s", p.base, op, model); cerr != nil {
			return core.Completion{}, cerr
		}
		return core.Completion{}, core.Errorf(core.EUNAVAILABLE,
			"openai %s: %s with %s: the stream was cut after %d chunk(s), before a finish reason", p.base, op, model, chunks)
	}
	usage.Model = model
	out := calls.result(messages)
	return core.Completion{
		Message:      core.Message{Role: core.RoleAssistant, Content: content.String(), ToolCalls: out},
		FinishReason: wire.FinishReason(len(out) > 0, finish),
		Usage:        usage,
	}, nil
}

// whole runs one chat completion answered in a single body.
func (p *Provider) whole(ctx context.Context, req goopenai.ChatCompletionRequest, op string, messages int) (core.Completion, error) {
	resp, err := p.client.CreateChatCompletion(ctx, req)
	if err != nil {
		return core.Completion{}, p.failWhole(ctx, err, op, req.Model)
	}
	var ch *goopenai.ChatCompletionChoice
	for i := range resp.Choices {
		if resp.Choices[i].Index == 0 {
			ch = &resp.Choices[i]
		}
	}
	if ch == nil {
		return core.Completion{}, core.Errorf(core.EUNAVAILABLE, "openai %s: %s with %s: the answer has no choice", p.base, op, req.Model)
	}
	var calls toolCalls
	for _, tc := range ch.Message.ToolCalls {
		calls.calls = append(calls.calls, core.ToolCall{ID: tc.ID, Type: string(tc.Type),
			Function: core.ToolCallFunction{Name: tc.Function.Name, Arguments: tc.Function.Arguments}})
	}
	out := calls.result(messages)
	return core.Completion{
		Message:      core.Message{Role: core.RoleAssistant, Content: ch.Message.Content, ToolCalls: out},
		FinishReason: wire.FinishReason(len(out) > 0, string(ch.FinishReason)),
		Usage:        withModel(usageOf(resp.Usage), req.Model),
	}, nil
}

// usageOf is the core view of a server's usage report.
func usageOf(u goopenai.Usage) core.Usage {
	out := core.Usage{TokensIn: u.PromptTokens, TokensOut: u.CompletionTokens}
	if d := u.PromptTokensDetails; d != nil {
		out.CachedIn = d.CachedTokens
	}
	if d := u.CompletionTokensDetails; d != nil {
		out.Reasoning = d.ReasoningTokens
	}
	return out
}

func withModel(u core.Usage, model string) core.Usage {
	u.Model = model
	return u
}

// failWhole maps an error of a non-streamed call. One that is neither the
// server's answer nor a failure to reach it came from reading the body the
// server had begun to send: the answer was cut.
func (p *Provider) failWhole(ctx context.Context, err error, op, model string) error {
	var urlErr *url.Error
	if httpStatus(err) != 0 || isClientCheck(err) || errors.As(err, &urlErr) || ctx.Err() != nil {
		return p.fail(ctx, err, op, model)
	}
	var apiErr *goopenai.APIError
	if errors.As(err, &apiErr) {
		return p.fail(ctx, err, op, model)
	}
	return core.WrapError(core.EUNAVAILABLE, wire.Brief(err), "openai %s: %s with %s: the answer was cut before its end", p.base, op, model)
}

// applyOptions sets the sampling options that are given. go-openai drops a
// temperature or top_p of 0 (its fields are omitempty floats), so 0 is sent
// as the smallest positive float32, the workaround its maintainers
// recommend; it samples exactly like 0. max_tokens is used rather than
// max_completion_tokens because vLLM and older servers only know the former;
// OpenAI's reasoning models refuse it, and go-openai says so before
// sending, so for those the limit moves to max_completion_tokens.
func applyOptions(req *goopenai.ChatCompletionRequest, o core.GenOptions) {
	if o.Temperature != nil {
		req.Temperature = nonZero(*o.Temperature)
	}
	if o.TopP != nil {
		req.TopP = nonZero(*o.TopP)
	}
	if o.MaxTokens > 0 {
		req.MaxTokens = o.MaxTokens
		if errors.Is(goopenai.NewReasoningValidator().Validate(*req), goopenai.ErrReasoningModelMaxTokensDeprecated) {
			req.MaxTokens, req.MaxCompletionTokens = 0, o.MaxTokens
		}
	}
	if len(o.Stop) > 0 {
		req.Stop = o.Stop
	}
	req.Seed = o.Seed
	if o.PresencePenalty != nil {
		req.PresencePenalty = float32(*o.PresencePenalty)
	}
	if o.FrequencyPenalty != nil {
		req.FrequencyPenalty = float32(*o.FrequencyPenalty)
	}
	if rf := o.ResponseFormat; rf != nil {
		f := &goopenai.ChatCompletionResponseFormat{Type: goopenai.ChatCompletionResponseFormatType(rf.Type)}
		if js := rf.JSONSchema; js != nil {
			f.JSONSchema = &goopenai.ChatCompletionResponseFormatJSONSchema{
				Name: js.Name, Description: js.Description, Schema: schema(js.Schema), Strict: js.Strict != nil && *js.Strict,
			}
		}
		req.ResponseFormat = f
	}
	if len(req.Tools) > 0 {
		// Without tools these would be refused.
		req.ToolChoice = o.ToolChoice
		if o.ParallelToolCalls != nil {
			req.ParallelToolCalls = *o.ParallelToolCalls
		}
	}
	req.ReasoningEffort = o.ReasoningEffort
	req.User = o.User
}

// schema passes a JSON Schema through as it was given.
func schema(m map[string]any) json.Marshaler {
	if m == nil {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil
	}
	return json.RawMessage(b)
}

// nonZero converts v to float32, replacing 0 by the smallest positive value
// so that it survives go-openai's omitempty.
func nonZero(v float64) float32 {
	if v == 0 {
		return math.SmallestNonzeroFloat32
	}
	return float32(v)
}

// Embed returns the embedding of text from /embeddings.
func (p *Provider) Embed(ctx context.Context, model, text string) (core.Embedding, error) {
	resp, err := p.client.CreateEmbeddings(ctx, goopenai.EmbeddingRequest{
		Input: []string{text},
		Model: goopenai.EmbeddingModel(model),
	})
	if err != nil {
		return core.Embedding{}, p.fail(ctx, err, "embed", model)
	}
	if len(resp.Data) == 0 || len(resp.Data[0].Embedding) == 0 {
		return core.Embedding{}, core.Errorf(core.EUNAVAILABLE, "openai %s: embed with %s: the server returned no embedding", p.base, model)
	}
	return core.Embedding{
		Vector: resp.Data[0].Embedding,
		Usage:  core.Usage{TokensIn: resp.Usage.PromptTokens, Model: model},
	}, nil
}

// Models lists the server's models (/models). The API does not report
// context lengths, so they are left unknown.
func (p *Provider) Models(ctx context.Context) ([]llm.ModelInfo, error) {
	resp, err := p.client.ListModels(ctx)
	if err != nil {
		return nil, p.fail(ctx, err, "list models", "")
	}
	out := make([]llm.ModelInfo, 0, len(resp.Models))
	for _, m := range resp.Models {
		out = append(out, llm.ModelInfo{Name: m.ID})
	}
	return out, nil
}

// cut maps an error met while reading the stream. Once chunks have arrived
// the request was accepted, so whatever breaks the stream (a reset, a body
// that ends mid-chunk, an error event from the server) is the backend
// failing: EUNAVAILABLE, saying the stream was cut.
func (p *Provider) cut(ctx context.Context, err error, chunks int, op, model string) error {
	if cerr := wire.ContextError(ctx, "openai %s: %s with %s", p.base, op, model); cerr != nil {
		return cerr
	}
	if chunks == 0 {
		return p.fail(ctx, err, op, model)
	}
	return core.WrapError(core.EUNAVAILABLE, wire.Brief(err), "openai %s: %s with %s: the stream was cut after %d chunk(s)", p.base, op, model, chunks)
}

// fail maps an error from go-openai to a core error naming the server, the
// operation and the model.
func (p *Provider) fail(ctx context.Context, err error, op, model string) error {
	what := op
	if model != "" {
		what += " with " + model
	}
	if cerr := wire.ContextError(ctx, "openai %s: %s", p.base, what); cerr != nil {
		return cerr
	}
	if status := httpStatus(err); status != 0 {
		return wire.StatusError(status, err, "openai %s: %s", p.base, what)
	}
	var apiErr *goopenai.APIError
	if errors.As(err, &apiErr) {
		// An error event inside a 200 stream has no status: the server
		// accepted the request and then failed.
		return core.WrapError(core.EUNAVAILABLE, wire.Brief(err), "openai %s: %s", p.base, what)
	}
	if isClientCheck(err) {
		return core.WrapError(core.EINVALID, wire.Brief(err), "openai %s: %s", p.base, what)
	}
	return core.WrapError(wire.TransportCode(err), wire.Brief(err), "openai %s: %s", p.base, what)
}

// httpStatus returns the HTTP status go-openai attached to err, or 0.
func httpStatus(err error) int {
	var apiErr *goopenai.APIError
	if errors.As(err, &apiErr) && apiErr.HTTPStatusCode != 0 {
		return apiErr.HTTPStatusCode
	}
	var reqErr *goopenai.RequestError
	if errors.As(err, &reqErr) && reqErr.HTTPStatusCode != 0 {
		return reqErr.HTTPStatusCode
	}
	return 0
}

// isClientCheck reports whether err is one of the checks go-openai makes
// before sending anything, which no server would accept either.
func isClientCheck(err error) bool {
	for _, e := range []error{
		goopenai.ErrChatCompletionInvalidModel,
		goopenai.ErrReasoningModelMaxTokensDeprecated,
		goopenai.ErrReasoningModelLimitationsLogprobs,
		goopenai.ErrReasoningModelLimitationsOther,
		goopenai.ErrReasoningEffortUnsupported,
		goopenai.ErrReasoningToolsRequireResponses,
		goopenai.ErrReasoningSamplingUnsupported,
		goopenai.ErrContentFieldsMisused,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
