package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/stepwise-run/stepwise/core"
)

// Limits on a request, after OpenAI's own.
const (
	maxMessages = 4096
	maxTools    = 128
	maxStops    = 4
)

// toolName is what OpenAI accepts as a function name.
var toolName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// readObject reads a JSON object body into its fields. A body over the
// limit is 413; one that is not a JSON object is 400.
func readObject(r *http.Request) (map[string]json.RawMessage, error) {
	data, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, code: "request_too_large",
			msg: fmt.Sprintf("request body is larger than %d bytes", tooBig.Limit)}
	}
	if err != nil {
		return nil, badRequest("", "read request body: %v", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, badRequest("", "request body is empty; send a JSON object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		return nil, badRequest("", "request body is not a JSON object: %v", errOr(err, "null"))
	}
	return m, nil
}

func errOr(err error, s string) string {
	if err != nil {
		return err.Error()
	}
	return s
}

// fields checks that m has only known fields (what OpenAI answers for an
// unknown one: "Unrecognized request argument") and that the refused ones
// are absent or empty.
func fields(m map[string]json.RawMessage, known []string, refused map[string]string) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if why, ok := refused[k]; ok {
			if empty(m[k]) {
				continue
			}
			return badRequest(k, "%s: %s", k, why)
		}
		if !slices.Contains(known, k) {
			return badRequest(k, "Unrecognized request argument supplied: %s", k)
		}
	}
	return nil
}

// empty reports whether a JSON value is null, false, 0, "", [] or {}.
func empty(raw json.RawMessage) bool {
	switch strings.TrimSpace(string(raw)) {
	case "null", "false", "0", `""`, "[]", "{}":
		return true
	}
	return false
}

// field decodes one field into dst when it is present and not null,
// naming it when its type is wrong.
func field(m map[string]json.RawMessage, name string, dst any) error {
	raw, ok := m[name]
	if !ok || string(bytes.TrimSpace(raw)) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return badRequest(name, "%s: want %s, got %s", name, kind(dst), te.Value)
		}
		return badRequest(name, "%s: %v", name, err)
	}
	return nil
}

func kind(dst any) string {
	switch dst.(type) {
	case *string:
		return "a string"
	case *bool:
		return "true or false"
	case *int, **int:
		return "an integer"
	case **float64, *float64:
		return "a number"
	}
	return "another type"
}

// chatRequest is a decoded Chat Completions request.
type chatRequest struct {
	core.OpenAIChatRequest
	// IncludeUsage asks for a last chunk with the usage (stream_options).
	IncludeUsage bool
}

// chatFields are the fields of a Chat Completions request stepwise takes.
// store, metadata, service_tier, prompt_cache_key, safety_identifier and
// verbosity are accepted and have no effect; user and reasoning_effort
// reach the backend.
var chatFields = []string{
	"model", "messages", "tools", "tool_choice", "parallel_tool_calls", "max_tokens", "max_completion_tokens",
	"temperature", "top_p", "stop", "seed", "response_format", "n", "stream", "stream_options",
	"presence_penalty", "frequency_penalty", "reasoning_effort", "user", "logit_bias", "logprobs", "top_logprobs",
	"store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier", "verbosity",
}

// chatRefused are fields whose effect stepwise cannot give; they may be
// sent empty (as some clients do), never set.
var chatRefused = map[string]string{
	"functions":          "the deprecated functions are not supported; use tools",
	"function_call":      "the deprecated function_call is not supported; use tool_choice",
	"audio":              "audio output is not supported",
	"prediction":         "predicted outputs are not supported",
	"web_search_options": "web search is not supported",
}

