package openai_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	goopenai "github.com/sashabaranov/go-openai"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/functions/openai"
)

var weatherFunction = goopenai.NewResponseFunctionTool(goopenai.FunctionDefinition{
	Name: "get_weather", Parameters: map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
})

// TestResponses drives the Responses API with go-openai: text, a function
// call answered through previous_response_id, the stored responses read
// back and deleted.
func TestResponses(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.ollama.Script(
		fakellm.Reply{Match: "capital", Text: "Paris."},
		fakellm.Reply{Match: "weather", ToolCalls: []fakellm.Call{{ID: "call_w", Name: "get_weather", Arguments: map[string]any{"city": "Paris"}}}},
		fakellm.Reply{Match: "18C", Text: "It is 18C in Paris."},
		fakellm.Reply{Match: "again", Text: "Still Paris."},
	)

	first, err := e.client.CreateResponse(ctx, goopenai.CreateResponseRequest{Model: ollamaModel, Input: "capital of France?", Instructions: "be brief"})
	if err != nil {
		t.Fatal(err)
	}
	if first.GetOutputText() != "Paris." || first.Status != "completed" || !strings.HasPrefix(first.ID, "resp_") ||
		first.Usage == nil || first.Usage.TotalTokens == 0 || first.Model != ollamaModel {
		t.Fatalf("first response %+v", first)
	}
	if status, _ := e.execution(first.ID); status != "succeeded" {
		t.Errorf("the response's execution is %s", status)
	}

	t.Run("previous_response_id continues the conversation", func(t *testing.T) {
		next, err := e.client.CreateResponse(ctx, goopenai.CreateResponseRequest{PreviousResponseID: first.ID, Input: "and again?"})
		if err != nil {
			t.Fatal(err)
		}
		if next.GetOutputText() != "Still Paris." || next.PreviousResponseID != first.ID || next.Model != ollamaModel {
			t.Errorf("next %+v", next)
		}
		reqs := e.ollama.Requests()
		var roles []string
		for _, m := range reqs[len(reqs)-1].Messages {
			roles = append(roles, m.Role+":"+m.Content)
		}
		// The first response's instructions are not carried over.
		if got := strings.Join(roles, "|"); got != "user:capital of France?|assistant:Paris.|user:and again?" {
			t.Errorf("the model got %s", got)
		}
	})

	t.Run("function call and its output", func(t *testing.T) {
		call, err := e.client.CreateResponse(ctx, goopenai.CreateResponseRequest{Model: ollamaModel, Input: "weather in Paris?", Tools: []goopenai.ResponseTool{weatherFunction}})
		if err != nil {
			t.Fatal(err)
		}
		var item goopenai.ResponseOutputItem
		b, _ := json.Marshal(call.Output[0])
		_ = json.Unmarshal(b, &item)
		if len(call.Output) != 1 || item.Type != "function_call" || item.CallID != "call_w" || item.Name != "get_weather" || !strings.Contains(item.Arguments, "Paris") {
			t.Fatalf("output %s", b)
		}
		answer, err := e.client.CreateResponse(ctx, goopenai.CreateResponseRequest{PreviousResponseID: call.ID, Tools: []goopenai.ResponseTool{weatherFunction},
			Input: []any{goopenai.ResponseFunctionCallOutput{Type: "function_call_output", CallID: "call_w", Output: "18C"}}})
		if err != nil {
			t.Fatal(err)
		}
		if answer.GetOutputText() != "It is 18C in Paris." {
			t.Errorf("answer %+v", answer)
		}
		if status, _ := e.execution(call.ID); status != "succeeded" {
			t.Errorf("the function call's response is %s once its output came", status)
		}
		_, err = e.client.CreateResponse(ctx, goopenai.CreateResponseRequest{PreviousResponseID: first.ID,
			Input: []any{goopenai.ResponseFunctionCallOutput{Type: "function_call_output", CallID: "call_nope", Output: "x"}}})
		var apiErr *goopenai.APIError
		if !errors.As(err, &apiErr) || apiErr.HTTPStatusCode != http.StatusBadRequest {
			t.Errorf("an output answering no call: %v", err)
		}
	})

	t.Run("get and delete", func(t *testing.T) {
		got, err := e.client.GetResponse(ctx, first.ID, goopenai.RetrieveResponseOptions{})
		if err != nil || got.GetOutputText() != "Paris." || got.ID != first.ID {
			t.Fatalf("get %+v %v", got, err)
		}
		del, err := e.client.DeleteResponse(ctx, first.ID)
		if err != nil || !del.Deleted || del.ID != first.ID {
			t.Fatalf("delete %+v %v", del, err)
		}
		e.get("/v1/responses/"+first.ID).wantError(t, http.StatusNotFound, "not_found", "")
		e.post("/v1/responses", `{"previous_response_id":"`+first.ID+`","input":"x"}`).wantError(t, http.StatusNotFound, "not_found", "previous_response_id")
		e.get("/v1/responses/resp_nope").wantError(t, http.StatusNotFound, "not_found", "")
	})

	t.Run("errors", func(t *testing.T) {
		e.post("/v1/responses", `{"model":"nope:1b","input":"x"}`).wantError(t, http.StatusNotFound, "model_not_found", "model")
		e.post("/v1/responses", `{"input":"x"}`).wantError(t, http.StatusBadRequest, "invalid_request_error", "model")
		e.post("/v1/responses", `{"model":"`+ollamaModel+`","input":"x","tools":[{"type":"web_search"}]}`).wantError(t, http.StatusBadRequest, "invalid_request_error", "tools[0].type")
		e.post("/v1/responses", `{"model":"`+ollamaModel+`","input":"x","background":true}`).wantError(t, http.StatusBadRequest, "invalid_request_error", "background")
	})
}

