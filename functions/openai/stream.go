package openai

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// FinishError is the finish_reason of a stream that a failure cut short:
// never "stop", so that a client reading finish reasons does not take a
// truncated answer for a whole one. The error event follows it.
const FinishError = "error"

// chunk is one chat.completion.chunk.
type chunk struct {
	ID                string            `json:"id"`
	Object            string            `json:"object"`
	Created           int64             `json:"created"`
	Model             string            `json:"model"`
	SystemFingerprint *string           `json:"system_fingerprint"`
	Choices           []chunkChoice     `json:"choices"`
	Usage             *core.OpenAIUsage `json:"usage,omitempty"`
}

type chunkChoice struct {
	Index        int        `json:"index"`
	Delta        chunkDelta `json:"delta"`
	Logprobs     *struct{}  `json:"logprobs"`
	FinishReason *string    `json:"finish_reason"`
}

type chunkDelta struct {
	Role      string          `json:"role,omitempty"`
	Content   *string         `json:"content,omitempty"`
	ToolCalls []toolCallChunk `json:"tool_calls,omitempty"`
}

type toolCallChunk struct {
	Index    int           `json:"index"`
	ID       string        `json:"id,omitempty"`
	Type     string        `json:"type,omitempty"`
	Function functionChunk `json:"function"`
}

type functionChunk struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// chunks writes a Chat Completions stream. It sends nothing until the
// first piece of the answer (or a heartbeat), so that a request that fails
// before it is still answered with a status of its own. Its methods are
// safe for concurrent use: the engine's observer writes pieces while a
// ticker writes heartbeats.
type chunks struct {
	w            http.ResponseWriter
	wait         time.Duration
	id           string
	created      int64
	model        string
	includeUsage bool

	mu     sync.Mutex
	stream *webapi.Stream // nil until started
	err    error          // the first write error: the client went away
	text   int            // bytes of content sent
}

func newChunks(w http.ResponseWriter, wait time.Duration, id, model string, includeUsage bool) *chunks {
	return &chunks{w: w, wait: wait, id: id, created: time.Now().Unix(), model: model, includeUsage: includeUsage}
}

// started reports whether anything was sent.
func (c *chunks) started() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stream != nil
}

// begin starts the stream with the role chunk. c.mu must be held.
func (c *chunks) begin() bool {
	if c.err != nil {
		return false
	}
	if c.stream != nil {
		return true
	}
	// The headers and the role chunk leave with the event that started
	// the stream, in one write: the first token is not held up by two.
	c.stream = webapi.OpenStream(c.w, c.wait)
	empty := ""
	ch := chunk{ID: c.id, Object: "chat.completion.chunk", Created: c.created, Model: c.model,
		Choices: []chunkChoice{{Delta: chunkDelta{Role: core.RoleAssistant, Content: &empty}}}}
	if err := c.stream.Queue(0, "", ch); err != nil {
		c.err = err
		return false
	}
	return true
}

// send writes one chunk. c.mu must be held.
func (c *chunks) send(d chunkDelta, finish *string, usage *core.OpenAIUsage) bool {
	ch := chunk{ID: c.id, Object: "chat.completion.chunk", Created: c.created, Model: c.model,
		Choices: []chunkChoice{{Delta: d, FinishReason: finish}}}
	if usage != nil {
		ch.Choices = []chunkChoice{}
		ch.Usage = usage
	}
	return c.write(ch)
}

// write writes one event. c.mu must be held.
func (c *chunks) write(v any) bool {
	if c.err != nil {
		return false
	}
	if err := c.stream.Event(0, "", v); err != nil {
		c.err = err
		return false
	}
	return true
}

// content sends a piece of the answer's text.
func (c *chunks) content(text string) {
	if text == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.begin() {
		c.text += len(text)
		c.send(chunkDelta{Content: &text}, nil, nil)
	}
}

// toolCall sends a piece of a tool call.
func (c *chunks) toolCall(d core.ToolCallDelta) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.begin() {
		return
	}
	tc := toolCallChunk{Index: d.Index, ID: d.ID, Function: functionChunk{Name: d.Name, Arguments: d.Arguments}}
	if d.ID != "" {
		tc.Type = "function"
	}
	c.send(chunkDelta{ToolCalls: []toolCallChunk{tc}}, nil, nil)
}

// heartbeat starts the stream if it has not started and writes a comment
// line, so that a client and the proxies between keep the connection
// while the first token is slow to come.
func (c *chunks) heartbeat() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.begin() {
		if err := c.stream.Heartbeat(); err != nil {
			c.err = err
		}
	}
}

// finish ends a whole answer: the finish chunk, the usage chunk when the
// client asked for it, and [DONE].
func (c *chunks) finish(reason string, usage core.OpenAIUsage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.begin() {
		return
	}
	c.send(chunkDelta{}, &reason, nil)
	if c.includeUsage {
		c.send(chunkDelta{}, nil, &usage)
	}
	if c.err == nil {
		if err := c.stream.Data(0, "", []byte("[DONE]")); err != nil {
			c.err = err
		}
	}
}

// fail ends a stream a failure cut short: a finish chunk whose reason is
// FinishError, then the error in OpenAI's envelope as an event (which
// the SDKs raise), and no [DONE].
func (c *chunks) fail(obj webapi.ErrorObject) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.begin() {
		return
	}
	reason := FinishError
	c.send(chunkDelta{}, &reason, nil)
	c.write(webapi.Envelope{Error: obj})
}

// completionID makes the id of a completion no execution stands behind.
func completionID() string { return "chatcmpl-" + randomID() }

// writeCompletion answers a whole chat completion.
func writeCompletion(w http.ResponseWriter, resp core.OpenAIChatResponse) {
	webapi.WriteJSON(w, http.StatusOK, resp)
}

// completion builds the response to a request answered by c.
func completion(id string, created int64, model string, msg core.Message, finish string, usage core.OpenAIUsage) core.OpenAIChatResponse {
	var content *string
	if msg.Content != "" || len(msg.ToolCalls) == 0 {
		s := msg.Content
		content = &s
	}
	return core.OpenAIChatResponse{
		ID: id, Object: "chat.completion", Created: created, Model: model,
		Choices: []core.OpenAIChoice{{Index: 0, FinishReason: finish,
			Message: core.OpenAIChoiceMessage{Role: core.RoleAssistant, Content: content, ToolCalls: msg.ToolCalls}}},
		Usage: usage,
	}
}

// usageOf is the OpenAI usage of a model call.
func usageOf(u core.Usage) core.OpenAIUsage {
	return core.OpenAIUsage{PromptTokens: u.TokensIn, CompletionTokens: u.TokensOut, TotalTokens: u.TokensIn + u.TokensOut}
}

// rawJSON marshals v, for a value known to marshal.
func rawJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
