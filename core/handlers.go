package core

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Handlers returns the canonical handler names, in documentation order.
func Handlers() []string {
	return []string{
		HandlerPromptToString, HandlerPromptToCondition, HandlerPromptToInt, HandlerPromptToFloat,
		HandlerPromptToRange, HandlerPromptToJS, HandlerTextToEmbedding, HandlerParseCommand,
		HandlerParseKeyValue, HandlerRaiseError, HandlerNoop, HandlerChatCompletion,
		HandlerExecuteToolCalls, HandlerConvertToOpenAI, HandlerHook, HandlerAwaitInput,
	}
}

// handlerFor returns the implementation of a canonical handler name.
func handlerFor(name string) (handlerFunc, bool) {
	switch name {
	case HandlerPromptToString:
		return runPromptToString, true
	case HandlerPromptToCondition:
		return runPromptToCondition, true
	case HandlerPromptToInt:
		return runPromptToInt, true
	case HandlerPromptToFloat:
		return runPromptToFloat, true
	case HandlerPromptToRange:
		return runPromptToRange, true
	case HandlerPromptToJS:
		return runPromptToJS, true
	case HandlerTextToEmbedding:
		return runTextToEmbedding, true
	case HandlerParseCommand:
		return runParseCommand, true
	case HandlerParseKeyValue:
		return runParseKeyValue, true
	case HandlerRaiseError:
		return runRaiseError, true
	case HandlerNoop:
		return runNoop, true
	case HandlerChatCompletion:
		return runChatCompletion, true
	case HandlerExecuteToolCalls:
		return runExecuteToolCalls, true
	case HandlerConvertToOpenAI:
		return runConvertToOpenAI, true
	case HandlerHook:
		return runHook, true
	case HandlerAwaitInput:
		return runAwaitInput, true
	}
	return nil, false
}

// selector builds the model selector and options of a task.
func (r *stepRun) selector(contextTokens int) (ModelSelector, GenOptions) {
	sel := ModelSelector{ContextTokens: contextTokens, Policy: r.ex.Chain.RoutingPolicy}
	var opts GenOptions
	if ec := r.task.ExecuteConfig; ec != nil {
		if ec.Model != "" {
			sel.Models = append(sel.Models, ec.Model)
		}
		sel.Models = append(sel.Models, ec.Models...)
		if ec.Provider != "" {
			sel.Providers = append(sel.Providers, ec.Provider)
		}
		sel.Providers = append(sel.Providers, ec.Providers...)
		opts = GenOptions{Temperature: ec.Temperature, TopP: ec.TopP, MaxTokens: ec.MaxTokens, Stop: ec.Stop}
	}
	return sel, opts
}

func (r *stepRun) needLLM() error {
	if r.e.llm == nil {
		return Errorf(EUNAVAILABLE, "handler %s needs a language model, and none is configured", r.task.Handler)
	}
	return nil
}

// prompt sends the input as a prompt with the task's system instruction
// and returns the trimmed reply.
func (r *stepRun) prompt(ctx context.Context, in Value) (string, Usage, error) {
	if err := r.needLLM(); err != nil {
		return "", Usage{}, err
	}
	text, err := in.Text()
	if err != nil {
		return "", Usage{}, err
	}
	system, err := r.macros.expandMacros(ctx, r.task.SystemInstruction, false)
	if err != nil {
		return "", Usage{}, err
	}
	tokens := estimateTokens(system) + estimateTokens(text)
	if err := r.checkTokenLimit(tokens, "the prompt"); err != nil {
		return "", Usage{}, err
	}
	sel, opts := r.selector(tokens)
	if err := r.admitModel(ctx); err != nil {
		return "", Usage{}, err
	}
	c, err := r.e.llm.Prompt(ctx, PromptRequest{Tenant: r.ex.Tenant, Select: sel, System: system, Prompt: text, Options: opts}, r.delta)
	if err != nil {
		return "", c.Usage, err
	}
	return strings.TrimSpace(c.Message.Content), c.Usage, nil
}

func runPromptToString(ctx context.Context, r *stepRun, in Value) (result, error) {
	reply, usage, err := r.prompt(ctx, in)
	if err != nil {
		return result{usage: usage}, err
	}
	return result{output: String(reply), eval: reply, usage: usage}, nil
}