// decodeChat reads and checks a Chat Completions request. needModel says
// whether model is required (the plain proxy routes by it).
func decodeChat(r *http.Request, needModel bool) (*chatRequest, error) {
	m, err := readObject(r)
	if err != nil {
		return nil, err
	}
	if err := fields(m, chatFields, chatRefused); err != nil {
		return nil, err
	}
	req := &chatRequest{}
	q := &req.OpenAIChatRequest
	var (
		n             *int
		logprobs      bool
		topLogprobs   *int
		logitBias     map[string]any
		modalities    []string
		streamOptions *struct {
			IncludeUsage bool `json:"include_usage"`
		}
	)
	for _, f := range []struct {
		name string
		dst  any
	}{
		{"model", &q.Model}, {"max_tokens", &q.MaxTokens}, {"max_completion_tokens", &q.MaxCompletionTokens},
		{"temperature", &q.Temperature}, {"top_p", &q.TopP}, {"seed", &q.Seed}, {"n", &n}, {"stream", &q.Stream},
		{"presence_penalty", &q.PresencePenalty}, {"frequency_penalty", &q.FrequencyPenalty},
		{"reasoning_effort", &q.ReasoningEffort}, {"user", &q.User}, {"parallel_tool_calls", &q.ParallelToolCalls},
		{"logprobs", &logprobs}, {"top_logprobs", &topLogprobs}, {"logit_bias", &logitBias},
		{"stream_options", &streamOptions}, {"modalities", &modalities},
	} {
		if err := field(m, f.name, f.dst); err != nil {
			return nil, err
		}
	}
	switch {
	case needModel && strings.TrimSpace(q.Model) == "":
		return nil, badRequest("model", "model: required: the model to route to, with its tag (llama3.2:1b)")
	case n != nil && *n != 1:
		return nil, badRequest("n", "n: only 1 choice is supported, got %d", *n)
	case logprobs || topLogprobs != nil:
		return nil, badRequest("logprobs", "logprobs: log probabilities are not supported")
	case len(logitBias) > 0:
		return nil, badRequest("logit_bias", "logit_bias: not supported")
	case q.MaxTokens < 0:
		return nil, badRequest("max_tokens", "max_tokens: want a positive integer, got %d", q.MaxTokens)
	case q.MaxCompletionTokens < 0:
		return nil, badRequest("max_completion_tokens", "max_completion_tokens: want a positive integer, got %d", q.MaxCompletionTokens)
	case q.Temperature != nil && (*q.Temperature < 0 || *q.Temperature > 2):
		return nil, badRequest("temperature", "temperature: want a number from 0 to 2, got %v", *q.Temperature)
	case q.TopP != nil && (*q.TopP < 0 || *q.TopP > 1):
		return nil, badRequest("top_p", "top_p: want a number from 0 to 1, got %v", *q.TopP)
	case q.PresencePenalty != nil && (*q.PresencePenalty < -2 || *q.PresencePenalty > 2):
		return nil, badRequest("presence_penalty", "presence_penalty: want a number from -2 to 2")
	case q.FrequencyPenalty != nil && (*q.FrequencyPenalty < -2 || *q.FrequencyPenalty > 2):
		return nil, badRequest("frequency_penalty", "frequency_penalty: want a number from -2 to 2")
	case len(modalities) > 0 && !slices.Equal(modalities, []string{"text"}):
		return nil, badRequest("modalities", "modalities: only text is supported")
	case streamOptions != nil && !q.Stream:
		return nil, badRequest("stream_options", "stream_options: only allowed with stream: true")
	}
	if streamOptions != nil {
		req.IncludeUsage = streamOptions.IncludeUsage
	}
	if q.Messages, err = decodeMessages(m["messages"]); err != nil {
		return nil, err
	}
	if err := decodeStop(m["stop"], &q.Stop); err != nil {
		return nil, err
	}
	if q.Tools, err = decodeTools(m["tools"]); err != nil {
		return nil, err
	}
	if q.ToolChoice, err = decodeToolChoice(m["tool_choice"], q.Tools, "function"); err != nil {
		return nil, err
	}
	if q.ResponseFormat, err = decodeResponseFormat(m["response_format"], "response_format"); err != nil {
		return nil, err
	}
	return req, nil
}

