package fakellm_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	goopenai "github.com/sashabaranov/go-openai"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

func start(t *testing.T) *fakellm.Server {
	t.Helper()
	s := fakellm.Start()
	t.Cleanup(s.Close)
	return s
}

// post sends a JSON body and returns the status and the body read whole.
func post(t *testing.T, s *fakellm.Server, path, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(s.URL()+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func get(t *testing.T, s *fakellm.Server, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(s.URL() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body %s: %v", b, err)
	}
	return m
}

func TestOllamaEndpoints(t *testing.T) {
	s := start(t)
	for _, tt := range []struct {
		name       string
		method     string
		path, body string
		status     int
		check      func(t *testing.T, b []byte)
	}{
		{"root", "GET", "/", "", 200, func(t *testing.T, b []byte) {
			if string(b) != "Ollama is running" {
				t.Errorf("body %q", b)
			}
		}},
		{"version", "GET", "/api/version", "", 200, func(t *testing.T, b []byte) {
			if decode(t, b)["version"] == "" {
				t.Errorf("body %s", b)
			}
		}},
		{"tags", "GET", "/api/tags", "", 200, func(t *testing.T, b []byte) {
			var tags api.ListResponse
			if err := json.Unmarshal(b, &tags); err != nil {
				t.Fatal(err)
			}
			if len(tags.Models) != 3 {
				t.Fatalf("%d models", len(tags.Models))
			}
			for _, m := range tags.Models {
				if m.Size <= 0 || len(m.Digest) != 64 || m.Details.Family == "" || m.Model != m.Name {
					t.Errorf("model %+v", m)
				}
			}
		}},
		{"show", "POST", "/api/show", `{"model":"qwen2.5:7b"}`, 200, func(t *testing.T, b []byte) {
			var show api.ShowResponse
			if err := json.Unmarshal(b, &show); err != nil {
				t.Fatal(err)
			}
			arch, _ := show.ModelInfo["general.architecture"].(string)
			if show.ModelInfo[arch+".context_length"] != float64(32768) || !slices.Contains(show.Capabilities, "tools") {
				t.Errorf("show %+v", show)
			}
		}},
		{"show of an embedding model", "POST", "/api/show", `{"model":"nomic-embed-text"}`, 200, func(t *testing.T, b []byte) {
			if !strings.Contains(string(b), `"capabilities":["embedding"]`) {
				t.Errorf("body %s", b)
			}
		}},
		{"chat without streaming", "POST", "/api/chat", `{"model":"llama3.2:1b","stream":false,"messages":[{"role":"user","content":"hi"}]}`, 200,
			func(t *testing.T, b []byte) {
				var r api.ChatResponse
				if err := json.Unmarshal(b, &r); err != nil {
					t.Fatal(err)
				}
				if !r.Done || r.Message.Content != "fake answer to: hi" || r.DoneReason != "stop" || r.PromptEvalCount != 1 || r.EvalCount != 5 {
					t.Errorf("response %+v", r)
				}
			}},
		{"generate without streaming", "POST", "/api/generate", `{"model":"llama3.2","stream":false,"prompt":"p"}`, 404, nil},
		{"generate with tag", "POST", "/api/generate", `{"model":"llama3.2:1b","stream":false,"prompt":"p"}`, 200, func(t *testing.T, b []byte) {
			var r api.GenerateResponse
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			if !r.Done || r.Response != "fake answer to: p" {
				t.Errorf("response %+v", r)
			}
		}},
		{"embed a list", "POST", "/api/embed", `{"model":"nomic-embed-text","input":["a","b"]}`, 200, func(t *testing.T, b []byte) {
			var r api.EmbedResponse
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			if len(r.Embeddings) != 2 || len(r.Embeddings[0]) != 16 || slices.Equal(r.Embeddings[0], r.Embeddings[1]) || r.PromptEvalCount != 2 {
				t.Errorf("response %+v", r)
			}
		}},
		{"legacy embeddings", "POST", "/api/embeddings", `{"model":"nomic-embed-text","prompt":"a"}`, 200, func(t *testing.T, b []byte) {
			var r api.EmbeddingResponse
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			if len(r.Embedding) != 16 {
				t.Errorf("response %+v", r)
			}
		}},
		{"chat with an embedding model", "POST", "/api/chat", `{"model":"nomic-embed-text","messages":[]}`, 400, nil},
		{"unknown model", "POST", "/api/chat", `{"model":"nope","messages":[]}`, 404, func(t *testing.T, b []byte) {
			if !strings.Contains(decode(t, b)["error"].(string), "not found") {
				t.Errorf("body %s", b)
			}
		}},
		{"bad body", "POST", "/api/chat", `{`, 400, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var status int
			var body []byte
			if tt.method == "GET" {
				status, body = get(t, s, tt.path)
			} else {
				status, body = post(t, s, tt.path, tt.body)
			}
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			if tt.check != nil {
				tt.check(t, body)
			}
		})
	}
}

func TestOllamaStreamShape(t *testing.T) {
	s := start(t)
	s.Script(
		fakellm.Reply{Match: "tools", Text: "Calling.", ToolCalls: []fakellm.Call{{ID: "c1", Name: "f", Arguments: map[string]any{"a": 1}}}},
		fakellm.Reply{Match: "word", Text: "Streamed"},
	)
	for _, tt := range []struct {
		name, body string
		text       string
		calls      int
	}{
		{"text", `{"model":"qwen2.5:7b","messages":[{"role":"user","content":"a b"}]}`, "fake answer to: a b", 0},
		{"one word", `{"model":"qwen2.5:7b","messages":[{"role":"user","content":"word"}]}`, "Streamed", 0},
		{"tool calls", `{"model":"qwen2.5:7b","messages":[{"role":"user","content":"tools"}]}`, "Calling.", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, body := post(t, s, "/api/chat", tt.body)
			if status != 200 {
				t.Fatalf("status %d", status)
			}
			lines := strings.Split(strings.TrimSpace(string(body)), "\n")
			var text strings.Builder
			var calls []api.ToolCall
			for i, line := range lines {
				var r api.ChatResponse
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					t.Fatalf("line %q: %v", line, err)
				}
				text.WriteString(r.Message.Content)
				calls = append(calls, r.Message.ToolCalls...)
				last := i == len(lines)-1
				if r.Done != last {
					t.Errorf("line %d done=%v", i, r.Done)
				}
				if last && (r.DoneReason != "stop" || r.PromptEvalCount == 0 || r.EvalCount == 0) {
					t.Errorf("final chunk %+v", r)
				}
			}
			if len(lines) < 3 || text.String() != tt.text || len(calls) != tt.calls {
				t.Errorf("%d lines, text %q, calls %+v", len(lines), text.String(), calls)
			}
			if tt.calls > 0 && (calls[0].ID != "c1" || calls[0].Function.Arguments.String() != `{"a":1}`) {
				t.Errorf("call %+v", calls[0])
			}
		})
	}
}