// TestResponsesStream checks the documented events of a streamed response
// and their sequence numbers, for a stored one and one that is not.
func TestResponsesStream(t *testing.T) {
	e := newEnv(t)
	for _, store := range []bool{true, false} {
		name := "stored"
		if !store {
			name = "not stored"
		}
		t.Run(name, func(t *testing.T) {
			e.ollama.Script(fakellm.Reply{Match: "stream", Text: "one two three"})
			stream, err := e.client.CreateResponseStream(context.Background(), goopenai.CreateResponseRequest{Model: ollamaModel, Input: "stream please", Store: &store})
			if err != nil {
				t.Fatal(err)
			}
			defer stream.Close()
			var types []string
			text, final := "", ""
			for seq := 0; ; seq++ {
				ev, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				var raw struct {
					Seq int `json:"sequence_number"`
				}
				_ = json.Unmarshal(ev.Raw, &raw)
				if raw.Seq != seq {
					t.Errorf("event %d has sequence_number %d", seq, raw.Seq)
				}
				if len(types) == 0 || types[len(types)-1] != string(ev.Type) {
					types = append(types, string(ev.Type))
				}
				switch ev.Type {
				case goopenai.ResponseStreamEventOutputTextDelta:
					text += ev.Delta
				case goopenai.ResponseStreamEventCompleted:
					final = ev.Response.GetOutputText()
				}
			}
			want := "response.created response.in_progress response.output_item.added response.content_part.added response.output_text.delta " +
				"response.output_text.done response.content_part.done response.output_item.done response.completed"
			if got := strings.Join(types, " "); got != want {
				t.Errorf("events\n%s\nwant\n%s", got, want)
			}
			if text != "one two three" || final != "one two three" {
				t.Errorf("streamed %q, completed with %q", text, final)
			}
		})
	}
	t.Run("function call", func(t *testing.T) {
		e.ollama.Script(fakellm.Reply{Match: "weather", ToolCalls: []fakellm.Call{{ID: "call_s", Name: "get_weather", Arguments: map[string]any{"city": "Oslo"}}}})
		res := e.post("/v1/responses", `{"model":"`+ollamaModel+`","stream":true,"input":"weather?","tools":[{"type":"function","name":"get_weather","parameters":{"type":"object"}}]}`)
		body := string(res.body)
		for _, want := range []string{"event: response.function_call_arguments.delta", "event: response.function_call_arguments.done", `"call_id":"call_s"`, "event: response.completed"} {
			if !strings.Contains(body, want) {
				t.Errorf("stream lacks %s: %s", want, body)
			}
		}
		if res.header.Get(openai.ExecutionHeader) == "" {
			t.Error("no execution id")
		}
	})
	t.Run("cut mid-stream", func(t *testing.T) {
		e.ollama.Script(fakellm.Reply{Match: "cut", Text: "one two three four", CutAfter: 2})
		res := e.post("/v1/responses", `{"model":"`+ollamaModel+`","stream":true,"input":"cut"}`)
		body := string(res.body)
		if !strings.Contains(body, "event: response.failed") || !strings.Contains(body, "event: error") || strings.Contains(body, "response.completed") {
			t.Errorf("stream %s", body)
		}
	})
}
