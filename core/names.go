package core

import (
	"fmt"
	"slices"
	"strings"
)

// Canonical handler names.
const (
	HandlerPromptToString    = "prompt_to_string"
	HandlerPromptToCondition = "prompt_to_condition"
	HandlerPromptToInt       = "prompt_to_int"
	HandlerPromptToFloat     = "prompt_to_float"
	HandlerPromptToRange     = "prompt_to_range"
	HandlerPromptToJS        = "prompt_to_js"
	HandlerTextToEmbedding   = "text_to_embedding"
	HandlerParseCommand      = "parse_command"
	HandlerParseKeyValue     = "parse_key_value"
	HandlerRaiseError        = "raise_error"
	HandlerNoop              = "noop"
	HandlerChatCompletion    = "chat_completion"
	HandlerExecuteToolCalls  = "execute_tool_calls"
	HandlerConvertToOpenAI   = "convert_to_openai_chat_response"
	HandlerHook              = "hook"
	HandlerAwaitInput        = "await_input"
	handlerAliasRawString    = "raw_string"
	handlerAliasConditionKey = "condition_key"
	handlerAliasParseNumber  = "parse_number"
	handlerAliasParseScore   = "parse_score"
	handlerAliasParseRange   = "parse_range"
	handlerAliasEmbedding    = "embedding"
	handlerAliasModelExec    = "model_execution"
	handlerAliasParseTransit = "parse_transition"
	handlerAliasTools        = "tools"
)

// handlerAliases maps the names of older generations of the reference to
// the canonical handler names.
var handlerAliases = map[string]string{
	handlerAliasRawString:    HandlerPromptToString,
	handlerAliasConditionKey: HandlerPromptToCondition,
	handlerAliasParseNumber:  HandlerPromptToInt,
	handlerAliasParseScore:   HandlerPromptToFloat,
	handlerAliasParseRange:   HandlerPromptToRange,
	handlerAliasEmbedding:    HandlerTextToEmbedding,
	handlerAliasModelExec:    HandlerChatCompletion,
	handlerAliasParseTransit: HandlerParseCommand,
	handlerAliasTools:        HandlerHook,
}

// HandlerAliases returns a copy of the alias table (alias -> canonical).
func HandlerAliases() map[string]string {
	out := make(map[string]string, len(handlerAliases))
	for k, v := range handlerAliases {
		out[k] = v
	}
	return out
}

// Operators.
const (
	OpEquals     = "equals"
	OpContains   = "contains"
	OpStartsWith = "starts_with"
	OpEndsWith   = "ends_with"
	OpGt         = "gt"
	OpLt         = "lt"
	OpInRange    = "in_range"
	OpDefault    = "default"
)

// operatorAliases maps symbolic operators to their canonical names.
var operatorAliases = OperatorAliases()

var operators = []string{OpEquals, OpContains, OpStartsWith, OpEndsWith, OpGt, OpLt, OpInRange, OpDefault}

// Compose strategies.
const (
	StrategyOverride          = "override"
	StrategyAppendString      = "append_string_to_chat_history"
	StrategyMergeChatHistorys = "merge_chat_histories"
)

var strategies = []string{StrategyOverride, StrategyAppendString, StrategyMergeChatHistorys}

// Variables every template and input_var can name besides task ids.
const (
	VarInput          = "input"
	VarPreviousOutput = "previous_output"
)

// Operators returns the canonical operator names.
func Operators() []string { return append([]string(nil), operators...) }

// OperatorAliases returns the symbolic operators and their canonical names.
func OperatorAliases() map[string]string {
	return map[string]string{">": OpGt, "<": OpLt}
}

// Strategies returns the compose strategy names.
func Strategies() []string { return append([]string(nil), strategies...) }

// Routing policies: how the router orders the backends that can serve a
// model.
const (
	// PolicyOrdered tries the first healthy backend in registration order,
	// then the next.
	PolicyOrdered = "ordered"
	// PolicyRoundRobin rotates through the backends, per model.
	PolicyRoundRobin = "round_robin"
	// PolicyRandom picks at random.
	PolicyRandom = "random"
	// PolicyLeastBusy picks the backend with the fewest calls in flight.
	PolicyLeastBusy = "least_busy"
)

// RoutingPolicies returns the routing policy names.
func RoutingPolicies() []string {
	return []string{PolicyOrdered, PolicyRoundRobin, PolicyRandom, PolicyLeastBusy}
}

// CheckRoutingPolicy returns nil for a known routing policy or "" (the
// default), else an EINVALID error whose message starts with field.
func CheckRoutingPolicy(field, name string) error {
	if name == "" || slices.Contains(RoutingPolicies(), name) {
		return nil
	}
	return Errorf(EINVALID, "%s: %s", field, unknownPolicy(name))
}

// unknownPolicy describes an unknown routing policy, with a suggestion.
func unknownPolicy(name string) string {
	return fmt.Sprintf("unknown routing policy %q%s (known: %s)", name, Suggest(name, RoutingPolicies()), strings.Join(RoutingPolicies(), ", "))
}
