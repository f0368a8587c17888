package core_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core"
)

// oneTask is a chain with a single task of the given handler and extra
// task fields (a JSON fragment, may be empty).
func oneTask(handler, extra string) string {
	if extra != "" {
		extra = "," + extra
	}
	return `{"id":"t","tasks":[{"id":"a","handler":"` + handler + `"` + extra + `}]}`
}

func TestHandlers(t *testing.T) {
	hist := func(msgs ...core.Message) core.Value {
		return core.Value{Type: core.TypeChatHistory, Data: core.ChatHistory{Messages: msgs}}
	}
	user := func(s string) core.Message { return core.Message{Role: "user", Content: s} }
	tests := []struct {
		name       string
		doc        string
		input      core.Value
		replies    []*reply
		wantOutput core.Value
		wantEval   string
		wantErr    string // substring of the step error; the execution fails
	}{
		{"PromptToString", oneTask("prompt_to_string", ""), core.String("capital of France?"),
			[]*reply{{match: "France", text: "  Paris \n"}}, core.String("Paris"), "Paris", ""},
		{"PromptToStringFromInt", oneTask("prompt_to_string", ""), core.Value{Type: core.TypeInt, Data: 4},
			[]*reply{{match: "4", text: "four"}}, core.String("four"), "four", ""},
		{"PromptToStringRejectsVector", oneTask("prompt_to_string", ""), core.Value{Type: core.TypeVector, Data: []float32{1}},
			nil, core.Nil, "", "cannot be used as a prompt"},
		{"PromptToConditionKey", oneTask("prompt_to_condition", `"valid_conditions":{"yes":true,"no":false}`), core.String("ok?"),
			[]*reply{{text: "Yes."}}, core.Value{Type: core.TypeBool, Data: true}, "yes", ""},
		{"PromptToConditionFirstWord", oneTask("prompt_to_condition", `"valid_conditions":{"positive":true,"negative":false}`), core.String("mood?"),
			[]*reply{{text: "negative, clearly"}}, core.Value{Type: core.TypeBool, Data: false}, "negative", ""},
		{"PromptToConditionNoMatch", oneTask("prompt_to_condition", `"valid_conditions":{"yes":true,"no":false}`), core.String("ok?"),
			[]*reply{{text: "maybe"}}, core.Nil, "", `answered "maybe", which is none of the valid conditions no, yes`},
		{"PromptToInt", oneTask("prompt_to_int", ""), core.String("2+2?"),
			[]*reply{{text: `"4"`}}, core.Value{Type: core.TypeInt, Data: 4}, "4", ""},
		{"PromptToIntInText", oneTask("parse_number", ""), core.String("how many?"),
			[]*reply{{text: "There are 12 apples."}}, core.Value{Type: core.TypeInt, Data: 12}, "12", ""},
		{"PromptToIntRejectsFraction", oneTask("prompt_to_int", ""), core.String("?"),
			[]*reply{{text: "2.5"}}, core.Nil, "", "not a whole number"},
		{"PromptToFloat", oneTask("prompt_to_float", ""), core.String("score?"),
			[]*reply{{text: "Score: 0.75"}}, core.Value{Type: core.TypeFloat, Data: 0.75}, "0.75", ""},
		{"PromptToRange", oneTask("prompt_to_range", ""), core.String("when?"),
			[]*reply{{text: "1300-1700"}}, core.String("1300-1700"), "1300-1700", ""},
		{"PromptToRangeSingle", oneTask("prompt_to_range", ""), core.String("when?"),
			[]*reply{{text: "7"}}, core.String("7-7"), "7-7", ""},
		{"PromptToRangeNegative", oneTask("prompt_to_range", ""), core.String("temp?"),
			[]*reply{{text: "-5--1"}}, core.String("-5--1"), "-5--1", ""},
		{"PromptToJSFenced", oneTask("prompt_to_js", ""), core.String("code?"),
			[]*reply{{text: "```javascript\nvar result = 1;\n```"}}, core.Value{Type: core.TypeJSON, Data: map[string]any{"code": "var result = 1;"}}, "ok", ""},
		{"PromptToJSWrapped", oneTask("prompt_to_js", ""), core.String("code?"),
			[]*reply{{text: `{"code":"x()"}`}}, core.Value{Type: core.TypeJSON, Data: map[string]any{"code": "x()"}}, "ok", ""},
		{"PromptToJSEmpty", oneTask("prompt_to_js", ""), core.String("code?"),
			[]*reply{{text: "``` ```"}}, core.Value{Type: core.TypeJSON, Data: map[string]any{"code": ""}}, "empty_js", ""},
		{"TextToEmbedding", oneTask("text_to_embedding", ""), core.String("abc"),
			nil, core.Value{Type: core.TypeVector, Data: []float32{3, 1}}, "ok", ""},
		{"ParseCommand", oneTask("parse_command", ""), core.String("/search cats"),
			nil, core.String("/search cats"), "search", ""},
		{"ParseCommandPass", oneTask("parse_command", ""), core.String("hello"),
			nil, core.String("hello"), "pass", ""},
		{"ParseCommandSlashAlone", oneTask("parse_command", ""), core.String("/"),
			nil, core.String("/"), "pass", ""},
		{"ParseCommandSlashSpace", oneTask("parse_command", ""), core.String(" / "),
			nil, core.String(" / "), "pass", ""},
		{"ParseCommandEmpty", oneTask("parse_command", ""), core.String("  "),
			nil, core.String("  "), "", ""},
		{"ParseKeyValue", oneTask("parse_key_value", ""), core.String("a=1, b: true; c=x\nd=2.5"),
			nil, core.Value{Type: core.TypeJSON, Data: map[string]any{"a": 1, "b": true, "c": "x", "d": 2.5}}, "parsed", ""},
		{"ParseKeyValueAlreadyJSON", oneTask("parse_key_value", ""), core.String(`{"a":1}`),
			nil, core.Value{Type: core.TypeJSON, Data: map[string]any{"a": json.Number("1")}}, "already_json", ""},
		{"ParseKeyValueBadPair", oneTask("parse_key_value", ""), core.String("nonsense"),
			nil, core.Nil, "", "not a key=value"},
		{"RaiseError", oneTask("raise_error", ""), core.String("stop right there"),
			nil, core.Nil, "", "stop right there"},
		{"Noop", oneTask("noop", ""), core.Value{Type: core.TypeInt, Data: 5},
			nil, core.Value{Type: core.TypeInt, Data: 5}, "noop", ""},
		{"NoopWithPromptTemplate", oneTask("noop", `"prompt_template":"Hi {{.input}} from {{var:who}}"`), core.String("Ann"),
			nil, core.String("Hi Ann from tester"), "noop", ""},
		{"ChatCompletion", oneTask("chat_completion", `"system_instruction":"be nice"`), hist(user("hello")),
			[]*reply{{match: "hello", text: "hi there"}},
			core.Value{Type: core.TypeChatHistory, Data: core.ChatHistory{Messages: []core.Message{{Role: "system", Content: "be nice"}, user("hello"), {Role: "assistant", Content: "hi there"}}, Model: "fake:1b", InputTokens: 2, OutputTokens: 3}},
			"executed", ""},
		{"ChatCompletionFromString", oneTask("chat_completion", ""), core.String("hello"),
			[]*reply{{text: "hi"}},
			core.Value{Type: core.TypeChatHistory, Data: core.ChatHistory{Messages: []core.Message{user("hello"), {Role: "assistant", Content: "hi"}}, Model: "fake:1b", InputTokens: 2, OutputTokens: 1}},
			"executed", ""},
		{"ChatCompletionToolCall", oneTask("chat_completion", `"execute_config":{"hooks":["echo"]}`), hist(user("echo x")),
			[]*reply{{calls: []core.ToolCall{toolCall("c1", "echo", `{"text":"x"}`)}}},
			core.Value{Type: core.TypeChatHistory, Data: core.ChatHistory{Messages: []core.Message{user("echo x"), {Role: "assistant", ToolCalls: []core.ToolCall{toolCall("c1", "echo", `{"text":"x"}`)}}}, Model: "fake:1b", InputTokens: 2, OutputTokens: 1}},
			"tool-call", ""},
		{"ExecuteToolCalls", oneTask("execute_tool_calls", `"execute_config":{"hooks":["echo"]}`),
			hist(user("q"), core.Message{Role: "assistant", ToolCalls: []core.ToolCall{toolCall("c1", "echo", `{"text":"one"}`), toolCall("c2", "echo.echo", `{"text":"two"}`)}}),
			nil,
			hist(user("q"), core.Message{Role: "assistant", ToolCalls: []core.ToolCall{toolCall("c1", "echo", `{"text":"one"}`), toolCall("c2", "echo.echo", `{"text":"two"}`)}},
				core.Message{Role: "tool", Content: "one", ToolCallID: "c1", Name: "echo"},
				core.Message{Role: "tool", Content: "two", ToolCallID: "c2", Name: "echo.echo"}),
			"tools_executed", ""},
		{"ExecuteToolCallsUnknownTool", oneTask("execute_tool_calls", `"execute_config":{"hooks":["echo"]}`),
			hist(core.Message{Role: "assistant", ToolCalls: []core.ToolCall{toolCall("c1", "rm_rf", `{}`)}}),
			nil,
			hist(core.Message{Role: "assistant", ToolCalls: []core.ToolCall{toolCall("c1", "rm_rf", `{}`)}},
				core.Message{Role: "tool", Content: `tool rm_rf execution failed: there is no tool named "rm_rf"`, ToolCallID: "c1", Name: "rm_rf"}),
			"failed", ""},
		{"ExecuteToolCallsBadArguments", oneTask("execute_tool_calls", `"execute_config":{"hooks":["echo"]}`),
			hist(core.Message{Role: "assistant", ToolCalls: []core.ToolCall{toolCall("c1", "echo", `{not json`)}}),
			nil,
			hist(core.Message{Role: "assistant", ToolCalls: []core.ToolCall{toolCall("c1", "echo", `{not json`)}},
				core.Message{Role: "tool", Content: "tool echo execution failed: arguments are not valid JSON: invalid character 'n' looking for beginning of object key string", ToolCallID: "c1", Name: "echo"}),
			"failed", ""},
		{"ExecuteToolCallsNone", oneTask("execute_tool_calls", ""), hist(user("q")),
			nil, hist(user("q")), "no_calls_found", ""},
		{"ExecuteToolCallsEmpty", oneTask("execute_tool_calls", ""), hist(),
			nil, hist(), "no_op", ""},
		{"ConvertToOpenAI", oneTask("convert_to_openai_chat_response", ""), hist(user("q"), core.Message{Role: "assistant", Content: "a"}),
			nil, core.Nil, "converted", ""},
		{"Hook", oneTask("hook", `"hook":{"name":"echo"}`), core.String("ping"),
			nil, core.String("ping"), "ok", ""},
		{"HookOutputTemplate", oneTask("hook", `"hook":{"name":"echo"},"output_template":"got {{.}}"`), core.String("ping"),
			nil, core.String("got ping"), "got ping", ""},
		{"HookPrintArgs", oneTask("hook", `"hook":{"name":"print","args":{"message":"hello"}}`), core.Nil,
			nil, core.String("hello"), "ok", ""},
		{"HookPrintMissingMessage", oneTask("hook", `"hook":{"name":"print"}`), core.Nil,
			nil, core.Nil, "", "print needs a message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(newLLM(tt.replies...))
			ex, steps := h.run(t, tt.doc, tt.input, nil)
			if len(steps) != 1 {
				t.Fatalf("%d steps, want 1", len(steps))
			}
			st := steps[0]
			if tt.wantErr != "" {
				if ex.Status != core.StatusFailed || st.Error == nil || !strings.Contains(st.Error.Message, tt.wantErr) {
					t.Fatalf("status %s, step error %+v; want failed with %q", ex.Status, st.Error, tt.wantErr)
				}
				return
			}
			if ex.Status != core.StatusSucceeded {
				t.Fatalf("status = %s (%+v), want succeeded", ex.Status, ex.Error)
			}
			if st.Eval != tt.wantEval {
				t.Errorf("eval = %q, want %q", st.Eval, tt.wantEval)
			}
			if tt.wantOutput.Type != core.TypeNil && !reflect.DeepEqual(ex.Output, tt.wantOutput) {
				t.Errorf("output =\n %#v\nwant\n %#v", ex.Output, tt.wantOutput)
			}
		})
	}
}

