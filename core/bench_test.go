package core_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/hooks"
	"github.com/stepwise-run/stepwise/infra/mem"
)

// instantLLM answers every call at once with a fixed text: what remains
// of a step's cost is the engine's own.
type instantLLM struct{}

func (instantLLM) Chat(_ context.Context, req core.ChatRequest, onDelta core.DeltaFunc) (core.Completion, error) {
	if onDelta != nil {
		onDelta(core.Delta{Text: "ok"})
	}
	return core.Completion{Message: core.Message{Role: "assistant", Content: "ok"}, FinishReason: "stop", Usage: core.Usage{TokensIn: 10, TokensOut: 1, Model: "m", Backend: "b"}}, nil
}

func (instantLLM) Prompt(_ context.Context, _ core.PromptRequest, onDelta core.DeltaFunc) (core.Completion, error) {
	if onDelta != nil {
		onDelta(core.Delta{Text: "ok"})
	}
	return core.Completion{Message: core.Message{Role: "assistant", Content: "ok"}, FinishReason: "stop", Usage: core.Usage{TokensIn: 10, TokensOut: 1, Model: "m", Backend: "b"}}, nil
}

func (instantLLM) Embed(context.Context, core.EmbedRequest) (core.Embedding, error) {
	return core.Embedding{Vector: []float32{1}}, nil
}

// chainOf builds a chain of n tasks of one handler, each going to the next.
func chainOf(n int, handler, extra string) string {
	var tasks []string
	for i := range n {
		next := "end"
		if i < n-1 {
			next = fmt.Sprintf("t%d", i+1)
		}
		tasks = append(tasks, fmt.Sprintf(`{"id":"t%d","handler":%q%s,"transition":{"branches":[{"operator":"default","goto":%q}]}}`, i, handler, extra, next))
	}
	return `{"id":"bench","max_steps":1000,"tasks":[` + strings.Join(tasks, ",") + `]}`
}

// BenchmarkEngineStep reports the engine's cost per committed step, with
// a model that answers at once and the in-memory store (which encodes every
// checkpoint as JSON, as a durable store would).
func BenchmarkEngineStep(b *testing.B) {
	const steps = 20
	cases := []struct {
		name, handler, extra string
	}{
		{"noop", "noop", ""},
		{"prompt_to_string", "prompt_to_string", `,"prompt_template":"Question {{.input}}"`},
		{"chat_completion", "chat_completion", ""},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			chain := mustChain(b, chainOf(steps, bc.handler, bc.extra))
			engine := core.NewEngine(core.EngineConfig{Store: mem.New(), LLM: instantLLM{}, Tools: hooks.NewRegistry(nil)})
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				ex, err := engine.Execute(ctx, core.StartRequest{Chain: chain, Input: core.String("what is stepwise?")}, nil)
				if err != nil || ex.Status != core.StatusSucceeded || ex.StepCount != steps {
					b.Fatalf("execution: %v %+v", err, ex)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*steps), "ns/step")
		})
	}
}
