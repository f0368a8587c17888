package ollama

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ollama/ollama/api"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm/internal/wire"
)

// toMessages converts core messages to Ollama's. Everything Ollama can carry
// is kept: tool calls with their ids and arguments (a JSON text in core, an
// object for Ollama), the id a tool result answers, and the tool's name,
// which Ollama wants on a tool result and which core may leave to be found
// from the call.
func toMessages(msgs []core.Message) ([]api.Message, error) {
	out := make([]api.Message, 0, len(msgs))
	for i, m := range msgs {
		am := api.Message{Role: m.Role, Content: m.Content, ToolCallID: m.ToolCallID}
		if m.Role == "developer" {
			am.Role = core.RoleSystem // Ollama's templates know system only
		}
		for j, p := range m.Parts {
			if p.Type != "image_url" {
				continue
			}
			img, err := imageData(p.ImageURL.URL)
			if err != nil {
				return nil, fmt.Errorf("message %d, content part %d: %w", i, j, err)
			}
			am.Images = append(am.Images, img)
		}
		if m.Role == core.RoleTool {
			am.ToolName = wire.ToolName(msgs, i)
		}
		for j, tc := range m.ToolCalls {
			args, err := toArguments(tc.Function.Arguments)
			if err != nil {
				return nil, fmt.Errorf("message %d, tool call %q: %w", i, tc.Function.Name, err)
			}
			am.ToolCalls = append(am.ToolCalls, api.ToolCall{
				ID:       tc.ID,
				Function: api.ToolCallFunction{Index: j, Name: tc.Function.Name, Arguments: args},
			})
		}
		out = append(out, am)
	}
	return out, nil
}

// toArguments parses a tool call's JSON text arguments into Ollama's
// ordered object, keeping the order of the keys. An empty text is an empty
// object; anything but a JSON object is an error, since Ollama has no way
// to carry it.
func toArguments(text string) (api.ToolCallFunctionArguments, error) {
	trimmed := bytes.TrimSpace([]byte(text))
	if len(trimmed) == 0 {
		return api.NewToolCallFunctionArguments(), nil
	}
	if trimmed[0] != '{' || !json.Valid(trimmed) {
		return api.ToolCallFunctionArguments{}, fmt.Errorf("arguments are not a JSON object: %.80q", text)
	}
	var args api.ToolCallFunctionArguments
	if err := args.UnmarshalJSON(trimmed); err != nil {
		return api.ToolCallFunctionArguments{}, fmt.Errorf("arguments: %w", err)
	}
	return args, nil
}

// fromToolCall converts a tool call of the answer to core's form. Ollama
// servers before tool-call ids existed, and some models, give no id; one
// is made from the conversation length and the call's position so that the
// tool result can still be tied to its call.
func fromToolCall(tc api.ToolCall, messages, index int) core.ToolCall {
	id := tc.ID
	if id == "" {
		id = wire.CallID(messages, index)
	}
	args, err := tc.Function.Arguments.MarshalJSON()
	if err != nil || len(args) == 0 {
		// Marshaling decoded JSON cannot fail; an empty object is the
		// faithful reading of "no arguments".
		args = []byte("{}")
	}
	return core.ToolCall{
		ID:       id,
		Type:     "function",
		Function: core.ToolCallFunction{Name: tc.Function.Name, Arguments: string(args)},
	}
}

// toTools converts tool descriptions. The JSON Schema parameters go through
// JSON because that is exactly how Ollama reads them off the wire; the
// schema keywords Ollama's struct does not model are dropped, as the server
// would drop them too.
func toTools(tools []core.Tool) (api.Tools, error) {
	if len(tools) == 0 {
		return nil, nil
	}
	out := make(api.Tools, 0, len(tools))
	for _, t := range tools {
		typ := t.Type
		if typ == "" {
			typ = "function"
		}
		params := api.ToolFunctionParameters{Type: "object"}
		if t.Function.Parameters != nil {
			b, err := json.Marshal(t.Function.Parameters)
			if err != nil {
				return nil, fmt.Errorf("tool %q parameters: %w", t.Function.Name, err)
			}
			if err := json.Unmarshal(b, &params); err != nil {
				return nil, fmt.Errorf("tool %q parameters: %w", t.Function.Name, err)
			}
			if params.Type == "" {
				params.Type = "object"
			}
		}
		if params.Properties == nil {
			// Ollama's server expects an object here, never null.
			params.Properties = api.NewToolPropertiesMap()
		}
		out = append(out, api.Tool{
			Type: typ,
			Function: api.ToolFunction{
				Name:        t.Function.Name,
				Description: t.Function.Description,
				Parameters:  params,
			},
		})
	}
	return out, nil
}

// imageData decodes an image given as a data: URL (base64), which is all
// Ollama can take: it has no way to fetch an image from a URL.
func imageData(u string) (api.ImageData, error) {
	rest, ok := strings.CutPrefix(u, "data:")
	if !ok {
		return nil, fmt.Errorf("ollama takes images as data: URLs (base64), not %.40q", u)
	}
	_, data, ok := strings.Cut(rest, ";base64,")
	if !ok {
		return nil, fmt.Errorf("an image data: URL must be base64 (data:image/png;base64,...)")
	}
	img, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return nil, fmt.Errorf("image data: %w", err)
	}
	return img, nil
}

// noTools reports whether a tool_choice forbids tool calls. Ollama has no
// tool_choice, so "none" is honoured by offering no tools; "required" and
// a named function cannot be forced and leave the choice to the model.
func noTools(choice any) bool {
	s, ok := choice.(string)
	return ok && s == "none"
}

// format is Ollama's format for a response format: "json" for
// json_object, the schema itself for json_schema, nothing for text.
func format(rf *core.ResponseFormat) json.RawMessage {
	switch {
	case rf == nil:
		return nil
	case rf.Type == "json_object":
		return json.RawMessage(`"json"`)
	case rf.Type == "json_schema" && rf.JSONSchema != nil && rf.JSONSchema.Schema != nil:
		b, err := json.Marshal(rf.JSONSchema.Schema)
		if err != nil {
			return json.RawMessage(`"json"`)
		}
		return b
	case rf.Type == "json_schema":
		return json.RawMessage(`"json"`)
	}
	return nil
}

// think is Ollama's think level for a reasoning effort, nil for the
// model's default.
func think(effort string) *api.ThinkValue {
	switch effort {
	case "low", "medium", "high":
		return &api.ThinkValue{Value: effort}
	}
	return nil
}

// options returns the sampling options that are set, leaving the rest to
// the model's defaults. Ollama takes them as a loose map, so a temperature
// of 0 is sent as 0.
func options(o core.GenOptions) map[string]any {
	m := map[string]any{}
	if o.Temperature != nil {
		m["temperature"] = *o.Temperature
	}
	if o.TopP != nil {
		m["top_p"] = *o.TopP
	}
	if o.MaxTokens > 0 {
		m["num_predict"] = o.MaxTokens
	}
	if len(o.Stop) > 0 {
		m["stop"] = o.Stop
	}
	if o.Seed != nil {
		m["seed"] = *o.Seed
	}
	if o.PresencePenalty != nil {
		m["presence_penalty"] = *o.PresencePenalty
	}
	if o.FrequencyPenalty != nil {
		m["frequency_penalty"] = *o.FrequencyPenalty
	}
	if len(m) == 0 {
		return nil
	}
	return m
}
