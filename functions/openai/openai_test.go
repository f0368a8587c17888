package openai_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	goopenai "github.com/sashabaranov/go-openai"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/docs"
	"github.com/stepwise-run/stepwise/functions/openai"
)

func user(text string) []goopenai.ChatCompletionMessage {
	return []goopenai.ChatCompletionMessage{{Role: "user", Content: text}}
}

// TestChat drives the plain routed proxy with go-openai, over both
// backend protocols.
func TestChat(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, model := range []string{ollamaModel, openaiModel} {
		t.Run(model, func(t *testing.T) {
			for _, f := range []*fakellm.Server{e.ollama, e.oai} {
				f.Script(fakellm.Reply{Match: "capital of France", Text: "Paris.\n\nIt is — naturellement — Paris ✓"})
			}
			t.Run("whole", func(t *testing.T) {
				resp, err := e.client.CreateChatCompletion(ctx, goopenai.ChatCompletionRequest{Model: model, Messages: user("capital of France?")})
				if err != nil {
					t.Fatal(err)
				}
				if got := resp.Choices[0].Message.Content; got != "Paris.\n\nIt is — naturellement — Paris ✓" {
					t.Errorf("content %q", got)
				}
				if resp.Choices[0].FinishReason != "stop" || resp.Usage.PromptTokens == 0 || resp.Usage.CompletionTokens == 0 ||
					resp.Usage.TotalTokens != resp.Usage.PromptTokens+resp.Usage.CompletionTokens {
					t.Errorf("finish %q usage %+v", resp.Choices[0].FinishReason, resp.Usage)
				}
				if resp.Object != "chat.completion" || !strings.HasPrefix(resp.ID, "chatcmpl-") || resp.Model != model {
					t.Errorf("id %q object %q model %q", resp.ID, resp.Object, resp.Model)
				}
			})
			t.Run("streamed", func(t *testing.T) {
				stream, err := e.client.CreateChatCompletionStream(ctx, goopenai.ChatCompletionRequest{
					Model: model, Messages: user("capital of France?"), Stream: true,
					StreamOptions: &goopenai.StreamOptions{IncludeUsage: true},
				})
				if err != nil {
					t.Fatal(err)
				}
				defer stream.Close()
				got := readStream(t, stream)
				if got.text != "Paris.\n\nIt is — naturellement — Paris ✓" {
					t.Errorf("streamed %q", got.text)
				}
				if got.chunks < 4 || got.finish != "stop" || got.usage == nil || got.usage.TotalTokens == 0 {
					t.Errorf("%d chunks, finish %q, usage %+v", got.chunks, got.finish, got.usage)
				}
			})
		})
	}
}

// TestChatStreamsAsGenerated reads the first token of the answer while the
// backend is still holding the rest of it back.
func TestChatStreamsAsGenerated(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct {
		name  string
		model string
		fake  *fakellm.Server
	}{{"ollama", ollamaModel, e.ollama}, {"openai", openaiModel, e.oai}} {
		t.Run(tt.name, func(t *testing.T) {
			hold := make(chan struct{})
			tt.fake.Script(fakellm.Reply{Match: "slowly", Text: "first second third", Hold: hold})
			stream, err := e.client.CreateChatCompletionStream(context.Background(), goopenai.ChatCompletionRequest{
				Model: tt.model, Messages: user("answer slowly"), Stream: true})
			if err != nil {
				t.Fatal(err)
			}
			defer stream.Close()
			if first := firstToken(t, stream); first != "first " {
				t.Errorf("first token %q", first)
			}
			close(hold) // only now may the backend finish its answer
			if rest := readStream(t, stream); rest.text != "second third" || rest.finish != "stop" {
				t.Errorf("rest %q, finish %q", rest.text, rest.finish)
			}
		})
	}
}

func TestRoutesAreOwned(t *testing.T) {
	h := openai.New(openai.Config{})
	for _, r := range h.Routes() {
		if !openai.Owns(r.Pattern) {
			t.Errorf("route %s %s is not under a path Owns claims", r.Method, r.Pattern)
		}
	}
	for _, p := range []string{"/executions", "/taskchains/x", "/health", "/v1"} {
		if openai.Owns(p) {
			t.Errorf("Owns(%q) = true", p)
		}
	}
}

func TestUnknownRoute(t *testing.T) {
	e := newEnv(t)
	e.get("/v1/nope").wantError(t, http.StatusNotFound, "unknown_url", "")
	e.send(http.MethodDelete, "/v1/chat/completions", "").wantError(t, http.StatusMethodNotAllowed, "method_not_allowed", "")
}

// TestRoutesMatchDocument keeps this function's routes and the paths of
// docs/openapi.yaml it owns in step.
func TestRoutesMatchDocument(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData([]byte(docs.OpenAPI))
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("docs/openapi.yaml is not valid: %v", err)
	}
	tail := regexp.MustCompile(`\{(\w+)\.\.\.\}`)
	served := map[string]bool{}
	for _, r := range openai.New(openai.Config{}).Routes() {
		served[r.Method+" "+tail.ReplaceAllString(r.Pattern, "{$1}")] = true
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if openai.Owns(path) {
				documented[method+" "+path] = true
			}
		}
	}
	for k := range served {
		if !documented[k] {
			t.Errorf("route %s is not in docs/openapi.yaml", k)
		}
	}
	for k := range documented {
		if !served[k] {
			t.Errorf("docs/openapi.yaml documents %s, which is no route", k)
		}
	}
	if len(served) == 0 {
		t.Error("no routes compared")
	}
}
