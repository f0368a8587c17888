package openai

import (
	"encoding/json"
	"strings"

	goopenai "github.com/sashabaranov/go-openai"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm/internal/wire"
)

// toMessages converts core messages to the wire format. core keeps messages
// in OpenAI's own shape, so nothing is lost: tool calls keep their ids and
// JSON text arguments, tool results their tool_call_id. A tool result goes
// out without a name: OpenAI's schema has none on tool messages (the id
// ties it to its call), and strict compatible servers reject one.
func toMessages(msgs []core.Message) []goopenai.ChatCompletionMessage {
	out := make([]goopenai.ChatCompletionMessage, 0, len(msgs))
	for _, m := range msgs {
		om := goopenai.ChatCompletionMessage{
			Role:       m.Role,
			Content:    m.Content,
			Name:       m.Name,
			ToolCallID: m.ToolCallID,
		}
		if m.Role == core.RoleTool {
			om.Name = ""
		}
		if m.Parts != nil {
			om.Content = ""
			for _, p := range m.Parts {
				part := goopenai.ChatMessagePart{Type: goopenai.ChatMessagePartType(p.Type), Text: p.Text}
				if p.ImageURL != nil {
					part.ImageURL = &goopenai.ChatMessageImageURL{URL: p.ImageURL.URL, Detail: goopenai.ImageURLDetail(p.ImageURL.Detail)}
				}
				om.MultiContent = append(om.MultiContent, part)
			}
		}
		for _, tc := range m.ToolCalls {
			typ := goopenai.ToolType(tc.Type)
			if typ == "" {
				typ = goopenai.ToolTypeFunction
			}
			args := tc.Function.Arguments
			if strings.TrimSpace(args) == "" {
				// The API wants a JSON text; go-openai would omit an
				// empty one, which strict servers reject.
				args = "{}"
			}
			om.ToolCalls = append(om.ToolCalls, goopenai.ToolCall{
				ID:       tc.ID,
				Type:     typ,
				Function: goopenai.FunctionCall{Name: tc.Function.Name, Arguments: args},
			})
		}
		out = append(out, om)
	}
	return out
}

// toTools converts tool descriptions; the JSON Schema parameters are passed
// through as they are.
func toTools(tools []core.Tool) []goopenai.Tool {
	if len(tools) == 0 {
		return nil
	}
	out := make([]goopenai.Tool, 0, len(tools))
	for _, t := range tools {
		typ := goopenai.ToolType(t.Type)
		if typ == "" {
			typ = goopenai.ToolTypeFunction
		}
		var params any = t.Function.Parameters
		if t.Function.Parameters == nil {
			// "parameters": null is refused by some servers; an empty
			// object schema means the same thing.
			params = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		out = append(out, goopenai.Tool{
			Type: typ,
			Function: &goopenai.FunctionDefinition{
				Name:        t.Function.Name,
				Description: t.Function.Description,
				Parameters:  params,
			},
		})
	}
	return out
}

// toolCalls assembles tool calls from stream deltas. A call's id, type and
// name arrive in its first delta and its arguments in pieces after; deltas
// are tied to their call by index. Servers that leave the index out (some
// send each call whole in one delta) are handled by id, and a delta with
// neither continues the latest call.
type toolCalls struct {
	calls []core.ToolCall
	index map[int]int // stream index → position in calls
}

// add folds one delta into the calls and returns it as core passes it on:
// indexed by the call's position in the answer, with the call's id and
// name in its first piece. pos is the delta's position in its chunk, used
// only when the server gives neither index nor id; messages is the
// conversation's length, for the id of a call that comes without one.
func (t *toolCalls) add(pos int, d goopenai.ToolCall, messages int) core.ToolCallDelta {
	at := -1
	switch {
	case d.Index != nil:
		if i, ok := t.index[*d.Index]; ok {
			at = i
		} else {
			if t.index == nil {
				t.index = map[int]int{}
			}
			t.index[*d.Index] = len(t.calls)
		}
	case d.ID != "":
		for i, c := range t.calls {
			if c.ID == d.ID {
				at = i
			}
		}
	case len(t.calls) > 0 && pos == 0:
		at = len(t.calls) - 1
	}
	first := at < 0
	if first {
		t.calls = append(t.calls, core.ToolCall{})
		at = len(t.calls) - 1
	}
	c := &t.calls[at]
	if d.ID != "" && c.ID == "" {
		c.ID = d.ID
	}
	if first && c.ID == "" {
		// A lax server's call gets its id now, so that the first piece
		// passed on carries it.
		c.ID = wire.CallID(messages, at)
	}
	if d.Type != "" && c.Type == "" {
		c.Type = string(d.Type)
	}
	out := core.ToolCallDelta{Index: at, Arguments: d.Function.Arguments}
	if d.Function.Name != "" && c.Function.Name == "" {
		c.Function.Name = d.Function.Name
		out.Name = c.Function.Name
	}
	if first {
		out.ID = c.ID
	}
	c.Function.Arguments += d.Function.Arguments
	return out
}

// result returns the assembled calls, filling what a lax server left out: a
// type, empty arguments as "{}", and an id (deterministic and unique within
// the conversation) so that the tool result can be tied to its call.
func (t *toolCalls) result(messages int) []core.ToolCall {
	for i := range t.calls {
		c := &t.calls[i]
		if c.ID == "" {
			c.ID = wire.CallID(messages, i)
		}
		if c.Type == "" {
			c.Type = "function"
		}
		if strings.TrimSpace(c.Function.Arguments) == "" {
			c.Function.Arguments = "{}"
		}
	}
	return t.calls
}
