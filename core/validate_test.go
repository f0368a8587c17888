package core_test

import (
	"testing"

	"github.com/stepwise-run/stepwise/core"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name     string
		doc      string
		wantTask string
		wantPath string
		wantMsg  string
	}{
		{"MissingChainID", `{"tasks":[{"id":"a","handler":"noop"}]}`, "", "id", "missing required field"},
		{"NoTasks", `{"id":"c","tasks":[]}`, "", "tasks", "at least one task"},
		{"MissingTaskID", `{"id":"c","tasks":[{"handler":"noop"}]}`, "", "tasks[0].id", "missing required field"},
		{"ReservedTaskID", `{"id":"c","tasks":[{"id":"end","handler":"noop"}]}`, "end", "tasks[0].id", "reserved"},
		{"DuplicateTaskID", `{"id":"c","tasks":[{"id":"a","handler":"noop","transition":{"branches":[{"operator":"default","goto":"a"}]}},{"id":"a","handler":"noop"}]}`, "a", "tasks[1].id", "duplicate task id"},
		{"MissingHandler", `{"id":"c","tasks":[{"id":"a"}]}`, "a", "tasks[0].handler", "missing required field"},
		{"UnknownHandler", `{"id":"c","tasks":[{"id":"a","handler":"prompt_to_strng"}]}`, "a", "tasks[0].handler", `did you mean "prompt_to_string"`},
		{"UnknownHandlerNearAwaitInput", `{"id":"c","tasks":[{"id":"a","handler":"await_inpt"}]}`, "a", "tasks[0].handler", `did you mean "await_input"`},
		{"ConditionNeedsValidConditions", `{"id":"c","tasks":[{"id":"a","handler":"prompt_to_condition"}]}`, "a", "tasks[0].valid_conditions", "missing required field"},
		{"HookNeedsName", `{"id":"c","tasks":[{"id":"a","handler":"hook"}]}`, "a", "tasks[0].hook.name", "missing required field"},
		{"EmbeddingOneModel", `{"id":"c","tasks":[{"id":"a","handler":"text_to_embedding","execute_config":{"models":["x","y"]}}]}`, "a", "tasks[0].execute_config", "at most one model"},
		{"GotoUnknownTask", `{"id":"c","tasks":[{"id":"a","handler":"noop","transition":{"branches":[{"operator":"default","goto":"nxt"}]}},{"id":"next","handler":"noop"}]}`, "a", "tasks[0].transition.branches[0].goto", `unknown task "nxt"; did you mean "next"?`},
		{"OnFailureUnknownTask", `{"id":"c","tasks":[{"id":"a","handler":"noop","transition":{"on_failure":"oops"}}]}`, "a", "tasks[0].transition.on_failure", `unknown task "oops"`},
		{"UnreachableTask", `{"id":"c","tasks":[{"id":"a","handler":"noop"},{"id":"island","handler":"noop"}]}`, "island", "tasks[1]", "unreachable"},
		{"UnknownOperator", `{"id":"c","tasks":[{"id":"a","handler":"noop","transition":{"branches":[{"operator":"equal","when":"x","goto":"end"}]}}]}`, "a", "tasks[0].transition.branches[0].operator", `did you mean "equals"`},
		{"GtNeedsNumber", `{"id":"c","tasks":[{"id":"a","handler":"noop","transition":{"branches":[{"operator":"gt","when":"big","goto":"end"}]}}]}`, "a", "tasks[0].transition.branches[0].when", "not a number"},
		{"InRangeNeedsRange", `{"id":"c","tasks":[{"id":"a","handler":"noop","transition":{"branches":[{"operator":"in_range","when":"1 to 5","goto":"end"}]}}]}`, "a", "tasks[0].transition.branches[0].when", "min-max"},
		{"UnknownStrategy", `{"id":"c","tasks":[{"id":"a","handler":"noop","transition":{"branches":[{"operator":"default","goto":"end","compose":{"with_var":"input","strategy":"overide"}}]}}]}`, "a", "tasks[0].transition.branches[0].compose.strategy", `did you mean "override"`},
		{"ComposeUnknownVar", `{"id":"c","tasks":[{"id":"a","handler":"noop","transition":{"branches":[{"operator":"default","goto":"end","compose":{"with_var":"inptu"}}]}}]}`, "a", "tasks[0].transition.branches[0].compose.with_var", `did you mean "input"`},
		{"InputVarUnknown", `{"id":"c","tasks":[{"id":"a","handler":"noop","input_var":"nothing"}]}`, "a", "tasks[0].input_var", `unknown variable "nothing"`},
		{"BadTemplate", `{"id":"c","tasks":[{"id":"a","handler":"noop","prompt_template":"{{.input"}]}`, "a", "tasks[0].prompt_template", "template"},
		{"UnknownRoutingPolicy", `{"id":"c","routing_policy":"round-robin","tasks":[{"id":"a","handler":"noop"}]}`, "", "routing_policy", `did you mean "round_robin"`},
		{"BadMacro", `{"id":"c","tasks":[{"id":"a","handler":"noop","prompt_template":"{{chain:name}}"}]}`, "a", "tasks[0].prompt_template", "only {{chain:id}} exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := core.DecodeChain([]byte(tt.doc))
			if err != nil {
				t.Fatalf("DecodeChain: %v", err)
			}
			wantProblem(t, core.Validate(c), tt.wantTask, tt.wantPath, tt.wantMsg)
		})
	}
}

func TestValidateNilTasks(t *testing.T) {
	c := &core.Chain{ID: "c", Tasks: []*core.Task{nil, {ID: "b", Handler: "noop"}}}
	wantProblem(t, core.Validate(c), "", "tasks[0]", "task is null")
}

func TestValidateTaskComposeWithoutTransition(t *testing.T) {
	c, _, err := core.DecodeChain([]byte(`{"id":"c","tasks":[{"id":"a","handler":"noop","compose":{"with_var":"input","strategy":"overide"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, core.Validate(c), "a", "tasks[0].transition.branches[0].compose.strategy", `did you mean "override"`)
}

func TestValidateAcceptsLoops(t *testing.T) {
	doc := `{"id":"loop","tasks":[
		{"id":"chat","handler":"chat_completion","transition":{"branches":[{"operator":"equals","when":"tool-call","goto":"tools"},{"operator":"default","goto":"end"}]}},
		{"id":"tools","handler":"execute_tool_calls","transition":{"branches":[{"operator":"default","goto":"chat"}]}}]}`
	c, _, err := core.ParseChain([]byte(doc))
	if err != nil {
		t.Fatalf("a loop is legal: %v", err)
	}
	if len(c.Tasks) != 2 {
		t.Fatalf("decoded %d tasks, want 2", len(c.Tasks))
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	doc := `{"tasks":[{"id":"a","handler":"nope","transition":{"branches":[{"operator":"default","goto":"b"}]}}]}`
	c, _, err := core.DecodeChain([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	err = core.Validate(c)
	wantProblem(t, err, "", "id", "missing")
	wantProblem(t, err, "a", "tasks[0].handler", "unknown handler")
	wantProblem(t, err, "a", "tasks[0].transition.branches[0].goto", "unknown task")
}
