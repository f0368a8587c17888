package openai

import (
	"github.com/stepwise-run/stepwise/core"
)

// responseObject is a response of the Responses API.
type responseObject struct {
	ID                 string            `json:"id"`
	Object             string            `json:"object"`
	CreatedAt          int64             `json:"created_at"`
	Status             string            `json:"status"`
	Error              *responseError    `json:"error"`
	IncompleteDetails  *struct{}         `json:"incomplete_details"`
	Instructions       *string           `json:"instructions"`
	MaxOutputTokens    *int              `json:"max_output_tokens"`
	Model              string            `json:"model"`
	Output             []outputItem      `json:"output"`
	ParallelToolCalls  bool              `json:"parallel_tool_calls"`
	PreviousResponseID *string           `json:"previous_response_id"`
	Reasoning          reasoning         `json:"reasoning"`
	Store              bool              `json:"store"`
	Temperature        *float64          `json:"temperature"`
	Text               textConfig        `json:"text"`
	ToolChoice         any               `json:"tool_choice"`
	Tools              []functionTool    `json:"tools"`
	TopP               *float64          `json:"top_p"`
	Truncation         string            `json:"truncation"`
	Usage              *responseUsage    `json:"usage"`
	User               *string           `json:"user"`
	Metadata           map[string]string `json:"metadata"`
}

type responseError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type reasoning struct {
	Effort  *string `json:"effort"`
	Summary *string `json:"summary"`
}

type textConfig struct {
	Format *core.ResponseFormat `json:"format"`
}

// functionTool is a function tool as the Responses API shows it.
type functionTool struct {
	Type        string         `json:"type"`
	Name        string         `json:"name"`
	Description string         `json:"description,omitempty"`
	Parameters  map[string]any `json:"parameters"`
	Strict      bool           `json:"strict"`
}

type responseUsage struct {
	InputTokens        int `json:"input_tokens"`
	InputTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokens        int `json:"output_tokens"`
	OutputTokensDetails struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
	TotalTokens int `json:"total_tokens"`
}

// outputItem is a message or a function call of a response's output.
type outputItem struct {
	Type   string `json:"type"`
	ID     string `json:"id"`
	Status string `json:"status"`
	// A message's.
	Role    string        `json:"role,omitempty"`
	Content []outputTextP `json:"content,omitempty"`
	// A function call's.
	CallID    string `json:"call_id,omitempty"`
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments,omitempty"`
}

// outputTextP is an output_text part of a message item.
type outputTextP struct {
	Type        string `json:"type"`
	Text        string `json:"text"`
	Annotations []any  `json:"annotations"`
}

// settings fills what the request asked for.
func (v *responseObject) settings(chat core.OpenAIChatRequest, instructions, previous string, metadata map[string]string, store bool) {
	v.Object = "response"
	v.Output = []outputItem{}
	v.Tools = []functionTool{}
	for _, t := range chat.Tools {
		v.Tools = append(v.Tools, functionTool{Type: "function", Name: t.Function.Name, Description: t.Function.Description, Parameters: t.Function.Parameters})
	}
	v.ToolChoice = "auto"
	if s, ok := chat.ToolChoice.(string); ok {
		v.ToolChoice = s
	} else if m, ok := chat.ToolChoice.(map[string]any); ok {
		if f, ok := m["function"].(map[string]any); ok {
			v.ToolChoice = map[string]any{"type": "function", "name": f["name"]}
		}
	}
	v.ParallelToolCalls = chat.ParallelToolCalls == nil || *chat.ParallelToolCalls
	if chat.MaxTokens > 0 {
		n := chat.MaxTokens
		v.MaxOutputTokens = &n
	}
	v.Temperature, v.TopP = chat.Temperature, chat.TopP
	v.Text = textConfig{Format: &core.ResponseFormat{Type: "text"}}
	if chat.ResponseFormat != nil {
		v.Text.Format = chat.ResponseFormat
	}
	if chat.ReasoningEffort != "" {
		e := chat.ReasoningEffort
		v.Reasoning.Effort = &e
	}
	if instructions != "" {
		v.Instructions = &instructions
	}
	if previous != "" {
		v.PreviousResponseID = &previous
	}
	if chat.User != "" {
		u := chat.User
		v.User = &u
	}
	v.Metadata = metadata
	if v.Metadata == nil {
		v.Metadata = map[string]string{}
	}
	v.Store = store
	v.Truncation = "disabled"
}

// complete fills the output and usage of a response the model answered
// with msg.
func (v *responseObject) complete(msg core.Message, usage core.OpenAIUsage) {
	v.Status = "completed"
	v.Output = outputItems(v.ID, msg, "completed")
	u := &responseUsage{InputTokens: usage.PromptTokens, OutputTokens: usage.CompletionTokens, TotalTokens: usage.TotalTokens}
	v.Usage = u
}

// outputItems are the items of an answer: its text as a message, then
// one function_call per tool call.
func outputItems(respID string, msg core.Message, status string) []outputItem {
	out := []outputItem{}
	if msg.Content != "" || len(msg.ToolCalls) == 0 {
		out = append(out, messageItem(respID, msg.Content, status))
	}
	for _, c := range msg.ToolCalls {
		out = append(out, callItem(c.ID, c.Function.Name, c.Function.Arguments, status))
	}
	return out
}

func messageItem(respID, text, status string) outputItem {
	item := outputItem{Type: "message", ID: "msg_" + respID[len("resp_"):], Status: status, Role: core.RoleAssistant, Content: []outputTextP{}}
	if status == "completed" || text != "" {
		item.Content = []outputTextP{{Type: "output_text", Text: text, Annotations: []any{}}}
	}
	return item
}

func callItem(callID, name, args, status string) outputItem {
	return outputItem{Type: "function_call", ID: "fc_" + callID, Status: status, CallID: callID, Name: name, Arguments: args}
}
