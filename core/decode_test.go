package core_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

func TestDecodeAliases(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		check func(t *testing.T, c *core.Chain)
	}{
		{"RoutingStrategy", `{"id":"c","routing_strategy":"least_busy","tasks":[{"id":"a","type":"noop"}]}`,
			func(t *testing.T, c *core.Chain) { wantEq(t, c.RoutingPolicy, core.PolicyLeastBusy) }},
		{"RoutingPolicyCamel", `{"id":"c","routingPolicy":"random","tasks":[{"id":"a","type":"noop"}]}`,
			func(t *testing.T, c *core.Chain) { wantEq(t, c.RoutingPolicy, core.PolicyRandom) }},
		{"HandlerTypeField", `{"id":"c","tasks":[{"id":"a","type":"noop"}]}`,
			func(t *testing.T, c *core.Chain) { wantEq(t, c.Tasks[0].Handler, "noop") }},
		{"RawString", `{"id":"c","tasks":[{"id":"a","handler":"raw_string"}]}`,
			func(t *testing.T, c *core.Chain) { wantEq(t, c.Tasks[0].Handler, core.HandlerPromptToString) }},
		{"ConditionKey", `{"id":"c","tasks":[{"id":"a","handler":"condition_key","valid_conditions":{"yes":true}}]}`,
			func(t *testing.T, c *core.Chain) { wantEq(t, c.Tasks[0].Handler, core.HandlerPromptToCondition) }},
		{"ParseNumber", `{"id":"c","tasks":[{"id":"a","handler":"parse_number"}]}`,
			func(t *testing.T, c *core.Chain) { wantEq(t, c.Tasks[0].Handler, core.HandlerPromptToInt) }},
		{"ParseScore", `{"id":"c","tasks":[{"id":"a","handler":"parse_score"}]}`,
			func(t *testing.T, c *core.Chain) { wantEq(t, c.Tasks[0].Handler, core.HandlerPromptToFloat) }},
		{"ParseRange", `{"id":"c","tasks":[{"id":"a","handler":"parse_range"}]}`,
			func(t *testing.T, c *core.Chain) { wantEq(t, c.Tasks[0].Handler, core.HandlerPromptToRange) }},
		{"Embedding", `{"id":"c","tasks":[{"id":"a","handler":"embedding"}]}`,
			func(t *testing.T, c *core.Chain) { wantEq(t, c.Tasks[0].Handler, core.HandlerTextToEmbedding) }},
		{"ModelExecution", `{"id":"c","tasks":[{"id":"a","handler":"model_execution"}]}`,
			func(t *testing.T, c *core.Chain) { wantEq(t, c.Tasks[0].Handler, core.HandlerChatCompletion) }},
		{"ParseTransition", `{"id":"c","tasks":[{"id":"a","handler":"parse_transition"}]}`,
			func(t *testing.T, c *core.Chain) { wantEq(t, c.Tasks[0].Handler, core.HandlerParseCommand) }},
		{"ToolsHandlerAndObject", `{"id":"c","tasks":[{"id":"a","handler":"tools","tools":{"name":"echo","tool_name":"echo","args":{"n":3}}}]}`,
			func(t *testing.T, c *core.Chain) {
				wantEq(t, c.Tasks[0].Handler, core.HandlerHook)
				wantEq(t, c.Tasks[0].Hook.Name, "echo")
				wantEq(t, c.Tasks[0].Hook.Args["n"], "3")
			}},
		{"HookTypeIsName", `{"id":"c","tasks":[{"id":"a","handler":"hook","hook":{"type":"echo","args":{"x":"y"}}}]}`,
			func(t *testing.T, c *core.Chain) { wantEq(t, c.Tasks[0].Hook.Name, "echo") }},
		{"SystemInstructionCamelCase", `{"id":"c","tasks":[{"id":"a","handler":"noop","systemInstruction":"be brief"}]}`,
			func(t *testing.T, c *core.Chain) { wantEq(t, c.Tasks[0].SystemInstruction, "be brief") }},
		{"CamelCaseEverywhere", `{"id":"c","tokenLimit":9,"maxSteps":7,"tasks":[{"id":"a","handler":"noop","promptTemplate":"p","inputVar":"input","outputTemplate":"o","retryOnFailure":2,"retryBackoff":"1s","executeConfig":{"maxTokens":5,"hideTools":["x"],"passClientsTools":true,"topP":0.5},"transition":{"onFailure":"a","branches":[{"operator":"default","goto":"end","compose":{"withVar":"input","strategy":"override"}}]}}]}`,
			func(t *testing.T, c *core.Chain) {
				task := c.Tasks[0]
				wantEq(t, c.TokenLimit, 9)
				wantEq(t, c.MaxSteps, 7)
				wantEq(t, task.PromptTemplate, "p")
				wantEq(t, task.InputVar, "input")
				wantEq(t, task.OutputTemplate, "o")
				wantEq(t, task.RetryOnFailure, 2)
				wantEq(t, time.Duration(task.RetryBackoff), time.Second)
				wantEq(t, task.ExecuteConfig.MaxTokens, 5)
				wantEq(t, task.ExecuteConfig.PassClientsTools, true)
				wantEq(t, *task.ExecuteConfig.TopP, 0.5)
				wantEq(t, task.Transition.OnFailure, "a")
				wantEq(t, task.Transition.Branches[0].Compose.WithVar, "input")
			}},
		{"Bounds", `{"id":"c","max_tokens_total":5000,"max_duration":"10m","tasks":[{"id":"a","handler":"await_input"}]}`,
			func(t *testing.T, c *core.Chain) {
				wantEq(t, c.MaxTokensTotal, 5000)
				wantEq(t, time.Duration(c.MaxDuration), 10*time.Minute)
				wantEq(t, c.Tasks[0].Handler, core.HandlerAwaitInput)
			}},
		{"BoundsCamelCase", `{"id":"c","maxTokensTotal":7,"maxDuration":"1h30m","tasks":[{"id":"a","handler":"noop"}]}`,
			func(t *testing.T, c *core.Chain) {
				wantEq(t, c.MaxTokensTotal, 7)
				wantEq(t, time.Duration(c.MaxDuration), 90*time.Minute)
			}},
		{"ExecuteConfigTools", `{"id":"c","tasks":[{"id":"a","handler":"chat_completion","execute_config":{"tools":["echo"]}}]}`,
			func(t *testing.T, c *core.Chain) { wantEq(t, c.Tasks[0].ExecuteConfig.Hooks, []string{"echo"}) }},
		{"TaskLevelCompose", `{"id":"c","tasks":[{"id":"a","handler":"noop","compose":{"with_var":"input"},"transition":{"branches":[{"operator":"default","goto":"end"}]}}]}`,
			func(t *testing.T, c *core.Chain) {
				wantEq(t, c.Tasks[0].Transition.Branches[0].Compose.WithVar, "input")
			}},
		{"SymbolicOperators", `{"id":"c","tasks":[{"id":"a","handler":"noop","transition":{"branches":[{"operator":">","when":"1","goto":"end"},{"operator":"<","when":"1","goto":"end"}]}}]}`,
			func(t *testing.T, c *core.Chain) {
				wantEq(t, c.Tasks[0].Transition.Branches[0].Operator, core.OpGt)
				wantEq(t, c.Tasks[0].Transition.Branches[1].Operator, core.OpLt)
			}},
		{"ScalarWhen", "id: c\ntasks:\n  - id: a\n    handler: noop\n    transition:\n      branches:\n        - {when: 4, goto: end}\n        - {when: true, goto: end}\n",
			func(t *testing.T, c *core.Chain) {
				wantEq(t, c.Tasks[0].Transition.Branches[0].When, "4")
				wantEq(t, c.Tasks[0].Transition.Branches[1].When, "true")
			}},
		{"YAMLFlowStyle", `{id: c, tasks: [{id: a, handler: noop}]}`,
			func(t *testing.T, c *core.Chain) { wantEq(t, c.Tasks[0].Handler, "noop") }},
		{"TaskLevelComposeWithoutTransition", `{"id":"c","tasks":[{"id":"a","handler":"noop","compose":{"with_var":"input","strategy":"override"}}]}`,
			func(t *testing.T, c *core.Chain) {
				b := c.Tasks[0].Transition.Branches[0]
				wantEq(t, []string{b.Operator, b.Goto, b.Compose.Strategy}, []string{"default", "end", "override"})
			}},
		{"EmptyOperatorDefaults", `{"id":"c","tasks":[{"id":"a","handler":"noop","transition":{"branches":[{"when":"x","goto":"end"},{"goto":"end"}]}}]}`,
			func(t *testing.T, c *core.Chain) {
				wantEq(t, c.Tasks[0].Transition.Branches[0].Operator, core.OpEquals)
				wantEq(t, c.Tasks[0].Transition.Branches[1].Operator, core.OpDefault)
			}},
		{"YAML", "id: c\ntasks:\n  - id: a\n    type: condition_key\n    systemInstruction: hi\n    valid_conditions: {yes: true, no: false}\n    timeout: 2s\n    transition:\n      branches:\n        - {operator: equals, when: yes, goto: end}\n",
			func(t *testing.T, c *core.Chain) {
				task := c.Tasks[0]
				wantEq(t, task.Handler, core.HandlerPromptToCondition)
				wantEq(t, task.SystemInstruction, "hi")
				wantEq(t, task.ValidConditions, map[string]bool{"yes": true, "no": false})
				wantEq(t, time.Duration(task.Timeout), 2*time.Second)
				wantEq(t, task.Transition.Branches[0].When, "yes")
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := core.DecodeChain([]byte(tt.doc))
			if err != nil {
				t.Fatalf("DecodeChain: %v", err)
			}
			tt.check(t, c)
		})
	}
}