// runPromptToCondition maps the model's answer onto a valid_conditions
// key. The eval is the key itself (so `when: "yes"` works); the mapped
// boolean's "true"/"false" also match.
func runPromptToCondition(ctx context.Context, r *stepRun, in Value) (result, error) {
	reply, usage, err := r.prompt(ctx, in)
	if err != nil {
		return result{usage: usage}, err
	}
	key, ok := matchCondition(reply, r.task.ValidConditions)
	if !ok {
		return result{usage: usage}, Errorf(EINVALID, "the model answered %q, which is none of the valid conditions %s", reply, strings.Join(keys(r.task.ValidConditions), ", "))
	}
	b := r.task.ValidConditions[key]
	return result{output: Value{Type: TypeBool, Data: b}, eval: key, aliases: []string{strconv.FormatBool(b)}, usage: usage}, nil
}

// matchCondition finds the condition key an answer means: an exact match,
// then a case-insensitive match ignoring quotes and punctuation around it,
// then the answer's first word.
func matchCondition(reply string, conds map[string]bool) (string, bool) {
	if _, ok := conds[reply]; ok {
		return reply, true
	}
	clean := strings.ToLower(strings.Trim(strings.TrimSpace(reply), " \t\r\n\"'`*.,!?:;()[]"))
	first := strings.FieldsFunc(clean, func(r rune) bool {
		return !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127)
	})
	for _, candidate := range []string{clean, firstOf(first)} {
		if candidate == "" {
			continue
		}
		var found []string
		for k := range conds {
			if strings.ToLower(k) == candidate {
				found = append(found, k)
			}
		}
		if len(found) == 1 {
			return found[0], true
		}
	}
	return "", false
}

func firstOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func runPromptToInt(ctx context.Context, r *stepRun, in Value) (result, error) {
	reply, usage, err := r.prompt(ctx, in)
	if err != nil {
		return result{usage: usage}, err
	}
	f, ok := parseNumber(reply)
	if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return result{usage: usage}, Errorf(EINVALID, "the model answered %q, which is not a whole number", reply)
	}
	n := int(f)
	return result{output: Value{Type: TypeInt, Data: n}, eval: strconv.Itoa(n), usage: usage}, nil
}

func runPromptToFloat(ctx context.Context, r *stepRun, in Value) (result, error) {
	reply, usage, err := r.prompt(ctx, in)
	if err != nil {
		return result{usage: usage}, err
	}
	f, ok := parseNumber(reply)
	if !ok {
		return result{usage: usage}, Errorf(EINVALID, "the model answered %q, which is not a number", reply)
	}
	return result{output: Value{Type: TypeFloat, Data: f}, eval: formatFloat(f), aliases: []string{fmt.Sprintf("%.2f", f)}, usage: usage}, nil
}

func runPromptToRange(ctx context.Context, r *stepRun, in Value) (result, error) {
	reply, usage, err := r.prompt(ctx, in)
	if err != nil {
		return result{usage: usage}, err
	}
	lo, hi, ok := parseRange(reply)
	if !ok {
		return result{usage: usage}, Errorf(EINVALID, "the model answered %q, which is not a range such as \"3-5\" or a number", reply)
	}
	s := formatFloat(lo) + "-" + formatFloat(hi)
	return result{output: String(s), eval: s, usage: usage}, nil
}

// runPromptToJS asks for code and strips the wrapping models like to add:
// Markdown fences and a {"code": ...} object.
func runPromptToJS(ctx context.Context, r *stepRun, in Value) (result, error) {
	reply, usage, err := r.prompt(ctx, in)
	if err != nil {
		return result{usage: usage}, err
	}
	code := extractCode(reply)
	eval := "ok"
	if strings.TrimSpace(code) == "" {
		eval = "empty_js"
	}
	return result{output: Value{Type: TypeJSON, Data: map[string]any{"code": code}}, eval: eval, usage: usage}, nil
}