// roles are the message roles a conversation may have.
var roles = []string{"system", "developer", "user", "assistant", "tool"}

// decodeMessages reads and checks the conversation.
func decodeMessages(raw json.RawMessage) ([]core.Message, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, badRequest("messages", "messages: required: the conversation, at least one message")
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, badRequest("messages", "messages: want an array of messages")
	}
	if len(items) == 0 {
		return nil, badRequest("messages", "messages: want at least one message")
	}
	if len(items) > maxMessages {
		return nil, badRequest("messages", "messages: at most %d messages, got %d", maxMessages, len(items))
	}
	out := make([]core.Message, len(items))
	for i, item := range items {
		at := fmt.Sprintf("messages[%d]", i)
		var shape struct {
			Role    *string         `json:"role"`
			Content json.RawMessage `json:"content"`
		}
		if err := json.Unmarshal(item, &shape); err != nil {
			return nil, badRequest(at, "%s: want a message object: %v", at, err)
		}
		if shape.Role == nil {
			return nil, badRequest(at+".role", "%s.role: required (one of %s)", at, strings.Join(roles, ", "))
		}
		if !slices.Contains(roles, *shape.Role) {
			return nil, badRequest(at+".role", "%s.role: %q is not one of %s", at, *shape.Role, strings.Join(roles, ", "))
		}
		if c := bytes.TrimSpace(shape.Content); len(c) > 0 && c[0] != '"' && c[0] != '[' && string(c) != "null" {
			return nil, badRequest(at+".content", "%s.content: want a string or an array of content parts", at)
		}
		if err := json.Unmarshal(item, &out[i]); err != nil {
			return nil, badRequest(at+".content", "%s.%v", at, err)
		}
		msg := &out[i]
		switch {
		case msg.Role == core.RoleTool && msg.ToolCallID == "":
			return nil, badRequest(at+".tool_call_id", "%s.tool_call_id: required on a tool message: the id of the call it answers", at)
		case msg.Role != core.RoleAssistant && len(msg.ToolCalls) > 0:
			return nil, badRequest(at+".tool_calls", "%s.tool_calls: only an assistant message has tool calls", at)
		case msg.Role != core.RoleAssistant && len(bytes.TrimSpace(shape.Content)) == 0:
			return nil, badRequest(at+".content", "%s.content: required on a %s message", at, msg.Role)
		}
		for j, tc := range msg.ToolCalls {
			ca := fmt.Sprintf("%s.tool_calls[%d]", at, j)
			switch {
			case tc.ID == "":
				return nil, badRequest(ca+".id", "%s.id: required", ca)
			case tc.Type != "" && tc.Type != "function":
				return nil, badRequest(ca+".type", "%s.type: only function calls are supported", ca)
			case tc.Function.Name == "":
				return nil, badRequest(ca+".function.name", "%s.function.name: required", ca)
			}
			msg.ToolCalls[j].Type = "function"
		}
	}
	return out, nil
}

// decodeStop reads stop: a string or up to four strings.
func decodeStop(raw json.RawMessage, dst *core.StopList) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return badRequest("stop", "stop: want a string or an array of strings")
	}
	if len(*dst) > maxStops {
		return badRequest("stop", "stop: at most %d sequences, got %d", maxStops, len(*dst))
	}
	return nil
}

