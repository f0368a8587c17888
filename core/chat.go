package core

import (
	"encoding/json"
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
	Role    string `json:"role"`
	Content string `json:"content"`
	// ToolCalls are the calls an assistant message asks for.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	// ToolCallID ties a tool message to the call it answers.
	ToolCallID string `json:"tool_call_id,omitempty"`
	// Name is the tool's name on a tool message.
	Name string `json:"name,omitempty"`
	// Timestamp is when the message was added, if known.
	Timestamp *time.Time `json:"timestamp,omitempty"`
}

// UnmarshalJSON accepts the reference's internal key callTools for
// tool_calls, and content given as an array of OpenAI text parts.
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
	content, err := decodeContent(raw.Content)
	if err != nil {
		return err
	}
	*m = Message{
		Role:       strings.ToLower(raw.Role),
		Content:    content,
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

// decodeContent reads a message content that is a string, null, or an array
// of parts of which the text parts are joined.
func decodeContent(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", err
	}
	var sb strings.Builder
	for _, p := range parts {
		if p.Type == "text" || p.Type == "" {
			sb.WriteString(p.Text)
		}
	}
	return sb.String(), nil
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
	Model            string    `json:"model,omitempty"`
	Messages         []Message `json:"messages"`
	Tools            []Tool    `json:"tools,omitempty"`
	ToolChoice       any       `json:"tool_choice,omitempty"`
	MaxTokens        int       `json:"max_tokens,omitempty"`
	Temperature      *float64  `json:"temperature,omitempty"`
	TopP             *float64  `json:"top_p,omitempty"`
	Stop             StopList  `json:"stop,omitempty"`
	N                int       `json:"n,omitempty"`
	Stream           bool      `json:"stream,omitempty"`
	PresencePenalty  *float64  `json:"presence_penalty,omitempty"`
	FrequencyPenalty *float64  `json:"frequency_penalty,omitempty"`
	User             string    `json:"user,omitempty"`
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
