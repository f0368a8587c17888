package main_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

// server is a running `stepwise serve` process.
type server struct {
	t    *testing.T
	cmd  *exec.Cmd
	url  string
	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
	code int
}

// seedEnv is the seed README's environment, pointed at a fake backend.
func seedEnv(ollamaURL string) []string {
	return []string{
		"EMBED_MODEL=nomic-embed-text:latest", "EMBED_PROVIDER=ollama", "EMBED_MODEL_CONTEXT_LENGTH=2048",
		"TASK_MODEL=llama3.2:1b", "TASK_MODEL_CONTEXT_LENGTH=2048", "TASK_PROVIDER=ollama",
		"CHAT_MODEL=llama3.2:1b", "CHAT_MODEL_CONTEXT_LENGTH=2048", "CHAT_PROVIDER=ollama",
		"OLLAMA_BACKEND_URL=" + ollamaURL,
	}
}

// startServer starts the binary on a free port with the SQLite file in
// dir and waits until it serves. The process is stopped at cleanup.
func startServer(t *testing.T, dir string, env []string, args ...string) *server {
	t.Helper()
	all := append([]string{"serve", "-addr", "127.0.0.1:0", "-db", filepath.Join(dir, "data", "stepwise.db"), "-sync-interval", "300ms"}, args...)
	cmd := exec.Command(binary, all...)
	cmd.Dir = dir
	cmd.Env = append([]string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.logs.WriteString(line + "\n")
			s.mu.Unlock()
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "stepwise serving" {
				addr <- rec.Addr
			}
		}
		_ = cmd.Wait()
		s.code = cmd.ProcessState.ExitCode()
		close(s.done)
	}()
	t.Cleanup(func() { s.stop() })
	select {
	case a := <-addr:
		s.url = "http://" + a
	case <-s.done:
		t.Fatalf("stepwise serve exited with %d before serving:\n%s", s.code, s.logText())
	case <-time.After(30 * time.Second):
		t.Fatalf("stepwise serve did not start:\n%s", s.logText())
	}
	return s
}

func (s *server) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// stop sends SIGTERM and waits for the process; it returns the exit code.
func (s *server) stop() int {
	select {
	case <-s.done:
		return s.code
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		s.t.Errorf("stepwise serve did not stop on SIGTERM:\n%s", s.logText())
	}
	return s.code
}

// do sends a request with a JSON (or raw string) body and returns the
// status and the body.
func (s *server) do(method, path string, body any) (int, []byte, http.Header) {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, data, resp.Header
}

