package llm_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/hooks"
	"github.com/stepwise-run/stepwise/core/llm"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/core/llm/ollama"
	"github.com/stepwise-run/stepwise/core/llm/openai"
	"github.com/stepwise-run/stepwise/infra/mem"
)

// BenchmarkPromptOverHTTP measures one prompt through the fake server on
// loopback, streamed, three ways in the same run: the provider called
// directly (the backend's own cost as a client sees it), the router in
// front of it, and a one-task chain through the whole engine (validation,
// templates, the commit of the execution and its step). The differences are
// stepwise's overhead per proxied request and per step.
func BenchmarkPromptOverHTTP(b *testing.B) {
	for _, protocol := range []string{"ollama", "openai"} {
		b.Run(protocol, func(b *testing.B) {
			fake := fakellm.Start()
			defer fake.Close()
			fake.Script(fakellm.Reply{Text: "A short answer of a few words."})
			var p llm.Provider
			var err error
			if protocol == "ollama" {
				p, err = ollama.New(fake.URL(), nil)
			} else {
				p, err = openai.New(openai.Config{BaseURL: fake.URL() + "/v1", APIKey: "k"})
			}
			if err != nil {
				b.Fatal(err)
			}
			const model = "llama3.2:1b"
			router := llm.NewRouter([]llm.Backend{{Name: "fake", Type: protocol, Provider: p}}, nil, llm.Defaults{Prompt: model})
			req := core.PromptRequest{System: "Be brief.", Prompt: "What is stepwise?"}
			ctx := context.Background()
			sink := func(core.Delta) {}

			b.Run("direct", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := p.Prompt(ctx, model, req, sink); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("router", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := router.Prompt(ctx, req, sink); err != nil {
						b.Fatal(err)
					}
				}
			})
			for _, steps := range []int{1, 10} {
				b.Run(fmt.Sprintf("engine-%dsteps", steps), func(b *testing.B) {
					chain, _, err := core.ParseChain([]byte(promptChain(steps)))
					if err != nil {
						b.Fatal(err)
					}
					engine := core.NewEngine(core.EngineConfig{Store: mem.New(), LLM: router, Tools: hooks.NewRegistry(nil)})
					obs := core.ObserverFunc(func(core.Event) {})
					b.ReportAllocs()
					for b.Loop() {
						ex, err := engine.Execute(ctx, core.StartRequest{Chain: chain, Input: core.String("What is stepwise?")}, obs)
						if err != nil || ex.Status != core.StatusSucceeded {
							b.Fatalf("%v %+v", err, ex.Error)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*steps), "ns/step")
				})
			}
		})
	}
}

// promptChain is a chain of n prompt_to_string tasks in a row.
func promptChain(n int) string {
	var tasks []string
	for i := range n {
		next := "end"
		if i < n-1 {
			next = fmt.Sprintf("t%d", i+1)
		}
		tasks = append(tasks, fmt.Sprintf(`{"id":"t%d","handler":"prompt_to_string","system_instruction":"Be brief.","prompt_template":"What is stepwise?","transition":{"branches":[{"operator":"default","goto":%q}]}}`, i, next))
	}
	return `{"id":"bench","tasks":[` + strings.Join(tasks, ",") + `]}`
}