func TestConvertToOpenAIShape(t *testing.T) {
	h := newHarness(newLLM())
	in := core.Value{Type: core.TypeChatHistory, Data: core.ChatHistory{Model: "m:1", InputTokens: 5, OutputTokens: 2, Messages: []core.Message{
		{Role: "user", Content: "q"},
		{Role: "assistant", ToolCalls: []core.ToolCall{toolCall("c9", "echo", `{}`)}},
	}}}
	ex, _ := h.run(t, oneTask("convert_to_openai_chat_response", ""), in, nil)
	resp, ok := ex.Output.Data.(core.OpenAIChatResponse)
	if !ok {
		t.Fatalf("output %T, want OpenAIChatResponse", ex.Output.Data)
	}
	ch := resp.Choices[0]
	if resp.Object != "chat.completion" || resp.Model != "m:1" || ch.FinishReason != "tool_calls" || ch.Message.Content != nil || ch.Message.ToolCalls[0].ID != "c9" || resp.Usage.TotalTokens != 7 {
		t.Errorf("response = %+v", resp)
	}
}

func TestSystemInstructionReachesPrompt(t *testing.T) {
	llm := newLLM(&reply{text: "fine"})
	h := newHarness(llm)
	doc := `{"id":"smart-query-assistant","tasks":[{"id":"generate_response","handler":"raw_string","systemInstruction":"You're a senior engineer at {{chain:id}}.","transition":{"branches":[{"operator":"default","goto":"end"}]}}]}`
	ex, _ := h.run(t, doc, core.String("How to optimize queries?"), nil)
	if ex.Status != core.StatusSucceeded {
		t.Fatalf("status %s: %+v", ex.Status, ex.Error)
	}
	if len(llm.prompts) != 1 || llm.prompts[0].System != "You're a senior engineer at smart-query-assistant." || llm.prompts[0].Prompt != "How to optimize queries?" {
		t.Errorf("prompt requests = %+v", llm.prompts)
	}
}

