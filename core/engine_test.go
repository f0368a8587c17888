package core_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/hooks"
	"github.com/stepwise-run/stepwise/infra/mem"
)

func TestBranchingOnEveryOperator(t *testing.T) {
	tests := []struct {
		name, operator, when, reply, want string
	}{
		{"Equals", "equals", "blue", "blue", "hit"},
		{"Contains", "contains", "urgent", "this is urgent!", "hit"},
		{"StartsWith", "starts_with", "ERR", "ERR: disk", "hit"},
		{"EndsWith", "ends_with", "?", "really?", "hit"},
		{"GreaterSymbol", ">", "10", "42", "hit"},
		{"Gt", "gt", "10", "3", "miss"},
		{"LessSymbol", "<", "10", "3", "hit"},
		{"Lt", "lt", "10", "30", "miss"},
		{"InRange", "in_range", "1-5", "4", "hit"},
		{"InRangeMiss", "in_range", "1-5", "9", "miss"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := fmt.Sprintf(`{"id":"c","tasks":[
				{"id":"ask","handler":"prompt_to_string","transition":{"branches":[{"operator":%q,"when":%q,"goto":"hit"},{"operator":"default","goto":"miss"}]}},
				{"id":"hit","handler":"noop","prompt_template":"hit"},
				{"id":"miss","handler":"noop","prompt_template":"miss"}]}`, tt.operator, tt.when)
			ex, steps := newHarness(newLLM(&reply{text: tt.reply})).run(t, doc, core.String("q"), nil)
			if steps[0].Transition != tt.want || ex.Output != core.String(tt.want) {
				t.Errorf("transition %q, output %v; want %q", steps[0].Transition, ex.Output, tt.want)
			}
		})
	}
}

func TestConditionBranchesOnKeyAndBoolean(t *testing.T) {
	for _, when := range []string{"yes", "true"} {
		t.Run(when, func(t *testing.T) {
			doc := fmt.Sprintf(`{"id":"c","tasks":[
				{"id":"check","handler":"condition_key","valid_conditions":{"yes":true,"no":false},"transition":{"branches":[{"operator":"equals","when":%q,"goto":"yes_path"},{"operator":"default","goto":"end"}]}},
				{"id":"yes_path","handler":"noop","prompt_template":"took yes"}]}`, when)
			ex, _ := newHarness(newLLM(&reply{text: "yes"})).run(t, doc, core.String("ok?"), nil)
			if ex.Output != core.String("took yes") {
				t.Errorf("output = %v, want the yes branch", ex.Output)
			}
		})
	}
}

func TestOnFailureGetsTheError(t *testing.T) {
	doc := `{"id":"c","tasks":[
		{"id":"boom","handler":"raise_error","transition":{"on_failure":"recover","branches":[{"operator":"default","goto":"end"}]}},
		{"id":"recover","handler":"noop","print":"recovered from: {{.recover}}"}]}`
	h := newHarness(newLLM())
	ex, steps := h.run(t, doc, core.String("disk full"), nil)
	if ex.Status != core.StatusSucceeded || len(steps) != 2 {
		t.Fatalf("status %s, %d steps", ex.Status, len(steps))
	}
	if steps[0].Transition != "recover" || steps[0].Error == nil {
		t.Errorf("first step = %+v, want a failure transitioning to recover", steps[0])
	}
	if steps[1].Input != core.String("disk full") || steps[1].Printed != "recovered from: disk full" {
		t.Errorf("on_failure task input = %v, printed %q; want the error text", steps[1].Input, steps[1].Printed)
	}
}

