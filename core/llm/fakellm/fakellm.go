// Package fakellm is a scripted fake model server for tests. It speaks both
// the Ollama API and the OpenAI chat completions API over loopback HTTP, so
// that tests drive the real client libraries, streaming included, without a
// model.
//
// Every request is answered by the first scripted Reply that matches it, or
// else by a deterministic default (an answer quoting the request, a vector
// derived from the text), and is recorded as the server understood it, so a
// test can check what a client really sent. It is an ordinary package rather
// than a _test file so that tests of other packages, and end-to-end tests of
// a binary, can start it in-process.
package fakellm

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"hash/fnv"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/stepwise-run/stepwise/core"
)

// Reply is a scripted answer.
type Reply struct {
	// Match selects the requests this reply answers: those whose last
	// message content (chat), prompt (generate), input text (embed) or
	// model name (pull) contains it. "" matches every request.
	Match string
	// Text is the answer. A reply with neither Text nor ToolCalls answers
	// the default text, so a reply can script only a delay or a cut.
	Text string
	// ToolCalls are calls the answer makes; a call without an ID gets one.
	ToolCalls []Call
	// Embedding is the vector for an embed request; nil means the default
	// vector derived from the text.
	Embedding []float32
	// Status, when not 0, makes the request fail with that HTTP status and
	// an error body in the protocol's format (Text, if set, is its message).
	Status int
	// Latency is waited before answering, or until the request is canceled.
	// A streamed pull waits it after its first progress step instead, so
	// that the client sees the download start and can cancel it midway.
	Latency time.Duration
	// Times is how many requests the reply answers; 0 means no limit.
	Times int
	// CutAfter, when > 0, makes a streamed answer send that many chunks and
	// then drop the connection without the final chunk; a non-streamed
	// answer is dropped before its body.
	CutAfter int
	// FinishReason replaces the reason the answer reports ("length" to
	// test truncation); "" means the protocol's usual one.
	FinishReason string
	// Gap is waited between two chunks of a streamed answer, as a model
	// generating token by token does.
	Gap time.Duration
	// CachedTokens and ReasoningTokens, when not 0, are reported in the
	// usage's details on the OpenAI protocol, as OpenAI reports a prompt
	// cache hit and a reasoning model's thinking.
	CachedTokens, ReasoningTokens int
	// Hold, when not nil, stops a streamed answer after its first piece
	// of text until Hold is closed (or the request ends), so that a test
	// can see that text arrive while the model is still generating.
	Hold <-chan struct{}
}

// Call is a scripted tool call.
type Call struct {
	// ID is the call's id; "" gets one made up by the server.
	ID string
	// Name is the tool called.
	Name string
	// Arguments are sent as a JSON object (a JSON text on the OpenAI
	// protocol); nil means no arguments.
	Arguments map[string]any
}

// Model is a model the server has.
type Model struct {
	// Name is the model name with its tag; without one it means ":latest".
	Name string
	// ContextLength is what /api/show reports.
	ContextLength int
	// Embed marks an embedding model, which refuses chat and generate.
	Embed bool
}

// DefaultModels are the models a new server has: two chat models and an
// embedding model.
func DefaultModels() []Model {
	return []Model{
		{Name: "llama3.2:1b", ContextLength: 131072},
		{Name: "qwen2.5:7b", ContextLength: 32768},
		{Name: "nomic-embed-text:latest", ContextLength: 8192, Embed: true},
	}
}

// Request is a request as the server understood it.
type Request struct {
	// Protocol is "ollama" or "openai".
	Protocol string
	// Method is the HTTP method.
	Method string
	// Path is the URL path, such as "/api/chat" or "/v1/chat/completions".
	// Requests for paths the fake does not serve are recorded too (and
	// answered 404), so a test can check that a client never called one.
	Path string
	// Model is the model requested.
	Model string
	// Stream tells whether the client asked for a streamed answer
	// (Ollama streams unless told not to).
	Stream bool
	// Messages of a chat request, tool calls (arguments as compact JSON
	// text), tool_call_id and tool name (in Name) as the client sent them.
	Messages []core.Message
	// System and Prompt of an Ollama generate request; Prompt also holds
	// the input text of an embed request.
	System, Prompt string
	// Tools are the names of the tools offered.
	Tools []string
	// Temperature, MaxTokens and Stop are the sampling options sent
	// (nil, 0 and nil when absent).
	Temperature *float64
	MaxTokens   int
	Stop        []string
	// Raw is the request body.
	Raw []byte
}

