package core

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// Eval values of chat_completion. The reference's later generation spells
// the first one tool_call, which matches too.
const (
	EvalToolCall      = "tool-call"
	evalToolCallAlias = "tool_call"
	EvalExecuted      = "executed"
)

// maxToolResult bounds the text of one tool result handed back to a model.
const maxToolResult = 32 << 10

// runChatCompletion continues a chat history with a model, offering the
// tools of the task's hooks (and the client's tools with
// pass_clients_tools), and appends the model's answer.
func runChatCompletion(ctx context.Context, r *stepRun, in Value) (result, error) {
	if err := r.needLLM(); err != nil {
		return result{}, err
	}
	hist, req, err := historyOf(in)
	if err != nil {
		return result{}, err
	}
	system, err := r.macros.expandMacros(ctx, r.task.SystemInstruction, false)
	if err != nil {
		return result{}, err
	}
	if system != "" && !(len(hist.Messages) > 0 && hist.Messages[0].Role == RoleSystem && hist.Messages[0].Content == system) {
		hist.Messages = append([]Message{{Role: RoleSystem, Content: system}}, hist.Messages...)
	}
	tokens := historyTokens(hist)
	if err := r.checkTokenLimit(tokens, "the chat history"); err != nil {
		return result{}, err
	}
	sel, opts := r.selector(tokens)
	if req != nil {
		// The client's request fills in what the task leaves open.
		if len(sel.Models) == 0 && req.Model != "" {
			sel.Models = []string{req.Model}
		}
		opts = opts.Under(req.Options())
	}
	tools, clientTools, err := r.offeredTools(ctx, req)
	if err != nil {
		return result{}, err
	}
	if err := r.admitModel(ctx); err != nil {
		return result{}, err
	}
	c, err := r.e.llm.Chat(ctx, ChatRequest{Tenant: r.ex.Tenant, Select: sel, Messages: hist.Messages, Tools: tools, Options: opts}, r.delta)
	if err != nil {
		return result{usage: c.Usage}, err
	}
	msg := c.Message
	msg.Role = RoleAssistant
	hist.Messages = append(hist.Messages, msg)
	hist.Model = c.Usage.Model
	hist.InputTokens += c.Usage.TokensIn
	hist.OutputTokens += c.Usage.TokensOut
	res := result{output: Value{Type: TypeChatHistory, Data: hist}, eval: EvalExecuted, usage: c.Usage}
	if len(msg.ToolCalls) > 0 {
		res.eval, res.aliases = EvalToolCall, []string{evalToolCallAlias}
	}
	var forClient []ToolCall
	for _, call := range msg.ToolCalls {
		if clientTools[call.Function.Name] {
			forClient = append(forClient, call)
		}
	}
	if len(forClient) > 0 {
		// Only the client can run these: wait for their results.
		res.wait = &Waiting{Kind: WaitClientTools, ToolCalls: forClient}
	}
	return res, nil
}

// historyOf views a chat_completion input as a history it may extend. A
// prompt-able scalar starts a history with it as the user message. For an
// openai_chat input the request is returned too.
func historyOf(in Value) (ChatHistory, *OpenAIChatRequest, error) {
	switch d := in.Data.(type) {
	case ChatHistory:
		return d.Clone(), nil, nil
	case OpenAIChatRequest:
		return d.History(), &d, nil
	}
	text, err := in.Text()
	if err != nil {
		return ChatHistory{}, nil, Errorf(EINVALID, "chat_completion needs a chat_history, openai_chat or text input, got %s", in.Type)
	}
	return ChatHistory{Messages: []Message{{Role: RoleUser, Content: text}}}, nil, nil
}

func historyTokens(h ChatHistory) int {
	n := 0
	for _, m := range h.Messages {
		n += estimateTokens(m.Content) + 4
		for _, tc := range m.ToolCalls {
			n += estimateTokens(tc.Function.Name) + estimateTokens(tc.Function.Arguments)
		}
	}
	return n
}

// hookTool is one tool of a hook under the name a model sees.
type hookTool struct {
	hook, tool string
	def        Tool
}