// decodeTools reads the function tools of a Chat Completions request.
func decodeTools(raw json.RawMessage) ([]core.Tool, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var tools []struct {
		Type     string           `json:"type"`
		Function *json.RawMessage `json:"function"`
	}
	if err := json.Unmarshal(raw, &tools); err != nil {
		return nil, badRequest("tools", "tools: want an array of {type: function, function: {...}}")
	}
	if len(tools) > maxTools {
		return nil, badRequest("tools", "tools: at most %d tools, got %d", maxTools, len(tools))
	}
	out := make([]core.Tool, 0, len(tools))
	for i, t := range tools {
		at := fmt.Sprintf("tools[%d]", i)
		if t.Type != "function" {
			return nil, badRequest(at+".type", "%s.type: only function tools are supported, got %q", at, t.Type)
		}
		if t.Function == nil {
			return nil, badRequest(at+".function", "%s.function: required", at)
		}
		f, err := decodeFunction(*t.Function, at+".function")
		if err != nil {
			return nil, err
		}
		out = append(out, core.Tool{Type: "function", Function: f})
	}
	return out, nil
}

// decodeFunction reads a function definition: name, description and a
// JSON Schema of its parameters (strict is accepted).
func decodeFunction(raw json.RawMessage, at string) (core.ToolFunction, error) {
	var f struct {
		Name        string         `json:"name"`
		Description string         `json:"description"`
		Parameters  map[string]any `json:"parameters"`
		Strict      *bool          `json:"strict"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return core.ToolFunction{}, badRequest(at, "%s: %v", at, err)
	}
	if !toolName.MatchString(f.Name) {
		return core.ToolFunction{}, badRequest(at+".name", "%s.name: %q: want 1 to 64 letters, digits, _ or -", at, f.Name)
	}
	return core.ToolFunction{Name: f.Name, Description: f.Description, Parameters: f.Parameters}, nil
}

// decodeToolChoice reads tool_choice: "none", "auto", "required" or an
// object naming one of the tools. shape is "function" for Chat
// Completions ({type, function: {name}}) and "responses" for the
// Responses API ({type, name}).
func decodeToolChoice(raw json.RawMessage, tools []core.Tool, shape string) (any, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if !slices.Contains([]string{"none", "auto", "required"}, s) {
			return nil, badRequest("tool_choice", "tool_choice: %q is not none, auto, required or a function", s)
		}
		if s == "required" && len(tools) == 0 {
			return nil, badRequest("tool_choice", "tool_choice: required needs tools")
		}
		return s, nil
	}
	var o struct {
		Type     string `json:"type"`
		Name     string `json:"name"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &o); err != nil || o.Type != "function" {
		return nil, badRequest("tool_choice", "tool_choice: want none, auto, required or {\"type\": \"function\", ...}")
	}
	name := o.Function.Name
	if shape == "responses" {
		name = o.Name
	}
	if !slices.ContainsFunc(tools, func(t core.Tool) bool { return t.Function.Name == name }) {
		return nil, badRequest("tool_choice", "tool_choice: no tool is named %q", name)
	}
	// The backends speak Chat Completions: pass the Chat Completions form.
	return map[string]any{"type": "function", "function": map[string]any{"name": name}}, nil
}

// decodeResponseFormat reads a response format: {type: text}, {type:
// json_object} or {type: json_schema, json_schema: {name, schema, ...}}.
func decodeResponseFormat(raw json.RawMessage, param string) (*core.ResponseFormat, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var rf core.ResponseFormat
	if err := json.Unmarshal(raw, &rf); err != nil {
		return nil, badRequest(param, "%s: %v", param, err)
	}
	switch rf.Type {
	case "text":
		return nil, nil
	case "json_object":
		return &rf, nil
	case "json_schema":
		if rf.JSONSchema == nil || rf.JSONSchema.Name == "" {
			return nil, badRequest(param+".json_schema", "%s.json_schema: required, with a name and a schema", param)
		}
		return &rf, nil
	}
	return nil, badRequest(param+".type", "%s.type: %q is not text, json_object or json_schema", param, rf.Type)
}

// chatRequestOf turns a decoded request into the router's.
func chatRequestOf(q *core.OpenAIChatRequest) core.ChatRequest {
	return core.ChatRequest{
		Select:   core.ModelSelector{Models: []string{q.Model}},
		Messages: q.Messages,
		Tools:    q.Tools,
		Options:  q.Options(),
	}
}