func TestExecuteConfigReachesModel(t *testing.T) {
	llm := newLLM(&reply{text: "ok"})
	h := newHarness(llm)
	doc := oneTask("chat_completion", `"execute_config":{"model":"qwen2.5:7b","models":["llama3"],"provider":"ollama","temperature":0.1,"top_p":0.9,"max_tokens":64,"stop":["\n\n"]}`)
	h.run(t, doc, core.String("x"), nil)
	req := llm.chats[0]
	if !reflect.DeepEqual(req.Select.Models, []string{"qwen2.5:7b", "llama3"}) || !reflect.DeepEqual(req.Select.Providers, []string{"ollama"}) {
		t.Errorf("selector = %+v", req.Select)
	}
	if *req.Options.Temperature != 0.1 || *req.Options.TopP != 0.9 || req.Options.MaxTokens != 64 || req.Options.Stop[0] != "\n\n" {
		t.Errorf("options = %+v", req.Options)
	}
	if req.Select.ContextTokens <= 0 {
		t.Errorf("ContextTokens = %d, want the estimated size", req.Select.ContextTokens)
	}
}

func TestOpenAIChatInputMergesUnderTaskConfig(t *testing.T) {
	llm := newLLM(&reply{text: "ok"})
	h := newHarness(llm)
	temp := 0.9
	in := core.Value{Type: core.TypeOpenAIChat, Data: core.OpenAIChatRequest{
		Model: "client-model", Temperature: &temp, MaxTokens: 10,
		Messages: []core.Message{{Role: "user", Content: "hi"}},
		Tools:    []core.Tool{{Type: "function", Function: core.ToolFunction{Name: "client_tool"}}, {Type: "function", Function: core.ToolFunction{Name: "secret_tool"}}},
	}}
	doc := oneTask("chat_completion", `"execute_config":{"temperature":0.2,"hooks":["echo","print"],"hide_tools":["print","secret_tool"],"pass_clients_tools":true}`)
	h.run(t, doc, in, nil)
	req := llm.chats[0]
	if req.Select.Models[0] != "client-model" || *req.Options.Temperature != 0.2 || req.Options.MaxTokens != 10 {
		t.Errorf("request = %+v %+v; want the client's model and max_tokens, the task's temperature", req.Select, req.Options)
	}
	var names []string
	for _, tool := range req.Tools {
		names = append(names, tool.Function.Name)
	}
	if !reflect.DeepEqual(names, []string{"echo", "client_tool"}) {
		t.Errorf("offered tools = %v, want [echo client_tool] (hide_tools applies to hook and client tools)", names)
	}
}