// Server is a running fake. Its methods are safe for concurrent use.
type Server struct {
	hs      *httptest.Server
	done    chan struct{} // closed by Close, ends every pending Latency
	closeMu sync.Once

	mu       sync.Mutex
	replies  []*slot
	models   []Model
	requests []Request
	auths    []string // Authorization headers received
	calls    int      // tool call ids made so far
	seq      int      // completions answered so far, for response ids
}

// slot is a scripted reply and how many requests it has answered.
type slot struct {
	Reply
	used int
}

// Start starts a server on 127.0.0.1 with the default models.
func Start() *Server {
	s := &Server{done: make(chan struct{}), models: DefaultModels()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("Ollama is running"))
	})
	s.ollamaRoutes(mux)
	s.openaiRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.record(Request{Method: r.Method, Path: r.URL.Path})
		http.NotFound(w, r)
	})
	s.hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if auth := r.Header.Get("Authorization"); auth != "" {
			s.mu.Lock()
			s.auths = append(s.auths, auth)
			s.mu.Unlock()
		}
		mux.ServeHTTP(w, r)
	}))
	return s
}

// Authorizations returns the Authorization headers of the requests
// received so far, oldest first; requests without one are not listed. Tests
// use it to see which backend got an API key.
func (s *Server) Authorizations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.auths...)
}

// URL returns the server's base URL, such as "http://127.0.0.1:41234".
// Ollama clients use it as is; OpenAI clients append "/v1".
func (s *Server) URL() string { return s.hs.URL }

// Close stops the server, ending pending delays first so that it does not
// wait for them.
func (s *Server) Close() {
	s.closeMu.Do(func() {
		close(s.done)
		s.hs.CloseClientConnections()
		s.hs.Close()
	})
}

// Script appends replies to the script.
func (s *Server) Script(replies ...Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range replies {
		s.replies = append(s.replies, &slot{Reply: r})
	}
}

// SetModels replaces the models the server has.
func (s *Server) SetModels(models ...Model) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.models = append([]Model(nil), models...)
}

// Requests returns the requests received so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Reset clears the script, the recorded requests and the Authorization
// headers. The models are kept.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replies, s.requests, s.auths = nil, nil, nil
}

// record stores a received request.
func (s *Server) record(r Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r)
}

// model returns the server's model called name, comparing as Ollama does:
// a name without a tag means ":latest".
func (s *Server) model(name string) (Model, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := canonical(name)
	for _, m := range s.models {
		if canonical(m.Name) == want {
			return m, true
		}
	}
	return Model{}, false
}

// modelList returns a copy of the models.
func (s *Server) modelList() []Model {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Model(nil), s.models...)
}

// addModel adds a model unless the server has it already.
func (s *Server) addModel(m Model) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, have := range s.models {
		if canonical(have.Name) == canonical(m.Name) {
			return
		}
	}
	s.models = append(s.models, m)
}

// canonical makes a model name's tag explicit; a ":" before the last "/"
// belongs to a registry host, not a tag.
func canonical(name string) string {
	if strings.LastIndex(name, ":") > strings.LastIndex(name, "/") {
		return name
	}
	return name + ":latest"
}

// answer is what the server will do with one request.
type answer struct {
	Reply
	calls     []Call // with ids
	seq       int
	defaulted bool // Text is the default, not scripted
}

// plan picks the reply for a request whose matched text is text and fills
// in the defaults.
func (s *Server) plan(text string) answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	a := answer{seq: s.seq}
	for _, r := range s.replies {
		if (r.Times == 0 || r.used < r.Times) && strings.Contains(text, r.Match) {
			r.used++
			a.Reply = r.Reply
			break
		}
	}
	if a.Text == "" && len(a.ToolCalls) == 0 {
		a.Text, a.defaulted = "fake answer to: "+text, true
	}
	for _, c := range a.ToolCalls {
		if c.ID == "" {
			s.calls++
			c.ID = "call_fake_" + strconv.Itoa(s.calls)
		}
		if c.Arguments == nil {
			c.Arguments = map[string]any{}
		}
		a.calls = append(a.calls, c)
	}
	return a
}