func extractCode(reply string) string {
	s := strings.TrimSpace(reply)
	if strings.HasPrefix(s, "```") {
		s = s[3:]
		if nl := strings.IndexByte(s, '\n'); nl >= 0 {
			s = s[nl+1:] // drop the language tag line
		} else {
			s = ""
		}
		if end := strings.LastIndex(s, "```"); end >= 0 {
			s = s[:end]
		}
		s = strings.TrimSpace(s)
	}
	if strings.HasPrefix(s, "{") {
		var wrapped struct {
			Code *string `json:"code"`
		}
		if json.Unmarshal([]byte(s), &wrapped) == nil && wrapped.Code != nil {
			return *wrapped.Code
		}
	}
	return s
}

func runTextToEmbedding(ctx context.Context, r *stepRun, in Value) (result, error) {
	if err := r.needLLM(); err != nil {
		return result{}, err
	}
	text, err := in.Text()
	if err != nil {
		return result{}, err
	}
	tokens := estimateTokens(text)
	if err := r.checkTokenLimit(tokens, "the text to embed"); err != nil {
		return result{}, err
	}
	sel, _ := r.selector(tokens)
	if err := r.admitModel(ctx); err != nil {
		return result{}, err
	}
	emb, err := r.e.llm.Embed(ctx, EmbedRequest{Tenant: r.ex.Tenant, Select: sel, Text: text})
	if err != nil {
		return result{usage: emb.Usage}, err
	}
	return result{output: Value{Type: TypeVector, Data: emb.Vector}, eval: "ok", usage: emb.Usage}, nil
}

// runParseCommand reads a slash command: "/search cats" evaluates to
// "search", text without a leading slash to "pass", empty text to "".
func runParseCommand(_ context.Context, _ *stepRun, in Value) (result, error) {
	text, err := in.Text()
	if err != nil {
		return result{}, err
	}
	t := strings.TrimSpace(text)
	eval := "pass"
	switch {
	case t == "":
		eval = ""
	case strings.HasPrefix(t, "/"):
		if f := strings.Fields(t[1:]); len(f) > 0 {
			eval = f[0]
		}
	}
	return result{output: in, eval: eval}, nil
}

// runParseKeyValue turns "a=1, b: true; c=x" into {"a":1,"b":true,"c":"x"}.
// A json object input passes through with eval "already_json".
func runParseKeyValue(_ context.Context, _ *stepRun, in Value) (result, error) {
	if m, ok := in.Data.(map[string]any); ok {
		return result{output: Value{Type: TypeJSON, Data: m}, eval: "already_json"}, nil
	}
	text, err := in.Text()
	if err != nil {
		return result{}, err
	}
	if isJSONText(text) {
		if v, err := decodeJSON([]byte(text)); err == nil {
			if m, ok := v.(map[string]any); ok {
				return result{output: Value{Type: TypeJSON, Data: m}, eval: "already_json"}, nil
			}
		}
	}
	out := map[string]any{}
	for _, seg := range strings.FieldsFunc(text, func(r rune) bool { return r == ';' || r == '\n' || r == ',' }) {
		seg = strings.TrimSpace(seg)
		if seg == "" {
			continue
		}
		i := strings.IndexAny(seg, "=:")
		if i <= 0 {
			return result{}, Errorf(EINVALID, "%q is not a key=value (or key: value) pair", seg)
		}
		key := strings.TrimSpace(seg[:i])
		out[key] = typedScalar(strings.Trim(strings.TrimSpace(seg[i+1:]), `"'`))
	}
	return result{output: Value{Type: TypeJSON, Data: out}, eval: "parsed"}, nil
}

// typedScalar types a parsed value as int, float, bool or string.
func typedScalar(s string) any {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return f
	}
	if b, err := strconv.ParseBool(s); err == nil {
		return b
	}
	return s
}

func runRaiseError(_ context.Context, _ *stepRun, in Value) (result, error) {
	msg := in.Display()
	if strings.TrimSpace(msg) == "" || msg == "null" {
		msg = "raise_error"
	}
	return result{}, Errorf(EINVALID, "%s", msg)
}

// runAwaitInput pauses the execution until Engine.Resume brings a value,
// showing its input as what it waits for.
func runAwaitInput(_ context.Context, _ *stepRun, in Value) (result, error) {
	prompt := ""
	if in.Data != nil {
		prompt = in.Display()
	}
	return result{output: Nil, wait: &Waiting{Kind: WaitInput, Prompt: prompt}}, nil
}

func runNoop(_ context.Context, _ *stepRun, in Value) (result, error) {
	return result{output: in, eval: "noop"}, nil
}
