package core

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// chooseBranch returns the branch a task takes: the first non-default
// branch whose operator matches the eval (or one of its aliases), else the
// first default branch. A task without branches ends the chain (nil, nil).
func chooseBranch(tr *Transition, eval string, aliases []string) (*Branch, error) {
	if tr == nil || len(tr.Branches) == 0 {
		return nil, nil
	}
	candidates := append([]string{eval}, aliases...)
	for _, b := range tr.Branches {
		if b.Operator == OpDefault {
			continue
		}
		for _, c := range candidates {
			if opMatches(b.Operator, b.When, c) {
				return b, nil
			}
		}
	}
	for _, b := range tr.Branches {
		if b.Operator == OpDefault {
			return b, nil
		}
	}
	return nil, Errorf(EINVALID, "no transition matches %q and there is no default branch", eval)
}

// opMatches applies one operator to the eval value.
func opMatches(op, when, eval string) bool {
	switch op {
	case OpEquals:
		return eval == when
	case OpContains:
		return strings.Contains(eval, when)
	case OpStartsWith:
		return strings.HasPrefix(eval, when)
	case OpEndsWith:
		return strings.HasSuffix(eval, when)
	case OpGt, OpLt:
		a, ok1 := parseNumber(eval)
		b, ok2 := parseNumber(when)
		if !ok1 || !ok2 {
			return false
		}
		if op == OpGt {
			return a > b
		}
		return a < b
	case OpInRange:
		n, ok := parseNumber(eval)
		lo, hi, ok2 := parseRange(when)
		return ok && ok2 && n >= lo && n <= hi
	case OpDefault:
		return true
	}
	return false
}

var numberPattern = regexp.MustCompile(`[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?`)

// parseNumber takes the first number in s, ignoring quotes, spaces and
// surrounding words ("Score: 7/10" -> 7).
func parseNumber(s string) (float64, bool) {
	s = strings.NewReplacer(`"`, "", "'", "", ",", "").Replace(strings.TrimSpace(s))
	m := numberPattern.FindString(s)
	if m == "" {
		return 0, false
	}
	f, err := strconv.ParseFloat(m, 64)
	return f, err == nil
}

var rangePattern = regexp.MustCompile(`^\s*([-+]?\d+(?:\.\d+)?)\s*(?:-\s*([-+]?\d+(?:\.\d+)?))?\s*$`)

// parseRange reads "min-max" (negative bounds allowed: "-5--1") or a
// single number n, meaning n-n.
func parseRange(s string) (lo, hi float64, ok bool) {
	m := rangePattern.FindStringSubmatch(strings.Trim(strings.TrimSpace(s), `"'`))
	if m == nil {
		return 0, 0, false
	}
	lo, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, 0, false
	}
	hi = lo
	if m[2] != "" {
		if hi, err = strconv.ParseFloat(m[2], 64); err != nil {
			return 0, 0, false
		}
	}
	if hi < lo {
		lo, hi = hi, lo
	}
	return lo, hi, true
}

// composeValues merges a task's output with the variable named by a
// branch's compose. The result becomes the next task's input and the
// task's variable.
func composeValues(out, with Value, strategy string) (Value, error) {
	outHist, outIsHist := asHistory(out)
	withHist, withIsHist := asHistory(with)
	_, outIsStr := out.Data.(string)
	_, withIsStr := with.Data.(string)
	if strategy == "" {
		switch {
		case outIsHist && withIsHist:
			strategy = StrategyMergeChatHistorys
		case (outIsStr && withIsHist) || (outIsHist && withIsStr):
			strategy = StrategyAppendString
		default:
			strategy = StrategyOverride
		}
	}
	switch strategy {
	case StrategyOverride:
		om, outIsMap := out.Data.(map[string]any)
		wm, withIsMap := with.Data.(map[string]any)
		switch {
		case outIsMap && withIsMap:
			merged := make(map[string]any, len(om)+len(wm))
			for k, v := range wm {
				merged[k] = v
			}
			for k, v := range om {
				merged[k] = v
			}
			return Value{Type: TypeJSON, Data: merged}, nil
		case withIsMap && !outIsMap:
			return with, nil
		}
		return out, nil
	case StrategyAppendString:
		var h ChatHistory
		var text string
		switch {
		case outIsStr && withIsHist:
			h, text = withHist.Clone(), out.Data.(string)
		case outIsHist && withIsStr:
			h, text = outHist.Clone(), with.Data.(string)
		default:
			return Value{}, Errorf(EINVALID, "compose %s needs a string and a chat history, got %s and %s", strategy, out.Type, with.Type)
		}
		h.Messages = append(h.Messages, Message{Role: RoleAssistant, Content: text})
		return Value{Type: TypeChatHistory, Data: h}, nil
	case StrategyMergeChatHistorys:
		if !outIsHist || !withIsHist {
			return Value{}, Errorf(EINVALID, "compose %s needs two chat histories, got %s and %s", strategy, out.Type, with.Type)
		}
		merged := ChatHistory{
			Messages:     append(append([]Message(nil), withHist.Messages...), outHist.Messages...),
			InputTokens:  withHist.InputTokens + outHist.InputTokens,
			OutputTokens: withHist.OutputTokens + outHist.OutputTokens,
		}
		if withHist.Model == outHist.Model {
			merged.Model = outHist.Model
		}
		return Value{Type: TypeChatHistory, Data: merged}, nil
	}
	return Value{}, Errorf(EINVALID, "unknown compose strategy %q", strategy)
}

// asHistory views a chat_history or openai_chat value as a history.
func asHistory(v Value) (ChatHistory, bool) {
	switch d := v.Data.(type) {
	case ChatHistory:
		return d, true
	case OpenAIChatRequest:
		return d.History(), true
	}
	return ChatHistory{}, false
}

// composedVarName is the extra variable a compose also sets, named as the
// reference names it: <task>_<when, sanitized>_composed.
func composedVarName(task, when string) string {
	var sb strings.Builder
	for _, r := range when {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			sb.WriteRune(r)
		} else {
			sb.WriteByte('_')
		}
	}
	return fmt.Sprintf("%s_%s_composed", task, sb.String())
}

// resolveVar returns the value of a variable for input_var and with_var.
func resolveVar(e *Execution, name string) (Value, error) {
	switch name {
	case VarInput:
		return e.Input, nil
	case VarPreviousOutput:
		return e.previousOutput(), nil
	}
	if v, ok := e.Vars[name]; ok {
		return v, nil
	}
	if e.Chain.Task(name) != nil {
		return Value{}, Errorf(EINVALID, "variable %q has no value yet: task %q has not completed", name, name)
	}
	known := append([]string{VarInput, VarPreviousOutput}, keys(e.Vars)...)
	return Value{}, Errorf(EINVALID, "unknown variable %q%s", name, Suggest(name, known))
}

// isJSONText reports whether s holds a JSON object or array.
func isJSONText(s string) bool {
	s = strings.TrimSpace(s)
	return (strings.HasPrefix(s, "{") || strings.HasPrefix(s, "[")) && json.Valid([]byte(s))
}
