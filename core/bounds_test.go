package core_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/hooks"
	"github.com/stepwise-run/stepwise/infra/mem"
)

func TestMaxTokensTotal(t *testing.T) {
	loop := func(limit string) string {
		return `{"id":"c","max_tokens_total":` + limit + `,"tasks":[
			{"id":"chat","handler":"chat_completion","execute_config":{"hooks":["echo"]},"transition":{"branches":[{"operator":"equals","when":"tool-call","goto":"tools"},{"operator":"default","goto":"end"}]}},
			{"id":"tools","handler":"execute_tool_calls","transition":{"branches":[{"operator":"default","goto":"chat"}]}}]}`
	}
	tests := []struct {
		name   string
		doc    string
		status core.Status
		reason string
		steps  int
	}{
		// Each model call of the script costs 2 tokens or more; the model
		// asks for echo forever.
		{"StopsALoop", loop("10"), core.StatusFailed, core.ReasonMaxTokens, 0},
		{"Unbounded", loop("0"), core.StatusFailed, core.ReasonMaxSteps, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(newLLM(&reply{calls: []core.ToolCall{toolCall("c", "echo", `{"text":"again"}`)}}))
			ex, steps := h.run(t, tt.doc, core.String("go"), nil)
			if ex.Status != tt.status || ex.Error == nil || ex.Error.Reason != tt.reason {
				t.Fatalf("status %s error %+v; want %s with reason %s", ex.Status, ex.Error, tt.status, tt.reason)
			}
			if tt.reason != core.ReasonMaxTokens {
				if len(steps) != tt.steps {
					t.Errorf("%d steps, want %d", len(steps), tt.steps)
				}
				return
			}
			if ex.TokensIn+ex.TokensOut <= 10 || !strings.Contains(ex.Error.Message, "over the chain's max_tokens_total of 10") {
				t.Errorf("tokens %d, error %q; want over 10 and the limit named", ex.TokensIn+ex.TokensOut, ex.Error.Message)
			}
			last := steps[len(steps)-1]
			if last.TaskID != "chat" || last.Error != nil || len(steps) >= 20 {
				t.Errorf("%d steps, last %+v; want the loop stopped soon after the chat step that went over", len(steps), last)
			}
		})
	}
	t.Run("LastStepKeepsItsOutcome", func(t *testing.T) {
		doc := `{"id":"c","max_tokens_total":1,"tasks":[{"id":"a","handler":"prompt_to_string"}]}`
		ex, _ := newHarness(newLLM(&reply{text: "a long enough answer"})).run(t, doc, core.String("q"), nil)
		if ex.Status != core.StatusSucceeded {
			t.Errorf("status %s error %+v; want succeeded: the tokens of a finished execution are spent anyway", ex.Status, ex.Error)
		}
	})
}

// clock is a settable time source for the engine.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestMaxDuration(t *testing.T) {
	doc := `{"id":"c","max_duration":"1h","tasks":[
		{"id":"ask","handler":"await_input","transition":{"branches":[{"operator":"default","goto":"done"}]}},
		{"id":"done","handler":"noop"}]}`
	tests := []struct {
		name   string
		wait   time.Duration
		status core.Status
	}{
		{"InTime", 59 * time.Minute, core.StatusSucceeded},
		{"WaitingTooLong", 61 * time.Minute, core.StatusFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			clk := &clock{t: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)}
			store := mem.New()
			engine := core.NewEngine(core.EngineConfig{Store: store, Now: clk.now, Tools: hooks.NewRegistry(nil, hooks.Echo())})
			ex, err := engine.Execute(ctx, core.StartRequest{Chain: mustChain(t, doc), Input: core.String("ok?")}, nil)
			if err != nil || ex.Status != core.StatusWaiting {
				t.Fatalf("Execute = %v, %v; want waiting", ex, err)
			}
			clk.advance(tt.wait)
			if _, err := engine.Resume(ctx, ex.Tenant, ex.ID, core.String("fine")); err != nil {
				t.Fatalf("Resume: %v", err)
			}
			final, err := engine.Run(ctx, ex.Tenant, ex.ID, nil)
			if err != nil || final.Status != tt.status {
				t.Fatalf("Run = %s %+v, %v; want %s", final.Status, final.Error, err, tt.status)
			}
			if tt.status == core.StatusSucceeded {
				return
			}
			if final.Error.Reason != core.ReasonMaxDuration || final.Error.Task != "done" || !strings.Contains(final.Error.Message, "over the chain's max_duration of 1h0m0s") {
				t.Errorf("error %+v; want max_duration before task done, naming the limit", final.Error)
			}
			steps, _ := store.ListSteps(ctx, ex.Tenant, ex.ID, 0, 0)
			last := steps[len(steps)-1]
			if len(steps) != 3 || last.TaskID != "done" || last.Error == nil || last.Error.Reason != core.ReasonMaxDuration {
				t.Errorf("%d steps, last %+v; want the refused step of done recorded with the reason", len(steps), last)
			}
		})
	}
}
