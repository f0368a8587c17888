package openai

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/stepwise-run/stepwise/core"
)

// responseRequest is a decoded Responses API request.
type responseRequest struct {
	Model              string
	Instructions       string
	Input              []core.Message
	Tools              []core.Tool
	ToolChoice         any
	ParallelToolCalls  *bool
	PreviousResponseID string
	Store              bool
	Stream             bool
	Temperature        *float64
	TopP               *float64
	MaxOutputTokens    int
	Format             *core.ResponseFormat
	ReasoningEffort    string
	Metadata           map[string]string
	User               string
}

// responseFields are the fields of a Responses request stepwise takes;
// include, truncation ("disabled"), service_tier, safety_identifier,
// prompt_cache_key, max_tool_calls and stream_options are accepted and have
// no effect.
var responseFields = []string{
	"model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "previous_response_id",
	"store", "stream", "temperature", "top_p", "max_output_tokens", "text", "reasoning", "metadata", "user",
	"include", "truncation", "service_tier", "safety_identifier", "prompt_cache_key", "max_tool_calls", "stream_options",
	"top_logprobs",
}

// responseRefused are the fields whose effect stepwise cannot give.
var responseRefused = map[string]string{
	"background":   "background responses are not supported; stream instead",
	"conversation": "conversations are not supported; use previous_response_id",
	"prompt":       "stored prompts are not supported",
}

// decodeResponse reads and checks a Responses request.
func decodeResponse(r *http.Request) (*responseRequest, error) {
	m, err := readObject(r)
	if err != nil {
		return nil, err
	}
	if err := fields(m, responseFields, responseRefused); err != nil {
		return nil, err
	}
	req := &responseRequest{Store: true}
	var (
		store       *bool
		topLogprobs int
		truncation  string
		text        *struct {
			Format json.RawMessage `json:"format"`
		}
		reasoning *struct {
			Effort string `json:"effort"`
		}
	)
	for _, f := range []struct {
		name string
		dst  any
	}{
		{"model", &req.Model}, {"instructions", &req.Instructions}, {"parallel_tool_calls", &req.ParallelToolCalls},
		{"previous_response_id", &req.PreviousResponseID}, {"store", &store}, {"stream", &req.Stream},
		{"temperature", &req.Temperature}, {"top_p", &req.TopP}, {"max_output_tokens", &req.MaxOutputTokens},
		{"metadata", &req.Metadata}, {"user", &req.User}, {"top_logprobs", &topLogprobs}, {"truncation", &truncation},
		{"text", &text}, {"reasoning", &reasoning},
	} {
		if err := field(m, f.name, f.dst); err != nil {
			return nil, err
		}
	}
	if store != nil {
		req.Store = *store
	}
	if reasoning != nil {
		req.ReasoningEffort = reasoning.Effort
	}
	switch {
	case req.Model == "" && req.PreviousResponseID == "":
		return nil, badRequest("model", "model: required: the model to route to, with its tag (llama3.2:1b)")
	case topLogprobs != 0:
		return nil, badRequest("top_logprobs", "top_logprobs: log probabilities are not supported")
	case truncation != "" && truncation != "disabled" && truncation != "auto":
		return nil, badRequest("truncation", "truncation: %q is not disabled or auto", truncation)
	case req.Temperature != nil && (*req.Temperature < 0 || *req.Temperature > 2):
		return nil, badRequest("temperature", "temperature: want a number from 0 to 2, got %v", *req.Temperature)
	case req.TopP != nil && (*req.TopP < 0 || *req.TopP > 1):
		return nil, badRequest("top_p", "top_p: want a number from 0 to 1, got %v", *req.TopP)
	case req.MaxOutputTokens < 0:
		return nil, badRequest("max_output_tokens", "max_output_tokens: want a positive integer")
	}
	if text != nil {
		if req.Format, err = decodeTextFormat(text.Format); err != nil {
			return nil, err
		}
	}
	if req.Input, err = decodeInput(m["input"]); err != nil {
		return nil, err
	}
	if req.Tools, err = decodeResponseTools(m["tools"]); err != nil {
		return nil, err
	}
	if req.ToolChoice, err = decodeToolChoice(m["tool_choice"], req.Tools, "responses"); err != nil {
		return nil, err
	}
	return req, nil
}