func TestDecodeLegacyFieldsWarn(t *testing.T) {
	doc := `{"id":"c","tasks":[{"id":"a","handler":"noop","triggers":[{"type":"manual"}],"transition":{"on_failure_alert":"x","branches":[{"operator":"default","goto":"end","alert_on_match":"y"}]}}]}`
	_, warnings, err := core.DecodeChain([]byte(doc))
	if err != nil {
		t.Fatalf("DecodeChain: %v", err)
	}
	var paths []string
	for _, w := range warnings {
		paths = append(paths, w.Path)
	}
	want := []string{"tasks[0].transition.branches[0].alert_on_match", "tasks[0].transition.on_failure_alert", "tasks[0].triggers"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("warning paths = %v, want %v", paths, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name     string
		doc      string
		wantTask string
		wantPath string
		wantMsg  string
	}{
		{"UnknownTaskField", `{"id":"c","tasks":[{"id":"a","handler":"noop","sytem_instruction":"x"}]}`,
			"a", "tasks[0].sytem_instruction", `did you mean "system_instruction"`},
		{"UnknownConfigField", `{"id":"c","tasks":[{"id":"a","handler":"noop","execute_config":{"temperatur":0.2}}]}`,
			"a", "tasks[0].execute_config.temperatur", `did you mean "temperature"`},
		{"UnknownChainField", `{"id":"c","taks":[]}`,
			"", "taks", `did you mean "tasks"`},
		{"UnknownFieldNoNearMatch", `{"id":"c","tasks":[{"id":"a","handler":"noop","zzzzzzzzzz":1}]}`,
			"a", "tasks[0].zzzzzzzzzz", "unknown field (known:"},
		{"MalformedDuration", `{"id":"c","tasks":[{"id":"a","handler":"noop","timeout":"5 minutes"}]}`,
			"a", "tasks[0].timeout", "malformed duration"},
		{"DurationNotString", `{"id":"c","tasks":[{"id":"a","handler":"noop","timeout":30}]}`,
			"a", "tasks[0].timeout", "want a duration string"},
		{"WrongType", `{"id":"c","tasks":[{"id":"a","handler":"noop","execute_config":{"temperature":"hot"}}]}`,
			"a", "tasks[0].execute_config.temperature", "want a number"},
		{"NegativeRetries", `{"id":"c","tasks":[{"id":"a","handler":"noop","retry_on_failure":-1}]}`,
			"a", "tasks[0].retry_on_failure", "must not be negative"},
		{"AliasAndCanonicalBoth", `{"id":"c","tasks":[{"id":"a","handler":"noop","type":"noop"}]}`,
			"a", "tasks[0].type", "same field"},
		{"BranchField", `{"id":"c","tasks":[{"id":"a","handler":"noop","transition":{"branches":[{"operator":"default","got":"end"}]}}]}`,
			"a", "tasks[0].transition.branches[0].got", `did you mean "goto"`},
		{"ConditionNotBool", `{"id":"c","tasks":[{"id":"a","handler":"noop","valid_conditions":{"yes":"true"}}]}`,
			"a", "tasks[0].valid_conditions.yes", "want true or false"},
		{"MaxTokensTotalTypo", `{"id":"c","max_token_total":10,"tasks":[{"id":"a","handler":"noop"}]}`,
			"", "max_token_total", `did you mean "max_tokens_total"`},
		{"MaxDurationTypo", `{"id":"c","maxDurration":"1m","tasks":[{"id":"a","handler":"noop"}]}`,
			"", "maxDurration", `did you mean "max_duration"`},
		{"MaxDurationMalformed", `{"id":"c","max_duration":"an hour","tasks":[{"id":"a","handler":"noop"}]}`,
			"", "max_duration", "malformed duration"},
		{"MaxTokensTotalNegative", `{"id":"c","max_tokens_total":-1,"tasks":[{"id":"a","handler":"noop"}]}`,
			"", "max_tokens_total", "must not be negative"},
		{"MaxTokensTotalNotInt", `{"id":"c","max_tokens_total":"many","tasks":[{"id":"a","handler":"noop"}]}`,
			"", "max_tokens_total", "want an integer"},
		{"TasksNotList", `{"id":"c","tasks":{"id":"a"}}`,
			"", "tasks", "want a list of objects"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := core.DecodeChain([]byte(tt.doc))
			wantProblem(t, err, tt.wantTask, tt.wantPath, tt.wantMsg)
		})
	}
}