// wait sleeps for the answer's latency. It returns false if the request
// was canceled or the server closed meanwhile, and the handler should give
// up without answering.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

// pace waits before streamed chunk i: the answer's Gap between chunks,
// and its Hold before chunk hold (the one after the first piece of text).
// It returns false when the request ended or the server closed meanwhile.
func (s *Server) pace(ctx context.Context, a answer, i, hold int) bool {
	if i > 0 && !s.wait(ctx, a.Gap) {
		return false
	}
	if a.Hold != nil && i == hold {
		select {
		case <-a.Hold:
		case <-ctx.Done():
			return false
		case <-s.done:
			return false
		}
	}
	return true
}

// cut drops the connection in the middle of a response: the client sees
// the body end without its last chunk, as when a backend dies.
func cut(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	panic(http.ErrAbortHandler)
}

// flush sends what has been written so far.
func flush(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

// tokens estimates the tokens of a text the way tests can predict: a token
// per four runes, rounded up, so never 0 for a non-empty text.
func tokens(text string) int {
	return (utf8.RuneCountInString(text) + 3) / 4
}

// callsText is the tool calls as text, for counting their tokens.
func callsText(calls []Call) string {
	var sb strings.Builder
	for _, c := range calls {
		sb.WriteString(c.Name)
		sb.WriteString(argsJSON(c))
	}
	return sb.String()
}

// argsJSON returns a call's arguments as JSON text.
func argsJSON(c Call) string {
	b, err := json.Marshal(c.Arguments)
	if err != nil {
		return "{}"
	}
	return string(b)
}

// pieces splits an answer into stream chunks at word boundaries, each word
// carrying the whitespace after it, so that joining them gives back the
// text exactly. A single word is split in two so that every answer of two
// runes or more streams as several chunks.
func pieces(text string) []string {
	var out []string
	start, inSpace := 0, false
	for i, r := range text {
		sp := unicode.IsSpace(r)
		if !sp && inSpace {
			out = append(out, text[start:i])
			start = i
		}
		inSpace = sp
	}
	if start < len(text) {
		out = append(out, text[start:])
	}
	if len(out) == 1 {
		return halves(text)
	}
	return out
}

// halves splits text into two pieces of about equal length (one piece if it
// has a single rune).
func halves(text string) []string {
	rs := []rune(text)
	if len(rs) < 2 {
		return []string{text}
	}
	return []string{string(rs[:len(rs)/2]), string(rs[len(rs)/2:])}
}

// embedding returns the scripted vector, or a unit vector of 16 dimensions
// derived from a hash of the text: equal texts get equal vectors.
func embedding(a answer, text string) []float32 {
	if a.Embedding != nil {
		return a.Embedding
	}
	v := make([]float32, 16)
	var norm float64
	for i := range v {
		h := fnv.New64a()
		_, _ = h.Write([]byte{byte(i)})
		_, _ = h.Write([]byte(text))
		x := float64(h.Sum64()%2001)/1000 - 1
		v[i] = float32(x)
		norm += x * x
	}
	if norm > 0 {
		for i := range v {
			v[i] = float32(float64(v[i]) / math.Sqrt(norm))
		}
	}
	return v
}

// family is the model family used in /api/show and /api/tags: the leading
// letters of the model's name ("llama3.2:1b" → "llama").
func family(name string) string {
	base := name[strings.LastIndex(name, "/")+1:]
	end := strings.IndexFunc(base, func(r rune) bool { return !unicode.IsLetter(r) })
	if end < 0 {
		end = len(base)
	}
	if end == 0 {
		return "llama"
	}
	return strings.ToLower(base[:end])
}

// digest is a stable fake sha256 digest of a model name.
func digest(name string) string {
	h := fnv.New128a()
	_, _ = h.Write([]byte(name))
	sum := h.Sum(nil)
	return hex.EncodeToString(append(sum, sum...))
}

// inputTexts reads an embed input that is a string or a list of strings.
func inputTexts(raw json.RawMessage) []string {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return many
	}
	return nil
}

// writeJSON answers with a JSON body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