// decodeTextFormat reads text.format: {type: text}, {type: json_object}
// or {type: json_schema, name, schema, strict, description}.
func decodeTextFormat(raw json.RawMessage) (*core.ResponseFormat, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var f struct {
		Type        string         `json:"type"`
		Name        string         `json:"name"`
		Description string         `json:"description"`
		Schema      map[string]any `json:"schema"`
		Strict      *bool          `json:"strict"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, badRequest("text.format", "text.format: %v", err)
	}
	switch f.Type {
	case "text":
		return nil, nil
	case "json_object":
		return &core.ResponseFormat{Type: "json_object"}, nil
	case "json_schema":
		if f.Name == "" || f.Schema == nil {
			return nil, badRequest("text.format", "text.format: a json_schema format needs a name and a schema")
		}
		return &core.ResponseFormat{Type: "json_schema", JSONSchema: &core.JSONSchemaFormat{
			Name: f.Name, Description: f.Description, Schema: f.Schema, Strict: f.Strict}}, nil
	}
	return nil, badRequest("text.format.type", "text.format.type: %q is not text, json_object or json_schema", f.Type)
}

// decodeResponseTools reads the function tools of a Responses request
// ({type: function, name, description, parameters, strict}).
func decodeResponseTools(raw json.RawMessage) ([]core.Tool, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, badRequest("tools", "tools: want an array of function tools")
	}
	if len(items) > maxTools {
		return nil, badRequest("tools", "tools: at most %d tools, got %d", maxTools, len(items))
	}
	out := make([]core.Tool, 0, len(items))
	for i, item := range items {
		at := fmt.Sprintf("tools[%d]", i)
		var t struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(item, &t); err != nil || t.Type != "function" {
			return nil, badRequest(at+".type", "%s.type: only function tools are supported, got %q", at, t.Type)
		}
		f, err := decodeFunction(item, at)
		if err != nil {
			return nil, err
		}
		out = append(out, core.Tool{Type: "function", Function: f})
	}
	return out, nil
}

// decodeInput reads input: a text (one user message) or a list of items —
// messages (role and content, with input_text, output_text and
// input_image parts), function calls and their outputs. Consecutive
// function calls become one assistant message, as parallel calls are.
// Reasoning items are skipped: there is no reasoning to carry.
func decodeInput(raw json.RawMessage) ([]core.Message, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var text string
	if json.Unmarshal(raw, &text) == nil {
		return []core.Message{{Role: core.RoleUser, Content: text}}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, badRequest("input", "input: want a text or an array of input items")
	}
	var out []core.Message
	for i, item := range items {
		at := fmt.Sprintf("input[%d]", i)
		var it struct {
			Type      string          `json:"type"`
			Role      string          `json:"role"`
			Content   json.RawMessage `json:"content"`
			CallID    string          `json:"call_id"`
			Name      string          `json:"name"`
			Arguments string          `json:"arguments"`
			Output    json.RawMessage `json:"output"`
		}
		if err := json.Unmarshal(item, &it); err != nil {
			return nil, badRequest(at, "%s: %v", at, err)
		}
		switch it.Type {
		case "", "message":
			msg, err := inputMessage(it.Role, it.Content, at)
			if err != nil {
				return nil, err
			}
			out = append(out, msg)
		case "function_call":
			if it.CallID == "" || it.Name == "" {
				return nil, badRequest(at, "%s: a function_call needs call_id and name", at)
			}
			call := core.ToolCall{ID: it.CallID, Type: "function", Function: core.ToolCallFunction{Name: it.Name, Arguments: it.Arguments}}
			if n := len(out); n > 0 && out[n-1].Role == core.RoleAssistant && len(out[n-1].ToolCalls) > 0 {
				out[n-1].ToolCalls = append(out[n-1].ToolCalls, call)
			} else {
				out = append(out, core.Message{Role: core.RoleAssistant, ToolCalls: []core.ToolCall{call}})
			}
		case "function_call_output":
			if it.CallID == "" {
				return nil, badRequest(at+".call_id", "%s.call_id: required: the call this output answers", at)
			}
			output, err := outputText(it.Output)
			if err != nil {
				return nil, badRequest(at+".output", "%s.output: %v", at, err)
			}
			out = append(out, core.Message{Role: core.RoleTool, ToolCallID: it.CallID, Content: output})
		case "reasoning":
		default:
			return nil, badRequest(at+".type", "%s.type: %q items are not supported (message, function_call, function_call_output)", at, it.Type)
		}
	}
	return out, nil
}

// inputMessage reads a message item; its content is a text or a list of
// parts.
func inputMessage(role string, content json.RawMessage, at string) (core.Message, error) {
	switch role {
	case core.RoleUser, core.RoleAssistant, core.RoleSystem, "developer":
	default:
		return core.Message{}, badRequest(at+".role", "%s.role: %q is not user, assistant, system or developer", at, role)
	}
	var text string
	if json.Unmarshal(content, &text) == nil {
		return core.Message{Role: role, Content: text}, nil
	}
	var parts []struct {
		Type     string `json:"type"`
		Text     string `json:"text"`
		ImageURL string `json:"image_url"`
		Detail   string `json:"detail"`
	}
	if err := json.Unmarshal(content, &parts); err != nil {
		return core.Message{}, badRequest(at+".content", "%s.content: want a text or an array of content parts", at)
	}
	msg := core.Message{Role: role, Parts: []core.ContentPart{}}
	var sb strings.Builder
	for j, p := range parts {
		switch p.Type {
		case "input_text", "output_text", "text":
			sb.WriteString(p.Text)
			msg.Parts = append(msg.Parts, core.ContentPart{Type: "text", Text: p.Text})
		case "input_image":
			if p.ImageURL == "" {
				return core.Message{}, badRequest(fmt.Sprintf("%s.content[%d].image_url", at, j), "%s.content[%d]: an input_image needs image_url (file ids are not supported)", at, j)
			}
			msg.Parts = append(msg.Parts, core.ContentPart{Type: "image_url", ImageURL: &core.ImageURL{URL: p.ImageURL, Detail: p.Detail}})
		default:
			return core.Message{}, badRequest(fmt.Sprintf("%s.content[%d].type", at, j), "%s.content[%d].type: %q is not supported (input_text, output_text, input_image)", at, j, p.Type)
		}
	}
	msg.Content = sb.String()
	return msg, nil
}

// outputText reads a function call's output: a text, or a list of text
// parts joined.
func outputText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", fmt.Errorf("want a text or an array of input_text parts")
	}
	var sb strings.Builder
	for _, p := range parts {
		sb.WriteString(p.Text)
	}
	return sb.String(), nil
}