func TestDecodeSyntaxErrors(t *testing.T) {
	for name, doc := range map[string]string{
		"BrokenJSON": `{"id":"c",`,
		"BrokenYAML": "id: c\ntasks: [\n",
		"Empty":      "  ",
		"NotObject":  "- a\n- b\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := core.DecodeChain([]byte(doc))
			if core.ErrorCode(err) != core.EINVALID {
				t.Errorf("err = %v, want an invalid error", err)
			}
		})
	}
}

// wantProblem asserts that err is an EINVALID validation error with a
// problem at the given task and path whose message contains msg.
func wantProblem(t *testing.T, err error, task, path, msg string) {
	t.Helper()
	if core.ErrorCode(err) != core.EINVALID {
		t.Fatalf("err = %v, want code invalid", err)
	}
	var ve *core.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v, want a *core.ValidationError", err)
	}
	for _, p := range ve.Problems {
		if p.TaskID == task && p.Path == path && strings.Contains(p.Message, msg) {
			return
		}
	}
	t.Errorf("problems = %v, want one at task %q path %q containing %q", ve.Problems, task, path, msg)
}

func wantEq(t *testing.T, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v, want %#v", got, want)
	}
}

func TestParseDocumentGivesJSONShapes(t *testing.T) {
	tree, err := core.ParseDocument([]byte("200: ok\nlist:\n  - {1: a, true: b}\n"))
	if err != nil {
		t.Fatal(err)
	}
	m, ok := tree.(map[string]any)
	if !ok || m["200"] != "ok" {
		t.Fatalf("tree = %#v, want string keys", tree)
	}
	inner, ok := m["list"].([]any)[0].(map[string]any)
	if !ok || inner["1"] != "a" || inner["true"] != "b" {
		t.Errorf("nested = %#v, want string keys", m["list"])
	}
}