func TestRetryWithBackoff(t *testing.T) {
	flaky := core.Errorf(core.EUNAVAILABLE, "backend busy")
	doc := `{"id":"c","tasks":[{"id":"a","handler":"prompt_to_string","retry_on_failure":3,"retry_backoff":"20ms","transition":{"on_failure":"fallback","branches":[{"operator":"default","goto":"end"}]}},{"id":"fallback","handler":"noop"}]}`

	t.Run("SucceedsOnThirdAttempt", func(t *testing.T) {
		llm := newLLM(&reply{err: flaky, times: 2}, &reply{text: "done"})
		ex, steps := newHarness(llm).run(t, doc, core.String("q"), nil)
		if ex.Status != core.StatusSucceeded || ex.Output != core.String("done") || len(steps) != 3 {
			t.Fatalf("status %s output %v steps %d", ex.Status, ex.Output, len(steps))
		}
		for i, st := range steps {
			if st.Attempt != i+1 {
				t.Errorf("step %d attempt = %d", st.Index, st.Attempt)
			}
		}
		if steps[0].Error == nil || steps[0].Error.Code != core.EUNAVAILABLE || steps[0].Transition != "a" {
			t.Errorf("first attempt record = %+v, want the error and a transition back to the task", steps[0])
		}
		// Backoff doubles: at least 20ms before attempt 2, 40ms before 3.
		if gap := steps[1].StartedAt.Sub(steps[0].StartedAt); gap < 20*time.Millisecond {
			t.Errorf("attempt 2 started %v after attempt 1, want >= 20ms", gap)
		}
		if gap := steps[2].StartedAt.Sub(steps[1].StartedAt); gap < 40*time.Millisecond {
			t.Errorf("attempt 3 started %v after attempt 2, want >= 40ms", gap)
		}
	})
	t.Run("ExhaustedGoesToOnFailure", func(t *testing.T) {
		ex, steps := newHarness(newLLM(&reply{err: flaky})).run(t, doc, core.String("q"), nil)
		if len(steps) != 5 || steps[3].Transition != "fallback" || steps[4].TaskID != "fallback" {
			t.Fatalf("steps = %d, last transitions %q; want 4 attempts then fallback", len(steps), steps[3].Transition)
		}
		if ex.Status != core.StatusSucceeded || !strings.Contains(ex.Output.Data.(string), "backend busy") {
			t.Errorf("status %s output %v", ex.Status, ex.Output)
		}
	})
	t.Run("ExhaustedWithoutOnFailureFails", func(t *testing.T) {
		doc := `{"id":"c","tasks":[{"id":"a","handler":"prompt_to_string","retry_on_failure":1,"retry_backoff":"1ms"}]}`
		ex, steps := newHarness(newLLM(&reply{err: flaky})).run(t, doc, core.String("q"), nil)
		if ex.Status != core.StatusFailed || len(steps) != 2 || !strings.Contains(ex.Error.Message, "failed after 2 attempts") || ex.Error.Code != core.EUNAVAILABLE {
			t.Errorf("status %s, %d steps, error %+v", ex.Status, len(steps), ex.Error)
		}
		if steps[0].Transition != "a" || steps[1].Transition != "" {
			t.Errorf("transitions %q, %q; want a retry then none", steps[0].Transition, steps[1].Transition)
		}
	})
}

func TestTaskTimeout(t *testing.T) {
	doc := `{"id":"c","tasks":[{"id":"slow","handler":"prompt_to_string","timeout":"30ms"}]}`
	ex, steps := newHarness(newLLM(&reply{text: "late", delay: 5 * time.Second})).run(t, doc, core.String("q"), nil)
	if ex.Status != core.StatusFailed || steps[0].Error == nil || steps[0].Error.Code != core.ETIMEOUT {
		t.Fatalf("status %s, step error %+v; want a timeout", ex.Status, steps[0].Error)
	}
	if steps[0].Duration > 2*time.Second {
		t.Errorf("the timed-out step took %v; the model call was not cancelled", steps[0].Duration)
	}
}