var invalidToolName = regexp.MustCompile(`[^a-zA-Z0-9_-]`)

// exposedName is the name a model sees for a hook's tool: the tool's own
// name when it is the hook's name (echo, print), else hook_tool. Names are
// kept to what OpenAI accepts (^[a-zA-Z0-9_-]{1,64}$).
func exposedName(hook, tool string) string {
	name := tool
	if tool != hook {
		name = hook + "_" + tool
	}
	name = invalidToolName.ReplaceAllString(name, "_")
	if len(name) > 64 {
		// A hash of the whole name ends the cut one, so that two long
		// names sharing their first 55 characters stay apart.
		sum := sha256.Sum256([]byte(name))
		name = name[:55] + "_" + hex.EncodeToString(sum[:4])
	}
	return name
}

// hookTools lists the tools of the given hooks under their exposed names.
func (r *stepRun) hookTools(ctx context.Context, hooks []string) ([]hookTool, error) {
	if len(hooks) == 0 {
		return nil, nil
	}
	if r.e.tools == nil {
		return nil, Errorf(EUNAVAILABLE, "task %q names hooks, and no hooks are configured", r.task.ID)
	}
	var out []hookTool
	seen := map[string]string{}
	for _, h := range hooks {
		tools, err := r.e.tools.ToolsOf(ctx, r.ex.Tenant, h)
		if err != nil {
			return nil, err
		}
		for _, t := range tools {
			name := exposedName(h, t.Function.Name)
			if prev, dup := seen[name]; dup {
				return nil, Errorf(EINVALID, "hooks %q and %q both expose a tool named %q", prev, h, name)
			}
			seen[name] = h
			def := t
			def.Type = "function"
			def.Function.Name = name
			out = append(out, hookTool{hook: h, tool: t.Function.Name, def: def})
		}
	}
	return out, nil
}

// offeredTools is what chat_completion offers: the hooks' tools and, with
// pass_clients_tools, the client's, minus hide_tools (which applies to
// every tool, by exposed or original name). It also returns the names of
// the client's tools offered: a call of one of them is for the client to
// run. A hook tool wins over a client tool of the same name.
func (r *stepRun) offeredTools(ctx context.Context, req *OpenAIChatRequest) ([]Tool, map[string]bool, error) {
	ec := r.task.ExecuteConfig
	if ec == nil {
		return nil, nil, nil
	}
	hts, err := r.visibleHookTools(ctx, ec)
	if err != nil {
		return nil, nil, err
	}
	var tools []Tool
	ours := map[string]bool{}
	for _, ht := range hts {
		tools = append(tools, ht.def)
		ours[ht.def.Function.Name] = true
	}
	clients := map[string]bool{}
	if ec.PassClientsTools {
		for _, t := range r.clientTools(req) {
			if name := t.Function.Name; !hidden(ec, name) && !ours[name] {
				tools = append(tools, t)
				clients[name] = true
			}
		}
	}
	return tools, clients, nil
}

// clientTools are the tools of the client's request: the task's
// openai_chat input, or else the execution's, so that the client's tools
// stay on offer in the turns of an agent loop after the first.
func (r *stepRun) clientTools(req *OpenAIChatRequest) []Tool {
	if req != nil {
		return req.Tools
	}
	if in, ok := r.ex.Input.Data.(OpenAIChatRequest); ok {
		return in.Tools
	}
	return nil
}

// visibleHookTools are the tools of ec's hooks that hide_tools leaves.
func (r *stepRun) visibleHookTools(ctx context.Context, ec *ExecuteConfig) ([]hookTool, error) {
	hts, err := r.hookTools(ctx, ec.Hooks)
	if err != nil {
		return nil, err
	}
	visible := hts[:0]
	for _, ht := range hts {
		if !hidden(ec, ht.def.Function.Name, ht.tool, ht.hook+"."+ht.tool) {
			visible = append(visible, ht)
		}
	}
	return visible, nil
}

// hidden reports whether hide_tools names any of a tool's names.
func hidden(ec *ExecuteConfig, names ...string) bool {
	for _, n := range names {
		if slices.Contains(ec.HideTools, n) {
			return true
		}
	}
	return false
}