// must sends a request, requires the status, and decodes the body into out
// when out is not nil.
func (s *server) must(want int, method, path string, body, out any) {
	s.t.Helper()
	status, data, _ := s.do(method, path, body)
	if status != want {
		s.t.Fatalf("%s %s = %d, want %d: %s", method, path, status, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			s.t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
}

func TestServeSeedQuickstart(t *testing.T) {
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	fake.Script(
		fakellm.Reply{Match: "Explain quantum computing", Text: "Qubits can be 0 and 1 at once."},
		fakellm.Reply{Match: "optimize database queries", Text: "Add the right indexes."},
	)
	dir := t.TempDir()
	srv := startServer(t, dir, seedEnv(fake.URL()))

	t.Run("Execute", func(t *testing.T) {
		var got struct{ ID, Response string }
		srv.must(http.StatusOK, "POST", "/execute", `{"prompt": "Explain quantum computing in simple terms"}`, &got)
		if got.ID == "" || got.Response != "Qubits can be 0 and 1 at once." {
			t.Errorf("/execute = %+v", got)
		}
	})
	t.Run("TasksWithSeedQAJSON", func(t *testing.T) {
		qa, err := os.ReadFile(examplePath("qa.json"))
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Output     any    `json:"output"`
			OutputType string `json:"outputType"`
			State      []struct {
				TaskID      string `json:"taskID"`
				TaskHandler string `json:"taskHandler"`
			} `json:"state"`
		}
		srv.must(http.StatusOK, "POST", "/tasks", qa, &got)
		if got.Output != "Add the right indexes." || got.OutputType != "string" || len(got.State) != 1 || got.State[0].TaskHandler != "prompt_to_string" {
			t.Errorf("/tasks = %+v", got)
		}
		var system string
		for _, r := range fake.Requests() {
			if strings.Contains(r.Prompt, "optimize database queries") {
				system = r.System
			}
		}
		if !strings.HasPrefix(system, "You're a senior engineer.") {
			t.Errorf("the backend got the system instruction %q, want qa.json's systemInstruction", system)
		}
	})
	t.Run("BootstrapCommand", func(t *testing.T) {
		c := newCLI(t)
		r := c.run("", "bootstrap", "-server", srv.url, "-ollama", fake.URL(), "-wait", "20s",
			"nomic-embed-text:latest", "llama3.2:1b", "llama3.2:1b")
		if r.code != 0 || !strings.Contains(r.stdout, "ready:") {
			t.Fatalf("bootstrap = %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		// Running it again changes nothing and succeeds.
		if r := c.run("", "bootstrap", "-server", srv.url, "-ollama", fake.URL(), "-no-wait",
			"nomic-embed-text:latest", "llama3.2:1b", "llama3.2:1b"); r.code != 0 {
			t.Fatalf("second bootstrap = %d: %s", r.code, r.stderr)
		}
		var backends []struct{ Name string }
		srv.must(http.StatusOK, "GET", "/backends", nil, &backends)
		if len(backends) != 1 || backends[0].Name != "local-ollama" {
			t.Errorf("backends after bootstrap = %+v, want the one local-ollama", backends)
		}
	})
	t.Run("OpenAIDemoChain", func(t *testing.T) {
		chain := `{"id": "demo", "debug": true, "token_limit": 4096, "tasks": [
		  {"id": "main_task", "handler": "model_execution", "system_instruction": "You are helpful.",
		   "execute_config": {"model": "llama3.2:1b"}, "transition": {"branches": [{"operator": "default", "goto": "format_response"}]}},
		  {"id": "format_response", "handler": "convert_to_openai_chat_response", "transition": {"branches": [{"operator": "default", "goto": "end"}]}}]}`
		srv.must(http.StatusCreated, "POST", "/taskchains", chain, nil)
		var got struct {
			Tasks []struct{ Handler string }
		}
		srv.must(http.StatusOK, "GET", "/taskchains/demo", nil, &got)
		if len(got.Tasks) != 2 || got.Tasks[0].Handler != "chat_completion" {
			t.Errorf("stored chain = %+v, want the canonical handler names", got)
		}
	})
}

func TestServeLogsCarryRequestIDs(t *testing.T) {
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	srv := startServer(t, t.TempDir(), nil)
	req, _ := http.NewRequest("GET", srv.url+"/taskchains/missing", nil)
	req.Header.Set("X-Request-ID", "e2e-req-42")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("X-Request-ID") != "e2e-req-42" {
		t.Fatalf("status %d, X-Request-ID %q", resp.StatusCode, resp.Header.Get("X-Request-ID"))
	}
	if code := srv.stop(); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	var found bool
	for _, line := range strings.Split(strings.TrimSpace(srv.logText()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", line)
			continue
		}
		if rec["request_id"] == "e2e-req-42" {
			found = true
		}
	}
	if !found {
		t.Errorf("no log line carries request_id e2e-req-42:\n%s", srv.logText())
	}
}

func TestServeBackendDownMidRun(t *testing.T) {
	first, second := fakellm.Start(), fakellm.Start()
	t.Cleanup(first.Close)
	t.Cleanup(second.Close)
	// The first backend takes its time over step one, and goes down while
	// it thinks; the second answers at once.
	first.Script(fakellm.Reply{Match: "step one", Text: "too late", Latency: time.Minute})
	second.Script(
		fakellm.Reply{Match: "step one", Text: "one done"},
		fakellm.Reply{Match: "one done", Text: "two done"},
	)
	srv := startServer(t, t.TempDir(), []string{"TASK_MODEL=llama3.2:1b"})
	for _, b := range []struct{ name, url string }{{"first", first.URL()}, {"second", second.URL()}} {
		srv.must(http.StatusCreated, "POST", "/backends", map[string]string{"name": b.name, "baseUrl": b.url, "type": "ollama"}, nil)
	}
	body := `{"input": "step one", "inputType": "string", "routing_policy": "ordered", "chain": {"id": "two", "tasks": [
	  {"id": "a", "handler": "prompt_to_string", "transition": {"branches": [{"operator": "default", "goto": "b"}]}},
	  {"id": "b", "handler": "prompt_to_string"}]}}`

	type answer struct {
		status int
		data   []byte
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := http.Post(srv.url+"/tasks", "application/json", strings.NewReader(body))
		if err != nil {
			done <- answer{0, []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		done <- answer{resp.StatusCode, data}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !sawPrompt(first, "step one") {
		if time.Now().After(deadline) {
			t.Fatalf("the first backend never got step one; server log:\n%s", srv.logText())
		}
		time.Sleep(20 * time.Millisecond)
	}
	first.Close()

	a := <-done
	if a.status != http.StatusOK {
		t.Fatalf("/tasks = %d: %s", a.status, a.data)
	}
	var got struct {
		Output any `json:"output"`
	}
	if err := json.Unmarshal(a.data, &got); err != nil || got.Output != "two done" {
		t.Fatalf("/tasks output = %s (%v), want %q", a.data, err, "two done")
	}
	if !sawPrompt(second, "step one") || !sawPrompt(second, "one done") {
		t.Errorf("the second backend did not take over both steps: %+v", second.Requests())
	}
}

// sawPrompt reports whether the fake received a prompt containing text.
func sawPrompt(f *fakellm.Server, text string) bool {
	for _, r := range f.Requests() {
		if strings.Contains(r.Prompt, text) {
			return true
		}
	}
	return false
}

func TestServeRestartKeepsEverything(t *testing.T) {
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	// The OpenAI provider's backend is pointed at a fake (as at a gateway),
	// and a user's own OpenAI-compatible server sits beside it: only the
	// first may ever see the key.
	gateway, own := fakellm.Start(), fakellm.Start()
	t.Cleanup(gateway.Close)
	t.Cleanup(own.Close)
	gateway.SetModels(fakellm.Model{Name: "gpt-4o-mini", ContextLength: 128000})
	env := []string{"STEPWISE_OPENAI_BASE_URL=" + gateway.URL() + "/v1"}
	dir := t.TempDir()
	const apiKey = "sk-test-secret-0123456789abcd"

	srv := startServer(t, dir, env)
	srv.must(http.StatusCreated, "POST", "/backends", map[string]string{"name": "own", "baseUrl": own.URL() + "/v1", "type": "openai"}, nil)
	srv.must(http.StatusCreated, "POST", "/taskchains", `{"id": "kept", "tasks": [{"id": "a", "handler": "noop"}]}`, nil)
	var backend struct{ ID string }
	srv.must(http.StatusCreated, "POST", "/backends", map[string]string{"name": "fake", "baseURL": fake.URL(), "type": "ollama"}, &backend)
	srv.must(http.StatusCreated, "POST", "/models", map[string]any{"model": "org/model:7b", "contextLength": 4096, "canChat": true}, nil)
	var group struct{ ID string }
	srv.must(http.StatusCreated, "POST", "/groups", map[string]string{"name": "team", "purposeType": "Chat"}, &group)
	srv.must(http.StatusCreated, "POST", "/backend-affinity/"+group.ID+"/backends/"+backend.ID, nil, nil)
	srv.must(http.StatusOK, "POST", "/model-affinity/"+group.ID+"/models/org%2Fmodel:7b", nil, nil)
	srv.must(http.StatusOK, "POST", "/providers/openai/configure", map[string]any{"apiKey": apiKey, "upsert": true}, nil)
	if code := srv.stop(); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0:\n%s", code, srv.logText())
	}
	if raw, err := os.ReadFile(filepath.Join(dir, "data", "stepwise.db")); err != nil || bytes.Contains(raw, []byte(apiKey)) {
		t.Fatalf("the database file holds the provider key in clear (or is unreadable: %v)", err)
	}

	srv = startServer(t, dir, env)
	var chain struct{ ID string }
	srv.must(http.StatusOK, "GET", "/taskchains/kept", nil, &chain)
	var b struct{ Name, BaseURL string }
	srv.must(http.StatusOK, "GET", "/backends/"+backend.ID, nil, &b)
	if b.Name != "fake" {
		t.Errorf("backend after restart = %+v", b)
	}
	var model struct{ Model string }
	srv.must(http.StatusOK, "GET", "/models/org%2Fmodel:7b", nil, &model)
	if model.Model != "org/model:7b" {
		t.Errorf("model after restart = %+v", model)
	}
	var inGroup []struct{ Model string }
	srv.must(http.StatusOK, "GET", "/model-affinity/"+group.ID+"/models", nil, &inGroup)
	if len(inGroup) != 1 || inGroup[0].Model != "org/model:7b" {
		t.Errorf("group models after restart = %+v", inGroup)
	}
	var status struct{ Configured bool }
	srv.must(http.StatusOK, "GET", "/providers/openai/status", nil, &status)
	if !status.Configured {
		t.Error("the openai provider is not configured after a restart")
	}
	_, data, _ := srv.do("GET", "/providers/openai/config", nil)
	if bytes.Contains(data, []byte(apiKey)) || !bytes.Contains(data, []byte("abcd")) {
		t.Errorf("provider config after restart = %s, want the key masked to its last four characters", data)
	}
	// The key still opens after the restart: a call routed to the
	// provider's backend carries it, and the user's own server never got it.
	for _, model := range []string{"gpt-4o-mini", "qwen2.5:7b"} { // the gateway's, then the user's
		body := `{"input": "hello", "chain": {"id": "cloud", "tasks": [{"id": "a", "handler": "prompt_to_string",
		  "execute_config": {"model": "` + model + `", "provider": "openai"}}]}}`
		srv.must(http.StatusOK, "POST", "/tasks", body, nil)
	}
	if !slices.ContainsFunc(gateway.Requests(), func(r fakellm.Request) bool { return r.Model == "gpt-4o-mini" }) {
		t.Error("the call for gpt-4o-mini did not reach the provider's backend")
	}
	if !slices.Contains(gateway.Authorizations(), "Bearer "+apiKey) {
		t.Errorf("the provider's backend got Authorization %q, want the configured key", gateway.Authorizations())
	}
	for _, a := range own.Authorizations() {
		if strings.Contains(a, apiKey) {
			t.Fatalf("the user's own openai-type backend was sent the provider's key")
		}
	}
	if !slices.ContainsFunc(own.Requests(), func(r fakellm.Request) bool { return r.Model == "qwen2.5:7b" }) {
		t.Error("the call for qwen2.5:7b did not reach the user's own backend; the test proves nothing about it")
	}
}

// TestServeBootstrapCommandAlone follows the seed's order of things: a
// server started with no model variables, configured by `stepwise
// bootstrap` (the seed's bootstrap.sh), answers /execute.
func TestServeBootstrapCommandAlone(t *testing.T) {
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	fake.Script(fakellm.Reply{Match: "hello", Text: "hi there"})
	srv := startServer(t, t.TempDir(), nil)
	// Declared earlier for chat only: bootstrap widens it to its roles and
	// keeps its context length.
	srv.must(http.StatusCreated, "POST", "/models", map[string]any{"model": "qwen2.5:7b", "contextLength": 4096, "canChat": true}, nil)
	c := newCLI(t)
	r := c.run("", "bootstrap", "-server", srv.url, "-ollama", fake.URL(), "-wait", "20s",
		"nomic-embed-text:latest", "qwen2.5:7b", "qwen2.5:7b")
	if r.code != 0 {
		t.Fatalf("bootstrap = %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	var d struct{ ModelName, EmbedModel, TaskModel, ChatModel string }
	srv.must(http.StatusOK, "GET", "/defaultmodel", nil, &d)
	if d.ModelName != "nomic-embed-text:latest" || d.TaskModel != "qwen2.5:7b" || d.ChatModel != "qwen2.5:7b" {
		t.Errorf("/defaultmodel = %+v, want the models bootstrap assigned", d)
	}
	var m struct {
		CanChat, CanPrompt, CanStream bool
		ContextLength                 int
	}
	srv.must(http.StatusOK, "GET", "/models/qwen2.5:7b", nil, &m)
	if !m.CanChat || !m.CanPrompt || !m.CanStream || m.ContextLength != 4096 {
		t.Errorf("qwen2.5:7b declared as %+v, want every capability of its two roles", m)
	}
	var got struct{ Response string }
	srv.must(http.StatusOK, "POST", "/execute", `{"prompt": "hello"}`, &got)
	if got.Response != "hi there" {
		t.Errorf("/execute = %+v", got)
	}
}

func TestServeManagement(t *testing.T) {
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	srv := startServer(t, t.TempDir(), []string{"EMBED_MODEL=nomic-embed-text:latest"})
	type envelope struct {
		Error struct{ Message, Type, Code, Param string }
	}
	wantError := func(t *testing.T, status int, method, path string, body any, param string) envelope {
		t.Helper()
		var e envelope
		srv.must(status, method, path, body, &e)
		if e.Error.Message == "" || (param != "" && e.Error.Param != param) {
			t.Errorf("%s %s: error %+v, want a message and param %q", method, path, e.Error, param)
		}
		return e
	}

	t.Run("Chains", func(t *testing.T) {
		for _, id := range []string{"one", "two", "three"} {
			srv.must(http.StatusCreated, "POST", "/taskchains", `{"id": "`+id+`", "tasks": [{"id": "a", "handler": "noop"}]}`, nil)
		}
		wantError(t, http.StatusConflict, "POST", "/taskchains", `{"id": "one", "tasks": [{"id": "a", "handler": "noop"}]}`, "")
		wantError(t, http.StatusUnprocessableEntity, "POST", "/taskchains", `{"id": "bad", "tasks": [{"id": "a", "handler": "prompt_to_strng"}]}`, "tasks[0].handler")
		srv.must(http.StatusOK, "PUT", "/taskchains/one", `{"tasks": [{"id": "a", "handler": "noop", "description": "replaced"}]}`, nil)
		var got struct {
			Tasks []struct{ Description string }
		}
		srv.must(http.StatusOK, "GET", "/taskchains/one", nil, &got)
		if len(got.Tasks) != 1 || got.Tasks[0].Description != "replaced" {
			t.Errorf("after PUT: %+v", got)
		}
		// Page through with limit=2: every chain once, then no cursor.
		var seen []string
		path := "/taskchains?limit=2"
		for pages := 0; path != ""; pages++ {
			if pages > 3 {
				t.Fatal("paging does not end")
			}
			status, data, h := srv.do("GET", path, nil)
			var page []struct{ ID string }
			if status != http.StatusOK || json.Unmarshal(data, &page) != nil {
				t.Fatalf("GET %s = %d %s", path, status, data)
			}
			for _, c := range page {
				seen = append(seen, c.ID)
			}
			path = ""
			if next := h.Get("X-Next-Cursor"); next != "" {
				path = "/taskchains?limit=2&cursor=" + url.QueryEscape(next)
			}
		}
		slices.Sort(seen)
		if !slices.Equal(seen, []string{"one", "three", "two"}) {
			t.Errorf("paged through %v", seen)
		}
		srv.must(http.StatusOK, "DELETE", "/taskchains/two", nil, nil)
		wantError(t, http.StatusNotFound, "GET", "/taskchains/two", nil, "")
	})

	t.Run("BackendsModelsGroups", func(t *testing.T) {
		var b struct{ ID string }
		srv.must(http.StatusCreated, "POST", "/backends", map[string]string{"name": "gpu-1", "baseUrl": fake.URL(), "type": "ollama"}, &b)
		wantError(t, http.StatusConflict, "POST", "/backends", map[string]string{"name": "gpu-1", "baseUrl": "http://127.0.0.1:9", "type": "ollama"}, "name")
		wantError(t, http.StatusUnprocessableEntity, "POST", "/backends", map[string]string{"name": "x", "baseUrl": "http://127.0.0.1:9", "type": "ollama", "bseUrl": "y"}, "bseUrl")
		srv.must(http.StatusOK, "PUT", "/backends/"+b.ID, map[string]string{"name": "gpu-one", "baseUrl": fake.URL(), "type": "ollama"}, nil)

		srv.must(http.StatusCreated, "POST", "/models", map[string]any{"model": "library/qwen2.5:7b", "contextLength": 32768, "canChat": true}, nil)
		srv.must(http.StatusOK, "PUT", "/models/library%2Fqwen2.5:7b", map[string]any{"contextLength": 16384, "canChat": true, "canPrompt": true}, nil)
		var m struct{ ContextLength int }
		srv.must(http.StatusOK, "GET", "/models/library%2Fqwen2.5:7b", nil, &m)
		if m.ContextLength != 16384 {
			t.Errorf("model after PUT = %+v", m)
		}
		wantError(t, http.StatusForbidden, "DELETE", "/models/nomic-embed-text:latest", nil, "")

		var g struct{ ID string }
		srv.must(http.StatusCreated, "POST", "/groups", map[string]string{"name": "gpu", "purposeType": "Chat"}, &g)
		srv.must(http.StatusCreated, "POST", "/backend-affinity/"+g.ID+"/backends/"+b.ID, nil, nil)
		srv.must(http.StatusOK, "POST", "/model-affinity/"+g.ID+"/models/library%2Fqwen2.5:7b", nil, nil)
		var byName struct{ ID string }
		srv.must(http.StatusOK, "GET", "/group-by-name/gpu", nil, &byName)
		var byPurpose []struct{ Name string }
		srv.must(http.StatusOK, "GET", "/group-by-purpose/Chat", nil, &byPurpose)
		if byName.ID != g.ID || !slices.ContainsFunc(byPurpose, func(x struct{ Name string }) bool { return x.Name == "gpu" }) {
			t.Errorf("by name %+v, by purpose %+v", byName, byPurpose)
		}
		var groups []struct{ ID string }
		srv.must(http.StatusOK, "GET", "/backend-affinity/"+b.ID+"/groups", nil, &groups)
		if len(groups) != 1 || groups[0].ID != g.ID {
			t.Errorf("backend's groups = %+v", groups)
		}
		wantError(t, http.StatusForbidden, "DELETE", "/groups/internal_embed_group", nil, "")
		srv.must(http.StatusOK, "DELETE", "/model-affinity/"+g.ID+"/models/library%2Fqwen2.5:7b", nil, nil)
		srv.must(http.StatusOK, "DELETE", "/backend-affinity/"+g.ID+"/backends/"+b.ID, nil, nil)
		srv.must(http.StatusOK, "DELETE", "/groups/"+g.ID, nil, nil)
		srv.must(http.StatusOK, "DELETE", "/models/library%2Fqwen2.5:7b", nil, nil)
		srv.must(http.StatusOK, "DELETE", "/backends/"+b.ID, nil, nil)
		wantError(t, http.StatusNotFound, "GET", "/backends/"+b.ID, nil, "")
	})

	t.Run("Limits", func(t *testing.T) {
		big := `{"id": "big", "description": "` + strings.Repeat("x", 2<<20) + `", "tasks": [{"id": "a", "handler": "noop"}]}`
		wantError(t, http.StatusRequestEntityTooLarge, "POST", "/taskchains", big, "")
		wantError(t, http.StatusBadRequest, "POST", "/taskchains", `{"id": `, "")
		wantError(t, http.StatusBadRequest, "GET", "/taskchains?limit=5000", nil, "limit")
		wantError(t, http.StatusNotFound, "GET", "/taskchains/big", nil, "")
	})
}

func TestServeShutdown(t *testing.T) {
	t.Run("EventStreamDoesNotHoldIt", func(t *testing.T) {
		srv := startServer(t, t.TempDir(), nil, "-shutdown-timeout", "2m")
		resp, err := http.Get(srv.url + "/queue/inProgress")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_ = srv.cmd.Process.Signal(syscall.SIGTERM)
		// With the stream holding it, shutdown would wait its full grace of
		// two minutes; the bound here only keeps a broken build from
		// hanging the suite.
		select {
		case <-srv.done:
		case <-time.After(time.Minute):
			t.Fatalf("the server is still up a minute after SIGTERM with a stream open:\n%s", srv.logText())
		}
		if srv.code != 0 {
			t.Errorf("exit code %d, want 0", srv.code)
		}
		if _, err := io.ReadAll(resp.Body); err != nil && !strings.Contains(err.Error(), "EOF") {
			t.Logf("stream ended with %v", err)
		}
	})
	t.Run("StuckRequestIsCutAfterTheGrace", func(t *testing.T) {
		fake := fakellm.Start()
		t.Cleanup(fake.Close)
		fake.Script(fakellm.Reply{Match: "never", Latency: time.Hour})
		srv := startServer(t, t.TempDir(), []string{"TASK_MODEL=llama3.2:1b", "OLLAMA_BACKEND_URL=" + fake.URL()}, "-shutdown-timeout", "500ms")
		answered := make(chan int, 1)
		go func() {
			resp, err := http.Post(srv.url+"/execute", "application/json", strings.NewReader(`{"prompt": "never answered"}`))
			if err != nil {
				answered <- 0
				return
			}
			resp.Body.Close()
			answered <- resp.StatusCode
		}()
		deadline := time.Now().Add(20 * time.Second)
		for !sawPrompt(fake, "never answered") {
			if time.Now().After(deadline) {
				t.Fatal("the backend never got the prompt")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if code := srv.stop(); code != 0 {
			t.Errorf("exit code %d, want 0:\n%s", code, srv.logText())
		}
		if status := <-answered; status == http.StatusOK {
			t.Error("the stuck request was answered 200")
		}
		if !strings.Contains(srv.logText(), "cutting their connections") || !strings.Contains(srv.logText(), "stepwise stopped") {
			t.Errorf("log lacks the cut and the stop:\n%s", srv.logText())
		}
	})
}