// sseEvents reads an event stream into its data payloads.
func sseEvents(t *testing.T, body []byte) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("line %q is not a data line", line)
		}
		out = append(out, data)
	}
	return out
}

func TestOpenAIStreamShape(t *testing.T) {
	s := start(t)
	s.Script(fakellm.Reply{Match: "tools", ToolCalls: []fakellm.Call{
		{ID: "call_1", Name: "lookup", Arguments: map[string]any{"query": "go channels", "limit": 3}},
	}})
	for _, tt := range []struct {
		name      string
		content   string
		usage     bool
		wantCalls bool
	}{
		{"text with usage", "hello there", true, false},
		{"text without usage", "hello there", false, false},
		{"tool call deltas", "tools please", true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"model":"qwen2.5:7b","stream":true,"messages":[{"role":"user","content":"` + tt.content + `"}]`
			if tt.usage {
				body += `,"stream_options":{"include_usage":true}`
			}
			status, raw := post(t, s, "/v1/chat/completions", body+"}")
			if status != 200 {
				t.Fatalf("status %d: %s", status, raw)
			}
			events := sseEvents(t, raw)
			if events[len(events)-1] != "[DONE]" {
				t.Fatalf("last event %q", events[len(events)-1])
			}
			var chunks []goopenai.ChatCompletionStreamResponse
			for _, e := range events[:len(events)-1] {
				var c goopenai.ChatCompletionStreamResponse
				if err := json.Unmarshal([]byte(e), &c); err != nil {
					t.Fatalf("event %s: %v", e, err)
				}
				if c.Object != "chat.completion.chunk" {
					t.Errorf("object %q", c.Object)
				}
				chunks = append(chunks, c)
			}
			if tt.usage {
				last := chunks[len(chunks)-1]
				if len(last.Choices) != 0 || last.Usage == nil || last.Usage.PromptTokens == 0 || last.Usage.CompletionTokens == 0 {
					t.Errorf("usage chunk %+v", last)
				}
				chunks = chunks[:len(chunks)-1]
			} else if chunks[len(chunks)-1].Usage != nil {
				t.Errorf("usage sent without include_usage")
			}
			finish := chunks[len(chunks)-1].Choices[0].FinishReason
			var text strings.Builder
			var deltas []goopenai.ToolCall
			for _, c := range chunks {
				text.WriteString(c.Choices[0].Delta.Content)
				deltas = append(deltas, c.Choices[0].Delta.ToolCalls...)
			}
			if !tt.wantCalls {
				if text.String() != "fake answer to: "+tt.content || finish != "stop" || len(chunks) < 4 {
					t.Errorf("text %q, finish %q, %d chunks", text.String(), finish, len(chunks))
				}
				return
			}
			if finish != "tool_calls" || len(deltas) < 3 {
				t.Fatalf("finish %q, deltas %+v", finish, deltas)
			}
			head := deltas[0]
			if head.ID != "call_1" || head.Type != "function" || head.Function.Name != "lookup" || head.Function.Arguments != "" {
				t.Errorf("first delta %+v", head)
			}
			var args strings.Builder
			for _, d := range deltas[1:] {
				if d.ID != "" || d.Function.Name != "" || d.Index == nil || *d.Index != 0 {
					t.Errorf("argument delta %+v", d)
				}
				args.WriteString(d.Function.Arguments)
			}
			if args.String() != `{"limit":3,"query":"go channels"}` {
				t.Errorf("arguments %q", args.String())
			}
		})
	}
}

// TestOpenAIWithGoOpenAI drives the non-streaming and error paths with the
// go-openai client itself.
func TestOpenAIWithGoOpenAI(t *testing.T) {
	s := start(t)
	cfg := goopenai.DefaultConfig("")
	cfg.BaseURL = s.URL() + "/v1"
	client := goopenai.NewClientWithConfig(cfg)
	ctx := context.Background()
	s.Script(fakellm.Reply{Match: "tool", ToolCalls: []fakellm.Call{{Name: "f"}}})

	t.Run("non-streamed text", func(t *testing.T) {
		resp, err := client.CreateChatCompletion(ctx, goopenai.ChatCompletionRequest{
			Model: "llama3.2:1b", Messages: []goopenai.ChatCompletionMessage{{Role: "user", Content: "hi"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Choices[0].Message.Content != "fake answer to: hi" || resp.Choices[0].FinishReason != "stop" || resp.Usage.TotalTokens != 6 {
			t.Errorf("response %+v", resp)
		}
	})
	t.Run("non-streamed tool call", func(t *testing.T) {
		resp, err := client.CreateChatCompletion(ctx, goopenai.ChatCompletionRequest{
			Model: "llama3.2:1b", Messages: []goopenai.ChatCompletionMessage{{Role: "user", Content: "tool"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		c := resp.Choices[0]
		if c.FinishReason != "tool_calls" || len(c.Message.ToolCalls) != 1 || c.Message.ToolCalls[0].ID == "" || c.Message.ToolCalls[0].Function.Arguments != "{}" {
			t.Errorf("choice %+v", c)
		}
	})
	t.Run("unknown model error body", func(t *testing.T) {
		_, err := client.CreateChatCompletion(ctx, goopenai.ChatCompletionRequest{
			Model: "gpt-nope", Messages: []goopenai.ChatCompletionMessage{{Role: "user", Content: "hi"}},
		})
		var apiErr *goopenai.APIError
		if !errors.As(err, &apiErr) || apiErr.HTTPStatusCode != 404 || apiErr.Code != "model_not_found" {
			t.Errorf("error %#v", err)
		}
	})
	t.Run("models", func(t *testing.T) {
		list, err := client.ListModels(ctx)
		if err != nil || len(list.Models) != 3 || list.Models[0].ID != "llama3.2:1b" {
			t.Errorf("models %+v, error %v", list, err)
		}
	})
}

func TestScripting(t *testing.T) {
	chat := func(t *testing.T, s *fakellm.Server, content string) string {
		t.Helper()
		status, b := post(t, s, "/api/chat", `{"model":"llama3.2:1b","stream":false,"messages":[{"role":"user","content":"`+content+`"}]}`)
		if status != 200 {
			return "status " + http.StatusText(status)
		}
		var r api.ChatResponse
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		return r.Message.Content
	}
	t.Run("first matching reply answers", func(t *testing.T) {
		s := start(t)
		s.Script(fakellm.Reply{Match: "cat", Text: "meow"}, fakellm.Reply{Match: "", Text: "anything"}, fakellm.Reply{Match: "dog", Text: "woof"})
		if got := []string{chat(t, s, "a cat"), chat(t, s, "a dog")}; !slices.Equal(got, []string{"meow", "anything"}) {
			t.Errorf("got %q", got)
		}
	})
	t.Run("times are used up", func(t *testing.T) {
		s := start(t)
		s.Script(fakellm.Reply{Text: "once", Times: 1}, fakellm.Reply{Status: 503, Times: 2})
		got := []string{chat(t, s, "x"), chat(t, s, "x"), chat(t, s, "x"), chat(t, s, "x")}
		want := []string{"once", "status Service Unavailable", "status Service Unavailable", "fake answer to: x"}
		if !slices.Equal(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("reset clears script and records", func(t *testing.T) {
		s := start(t)
		s.Script(fakellm.Reply{Text: "scripted"})
		chat(t, s, "x")
		s.Reset()
		if n := len(s.Requests()); n != 0 {
			t.Errorf("%d requests after Reset", n)
		}
		if got := chat(t, s, "x"); got != "fake answer to: x" {
			t.Errorf("got %q after Reset", got)
		}
	})
	t.Run("concurrent requests are all recorded", func(t *testing.T) {
		s := start(t)
		s.Script(fakellm.Reply{Text: "limited", Times: 5})
		var wg sync.WaitGroup
		var mu sync.Mutex
		limited := 0
		for range 20 {
			wg.Go(func() {
				if chat(t, s, "x") == "limited" {
					mu.Lock()
					limited++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if n := len(s.Requests()); n != 20 || limited != 5 {
			t.Errorf("%d requests recorded, %d limited answers", n, limited)
		}
	})
}

func TestCutAndLatency(t *testing.T) {
	t.Run("a cut stream ends without its final chunk", func(t *testing.T) {
		s := start(t)
		s.Script(fakellm.Reply{Text: "a b c d e", CutAfter: 2})
		resp, err := http.Post(s.URL()+"/api/generate", "application/json", strings.NewReader(`{"model":"llama3.2:1b","prompt":"p"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("read error %v, want unexpected EOF", err)
		}
		if n := strings.Count(string(body), "\n"); n != 2 || strings.Contains(string(body), `"done":true`) {
			t.Errorf("body %q", body)
		}
	})
	t.Run("latency honours the request's cancellation", func(t *testing.T) {
		s := start(t)
		s.Script(fakellm.Reply{Latency: time.Minute})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", s.URL()+"/api/embed", strings.NewReader(`{"model":"nomic-embed-text","input":"x"}`))
		began := time.Now()
		_, err := http.DefaultClient.Do(req)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(began) > 5*time.Second {
			t.Errorf("error %v after %v", err, time.Since(began))
		}
	})
	t.Run("close does not wait for pending latency", func(t *testing.T) {
		s := fakellm.Start()
		s.Script(fakellm.Reply{Latency: time.Minute})
		done := make(chan struct{})
		go func() {
			defer close(done)
			resp, err := http.Post(s.URL()+"/v1/embeddings", "application/json", strings.NewReader(`{"model":"nomic-embed-text","input":"x"}`))
			if err == nil {
				resp.Body.Close()
			}
		}()
		for len(s.Requests()) == 0 {
			time.Sleep(time.Millisecond)
		}
		began := time.Now()
		s.Close()
		<-done
		if d := time.Since(began); d > 5*time.Second {
			t.Errorf("Close took %v", d)
		}
	})
}