// callableTools are the tools execute_tool_calls may run, by the names a
// model may call them: what the task's own execute_config offers, or else
// what any task of the chain offers a model. A tool hidden from the model
// is not callable either, whatever the model asks.
func (r *stepRun) callableTools(ctx context.Context) (map[string]hookTool, error) {
	configs := []*ExecuteConfig{r.task.ExecuteConfig}
	if ec := r.task.ExecuteConfig; ec == nil || len(ec.Hooks) == 0 {
		configs = configs[:0]
		for _, t := range r.ex.Chain.Tasks {
			if t.ExecuteConfig != nil && len(t.ExecuteConfig.Hooks) > 0 {
				configs = append(configs, t.ExecuteConfig)
			}
		}
	}
	byName := map[string]hookTool{}
	for _, ec := range configs {
		hts, err := r.visibleHookTools(ctx, ec)
		if err != nil {
			return nil, err
		}
		for _, ht := range hts {
			byName[ht.def.Function.Name] = ht
			byName[ht.hook+"."+ht.tool] = ht // the reference's spelling
		}
	}
	return byName, nil
}

// Eval values of execute_tool_calls.
const (
	EvalNoOp          = "no_op"
	EvalNoCallsFound  = "no_calls_found"
	EvalToolsExecuted = "tools_executed"
	EvalFailed        = "failed"
)

// runExecuteToolCalls runs the tool calls of the history's last assistant
// message that no tool message after it answers yet (the client may have
// answered its own, see pendingCalls), and appends one tool message per
// call. A failing call becomes an error
// message the model can read; a call of an unknown tool too, unless it is
// one of the client's tools (pass_clients_tools), which is left for the
// client.
func runExecuteToolCalls(ctx context.Context, r *stepRun, in Value) (result, error) {
	hist, req, err := historyOf(in)
	if err != nil || in.Type == TypeString {
		return result{}, Errorf(EINVALID, "execute_tool_calls needs a chat_history input, got %s", in.Type)
	}
	if len(hist.Messages) == 0 {
		return result{output: Value{Type: TypeChatHistory, Data: hist}, eval: EvalNoOp}, nil
	}
	calls := pendingCalls(hist)
	byName, err := r.callableTools(ctx)
	if err != nil {
		return result{}, err
	}
	clientTools := map[string]bool{}
	for _, t := range r.clientTools(req) {
		clientTools[t.Function.Name] = true
	}
	var args map[string]string
	if r.task.Hook != nil {
		args = r.task.Hook.Args
	}
	executed, failed := 0, 0
	for i, call := range calls {
		ht, ok := byName[call.Function.Name]
		if !ok && clientTools[call.Function.Name] {
			continue
		}
		content, callErr := "", error(nil)
		if !ok {
			callErr = Errorf(ENOTFOUND, "there is no tool named %q", call.Function.Name)
		} else {
			content, callErr = r.callTool(ctx, ht, call, args, i+1)
		}
		executed++
		if callErr != nil {
			failed++
			content = fmt.Sprintf("tool %s execution failed: %v", call.Function.Name, callErr)
		}
		hist.Messages = append(hist.Messages, Message{Role: RoleTool, Content: content, ToolCallID: call.ID, Name: call.Function.Name})
	}
	eval := EvalToolsExecuted
	switch {
	case executed == 0:
		eval = EvalNoCallsFound
	case failed == executed:
		eval = EvalFailed
	}
	return result{output: Value{Type: TypeChatHistory, Data: hist}, eval: eval}, nil
}

// pendingCalls returns the tool calls of the history's last assistant
// message that the tool messages after it do not answer: after a client
// answered its own tools' calls, the hooks' calls of the same message are
// still to run. A tool message answers the call its tool_call_id names,
// or, for calls without an id (some backends give none), one call of its
// name.
func pendingCalls(h ChatHistory) []ToolCall {
	answered := map[string]int{}
	i := len(h.Messages) - 1
	for ; i >= 0 && h.Messages[i].Role == RoleTool; i-- {
		answered[answerKey(h.Messages[i].ToolCallID, h.Messages[i].Name)]++
	}
	if i < 0 {
		return nil
	}
	var out []ToolCall
	for _, c := range h.Messages[i].ToolCalls {
		if k := answerKey(c.ID, c.Function.Name); answered[k] > 0 {
			answered[k]--
			continue
		}
		out = append(out, c)
	}
	return out
}