func TestCallerCancellationInterruptsAndResumes(t *testing.T) {
	llm := newLLM(&reply{match: "first", text: "one"}, &reply{match: "one", text: "two", delay: 5 * time.Second, times: 1}, &reply{match: "one", text: "two"})
	h := newHarness(llm)
	doc := `{"id":"c","tasks":[
		{"id":"a","handler":"prompt_to_string","transition":{"branches":[{"operator":"default","goto":"b"}]}},
		{"id":"b","handler":"prompt_to_string"}]}`
	ctx, cancel := context.WithCancel(context.Background())
	started, err := h.engine.Start(ctx, core.StartRequest{Chain: mustChain(t, doc), Input: core.String("first")})
	if err != nil {
		t.Fatal(err)
	}
	obs := core.ObserverFunc(func(e core.Event) {
		if e.Kind == core.EventStepStarted && e.TaskID == "b" {
			go func() { time.Sleep(20 * time.Millisecond); cancel() }()
		}
	})
	ex, err := h.engine.Run(ctx, started.Tenant, started.ID, obs)
	if core.ErrorCode(err) != core.ETIMEOUT {
		t.Fatalf("Run err = %v, want a timeout (interruption)", err)
	}
	if ex.Status != core.StatusRunning || ex.StepCount != 1 || ex.Cursor.Task != "b" {
		t.Fatalf("after interruption: status %s steps %d cursor %q; want running at b with 1 step", ex.Status, ex.StepCount, ex.Cursor.Task)
	}
	stored, _ := h.store.GetExecution(context.Background(), ex.Tenant, ex.ID)
	if stored.StepCount != 1 {
		t.Fatalf("stored step count %d, want 1 (the interrupted step is not committed)", stored.StepCount)
	}
	final, err := h.engine.Run(context.Background(), ex.Tenant, ex.ID, nil)
	if err != nil || final.Status != core.StatusSucceeded || final.Output != core.String("two") || final.StepCount != 2 {
		t.Fatalf("resumed run = %+v, %v; want succeeded with output two after 2 steps", final, err)
	}
}

func TestMaxSteps(t *testing.T) {
	loop := func(max string) string {
		return `{"id":"c"` + max + `,"tasks":[{"id":"spin","handler":"noop","transition":{"branches":[{"operator":"default","goto":"spin"}]}}]}`
	}
	tests := []struct {
		name  string
		doc   string
		steps int
	}{
		{"ChainLimit", loop(`,"max_steps":5`), 5},
		{"Default", loop(""), core.DefaultMaxSteps},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex, steps := newHarness(newLLM()).run(t, tt.doc, core.String("x"), nil)
			if ex.Status != core.StatusFailed || ex.Error.Reason != core.ReasonMaxSteps || len(steps) != tt.steps {
				t.Errorf("status %s reason %+v steps %d; want failed max_steps after %d", ex.Status, ex.Error, len(steps), tt.steps)
			}
		})
	}
}

func TestTokenLimit(t *testing.T) {
	doc := `{"id":"c","token_limit":10,"tasks":[{"id":"a","handler":"prompt_to_string"}]}`
	llm := newLLM()
	ex, _ := newHarness(llm).run(t, doc, core.String(strings.Repeat("word ", 40)), nil)
	if ex.Status != core.StatusFailed || !strings.Contains(ex.Error.Message, "over the chain's token_limit of 10") {
		t.Errorf("status %s error %+v", ex.Status, ex.Error)
	}
	if len(llm.prompts) != 0 {
		t.Errorf("the model was called despite the token limit")
	}
}

