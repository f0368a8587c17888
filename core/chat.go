package core

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Message roles.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Message is one turn of a chat. Tool calls made by the model and the id
// that ties a tool result to its call are kept, so multi-turn tool use
// survives every round trip.
type Message struct {
	Role string `json:"role"`
	// Content is the message's text. For content given as parts it is
	// the text of the text parts, joined.
	Content string `json:"content"`
	// Parts is the content as it was given when it was an array of
	// parts (text and images), kept so that it reaches the backend as
	// given; nil for content given as a string.
	Parts []ContentPart `json:"-"`
	// ToolCalls are the calls an assistant message asks for.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	// ToolCallID ties a tool message to the call it answers.
	ToolCallID string `json:"tool_call_id,omitempty"`
	// Name is the tool's name on a tool message.
	Name string `json:"name,omitempty"`
	// Timestamp is when the message was added, if known.
	Timestamp *time.Time `json:"timestamp,omitempty"`
}

// ContentPart is one part of a message's content, in OpenAI's shape.
type ContentPart struct {
	// Type is "text" or "image_url".
	Type string `json:"type"`
	// Text is a text part's text.
	Text string `json:"text,omitempty"`
	// ImageURL is an image part's image: an http(s) URL or a data: URL.
	ImageURL *ImageURL `json:"image_url,omitempty"`
}

// ImageURL is the image of an image_url part.
type ImageURL struct {
	URL string `json:"url"`
	// Detail is "auto", "low" or "high"; "" means auto.
	Detail string `json:"detail,omitempty"`
}

// ContentPartTypes are the part types a message's content may have.
func ContentPartTypes() []string { return []string{"text", "image_url"} }

// MarshalJSON writes the content as its parts when it was given as parts.
func (m Message) MarshalJSON() ([]byte, error) {
	type plain Message
	if m.Parts == nil {
		return json.Marshal(plain(m))
	}
	return json.Marshal(struct {
		plain
		Content []ContentPart `json:"content"`
	}{plain(m), m.Parts})
}

