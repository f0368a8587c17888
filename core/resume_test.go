package core_test

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/infra/mem"
)

const approvalChain = `{"id":"approve","tasks":[
	{"id":"draft","handler":"noop","prompt_template":"release v2","transition":{"branches":[{"operator":"default","goto":"ask"}]}},
	{"id":"ask","handler":"await_input","prompt_template":"Ship {{.draft}}? yes or no","transition":{"branches":[
		{"operator":"equals","when":"yes","goto":"ship"},{"operator":"equals","when":"no","goto":"stop"}]}},
	{"id":"ship","handler":"noop","prompt_template":"shipped {{.draft}} ({{.ask}})"},
	{"id":"stop","handler":"noop","prompt_template":"stopped"}]}`

// startWaiting runs doc on input until it waits, and fails the test if it
// does not.
func startWaiting(t *testing.T, h *harness, doc string, input core.Value) *core.Execution {
	t.Helper()
	h.run(t, doc, input, nil)
	page, err := h.store.ListExecutions(context.Background(), core.DefaultTenant, core.ExecutionQuery{})
	if err != nil || len(page.Executions) != 1 {
		t.Fatalf("ListExecutions = %v, %v", page, err)
	}
	ex, err := h.store.GetExecution(context.Background(), core.DefaultTenant, page.Executions[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Status != core.StatusWaiting || ex.Waiting == nil {
		t.Fatalf("status %s, waiting %+v, error %+v; want waiting", ex.Status, ex.Waiting, ex.Error)
	}
	return ex
}

func TestAwaitInputPausesAndResumes(t *testing.T) {
	tests := []struct {
		name, answer, transition, output string
	}{
		{"Yes", "yes", "ship", "shipped release v2 (yes)"},
		{"No", "no", "stop", "stopped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			h := newHarness(newLLM())
			ex := startWaiting(t, h, approvalChain, core.String("go"))
			want := core.Waiting{Task: "ask", Kind: core.WaitInput, Prompt: "Ship release v2? yes or no"}
			if !reflect.DeepEqual(*ex.Waiting, want) || ex.Cursor.Task != "ask" || ex.StepCount != 2 || ex.Lease.Owner != "" {
				t.Fatalf("waiting %+v cursor %+v steps %d lease %+v; want %+v on ask after 2 steps, no lease", *ex.Waiting, ex.Cursor, ex.StepCount, ex.Lease, want)
			}

			resumed, err := h.engine.Resume(ctx, ex.Tenant, ex.ID, core.String(tt.answer))
			if err != nil {
				t.Fatalf("Resume: %v", err)
			}
			if resumed.Status != core.StatusQueued || resumed.Waiting != nil || resumed.Cursor.Task != tt.transition || resumed.StepCount != 3 {
				t.Fatalf("resumed = status %s waiting %+v cursor %+v steps %d; want queued on %s after 3 steps", resumed.Status, resumed.Waiting, resumed.Cursor, resumed.StepCount, tt.transition)
			}
			final, err := h.engine.Run(ctx, ex.Tenant, ex.ID, nil)
			if err != nil || final.Status != core.StatusSucceeded || final.Output.Display() != tt.output {
				t.Fatalf("Run = %+v, %v; want succeeded with %q", final, err, tt.output)
			}
			steps, _ := h.store.ListSteps(ctx, ex.Tenant, ex.ID, 0, 0)
			if len(steps) != 4 {
				t.Fatalf("%d steps, want draft, ask (pause), ask (resume), %s", len(steps), tt.transition)
			}
			pause, resume := steps[1], steps[2]
			if pause.Handler != core.HandlerAwaitInput || pause.Transition != "" || pause.Input != core.String(want.Prompt) {
				t.Errorf("pause step = %+v; want await_input with the prompt as input and no transition", pause)
			}
			if resume.TaskID != "ask" || resume.Handler != core.HandlerAwaitInput || resume.Input != core.String(tt.answer) ||
				resume.Output != core.String(tt.answer) || resume.Eval != tt.answer || resume.Transition != tt.transition {
				t.Errorf("resume step = %+v; want ask with input, output and eval %q going to %s", resume, tt.answer, tt.transition)
			}
		})
	}
}

func TestAwaitInputKeepsTheGivenValue(t *testing.T) {
	ctx := context.Background()
	h := newHarness(newLLM())
	doc := `{"id":"c","tasks":[{"id":"form","handler":"await_input","transition":{"branches":[{"operator":"default","goto":"show"}]}},
		{"id":"show","handler":"noop","prompt_template":"{{.form.name}} is {{.form.age}}"}]}`
	ex := startWaiting(t, h, doc, core.Nil)
	if ex.Waiting.Prompt != "" {
		t.Errorf("prompt = %q, want empty for a nil input without prompt_template", ex.Waiting.Prompt)
	}
	in, err := core.Coerce(core.TypeJSON, `{"name":"Ada","age":36}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.engine.Resume(ctx, ex.Tenant, ex.ID, in); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	final, err := h.engine.Run(ctx, ex.Tenant, ex.ID, nil)
	if err != nil || final.Output != core.String("Ada is 36") || final.Vars["form"].Type != core.TypeJSON {
		t.Fatalf("Run = output %v vars %v, %v; want the json kept as the task's output", final.Output, final.Vars, err)
	}
}

func TestResumeRefused(t *testing.T) {
	ctx := context.Background()
	clientChat := `{"id":"c","tasks":[{"id":"chat","handler":"chat_completion","execute_config":{"pass_clients_tools":true},
		"transition":{"branches":[{"operator":"default","goto":"chat"}]}}]}`
	weather := core.Value{Type: core.TypeOpenAIChat, Data: core.OpenAIChatRequest{
		Messages: []core.Message{{Role: core.RoleUser, Content: "Weather?"}},
		Tools:    []core.Tool{{Type: "function", Function: core.ToolFunction{Name: "get_weather"}}},
	}}
	llm := func() *scriptLLM {
		return newLLM(&reply{match: "Weather?", calls: []core.ToolCall{toolCall("c1", "get_weather", `{}`)}})
	}
	tests := []struct {
		name    string
		doc     string
		input   core.Value
		llm     *scriptLLM
		resume  core.Value
		code    string
		message string
	}{
		{"Succeeded", oneTask("noop", ""), core.String("x"), newLLM(), core.String("y"), core.EINVALID, "is succeeded, not waiting"},
		{"NoBranchTakesTheInput", approvalChain, core.String("x"), newLLM(), core.String("maybe"), core.EINVALID, `no transition matches "maybe"`},
		{"ClientToolsWithText", clientChat, weather, llm(), core.String("sunny"), core.EINVALID, "chat_history or openai_chat, not string"},
		{"ClientToolsUnanswered", clientChat, weather, llm(),
			core.Value{Type: core.TypeChatHistory, Data: core.ChatHistory{Messages: []core.Message{{Role: core.RoleUser, Content: "Weather?"}}}},
			core.EINVALID, `no tool message answering call "c1" of tool get_weather`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(tt.llm)
			ex, _ := h.run(t, tt.doc, tt.input, nil)
			before, _ := h.store.GetExecution(ctx, ex.Tenant, ex.ID)
			_, err := h.engine.Resume(ctx, ex.Tenant, ex.ID, tt.resume)
			if core.ErrorCode(err) != tt.code || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("Resume error = %v, want %s containing %q", err, tt.code, tt.message)
			}
			after, _ := h.store.GetExecution(ctx, ex.Tenant, ex.ID)
			if after.Version != before.Version || after.Status != before.Status {
				t.Errorf("a refused resume changed the execution: %s v%d -> %s v%d", before.Status, before.Version, after.Status, after.Version)
			}
		})
	}
	t.Run("Unknown", func(t *testing.T) {
		_, err := newHarness(newLLM()).engine.Resume(ctx, core.DefaultTenant, "nope", core.String("x"))
		if core.ErrorCode(err) != core.ENOTFOUND {
			t.Errorf("Resume error = %v, want ENOTFOUND", err)
		}
	})
	t.Run("Queued", func(t *testing.T) {
		h := newHarness(newLLM())
		ex, err := h.engine.Start(ctx, core.StartRequest{Chain: mustChain(t, approvalChain), Input: core.String("x")})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.engine.Resume(ctx, ex.Tenant, ex.ID, core.String("yes")); core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "is queued, not waiting") {
			t.Errorf("Resume error = %v, want EINVALID naming the status", err)
		}
	})
}

// barrierStore holds every GetExecution until n of them have read, so that
// n resumes read the same version before any of them commits.
type barrierStore struct {
	*mem.Store
	reads sync.WaitGroup
}

func (s *barrierStore) GetExecution(ctx context.Context, tenant, id string) (*core.Execution, error) {
	ex, err := s.Store.GetExecution(ctx, tenant, id)
	s.reads.Done()
	s.reads.Wait()
	return ex, err
}

func TestConcurrentResumesOneWins(t *testing.T) {
	ctx := context.Background()
	h := newHarness(newLLM())
	ex := startWaiting(t, h, approvalChain, core.String("go"))
	store := &barrierStore{Store: h.store}
	store.reads.Add(2)
	engine := core.NewEngine(core.EngineConfig{Store: store})
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, answer := range []string{"yes", "no"} {
		wg.Go(func() { _, errs[i] = engine.Resume(ctx, ex.Tenant, ex.ID, core.String(answer)) })
	}
	wg.Wait()
	won, lost := 0, 0
	for _, err := range errs {
		switch core.ErrorCode(err) {
		case "":
			won++
		case core.ECONFLICT:
			lost++
		default:
			t.Errorf("Resume error = %v, want nil or ECONFLICT", err)
		}
	}
	if won != 1 || lost != 1 {
		t.Fatalf("errors %v; want one winner and one ECONFLICT", errs)
	}
	steps, _ := h.store.ListSteps(ctx, ex.Tenant, ex.ID, 0, 0)
	if len(steps) != 3 {
		t.Errorf("%d steps, want exactly one resume step after the 2 before", len(steps))
	}
}

func TestClientToolsPauseAndResume(t *testing.T) {
	const agent = `{"id":"agent","max_steps":20,"tasks":[
		{"id":"chat","handler":"chat_completion","execute_config":{"hooks":["echo"],"pass_clients_tools":true},
		 "transition":{"branches":[{"operator":"equals","when":"tool-call","goto":"tools"},{"operator":"default","goto":"end"}]}},
		{"id":"tools","handler":"execute_tool_calls","transition":{"branches":[{"operator":"default","goto":"chat"}]}}]}`
	weatherTool := core.Tool{Type: "function", Function: core.ToolFunction{Name: "get_weather"}}
	weatherCall := toolCall("c1", "get_weather", `{"city":"Paris"}`)
	echoCall := toolCall("c2", "echo", `{"text":"noted"}`)
	tests := []struct {
		name      string
		calls     []core.ToolCall
		toolsEval string
		steps     []string
		toolMsgs  int
	}{
		{"ClientCallOnly", []core.ToolCall{weatherCall}, core.EvalNoCallsFound, []string{"chat", "chat", "tools", "chat"}, 1},
		{"ClientAndHookCalls", []core.ToolCall{echoCall, weatherCall}, core.EvalToolsExecuted, []string{"chat", "chat", "tools", "chat"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			llm := newLLM(
				&reply{match: "Weather in Paris?", calls: tt.calls},
				&reply{match: "18C and sunny", text: "It is 18C and sunny in Paris."},
				&reply{match: "noted", text: "It is 18C and sunny in Paris."},
			)
			h := newHarness(llm)
			in := core.Value{Type: core.TypeOpenAIChat, Data: core.OpenAIChatRequest{
				Messages: []core.Message{{Role: core.RoleUser, Content: "Weather in Paris?"}}, Tools: []core.Tool{weatherTool},
			}}
			ex := startWaiting(t, h, agent, in)
			if ex.Waiting.Kind != core.WaitClientTools || ex.Waiting.Task != "chat" || !reflect.DeepEqual(ex.Waiting.ToolCalls, []core.ToolCall{weatherCall}) {
				t.Fatalf("waiting = %+v; want client_tools on chat with only the get_weather call", ex.Waiting)
			}
			steps, _ := h.store.ListSteps(ctx, ex.Tenant, ex.ID, 0, 0)
			hist := steps[0].Output.Data.(core.ChatHistory).Clone()
			if got := hist.Last().ToolCalls; !reflect.DeepEqual(got, tt.calls) {
				t.Fatalf("the pause step's history ends with calls %+v, want %+v", got, tt.calls)
			}

			// The client runs its tool and resumes with the history plus the result.
			hist.Messages = append(hist.Messages, core.Message{Role: core.RoleTool, ToolCallID: "c1", Name: "get_weather", Content: "18C and sunny"})
			resumed, err := h.engine.Resume(ctx, ex.Tenant, ex.ID, core.Value{Type: core.TypeChatHistory, Data: hist})
			if err != nil || resumed.Status != core.StatusQueued || resumed.Cursor.Task != "tools" {
				t.Fatalf("Resume = %+v, %v; want queued on tools", resumed, err)
			}
			final, err := h.engine.Run(ctx, ex.Tenant, ex.ID, nil)
			if err != nil || final.Status != core.StatusSucceeded || final.Output.Display() != "It is 18C and sunny in Paris." {
				t.Fatalf("Run = %s %v, %v; want the model's answer to the tool result", final.Status, final.Output, err)
			}
			steps, _ = h.store.ListSteps(ctx, ex.Tenant, ex.ID, 0, 0)
			var ids []string
			for _, s := range steps {
				ids = append(ids, s.TaskID)
			}
			if !reflect.DeepEqual(ids, tt.steps) || steps[1].Eval != core.EvalToolCall || steps[2].Eval != tt.toolsEval {
				t.Errorf("steps %v, resume eval %q, tools eval %q; want %v, tool-call, %s", ids, steps[1].Eval, steps[2].Eval, tt.steps, tt.toolsEval)
			}
			last := llm.chats[len(llm.chats)-1]
			tools := 0
			for _, m := range last.Messages {
				if m.Role == core.RoleTool {
					tools++
				}
			}
			if tools != tt.toolMsgs || !slicesHasTool(last.Tools, "get_weather") {
				t.Errorf("the model's second request had %d tool messages and tools %v; want %d and get_weather still offered", tools, last.Tools, tt.toolMsgs)
			}
		})
	}
}

func slicesHasTool(tools []core.Tool, name string) bool {
	for _, t := range tools {
		if t.Function.Name == name {
			return true
		}
	}
	return false
}
