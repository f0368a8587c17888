package fakellm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// ollamaRoutes registers the Ollama API.
func (s *Server) ollamaRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/version", func(w http.ResponseWriter, r *http.Request) {
		s.record(Request{Protocol: "ollama", Method: r.Method, Path: r.URL.Path})
		writeJSON(w, http.StatusOK, map[string]string{"version": "0.17.4"})
	})
	mux.HandleFunc("GET /api/tags", s.ollamaTags)
	mux.HandleFunc("POST /api/show", s.ollamaShow)
	mux.HandleFunc("POST /api/chat", s.ollamaChat)
	mux.HandleFunc("POST /api/generate", s.ollamaGenerate)
	mux.HandleFunc("POST /api/embed", s.ollamaEmbed)
	mux.HandleFunc("POST /api/embeddings", s.ollamaEmbed)
	mux.HandleFunc("POST /api/pull", s.ollamaPull)
}

// ollamaMessage is a chat message as Ollama clients send it.
type ollamaMessage struct {
	Role      string `json:"role"`
	Content   string `json:"content"`
	ToolCalls []struct {
		ID       string `json:"id"`
		Function struct {
			Name      string          `json:"name"`
			Arguments json.RawMessage `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
	ToolName   string `json:"tool_name"`
	ToolCallID string `json:"tool_call_id"`
}

// ollamaRequest is the union of the Ollama request bodies the fake reads.
type ollamaRequest struct {
	Model    string          `json:"model"`
	Name     string          `json:"name"` // older clients' spelling of model
	Messages []ollamaMessage `json:"messages"`
	System   string          `json:"system"`
	Prompt   string          `json:"prompt"`
	Input    json.RawMessage `json:"input"`
	Stream   *bool           `json:"stream"`
	Tools    []struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
	Options map[string]any `json:"options"`
}

// readOllama decodes and records an Ollama request. It answers 400 itself
// and returns false when the body does not decode.
func (s *Server) readOllama(w http.ResponseWriter, r *http.Request) (ollamaRequest, Request, bool) {
	raw, err := io.ReadAll(r.Body)
	var req ollamaRequest
	if err == nil {
		err = json.Unmarshal(raw, &req)
	}
	rec := Request{Protocol: "ollama", Method: r.Method, Path: r.URL.Path, Raw: raw}
	if err != nil {
		s.record(rec)
		ollamaError(w, http.StatusBadRequest, "invalid request body: "+err.Error())
		return req, rec, false
	}
	if req.Model == "" {
		req.Model = req.Name
	}
	rec.Model = req.Model
	rec.Stream = req.Stream == nil || *req.Stream // Ollama streams unless told not to
	rec.System, rec.Prompt = req.System, req.Prompt
	for _, m := range req.Messages {
		cm := core.Message{Role: m.Role, Content: m.Content, ToolCallID: m.ToolCallID, Name: m.ToolName}
		for _, tc := range m.ToolCalls {
			var args bytes.Buffer
			if json.Compact(&args, tc.Function.Arguments) != nil {
				args.Reset()
				args.Write(tc.Function.Arguments)
			}
			cm.ToolCalls = append(cm.ToolCalls, core.ToolCall{
				ID: tc.ID, Type: "function",
				Function: core.ToolCallFunction{Name: tc.Function.Name, Arguments: args.String()},
			})
		}
		rec.Messages = append(rec.Messages, cm)
	}
	for _, t := range req.Tools {
		rec.Tools = append(rec.Tools, t.Function.Name)
	}
	if v, ok := req.Options["temperature"].(float64); ok {
		rec.Temperature = &v
	}
	if v, ok := req.Options["num_predict"].(float64); ok {
		rec.MaxTokens = int(v)
	}
	if v, ok := req.Options["stop"].([]any); ok {
		for _, x := range v {
			if str, ok := x.(string); ok {
				rec.Stop = append(rec.Stop, str)
			}
		}
	}
	if len(req.Input) > 0 {
		rec.Prompt = strings.Join(inputTexts(req.Input), "\n")
	}
	s.record(rec)
	return req, rec, true
}

// ollamaError answers an error the way Ollama does.
func ollamaError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// ollamaModel checks that the request's model exists (and, for chat and
// generate, is not an embedding model), answering the error otherwise.
func (s *Server) ollamaModel(w http.ResponseWriter, name string, generates bool) bool {
	m, ok := s.model(name)
	if !ok {
		ollamaError(w, http.StatusNotFound, fmt.Sprintf("model %q not found, try pulling it first", name))
		return false
	}
	if generates && m.Embed {
		ollamaError(w, http.StatusBadRequest, fmt.Sprintf("%q does not support generate", name))
		return false
	}
	return true
}

// ollamaTags lists the models.
func (s *Server) ollamaTags(w http.ResponseWriter, r *http.Request) {
	s.record(Request{Protocol: "ollama", Method: r.Method, Path: r.URL.Path})
	models := []map[string]any{}
	for _, m := range s.modelList() {
		models = append(models, map[string]any{
			"name":        m.Name,
			"model":       m.Name,
			"modified_at": time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
			"size":        int64(len(m.Name)) * 100_000_000,
			"digest":      digest(m.Name),
			"details": map[string]any{
				"parent_model":       "",
				"format":             "gguf",
				"family":             family(m.Name),
				"families":           []string{family(m.Name)},
				"parameter_size":     "1B",
				"quantization_level": "Q4_K_M",
			},
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": models})
}

// ollamaShow describes one model, with its context length in model_info
// under "<family>.context_length" as real servers report it.
func (s *Server) ollamaShow(w http.ResponseWriter, r *http.Request) {
	req, _, ok := s.readOllama(w, r)
	if !ok {
		return
	}
	m, found := s.model(req.Model)
	if !found {
		ollamaError(w, http.StatusNotFound, fmt.Sprintf("model '%s' not found", req.Model))
		return
	}
	fam := family(m.Name)
	caps := []string{"completion", "tools"}
	if m.Embed {
		caps = []string{"embedding"}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"modelfile":  "# fakellm model " + m.Name,
		"template":   "{{ .Prompt }}",
		"parameters": "",
		"details": map[string]any{
			"format": "gguf", "family": fam, "families": []string{fam},
			"parameter_size": "1B", "quantization_level": "Q4_K_M",
		},
		"model_info": map[string]any{
			"general.architecture":     fam,
			"general.parameter_count":  1_000_000_000,
			fam + ".context_length":    m.ContextLength,
			fam + ".embedding_length":  16,
			fam + ".block_count":       16,
			"tokenizer.ggml.model":     "gpt2",
			"general.quantization_ver": 2,
		},
		"capabilities": caps,
		"modified_at":  time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	})
}

// ollamaChat answers /api/chat.
func (s *Server) ollamaChat(w http.ResponseWriter, r *http.Request) {
	req, rec, ok := s.readOllama(w, r)
	if !ok || !s.ollamaModel(w, req.Model, true) {
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
		ollamaError(w, a.Status, errorText(a))
		return
	}
	calls := make([]map[string]any, 0, len(a.calls))
	for i, c := range a.calls {
		calls = append(calls, map[string]any{
			"id":       c.ID,
			"function": map[string]any{"index": i, "name": c.Name, "arguments": c.Arguments},
		})
	}
	msg := func(content string, withCalls bool) map[string]any {
		m := map[string]any{"role": "assistant", "content": content}
		if withCalls && len(calls) > 0 {
			m["tool_calls"] = calls
		}
		return m
	}
	final := s.ollamaFinal(req.Model, a, tokens(prompt.String()), tokens(a.Text+callsText(a.calls)))
	if !rec.Stream {
		if a.CutAfter > 0 {
			cut(w)
		}
		final["message"] = msg(a.Text, true)
		writeJSON(w, http.StatusOK, final)
		return
	}
	var chunks []map[string]any
	if a.Text != "" {
		for _, p := range pieces(a.Text) {
			chunks = append(chunks, s.ollamaChunk(req.Model, "message", msg(p, false)))
		}
	}
	if len(calls) > 0 {
		// Ollama sends a message's tool calls together, in one chunk.
		chunks = append(chunks, s.ollamaChunk(req.Model, "message", msg("", true)))
	}
	final["message"] = msg("", false)
	s.ndjson(w, r, append(chunks, final), a)
}

// ollamaGenerate answers /api/generate.
func (s *Server) ollamaGenerate(w http.ResponseWriter, r *http.Request) {
	req, rec, ok := s.readOllama(w, r)
	if !ok || !s.ollamaModel(w, req.Model, true) {
		return
	}
	a := s.plan(req.Prompt)
	if !s.wait(r.Context(), a.Latency) {
		return
	}
	if a.Status != 0 {
		ollamaError(w, a.Status, errorText(a))
		return
	}
	final := s.ollamaFinal(req.Model, a, tokens(req.System+req.Prompt), tokens(a.Text))
	final["context"] = []int{1, 2, 3}
	if !rec.Stream {
		if a.CutAfter > 0 {
			cut(w)
		}
		final["response"] = a.Text
		writeJSON(w, http.StatusOK, final)
		return
	}
	var chunks []map[string]any
	for _, p := range pieces(a.Text) {
		chunks = append(chunks, s.ollamaChunk(req.Model, "response", p))
	}
	final["response"] = ""
	s.ndjson(w, r, append(chunks, final), a)
}

// ollamaChunk is one streamed chunk with its payload under key.
func (s *Server) ollamaChunk(model, key string, payload any) map[string]any {
	return map[string]any{"model": model, "created_at": time.Now().UTC(), key: payload, "done": false}
}

// ollamaFinal is the last chunk (or the whole non-streamed answer) with the
// finish reason and the metrics.
func (s *Server) ollamaFinal(model string, a answer, in, out int) map[string]any {
	reason := a.FinishReason
	if reason == "" {
		reason = "stop"
	}
	return map[string]any{
		"model":                model,
		"created_at":           time.Now().UTC(),
		"done":                 true,
		"done_reason":          reason,
		"total_duration":       int64(a.Latency) + 1_000_000,
		"load_duration":        100_000,
		"prompt_eval_count":    in,
		"prompt_eval_duration": 200_000,
		"eval_count":           out,
		"eval_duration":        700_000,
	}
}

// ndjson streams chunks as newline-delimited JSON, paced as the answer
// says, dropping the connection after a.CutAfter chunks when that is > 0
// (always before the last chunk).
func (s *Server) ndjson(w http.ResponseWriter, r *http.Request, chunks []map[string]any, a answer) {
	cutAfter := a.CutAfter
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flush(w)
	enc := json.NewEncoder(w)
	for i, c := range chunks {
		if !s.pace(r.Context(), a, i, 1) {
			return
		}
		if cutAfter > 0 && (i == cutAfter || i == len(chunks)-1) {
			cut(w)
		}
		_ = enc.Encode(c)
		flush(w)
	}
}

// ollamaEmbed answers /api/embed and the older /api/embeddings.
func (s *Server) ollamaEmbed(w http.ResponseWriter, r *http.Request) {
	req, _, ok := s.readOllama(w, r)
	if !ok || !s.ollamaModel(w, req.Model, false) {
		return
	}
	legacy := r.URL.Path == "/api/embeddings"
	texts := inputTexts(req.Input)
	if legacy {
		texts = []string{req.Prompt}
	}
	if len(texts) == 0 {
		ollamaError(w, http.StatusBadRequest, "invalid input type")
		return
	}
	a := s.plan(texts[0])
	if !s.wait(r.Context(), a.Latency) {
		return
	}
	if a.Status != 0 {
		ollamaError(w, a.Status, errorText(a))
		return
	}
	if a.CutAfter > 0 {
		cut(w)
	}
	if legacy {
		v := embedding(a, texts[0])
		f := make([]float64, len(v))
		for i, x := range v {
			f[i] = float64(x)
		}
		writeJSON(w, http.StatusOK, map[string]any{"embedding": f})
		return
	}
	vectors := make([][]float32, len(texts))
	n := 0
	for i, t := range texts {
		vectors[i] = embedding(a, t)
		n += tokens(t)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"model":             req.Model,
		"embeddings":        vectors,
		"total_duration":    1_000_000,
		"load_duration":     100_000,
		"prompt_eval_count": n,
	})
}

// ollamaPull streams the progress of a fake download, scripted like any
// answer (matched on the model name): a Status fails it before the first
// step, a Latency holds it after the first step, a CutAfter drops the
// connection midway. The model is added to the server's models only when
// the download succeeds, just before the final "success" step.
func (s *Server) ollamaPull(w http.ResponseWriter, r *http.Request) {
	req, rec, ok := s.readOllama(w, r)
	if !ok {
		return
	}
	if req.Model == "" {
		ollamaError(w, http.StatusBadRequest, "model is required")
		return
	}
	a := s.plan(req.Model)
	pulled := Model{Name: req.Model, ContextLength: 8192, Embed: strings.Contains(req.Model, "embed")}
	if !rec.Stream {
		if !s.wait(r.Context(), a.Latency) {
			return
		}
		if a.Status != 0 {
			ollamaError(w, a.Status, errorText(a))
			return
		}
		s.addModel(pulled)
		writeJSON(w, http.StatusOK, map[string]string{"status": "success"})
		return
	}
	if a.Status != 0 {
		ollamaError(w, a.Status, errorText(a))
		return
	}
	d := "sha256:" + digest(req.Model)
	const total = 3000
	steps := []map[string]any{{"status": "pulling manifest"}}
	for done := int64(0); done <= total; done += total / 3 {
		steps = append(steps, map[string]any{
			"status": "pulling " + d[7:19], "digest": d, "total": total, "completed": done,
		})
	}
	steps = append(steps,
		map[string]any{"status": "verifying sha256 digest"},
		map[string]any{"status": "writing manifest"},
		map[string]any{"status": "success"},
	)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	for i, step := range steps {
		if i == 1 && !s.wait(r.Context(), a.Latency) {
			return
		}
		if a.CutAfter > 0 && i == a.CutAfter {
			cut(w)
		}
		if i == len(steps)-1 {
			s.addModel(pulled)
		}
		_ = enc.Encode(step)
		flush(w)
	}
}

// errorText is the message of a scripted error status.
func errorText(a answer) string {
	if a.Text != "" && !a.defaulted {
		return a.Text
	}
	return fmt.Sprintf("fakellm: scripted status %d", a.Status)
}