// UnmarshalJSON accepts the reference's internal key callTools for
// tool_calls, and content given as an array of OpenAI content parts.
func (m *Message) UnmarshalJSON(b []byte) error {
	var raw struct {
		Role       string          `json:"role"`
		Content    json.RawMessage `json:"content"`
		ToolCalls  []ToolCall      `json:"tool_calls"`
		CallTools  []ToolCall      `json:"callTools"`
		ToolCallID string          `json:"tool_call_id"`
		Name       string          `json:"name"`
		Timestamp  *time.Time      `json:"timestamp"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	content, parts, err := decodeContent(raw.Content)
	if err != nil {
		return err
	}
	*m = Message{
		Role:       strings.ToLower(raw.Role),
		Content:    content,
		Parts:      parts,
		ToolCalls:  raw.ToolCalls,
		ToolCallID: raw.ToolCallID,
		Name:       raw.Name,
		Timestamp:  raw.Timestamp,
	}
	if len(m.ToolCalls) == 0 {
		m.ToolCalls = raw.CallTools
	}
	return nil
}

// decodeContent reads a message content that is a string, null, or an
// array of parts, returning its text (the text parts joined) and the parts.
// A part of a type other than ContentPartTypes is an error naming it.
func decodeContent(raw json.RawMessage) (string, []ContentPart, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil, nil
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, nil, err
	}
	var parts []ContentPart
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", nil, err
	}
	var sb strings.Builder
	for i := range parts {
		p := &parts[i]
		switch p.Type {
		case "", "text", "input_text", "output_text":
			// The Responses API's names of a text part, and none at all,
			// mean a text part.
			p.Type = "text"
			sb.WriteString(p.Text)
		case "image_url":
			if p.ImageURL == nil || p.ImageURL.URL == "" {
				return "", nil, fmt.Errorf("content[%d]: an image_url part needs image_url.url", i)
			}
		default:
			return "", nil, fmt.Errorf("content[%d]: part type %q is not supported (supported: %s)", i, p.Type, strings.Join(ContentPartTypes(), ", "))
		}
	}
	if parts == nil {
		parts = []ContentPart{}
	}
	return sb.String(), parts, nil
}

// ToolCall is a model's request to call one function.
type ToolCall struct {
	ID       string           `json:"id"`
	Type     string           `json:"type"`
	Function ToolCallFunction `json:"function"`
}

// ToolCallFunction names the function and carries its arguments as a JSON
// text, exactly as the OpenAI protocol does.
type ToolCallFunction struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// Tool describes a function a model may call.
type Tool struct {
	Type     string       `json:"type"`
	Function ToolFunction `json:"function"`
}

// ToolFunction is a tool's name, description and JSON Schema parameters.
type ToolFunction struct {
	Name        string         `json:"name"`
	Description string         `json:"description,omitempty"`
	Parameters  map[string]any `json:"parameters,omitempty"`
}

// ChatHistory is the chat_history data type: the messages of a conversation
// and the tokens spent on it so far.
type ChatHistory struct {
	Messages []Message `json:"messages"`
	// Model is the model that produced the last assistant message.
	Model string `json:"model,omitempty"`
	// InputTokens and OutputTokens are summed over every model call that
	// extended this history.
	InputTokens  int `json:"inputTokens"`
	OutputTokens int `json:"outputTokens"`
}

// UnmarshalJSON also accepts snake_case token fields.
func (h *ChatHistory) UnmarshalJSON(b []byte) error {
	var raw struct {
		Messages     []Message `json:"messages"`
		Model        string    `json:"model"`
		InputTokens  int       `json:"inputTokens"`
		OutputTokens int       `json:"outputTokens"`
		InTokens     int       `json:"input_tokens"`
		OutTokens    int       `json:"output_tokens"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*h = ChatHistory{Messages: raw.Messages, Model: raw.Model, InputTokens: raw.InputTokens, OutputTokens: raw.OutputTokens}
	if h.InputTokens == 0 {
		h.InputTokens = raw.InTokens
	}
	if h.OutputTokens == 0 {
		h.OutputTokens = raw.OutTokens
	}
	return nil
}

// Clone returns a copy whose message slice can be appended to without
// touching h's.
func (h ChatHistory) Clone() ChatHistory {
	c := h
	c.Messages = append([]Message(nil), h.Messages...)
	return c
}

// Last returns the last message, or the zero Message for an empty history.
func (h ChatHistory) Last() Message {
	if len(h.Messages) == 0 {
		return Message{}
	}
	return h.Messages[len(h.Messages)-1]
}

// String returns the content of the last message, so that a template
// printing a history ({{.input}}) shows the text rather than a struct dump.
func (h ChatHistory) String() string { return h.Last().Content }

// OpenAIChatRequest is the openai_chat data type: a chat completion request
// in the OpenAI wire format.
type OpenAIChatRequest struct {
	Model               string          `json:"model,omitempty"`
	Messages            []Message       `json:"messages"`
	Tools               []Tool          `json:"tools,omitempty"`
	ToolChoice          any             `json:"tool_choice,omitempty"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls,omitempty"`
	MaxTokens           int             `json:"max_tokens,omitempty"`
	MaxCompletionTokens int             `json:"max_completion_tokens,omitempty"`
	Temperature         *float64        `json:"temperature,omitempty"`
	TopP                *float64        `json:"top_p,omitempty"`
	Stop                StopList        `json:"stop,omitempty"`
	Seed                *int            `json:"seed,omitempty"`
	ResponseFormat      *ResponseFormat `json:"response_format,omitempty"`
	N                   int             `json:"n,omitempty"`
	Stream              bool            `json:"stream,omitempty"`
	PresencePenalty     *float64        `json:"presence_penalty,omitempty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty,omitempty"`
	ReasoningEffort     string          `json:"reasoning_effort,omitempty"`
	User                string          `json:"user,omitempty"`
}

// Options returns the request's generation options.
func (r OpenAIChatRequest) Options() GenOptions {
	o := GenOptions{
		Temperature: r.Temperature, TopP: r.TopP, MaxTokens: r.MaxTokens, Stop: r.Stop,
		Seed: r.Seed, PresencePenalty: r.PresencePenalty, FrequencyPenalty: r.FrequencyPenalty,
		ResponseFormat: r.ResponseFormat, ToolChoice: r.ToolChoice, ParallelToolCalls: r.ParallelToolCalls,
		ReasoningEffort: r.ReasoningEffort, User: r.User,
	}
	if r.MaxCompletionTokens > 0 {
		o.MaxTokens = r.MaxCompletionTokens
	}
	return o
}

// Under returns o with every option o leaves open taken from under.
func (o GenOptions) Under(under GenOptions) GenOptions {
	if o.Temperature == nil {
		o.Temperature = under.Temperature
	}
	if o.TopP == nil {
		o.TopP = under.TopP
	}
	if o.MaxTokens == 0 {
		o.MaxTokens = under.MaxTokens
	}
	if len(o.Stop) == 0 {
		o.Stop = under.Stop
	}
	if o.Seed == nil {
		o.Seed = under.Seed
	}
	if o.PresencePenalty == nil {
		o.PresencePenalty = under.PresencePenalty
	}
	if o.FrequencyPenalty == nil {
		o.FrequencyPenalty = under.FrequencyPenalty
	}
	if o.ResponseFormat == nil {
		o.ResponseFormat = under.ResponseFormat
	}
	if o.ToolChoice == nil {
		o.ToolChoice = under.ToolChoice
	}
	if o.ParallelToolCalls == nil {
		o.ParallelToolCalls = under.ParallelToolCalls
	}
	if o.ReasoningEffort == "" {
		o.ReasoningEffort = under.ReasoningEffort
	}
	if o.User == "" {
		o.User = under.User
	}
	return o
}

// StopList is a list of stop sequences that also accepts a single string.
type StopList []string

// UnmarshalJSON accepts a string or an array of strings.
func (s *StopList) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = StopList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

// OpenAIChatResponse is the openai_chat_response data type.
type OpenAIChatResponse struct {
	ID      string         `json:"id"`
	Object  string         `json:"object"`
	Created int64          `json:"created"`
	Model   string         `json:"model"`
	Choices []OpenAIChoice `json:"choices"`
	Usage   OpenAIUsage    `json:"usage"`
}

// OpenAIChoice is one choice of an OpenAIChatResponse.
type OpenAIChoice struct {
	Index        int                 `json:"index"`
	Message      OpenAIChoiceMessage `json:"message"`
	FinishReason string              `json:"finish_reason"`
}

// OpenAIChoiceMessage is the assistant message of a choice; its content is
// null when the model only called tools.
type OpenAIChoiceMessage struct {
	Role      string     `json:"role"`
	Content   *string    `json:"content"`
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// OpenAIUsage counts the tokens of a completion.
type OpenAIUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// SearchResult is one element of the search_results data type.
type SearchResult struct {
	ID       string  `json:"id"`
	Type     string  `json:"type"`
	Distance float64 `json:"distance"`
}

// String returns the content of the last message, like ChatHistory.String.
func (r OpenAIChatRequest) String() string {
	if len(r.Messages) == 0 {
		return ""
	}
	return r.Messages[len(r.Messages)-1].Content
}

// History returns the request's messages as a chat history.
func (r OpenAIChatRequest) History() ChatHistory {
	return ChatHistory{Messages: append([]Message(nil), r.Messages...), Model: r.Model}
}
