package fakellm

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// openaiRoutes registers the OpenAI API under /v1.
func (s *Server) openaiRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/models", s.openaiModels)
	mux.HandleFunc("POST /v1/chat/completions", s.openaiChat)
	mux.HandleFunc("POST /v1/embeddings", s.openaiEmbed)
}

// openaiRequest is the union of the OpenAI request bodies the fake reads.
// Messages and tools decode into core's types, which are OpenAI's shape.
type openaiRequest struct {
	Model               string         `json:"model"`
	Messages            []core.Message `json:"messages"`
	Tools               []core.Tool    `json:"tools"`
	MaxTokens           int            `json:"max_tokens"`
	MaxCompletionTokens int            `json:"max_completion_tokens"`
	Temperature         *float64       `json:"temperature"`
	Stop                core.StopList  `json:"stop"`
	Stream              bool           `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Input json.RawMessage `json:"input"`
}

// readOpenAI decodes and records an OpenAI request. It answers 400 itself
// and returns false when the body does not decode.
func (s *Server) readOpenAI(w http.ResponseWriter, r *http.Request) (openaiRequest, bool) {
	raw, err := io.ReadAll(r.Body)
	var req openaiRequest
	if err == nil {
		err = json.Unmarshal(raw, &req)
	}
	rec := Request{Protocol: "openai", Method: r.Method, Path: r.URL.Path, Raw: raw}
	if err != nil {
		s.record(rec)
		openaiError(w, http.StatusBadRequest, "invalid request body: "+err.Error(), "")
		return req, false
	}
	rec.Model, rec.Stream, rec.Messages = req.Model, req.Stream, req.Messages
	rec.Temperature, rec.Stop = req.Temperature, req.Stop
	rec.MaxTokens = req.MaxTokens
	if rec.MaxTokens == 0 {
		rec.MaxTokens = req.MaxCompletionTokens
	}
	for _, t := range req.Tools {
		rec.Tools = append(rec.Tools, t.Function.Name)
	}
	if len(req.Input) > 0 {
		rec.Prompt = strings.Join(inputTexts(req.Input), "\n")
	}
	s.record(rec)
	return req, true
}

// openaiError answers an error in OpenAI's format.
func openaiError(w http.ResponseWriter, status int, msg, code string) {
	typ := "invalid_request_error"
	switch {
	case status == http.StatusTooManyRequests:
		typ = "rate_limit_error"
	case status >= 500:
		typ = "server_error"
	}
	var c any
	if code != "" {
		c = code
	}
	writeJSON(w, status, map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": c}})
}

// openaiModel checks that the request's model exists (and, for chat, is
// not an embedding model), answering the error otherwise.
func (s *Server) openaiModel(w http.ResponseWriter, name string, chat bool) bool {
	m, ok := s.model(name)
	if !ok {
		openaiError(w, http.StatusNotFound,
			fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", name), "model_not_found")
		return false
	}
	if chat && m.Embed {
		openaiError(w, http.StatusBadRequest, fmt.Sprintf("model %q does not support chat", name), "")
		return false
	}
	return true
}

// openaiModels lists the models.
func (s *Server) openaiModels(w http.ResponseWriter, r *http.Request) {
	s.record(Request{Protocol: "openai", Method: r.Method, Path: r.URL.Path})
	data := []map[string]any{}
	for _, m := range s.modelList() {
		data = append(data, map[string]any{"id": m.Name, "object": "model", "created": 1735787045, "owned_by": "fakellm"})
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

// openaiChat answers /v1/chat/completions, streamed as server-sent events
// or whole.
func (s *Server) openaiChat(w http.ResponseWriter, r *http.Request) {
	req, ok := s.readOpenAI(w, r)
	if !ok || !s.openaiModel(w, req.Model, true) {
		return
	}
	var last string
	var prompt strings.Builder
	for _, m := range req.Messages {
		prompt.WriteString(m.Content)
		last = m.Content
	}
	a := s.plan(last)
	if !s.wait(r.Context(), a.Latency) {
		return
	}
	if a.Status != 0 {
		openaiError(w, a.Status, errorText(a), "")
		return
	}
	reason := a.FinishReason
	if reason == "" {
		reason = "stop"
		if len(a.calls) > 0 {
			reason = "tool_calls"
		}
	}
	in, out := tokens(prompt.String()), tokens(a.Text+callsText(a.calls))
	usage := map[string]any{"prompt_tokens": in, "completion_tokens": out, "total_tokens": in + out}
	if a.CachedTokens > 0 {
		usage["prompt_tokens_details"] = map[string]int{"cached_tokens": a.CachedTokens}
	}
	if a.ReasoningTokens > 0 {
		usage["completion_tokens_details"] = map[string]int{"reasoning_tokens": a.ReasoningTokens}
	}
	id := fmt.Sprintf("chatcmpl-fake-%d", a.seq)
	created := time.Now().Unix()

	if !req.Stream {
		if a.CutAfter > 0 {
			cut(w)
		}
		msg := map[string]any{"role": "assistant", "content": nil}
		if a.Text != "" {
			msg["content"] = a.Text
		}
		if len(a.calls) > 0 {
			var calls []map[string]any
			for _, c := range a.calls {
				calls = append(calls, map[string]any{
					"id": c.ID, "type": "function",
					"function": map[string]any{"name": c.Name, "arguments": argsJSON(c)},
				})
			}
			msg["tool_calls"] = calls
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": req.Model,
			"system_fingerprint": "fakellm",
			"choices":            []any{map[string]any{"index": 0, "message": msg, "logprobs": nil, "finish_reason": reason}},
			"usage":              usage,
		})
		return
	}

	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": req.Model,
			"system_fingerprint": "fakellm",
			"choices":            []any{map[string]any{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": finish}},
		}
	}
	events := []map[string]any{chunk(map[string]any{"role": "assistant", "content": ""}, nil)}
	if a.Text != "" {
		for _, p := range pieces(a.Text) {
			events = append(events, chunk(map[string]any{"content": p}, nil))
		}
	}
	for i, c := range a.calls {
		// As OpenAI does: id, type and name first with empty arguments,
		// then the arguments in pieces.
		events = append(events, chunk(map[string]any{"tool_calls": []any{map[string]any{
			"index": i, "id": c.ID, "type": "function",
			"function": map[string]any{"name": c.Name, "arguments": ""},
		}}}, nil))
		for _, p := range halves(argsJSON(c)) {
			events = append(events, chunk(map[string]any{"tool_calls": []any{map[string]any{
				"index": i, "function": map[string]any{"arguments": p},
			}}}, nil))
		}
	}
	events = append(events, chunk(map[string]any{}, reason))
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		events = append(events, map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": req.Model,
			"system_fingerprint": "fakellm", "choices": []any{}, "usage": usage,
		})
	}
	s.sse(w, r, events, a)
}

// sse streams events as server-sent events ending with "data: [DONE]",
// paced as the answer says, dropping the connection after a.CutAfter
// events when that is > 0 (always before [DONE]). The first event is the
// role, so the first piece of text is the second.
func (s *Server) sse(w http.ResponseWriter, r *http.Request, events []map[string]any, a answer) {
	cutAfter := a.CutAfter
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flush(w)
	for i, e := range events {
		if !s.pace(r.Context(), a, i, 2) {
			return
		}
		if cutAfter > 0 && i == cutAfter {
			cut(w)
		}
		b, _ := json.Marshal(e)
		_, _ = fmt.Fprintf(w, "data: %s\n\n", b)
		flush(w)
	}
	if cutAfter > 0 {
		cut(w)
	}
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
	flush(w)
}

// openaiEmbed answers /v1/embeddings.
func (s *Server) openaiEmbed(w http.ResponseWriter, r *http.Request) {
	req, ok := s.readOpenAI(w, r)
	if !ok || !s.openaiModel(w, req.Model, false) {
		return
	}
	texts := inputTexts(req.Input)
	if len(texts) == 0 {
		openaiError(w, http.StatusBadRequest, "input must be a string or an array of strings", "")
		return
	}
	a := s.plan(texts[0])
	if !s.wait(r.Context(), a.Latency) {
		return
	}
	if a.Status != 0 {
		openaiError(w, a.Status, errorText(a), "")
		return
	}
	if a.CutAfter > 0 {
		cut(w)
	}
	data := make([]map[string]any, len(texts))
	n := 0
	for i, t := range texts {
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": embedding(a, t)}
		n += tokens(t)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"object": "list", "data": data, "model": req.Model,
		"usage": map[string]int{"prompt_tokens": n, "total_tokens": n},
	})
}