// answerKey ties a tool call and its result: by id, else by tool name.
func answerKey(id, name string) string {
	if id != "" {
		return "id:" + id
	}
	return "name:" + name
}

// callTool runs one model tool call with its JSON arguments as input.
func (r *stepRun) callTool(ctx context.Context, ht hookTool, call ToolCall, args map[string]string, n int) (string, error) {
	input := Value{Type: TypeJSON, Data: map[string]any{}}
	if a := strings.TrimSpace(call.Function.Arguments); a != "" {
		v, err := decodeJSON([]byte(a))
		if err != nil {
			return "", Errorf(EINVALID, "arguments are not valid JSON: %v", err)
		}
		input.Data = v
	}
	out, err := r.e.tools.Call(ctx, HookCall{
		Tenant: r.ex.Tenant, Hook: ht.hook, Tool: ht.tool, Input: input, Args: args,
		IdempotencyKey: r.idempotencyKey(n),
	})
	r.e.failpoint(FailAfterHookBeforeRecord)
	if err != nil {
		return "", err
	}
	text := out.Display()
	if len(text) > maxToolResult {
		cut := maxToolResult
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut] + fmt.Sprintf("\n[truncated: the result was %d bytes]", len(text))
	}
	return text, nil
}

// idempotencyKey is the key of the n-th side-effecting call of this step.
func (r *stepRun) idempotencyKey(n int) string {
	return fmt.Sprintf("%s/%d/%d", r.ex.ID, r.index, n)
}

func runConvertToOpenAI(_ context.Context, r *stepRun, in Value) (result, error) {
	hist, ok := asHistory(in)
	if !ok {
		return result{}, Errorf(EINVALID, "convert_to_openai_chat_response needs a chat_history input, got %s", in.Type)
	}
	last := hist.Last()
	finish := "stop"
	if len(last.ToolCalls) > 0 {
		finish = "tool_calls"
	}
	var content *string
	if last.Content != "" || len(last.ToolCalls) == 0 {
		c := last.Content
		content = &c
	}
	resp := OpenAIChatResponse{
		ID:      fmt.Sprintf("chatcmpl-%s-%d", r.ex.ID, r.index),
		Object:  "chat.completion",
		Created: r.ex.CreatedAt.Unix(),
		Model:   hist.Model,
		Choices: []OpenAIChoice{{Index: 0, Message: OpenAIChoiceMessage{Role: RoleAssistant, Content: content, ToolCalls: last.ToolCalls}, FinishReason: finish}},
		Usage:   OpenAIUsage{PromptTokens: hist.InputTokens, CompletionTokens: hist.OutputTokens, TotalTokens: hist.InputTokens + hist.OutputTokens},
	}
	return result{output: Value{Type: TypeOpenAIChatResponse, Data: resp}, eval: "converted"}, nil
}

// runHook calls the task's hook with the task input and its static args.
func runHook(ctx context.Context, r *stepRun, in Value) (result, error) {
	if r.e.tools == nil {
		return result{}, Errorf(EUNAVAILABLE, "task %q calls hook %q, and no hooks are configured", r.task.ID, r.task.Hook.Name)
	}
	out, err := r.e.tools.Call(ctx, HookCall{
		Tenant: r.ex.Tenant, Hook: r.task.Hook.Name, Tool: r.task.Hook.ToolName, Input: in, Args: r.task.Hook.Args,
		IdempotencyKey: r.idempotencyKey(1),
	})
	r.e.failpoint(FailAfterHookBeforeRecord)
	if err != nil {
		return result{}, err
	}
	if out.Type == "" {
		out = Nil
	}
	return result{output: out, eval: "ok"}, nil
}