func TestTemplatesAndMacros(t *testing.T) {
	tests := []struct {
		name     string
		template string
		want     string
		wantErr  string
	}{
		{"Input", "{{.input}}", "hello", ""},
		{"TaskVar", "{{.first}}!", "HELLO!", ""},
		{"IndexForDashedIDs", `{{index . "my-task"}}`, "dashed", ""},
		{"PreviousOutput", "{{.previous_output}}", "dashed", ""},
		{"JSONFunc", `{{json .first}}`, `"HELLO"`, ""},
		{"VarMacro", "{{var:who}}/{{var:missing}}", "tester/", ""},
		{"ChainMacro", "{{chain:id}}", "tmpl", ""},
		{"NowMacroLayout", "{{now:2006}}", fmt.Sprint(time.Now().Year()), ""},
		{"HookserviceHooks", "{{hookservice:hooks}}", `["echo","print"]`, ""},
		{"HookserviceTools", "{{hookservice:tools echo}}", `["echo"]`, ""},
		{"HookserviceList", "{{hookservice:list}}", `{"echo":["echo"],"print":["print"]}`, ""},
		{"MissingVariableIsAnError", "{{.nope}}", "", `map has no entry for key "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := fmt.Sprintf(`{"id":"tmpl","tasks":[
				{"id":"first","handler":"noop","prompt_template":"HELLO","transition":{"branches":[{"operator":"default","goto":"my-task"}]}},
				{"id":"my-task","handler":"noop","prompt_template":"dashed","transition":{"branches":[{"operator":"default","goto":"last"}]}},
				{"id":"last","handler":"noop","prompt_template":%q}]}`, tt.template)
			ex, steps := newHarness(newLLM()).run(t, doc, core.String("hello"), nil)
			if tt.wantErr != "" {
				if ex.Status != core.StatusFailed || !strings.Contains(steps[2].Error.Message, tt.wantErr) {
					t.Errorf("status %s, error %+v; want %q", ex.Status, steps[2].Error, tt.wantErr)
				}
				return
			}
			if ex.Output != core.String(tt.want) {
				t.Errorf("output = %v, want %q", ex.Output, tt.want)
			}
		})
	}
}

func TestMacroValuesAreNotTemplateCode(t *testing.T) {
	h := newHarness(newLLM())
	doc := `{"id":"c","tasks":[{"id":"a","handler":"noop","prompt_template":"[{{var:evil}}]"}]}`
	ex, err := h.engine.Execute(context.Background(), core.StartRequest{Chain: mustChain(t, doc), Input: core.String("secret"), TemplateVars: map[string]string{"evil": "{{.input}}"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Output != core.String("[{{.input}}]") {
		t.Errorf("output = %v, want the macro value printed literally", ex.Output)
	}
}

func TestPrintAndInputVar(t *testing.T) {
	doc := `{"id":"c","tasks":[
		{"id":"a","handler":"noop","prompt_template":"first","print":"a said {{.a}}","transition":{"branches":[{"operator":"default","goto":"b"}]}},
		{"id":"b","handler":"noop","input_var":"input"}]}`
	ex, steps := newHarness(newLLM()).run(t, doc, core.String("original"), nil)
	if steps[0].Printed != "a said first" {
		t.Errorf("printed = %q", steps[0].Printed)
	}
	if steps[1].Input != core.String("original") || ex.Output != core.String("original") {
		t.Errorf("input_var: step input %v, output %v; want the original input", steps[1].Input, ex.Output)
	}
}

func TestComposeInAChain(t *testing.T) {
	doc := `{"id":"c","tasks":[
		{"id":"chat","handler":"chat_completion","transition":{"branches":[{"operator":"default","goto":"note"}]}},
		{"id":"note","handler":"noop","prompt_template":"a note","transition":{"branches":[{"operator":"default","goto":"end","compose":{"with_var":"chat","strategy":"append_string_to_chat_history"}}]}}]}`
	ex, _ := newHarness(newLLM(&reply{text: "answer"})).run(t, doc, core.String("q"), nil)
	h := ex.Output.Data.(core.ChatHistory)
	if n := len(h.Messages); n != 3 || h.Messages[2].Content != "a note" || h.Messages[2].Role != "assistant" {
		t.Errorf("composed history = %+v, want the note appended", h.Messages)
	}
	if _, ok := ex.Vars["note__composed"]; !ok {
		t.Errorf("vars %v lack note__composed", keysOf(ex.Vars))
	}
}

func TestAgentLoopCallsEchoTwice(t *testing.T) {
	llm := newLLM(
		&reply{match: "say hi twice", calls: []core.ToolCall{toolCall("call-1", "echo", `{"text":"hi"}`)}},
		&reply{match: "hi", times: 1, calls: []core.ToolCall{toolCall("call-2", "echo", `{"text":"hi again"}`)}},
		&reply{match: "hi again", text: "I said hi twice."},
	)
	doc := `{"id":"agent","tasks":[
		{"id":"chat","handler":"chat_completion","execute_config":{"hooks":["echo"]},"transition":{"branches":[{"operator":"equals","when":"tool-call","goto":"tools"},{"operator":"default","goto":"end"}]}},
		{"id":"tools","handler":"execute_tool_calls","transition":{"branches":[{"operator":"default","goto":"chat"}]}}]}`
	ex, steps := newHarness(llm).run(t, doc, core.String("say hi twice"), nil)
	if ex.Status != core.StatusSucceeded || len(steps) != 5 {
		t.Fatalf("status %s, %d steps", ex.Status, len(steps))
	}
	var tasks []string
	for _, s := range steps {
		tasks = append(tasks, s.TaskID)
	}
	if strings.Join(tasks, ",") != "chat,tools,chat,tools,chat" {
		t.Errorf("task order %v", tasks)
	}
	h := ex.Output.Data.(core.ChatHistory)
	if h.Last().Content != "I said hi twice." || h.Messages[2].ToolCallID != "call-1" || h.Messages[2].Content != "hi" {
		t.Errorf("history = %+v", h.Messages)
	}
	// The second model call saw the first call and its result.
	if second := llm.chats[1].Messages; len(second) != 3 || second[1].ToolCalls[0].ID != "call-1" || second[2].ToolCallID != "call-1" {
		t.Errorf("second request messages = %+v", second)
	}
	if len(llm.chats[0].Tools) != 1 || llm.chats[0].Tools[0].Function.Name != "echo" {
		t.Errorf("offered tools = %+v", llm.chats[0].Tools)
	}
	if h.InputTokens == 0 || h.OutputTokens == 0 || ex.TokensIn < h.InputTokens {
		t.Errorf("tokens: history %d/%d execution %d/%d", h.InputTokens, h.OutputTokens, ex.TokensIn, ex.TokensOut)
	}
}

func TestStepRecords(t *testing.T) {
	doc := `{"id":"c","tasks":[{"id":"ask","handler":"prompt_to_string","transition":{"branches":[{"operator":"default","goto":"end"}]}}]}`
	ex, steps := newHarness(newLLM(&reply{text: "answer"})).run(t, doc, core.String("question"), nil)
	st := steps[0]
	if st.Tenant != core.DefaultTenant || st.ExecutionID != ex.ID || st.Index != 1 || st.TaskID != "ask" || st.Handler != "prompt_to_string" ||
		st.Input != core.String("question") || st.Output != core.String("answer") || st.Eval != "answer" || st.Transition != "end" ||
		st.TokensIn == 0 || st.TokensOut == 0 || st.Model != "fake:1b" || st.Backend != "script" || st.Error != nil || st.StartedAt.IsZero() || st.Duration <= 0 {
		t.Errorf("step record = %+v", st)
	}
}

func TestObserverEvents(t *testing.T) {
	var mu sync.Mutex
	var kinds []string
	var deltas strings.Builder
	obs := core.ObserverFunc(func(e core.Event) {
		mu.Lock()
		defer mu.Unlock()
		kinds = append(kinds, string(e.Kind))
		if e.Kind == core.EventDelta {
			deltas.WriteString(e.Delta)
		}
	})
	doc := `{"id":"c","tasks":[{"id":"ask","handler":"prompt_to_string"}]}`
	newHarness(newLLM(&reply{text: "three little words"})).run(t, doc, core.String("q"), obs)
	want := "step_started,delta,delta,delta,step_committed,finished"
	if got := strings.Join(kinds, ","); got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
	if deltas.String() != "three little words" {
		t.Errorf("deltas joined = %q", deltas.String())
	}
}

func TestStartChecksHooks(t *testing.T) {
	h := newHarness(newLLM())
	doc := `{"id":"c","tasks":[{"id":"a","handler":"chat_completion","execute_config":{"hooks":["ecko"]}}]}`
	_, err := h.engine.Start(context.Background(), core.StartRequest{Chain: mustChain(t, doc), Input: core.String("x")})
	wantProblem(t, err, "a", "tasks[0].execute_config.hooks[0]", `unknown hook "ecko"; did you mean "echo"?`)
}

func TestStartRejectsInvalidChain(t *testing.T) {
	h := newHarness(newLLM())
	_, err := h.engine.Start(context.Background(), core.StartRequest{Chain: &core.Chain{ID: "c"}})
	if core.ErrorCode(err) != core.EINVALID {
		t.Errorf("err = %v, want invalid", err)
	}
}

func TestNoLLMConfigured(t *testing.T) {
	e := core.NewEngine(core.EngineConfig{Store: mem.New(), Tools: hooks.NewRegistry(nil)})
	ex, err := e.Execute(context.Background(), core.StartRequest{Chain: mustChain(t, oneTask("prompt_to_string", "")), Input: core.String("q")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Status != core.StatusFailed || !strings.Contains(ex.Error.Message, "needs a language model") {
		t.Errorf("status %s error %+v", ex.Status, ex.Error)
	}
}

// racingStore makes two engines read the same version before either
// commits, so that their commits race.
type racingStore struct {
	*mem.Store
	arrived chan struct{}
	gate    chan struct{}
}

func (s *racingStore) GetExecution(ctx context.Context, tenant, id string) (*core.Execution, error) {
	e, err := s.Store.GetExecution(ctx, tenant, id)
	s.arrived <- struct{}{}
	<-s.gate
	return e, err
}

func TestRacingEnginesCommitEachStepOnce(t *testing.T) {
	doc := `{"id":"c","tasks":[
		{"id":"a","handler":"noop","transition":{"branches":[{"operator":"default","goto":"b"}]}},
		{"id":"b","handler":"noop"}]}`
	for _, status := range []core.Status{core.StatusQueued, core.StatusRunning} {
		t.Run(string(status), func(t *testing.T) {
			for round := range 20 {
				store := &racingStore{Store: mem.New(), arrived: make(chan struct{}, 2), gate: make(chan struct{})}
				newEngine := func() *core.Engine {
					return core.NewEngine(core.EngineConfig{Store: store, LLM: newLLM(), Tools: hooks.NewRegistry(nil)})
				}
				ex, err := newEngine().Start(context.Background(), core.StartRequest{Chain: mustChain(t, doc), Input: core.String("x")})
				if err != nil {
					t.Fatal(err)
				}
				if status == core.StatusRunning {
					// Both engines then skip the status commit and race on step 1.
					ex.Status = core.StatusRunning
					if err := store.CommitExecution(context.Background(), ex, nil); err != nil {
						t.Fatal(err)
					}
				}
				var wg sync.WaitGroup
				errs := make([]error, 2)
				for i := range 2 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						_, errs[i] = newEngine().Run(context.Background(), ex.Tenant, ex.ID, nil)
					}()
				}
				<-store.arrived
				<-store.arrived
				close(store.gate)
				wg.Wait()
				conflicts := 0
				for _, err := range errs {
					if core.ErrorCode(err) == core.ECONFLICT {
						conflicts++
					} else if err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
				}
				if conflicts != 1 {
					t.Fatalf("round %d: %d engines lost the race, want exactly 1 (errs %v)", round, conflicts, errs)
				}
				steps, _ := store.ListSteps(context.Background(), ex.Tenant, ex.ID, 0, 0)
				if len(steps) != 2 || steps[0].Index != 1 || steps[1].Index != 2 {
					t.Fatalf("round %d: %d steps, want indexes 1, 2", round, len(steps))
				}
				final, _ := store.Store.GetExecution(context.Background(), ex.Tenant, ex.ID)
				if final.Status != core.StatusSucceeded {
					t.Fatalf("round %d: status %s", round, final.Status)
				}
			}
		})
	}
}

func keysOf(m map[string]core.Value) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// panicHook crashes on every call, as a buggy tool might.
type panicHook struct{}

func (panicHook) Name() string { return "crash" }
func (panicHook) Tools(context.Context) ([]core.Tool, error) {
	return []core.Tool{{Type: "function", Function: core.ToolFunction{Name: "crash"}}}, nil
}
func (panicHook) Call(context.Context, core.HookCall) (core.Value, error) {
	var m map[string]int
	m["boom"]++ // a nil-map write: a Go panic
	return core.Nil, nil
}

func TestHandlerPanicFailsTheStepNotTheProcess(t *testing.T) {
	e := core.NewEngine(core.EngineConfig{Store: mem.New(), LLM: newLLM(), Tools: hooks.NewRegistry(nil, panicHook{})})
	doc := `{"id":"c","tasks":[{"id":"a","handler":"hook","hook":{"name":"crash"},"transition":{"on_failure":"b"}},{"id":"b","handler":"noop"}]}`
	ex, err := e.Execute(context.Background(), core.StartRequest{Chain: mustChain(t, doc), Input: core.String("x")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Status != core.StatusSucceeded || !strings.Contains(ex.Output.Display(), "handler hook crashed: assignment to entry in nil map") {
		t.Errorf("status %s output %v; want the crash as the on_failure input", ex.Status, ex.Output)
	}
}

func TestHiddenToolsCannotBeCalled(t *testing.T) {
	llm := newLLM(
		&reply{match: "go", calls: []core.ToolCall{toolCall("c1", "print", `{"message":"SECRET"}`)}},
		&reply{match: "no tool named", text: "ok, I cannot"},
	)
	doc := `{"id":"c","tasks":[
		{"id":"chat","handler":"chat_completion","execute_config":{"hooks":["echo","print"],"hide_tools":["print"]},"transition":{"branches":[{"operator":"equals","when":"tool-call","goto":"tools"},{"operator":"default","goto":"end"}]}},
		{"id":"tools","handler":"execute_tool_calls","transition":{"branches":[{"operator":"default","goto":"chat"}]}}]}`
	ex, steps := newHarness(llm).run(t, doc, core.String("go"), nil)
	if ex.Status != core.StatusSucceeded || len(steps) != 3 {
		t.Fatalf("status %s, %d steps", ex.Status, len(steps))
	}
	msgs := ex.Output.Data.(core.ChatHistory).Messages
	if tool := msgs[2]; tool.Role != "tool" || strings.Contains(tool.Content, "SECRET") || !strings.Contains(tool.Content, `there is no tool named "print"`) {
		t.Errorf("tool message = %+v; a hidden tool must not run", tool)
	}
}

func TestFailedAttemptLeavesTheExecutionAsItWas(t *testing.T) {
	// The print template fails after the handler succeeded: the retry must
	// see the same input, and the failed attempt's output must not stick.
	doc := `{"id":"c","tasks":[{"id":"a","handler":"parse_key_value","print":"{{.missing}}","retry_on_failure":1,"retry_backoff":"1ms"}]}`
	ex, steps := newHarness(newLLM()).run(t, doc, core.String("k=v"), nil)
	if ex.Status != core.StatusFailed || len(steps) != 2 {
		t.Fatalf("status %s, %d steps", ex.Status, len(steps))
	}
	if steps[1].Input != core.String("k=v") {
		t.Errorf("retry input = %#v, want the original input", steps[1].Input)
	}
	if _, ok := ex.Vars["a"]; ok {
		t.Errorf("vars keep the output of a failed attempt: %v", ex.Vars["a"])
	}
}

func TestTemplatesCompareJSONNumbers(t *testing.T) {
	doc := `{"id":"c","tasks":[{"id":"a","handler":"noop","prompt_template":"{{if gt .input.n 3}}big{{else}}small{{end}} {{.input.n}} {{.input.f}}"}]}`
	input, err := core.Coerce(core.TypeJSON, `{"n": 5, "f": 2.5}`)
	if err != nil {
		t.Fatal(err)
	}
	ex, _ := newHarness(newLLM()).run(t, doc, input, nil)
	if ex.Output != core.String("big 5 2.5") {
		t.Errorf("output = %v (%+v)", ex.Output, ex.Error)
	}
}