func TestClientToolCallsAreLeftForTheClient(t *testing.T) {
	h := newHarness(newLLM())
	in := core.Value{Type: core.TypeOpenAIChat, Data: core.OpenAIChatRequest{
		Messages: []core.Message{{Role: "user", Content: "hi"}, {Role: "assistant", ToolCalls: []core.ToolCall{toolCall("c1", "get_weather", `{}`)}}},
		Tools:    []core.Tool{{Type: "function", Function: core.ToolFunction{Name: "get_weather"}}},
	}}
	ex, steps := h.run(t, oneTask("execute_tool_calls", `"execute_config":{"hooks":["echo"]}`), in, nil)
	if steps[0].Eval != core.EvalNoCallsFound {
		t.Errorf("eval = %q, want no_calls_found", steps[0].Eval)
	}
	if n := len(ex.Output.Data.(core.ChatHistory).Messages); n != 2 {
		t.Errorf("%d messages, want 2 (no tool message for a client tool)", n)
	}
}

func TestRoutingPolicyReachesModel(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"ChainPolicy", `{"id":"t","routing_policy":"round_robin","tasks":[{"id":"a","handler":"prompt_to_string"}]}`, core.PolicyRoundRobin},
		{"NoPolicy", oneTask("prompt_to_string", ""), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			llm := newLLM(&reply{text: "ok"})
			h := newHarness(llm)
			h.run(t, tt.doc, core.String("x"), nil)
			if got := llm.prompts[0].Select.Policy; got != tt.want {
				t.Errorf("Select.Policy = %q, want %q", got, tt.want)
			}
		})
	}
}
