package openai_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"

	goopenai "github.com/sashabaranov/go-openai"

	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/functions/openai"
)

var weatherTool = goopenai.Tool{Type: "function", Function: &goopenai.FunctionDefinition{
	Name: "get_weather", Parameters: map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
}}

// TestClientToolCalls: the model's parallel calls of the client's tools
// come back whole and streamed, each call under its own index, and the
// follow-up carrying the results reaches the backend as sent.
func TestClientToolCalls(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, tt := range []struct {
		name  string
		model string
		fake  *fakellm.Server
	}{{"ollama", ollamaModel, e.ollama}, {"openai", openaiModel, e.oai}} {
		t.Run(tt.name, func(t *testing.T) {
			tt.fake.Reset()
			calls := []fakellm.Call{{ID: "call_a", Name: "get_weather", Arguments: map[string]any{"city": "Paris"}},
				{ID: "call_b", Name: "get_weather", Arguments: map[string]any{"city": "Oslo"}}}
			tt.fake.Script(fakellm.Reply{Match: "weather", ToolCalls: calls}, fakellm.Reply{Match: "rain", Text: "Sunny in Paris, rain in Oslo."})
			req := goopenai.ChatCompletionRequest{Model: tt.model, Messages: user("weather in Paris and Oslo?"), Tools: []goopenai.Tool{weatherTool}}
			whole, err := e.client.CreateChatCompletion(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			got := whole.Choices[0]
			if got.FinishReason != "tool_calls" || len(got.Message.ToolCalls) != 2 || got.Message.ToolCalls[1].ID != "call_b" ||
				got.Message.ToolCalls[1].Function.Arguments != `{"city":"Oslo"}` {
				t.Fatalf("whole answer %+v", got)
			}

			stream, err := e.client.CreateChatCompletionStream(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			parts := readStream(t, stream)
			stream.Close()
			if parts.finish != "tool_calls" || len(parts.calls) != 2 || parts.calls[0].ID != "call_a" || parts.calls[1].ID != "call_b" ||
				parts.calls[0].Function.Name != "get_weather" || !strings.Contains(parts.calls[1].Function.Arguments, "Oslo") {
				t.Fatalf("streamed calls %+v, finish %q", parts.calls, parts.finish)
			}

			req.Messages = append(req.Messages, got.Message,
				goopenai.ChatCompletionMessage{Role: "tool", ToolCallID: "call_a", Content: "sunny"},
				goopenai.ChatCompletionMessage{Role: "tool", ToolCallID: "call_b", Content: "rain"})
			follow, err := e.client.CreateChatCompletion(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if follow.Choices[0].Message.Content != "Sunny in Paris, rain in Oslo." {
				t.Errorf("follow-up %+v", follow.Choices[0])
			}
			reqs := tt.fake.Requests()
			last := reqs[len(reqs)-1]
			if n := len(last.Messages); n != 4 || last.Messages[2].ToolCallID != "call_a" || len(last.Messages[1].ToolCalls) != 2 {
				t.Errorf("the backend got %+v", last.Messages)
			}
		})
	}
}

// TestFailover: a backend that fails before the first byte (503, 429, or
// refusing connections) gives way to the next; one that fails after it
// ends the stream with an error, not [DONE].
func TestFailover(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	second := fakellm.Start()
	t.Cleanup(second.Close)
	second.SetModels(fakellm.Model{Name: openaiModel})
	e.addBackend(catalog.Backend{Name: "second-openai", BaseURL: second.URL() + "/v1", Type: catalog.TypeOpenAI})
	reload(t, e)

	for _, status := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusInternalServerError} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			e.oai.Reset()
			second.Reset()
			e.oai.Script(fakellm.Reply{Status: status, Times: 1})
			second.Script(fakellm.Reply{Text: "from the second"})
			resp, err := e.client.CreateChatCompletion(ctx, goopenai.ChatCompletionRequest{Model: openaiModel, Messages: user("hi")})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Choices[0].Message.Content != "from the second" {
				t.Errorf("content %q", resp.Choices[0].Message.Content)
			}
		})
	}
	t.Run("cut after the first byte", func(t *testing.T) {
		e.oai.Reset()
		second.Reset()
		// Either backend may come first (the earlier failures put the first
		// one in its cooldown); both cut, and the other is never asked.
		e.oai.Script(fakellm.Reply{Text: "one two three four five", CutAfter: 3})
		second.Script(fakellm.Reply{Text: "one two three four five", CutAfter: 3})
		res := e.post("/v1/chat/completions", `{"model":"`+openaiModel+`","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
		events := sseEvents(string(res.body))
		if res.status != http.StatusOK || len(events) < 3 {
			t.Fatalf("%d %s", res.status, res.body)
		}
		if last := events[len(events)-1]; !strings.Contains(last, `"error"`) || strings.Contains(string(res.body), "[DONE]") {
			t.Errorf("stream ends %q; body %s", last, res.body)
		}
		if !strings.Contains(events[len(events)-2], `"finish_reason":"`+openai.FinishError+`"`) {
			t.Errorf("no error finish before the error event: %s", events[len(events)-2])
		}
		if n := len(e.oai.Requests()) + len(second.Requests()); n != 1 {
			t.Errorf("%d backends were asked; after the first byte no other may be", n)
		}
		// go-openai raises the error event.
		stream, err := e.client.CreateChatCompletionStream(ctx, goopenai.ChatCompletionRequest{Model: openaiModel, Messages: user("hi")})
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		for {
			_, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				t.Fatal("the cut stream ended like a whole one")
			}
			if err != nil {
				if !strings.Contains(err.Error(), "cut") {
					t.Errorf("error %v", err)
				}
				break
			}
		}
	})
}

func reload(t *testing.T, e *env) {
	t.Helper()
	// A catalog write through the API reloads the fleet.
	if res := e.post("/groups", `{"name":"reload-`+strings.ReplaceAll(t.Name(), "/", "-")+`","purposeType":"x"}`); res.status != http.StatusCreated {
		t.Fatalf("reload: %d %s", res.status, res.body)
	}
}

// TestChatErrors: every refusal in OpenAI's envelope with the right status
// and the field at fault.
func TestChatErrors(t *testing.T) {
	e := newEnv(t)
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name, body  string
		status      int
		code, param string
	}{
		{"unknown model", `{"model":"nope:1b",` + msgs + `}`, http.StatusNotFound, "model_not_found", "model"},
		{"no model", `{` + msgs + `}`, http.StatusBadRequest, "invalid_request_error", "model"},
		{"no messages", `{"model":"` + ollamaModel + `"}`, http.StatusBadRequest, "invalid_request_error", "messages"},
		{"bad role", `{"model":"` + ollamaModel + `","messages":[{"role":"robot","content":"x"}]}`, http.StatusBadRequest, "invalid_request_error", "messages[0].role"},
		{"tool without id", `{"model":"` + ollamaModel + `","messages":[{"role":"tool","content":"x"}]}`, http.StatusBadRequest, "invalid_request_error", "messages[0].tool_call_id"},
		{"unknown field", `{"model":"` + ollamaModel + `",` + msgs + `,"temprature":1}`, http.StatusBadRequest, "invalid_request_error", "temprature"},
		{"n of 2", `{"model":"` + ollamaModel + `",` + msgs + `,"n":2}`, http.StatusBadRequest, "invalid_request_error", "n"},
		{"temperature", `{"model":"` + ollamaModel + `",` + msgs + `,"temperature":3}`, http.StatusBadRequest, "invalid_request_error", "temperature"},
		{"wrong type", `{"model":"` + ollamaModel + `",` + msgs + `,"max_tokens":"many"}`, http.StatusBadRequest, "invalid_request_error", "max_tokens"},
		{"bad tool name", `{"model":"` + ollamaModel + `",` + msgs + `,"tools":[{"type":"function","function":{"name":"a b"}}]}`, http.StatusBadRequest, "invalid_request_error", "tools[0].function.name"},
		{"tool_choice names no tool", `{"model":"` + ollamaModel + `",` + msgs + `,"tool_choice":{"type":"function","function":{"name":"x"}}}`, http.StatusBadRequest, "invalid_request_error", "tool_choice"},
		{"audio part", `{"model":"` + ollamaModel + `","messages":[{"role":"user","content":[{"type":"input_audio"}]}]}`, http.StatusBadRequest, "invalid_request_error", "messages[0].content"},
		{"deprecated functions", `{"model":"` + ollamaModel + `",` + msgs + `,"functions":[{"name":"f"}]}`, http.StatusBadRequest, "invalid_request_error", "functions"},
		{"not json", `{"model":`, http.StatusBadRequest, "invalid_request_error", ""},
		{"backend down", `{"model":"` + ghostModel + `",` + msgs + `}`, http.StatusServiceUnavailable, "unavailable", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.post("/v1/chat/completions", tt.body).wantError(t, tt.status, tt.code, tt.param)
		})
	}
	t.Run("go-openai sees the status", func(t *testing.T) {
		_, err := e.client.CreateChatCompletion(context.Background(), goopenai.ChatCompletionRequest{Model: "nope:1b", Messages: user("hi")})
		var apiErr *goopenai.APIError
		if !errors.As(err, &apiErr) || apiErr.HTTPStatusCode != http.StatusNotFound || apiErr.Code != "model_not_found" {
			t.Errorf("error %#v", err)
		}
	})
	t.Run("streamed request failing before the first byte", func(t *testing.T) {
		e.post("/v1/chat/completions", `{"model":"`+ghostModel+`","stream":true,`+msgs+`}`).wantError(t, http.StatusServiceUnavailable, "unavailable", "")
	})
}

// TestOptionsReachTheBackend: sampling options, seed, stop and the
// response format reach the model server.
func TestOptionsReachTheBackend(t *testing.T) {
	e := newEnv(t)
	body := `{"model":"` + openaiModel + `","messages":[{"role":"developer","content":"be terse"},{"role":"user","content":[{"type":"text","text":"look: "},{"type":"image_url","image_url":{"url":"https://example.test/cat.png"}}]}],
		"temperature":0.2,"max_completion_tokens":50,"stop":"END","seed":7,"response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object"}}},
		"store":true,"metadata":{"k":"v"},"user":"u1"}`
	if res := e.post("/v1/chat/completions", body); res.status != http.StatusOK {
		t.Fatalf("%d %s", res.status, res.body)
	}
	reqs := e.oai.Requests()
	r := reqs[len(reqs)-1]
	raw := string(r.Raw)
	for _, want := range []string{`"seed":7`, `"max_tokens":50`, `"stop":["END"]`, `"json_schema"`, `"user":"u1"`, `"role":"developer"`, `"image_url":{"url":"https://example.test/cat.png"`} {
		if !strings.Contains(raw, want) {
			t.Errorf("backend request lacks %s: %s", want, raw)
		}
	}
	if r.Temperature == nil || math.Abs(*r.Temperature-0.2) > 1e-6 {
		t.Errorf("temperature %v", r.Temperature)
	}
}

func TestEmbeddings(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	resp, err := e.client.CreateEmbeddings(ctx, goopenai.EmbeddingRequest{Model: embedModel, Input: []string{"alpha", "beta"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 2 || resp.Data[1].Index != 1 || len(resp.Data[0].Embedding) != 16 || resp.Usage.PromptTokens == 0 {
		t.Fatalf("embeddings %+v", resp)
	}
	b64, err := e.client.CreateEmbeddings(ctx, goopenai.EmbeddingRequest{Model: embedModel, Input: "alpha", EncodingFormat: goopenai.EmbeddingEncodingFormatBase64})
	if err != nil {
		t.Fatal(err)
	}
	if len(b64.Data) != 1 || len(b64.Data[0].Embedding) != 16 || b64.Data[0].Embedding[3] != resp.Data[0].Embedding[3] {
		t.Errorf("base64 embedding %v, float %v", b64.Data[0].Embedding, resp.Data[0].Embedding)
	}
	raw := e.post("/v1/embeddings", `{"model":"`+embedModel+`","input":"alpha","encoding_format":"base64"}`)
	var body struct {
		Data []struct {
			Embedding string `json:"embedding"`
		} `json:"data"`
	}
	raw.decode(t, &body)
	bytes, _ := base64.StdEncoding.DecodeString(body.Data[0].Embedding)
	if len(bytes) != 64 || math.Float32frombits(binary.LittleEndian.Uint32(bytes)) != resp.Data[0].Embedding[0] {
		t.Errorf("base64 is not little-endian float32: %d bytes", len(bytes))
	}
	e.post("/v1/embeddings", `{"model":"nope","input":"x"}`).wantError(t, http.StatusNotFound, "model_not_found", "model")
	e.post("/v1/embeddings", `{"model":"`+embedModel+`","input":[1,2]}`).wantError(t, http.StatusBadRequest, "invalid_request_error", "input")
	e.post("/v1/embeddings", `{"model":"`+embedModel+`","input":"x","dimensions":8}`).wantError(t, http.StatusBadRequest, "invalid_request_error", "dimensions")
}

func TestModels(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	list, err := e.client.ListModels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range list.Models {
		ids = append(ids, m.ID)
		if m.Object != "model" || m.OwnedBy == "" {
			t.Errorf("model %+v", m)
		}
	}
	if strings.Join(ids, ",") != "gpt-4o-mini,llama3.2:1b,nomic-embed-text:latest,qwen2.5:7b" {
		t.Errorf("models %v (the dead backend's ghost must not be listed)", ids)
	}
	m, err := e.client.GetModel(ctx, "llama3.2:1b")
	if err != nil || m.ID != "llama3.2:1b" {
		t.Errorf("get %+v %v", m, err)
	}
	e.get("/v1/models/nope:1b").wantError(t, http.StatusNotFound, "model_not_found", "model")
}
