package hooks

import (
	"context"

	"github.com/stepwise-run/stepwise/core"
)

// funcHook is a local hook with a single tool of the hook's own name.
type funcHook struct {
	tool core.Tool
	call func(ctx context.Context, call core.HookCall) (core.Value, error)
}

func (h *funcHook) Name() string { return h.tool.Function.Name }

func (h *funcHook) Tools(context.Context) ([]core.Tool, error) { return []core.Tool{h.tool}, nil }

func (h *funcHook) Call(ctx context.Context, call core.HookCall) (core.Value, error) {
	return h.call(ctx, call)
}

// Echo returns the echo hook. A string comes back as it went in; a chat
// history gets an assistant message "Echo: <last user message>"; a model's
// tool call {"text": "..."} comes back as its text.
func Echo() Hook {
	return &funcHook{
		tool: oneStringTool("echo", "Returns the given text unchanged.", "text", "The text to return."),
		call: func(_ context.Context, call core.HookCall) (core.Value, error) {
			switch in := call.Input.Data.(type) {
			case core.ChatHistory:
				h := in.Clone()
				last := ""
				for i := len(h.Messages) - 1; i >= 0; i-- {
					if h.Messages[i].Role == core.RoleUser {
						last = h.Messages[i].Content
						break
					}
				}
				h.Messages = append(h.Messages, core.Message{Role: core.RoleAssistant, Content: "Echo: " + last})
				return core.Value{Type: core.TypeChatHistory, Data: h}, nil
			case map[string]any:
				for _, k := range []string{"text", "message", "input"} {
					if s, ok := in[k].(string); ok {
						return core.String(s), nil
					}
				}
			}
			return core.String(call.Input.Display()), nil
		},
	}
}

// Print returns the print hook: it returns the message given in the task's
// args (or the model's "message" argument); given a chat history it
// appends the message to it as a system message.
func Print() Hook {
	return &funcHook{
		tool: oneStringTool("print", "Prints a message and returns it.", "message", "The message to print."),
		call: func(_ context.Context, call core.HookCall) (core.Value, error) {
			msg, ok := call.Args["message"]
			if m, isMap := call.Input.Data.(map[string]any); isMap && !ok {
				msg, ok = m["message"].(string)
			}
			if !ok {
				return core.Value{}, core.Errorf(core.EINVALID, "print needs a message (hook.args.message)")
			}
			if h, isHist := call.Input.Data.(core.ChatHistory); isHist {
				h = h.Clone()
				h.Messages = append(h.Messages, core.Message{Role: core.RoleSystem, Content: msg})
				return core.Value{Type: core.TypeChatHistory, Data: h}, nil
			}
			return core.String(msg), nil
		},
	}
}

// oneStringTool describes a tool taking one required string argument.
func oneStringTool(name, description, param, paramDescription string) core.Tool {
	return core.Tool{Type: "function", Function: core.ToolFunction{
		Name:        name,
		Description: description,
		Parameters: map[string]any{
			"type":       "object",
			"properties": map[string]any{param: map[string]any{"type": "string", "description": paramDescription}},
			"required":   []any{param},
		},
	}}
}
