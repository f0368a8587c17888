package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

// binary is the stepwise command built once for every test.
var binary string

func TestMain(m *testing.M) {
	serveMCPIfAsked()
	dir, err := os.MkdirTemp("", "stepwise-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "stepwise")
	if runtime.GOOS == "windows" {
		binary += ".exe"
	}
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build stepwise:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one run of the binary produced.
type result struct {
	stdout, stderr string
	code           int
}

// cli runs the binary in a fresh working directory and home, so that no
// config of the machine leaks in.
type cli struct {
	t    *testing.T
	dir  string
	home string
	env  []string
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	return &cli{t: t, dir: t.TempDir(), home: t.TempDir()}
}

func (c *cli) write(name, content string) string {
	c.t.Helper()
	p := filepath.Join(c.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return p
}

func (c *cli) run(stdin string, args ...string) result {
	c.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = c.dir
	cmd.Env = append([]string{"HOME=" + c.home, "PATH=" + os.Getenv("PATH")}, c.env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("run %v: %v", args, err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// provider selects one of the two protocols for a run.
type provider struct {
	name string
	args func(url string) []string
	env  []string
}

var providers = []provider{
	{"ollama", func(url string) []string { return []string{"-ollama", url} }, nil},
	{"openai", func(url string) []string { return []string{"-openai-base-url", url + "/v1"} }, []string{"OPENAI_API_KEY=test-key"}},
}

func forEachProvider(t *testing.T, fn func(t *testing.T, c *cli, fake *fakellm.Server, base []string)) {
	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			fake := fakellm.Start()
			t.Cleanup(fake.Close)
			c := newCLI(t)
			c.env = p.env
			fn(t, c, fake, append([]string{"run"}, p.args(fake.URL())...))
		})
	}
}

func examplePath(name string) string {
	p, _ := filepath.Abs(filepath.Join("..", "..", "examples", name))
	return p
}

func TestSeedExampleChain(t *testing.T) {
	forEachProvider(t, func(t *testing.T, c *cli, fake *fakellm.Server, base []string) {
		fake.Script(fakellm.Reply{Match: "optimize database queries", Text: "Add the right indexes.\nThen measure."})
		r := c.run("", append(base, "-chain", examplePath("qa.json"), "-model", "llama3.2:1b", "-input", "What's the best way to optimize database queries?")...)
		if r.code != 0 {
			t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
		if r.stdout != "Add the right indexes.\nThen measure.\n" {
			t.Errorf("stdout = %q", r.stdout)
		}
		reqs := modelCalls(fake)
		if len(reqs) == 0 {
			t.Fatal("the fake saw no request")
		}
		last := reqs[len(reqs)-1]
		system := last.System
		if system == "" && len(last.Messages) > 0 && last.Messages[0].Role == "system" {
			system = last.Messages[0].Content
		}
		if !strings.HasPrefix(system, "You're a senior engineer.") {
			t.Errorf("system instruction did not reach the model: request %+v", last)
		}
		if last.Model != "llama3.2:1b" {
			t.Errorf("model = %q", last.Model)
		}
	})
}

func TestSeedRequestFileCarriesItsInput(t *testing.T) {
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	fake.Script(fakellm.Reply{Match: "optimize database queries", Text: "Use EXPLAIN."})
	c := newCLI(t)
	r := c.run("", "run", "-ollama", fake.URL(), "-model", "llama3.2:1b", "-chain", examplePath("qa.json"))
	if r.code != 0 || r.stdout != "Use EXPLAIN.\n" {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	t.Run("FlagsWin", func(t *testing.T) {
		r := c.run("", "run", "-ollama", fake.URL(), "-model", "llama3.2:1b", "-chain", examplePath("qa.json"), "-input", "other question")
		if reqs := modelCalls(fake); r.code != 0 || reqs[len(reqs)-1].Prompt != "other question" {
			t.Errorf("exit %d, prompt %q", r.code, reqs[len(reqs)-1].Prompt)
		}
	})
	t.Run("TypedInputAndVars", func(t *testing.T) {
		f := c.write("req.yaml", "input: {n: 2}\ninputType: json\ntemplateVars: {who: ops}\nchain:\n  id: r\n  tasks:\n    - id: show\n      handler: noop\n      prompt_template: \"{{var:who}} got {{.input.n}}\"\n")
		r := c.run("", "run", "-chain", f)
		if r.code != 0 || r.stdout != "ops got 2\n" {
			t.Errorf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("UnknownKey", func(t *testing.T) {
		f := c.write("typo.json", `{"chain":{"id":"x","tasks":[{"id":"a","handler":"noop"}]},"inptu":"x"}`)
		r := c.run("", "run", "-chain", f)
		if r.code != 2 || !strings.Contains(r.stderr, `inptu: unknown field; did you mean "input"?`) {
			t.Errorf("exit %d stderr %q", r.code, r.stderr)
		}
	})
}

func TestBackendErrorPageIsOneLine(t *testing.T) {
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	fake.Script(fakellm.Reply{Status: 502, Text: "<html>\n<body>\n<h1>502 Bad Gateway</h1>\n</body>\n</html>"})
	c := newCLI(t)
	chain := c.write("c.json", `{"id":"c","tasks":[{"id":"ask","handler":"raw_string"}]}`)
	r := c.run("", "run", "-ollama", fake.URL(), "-model", "llama3.2:1b", "-chain", chain, "-input", "x")
	if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "502 Bad Gateway") {
		t.Errorf("exit %d stderr %q; want one line naming the 502", r.code, r.stderr)
	}
}

func TestConditionalBranch(t *testing.T) {
	tests := []struct {
		name, input, classify, want string
	}{
		{"Complaint", "my order never arrived", "yes", "We are sorry."},
		{"Question", "when do you open?", "no", "At nine."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachProvider(t, func(t *testing.T, c *cli, fake *fakellm.Server, base []string) {
				fake.Script(
					fakellm.Reply{Match: "Is this message a complaint?", Text: tt.classify},
					fakellm.Reply{Match: "apology", Text: "We are sorry."},
					fakellm.Reply{Match: "Answer briefly", Text: "At nine."},
				)
				r := c.run("", append(base, "-chain", examplePath("triage.yaml"), "-model", "qwen2.5:7b", "-input", tt.input, "-steps")...)
				if r.code != 0 {
					t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
				}
				if strings.TrimSpace(r.stdout) != tt.want {
					t.Errorf("stdout = %q, want %q", r.stdout, tt.want)
				}
				lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
				if len(lines) != 2 || !strings.Contains(lines[0], "1. classify (prompt_to_condition)") {
					t.Errorf("steps = %q", r.stderr)
				}
			})
		})
	}
}

func TestAgentLoopCallsEchoTwice(t *testing.T) {
	forEachProvider(t, func(t *testing.T, c *cli, fake *fakellm.Server, base []string) {
		fake.Script(
			fakellm.Reply{Match: "greet me twice", ToolCalls: []fakellm.Call{{Name: "echo", Arguments: map[string]any{"text": "hello"}}}},
			fakellm.Reply{Match: "hello", Times: 1, ToolCalls: []fakellm.Call{{Name: "echo", Arguments: map[string]any{"text": "hello again"}}}},
			fakellm.Reply{Match: "hello again", Text: "Done: hello, hello again."},
		)
		r := c.run("", append(base, "-chain", examplePath("agent.yaml"), "-model", "qwen2.5:7b", "-input", "greet me twice", "-trace")...)
		if r.code != 0 {
			t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
		}
		if strings.TrimSpace(r.stdout) != "Done: hello, hello again." {
			t.Errorf("stdout = %q", r.stdout)
		}
		var steps []core.Step
		for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
			var st core.Step
			if err := json.Unmarshal([]byte(line), &st); err != nil {
				t.Fatalf("trace line %q: %v", line, err)
			}
			steps = append(steps, st)
		}
		var order []string
		for _, st := range steps {
			order = append(order, st.TaskID)
		}
		if strings.Join(order, ",") != "chat,run_tools,chat,run_tools,chat" {
			t.Errorf("steps = %v", order)
		}
		if steps[0].Model != "qwen2.5:7b" || steps[0].TokensIn == 0 || steps[0].Backend == "" {
			t.Errorf("first step record = %+v", steps[0])
		}
		// The third model request carries both calls with their ids and
		// both results tied to them: the round trip lost nothing.
		reqs := modelCalls(fake)
		final := reqs[len(reqs)-1].Messages
		var ids, results []string
		for _, m := range final {
			for _, tc := range m.ToolCalls {
				ids = append(ids, tc.ID)
			}
			if m.Role == "tool" {
				results = append(results, m.ToolCallID+"="+m.Content)
			}
		}
		if len(ids) != 2 || len(results) != 2 || results[0] != ids[0]+"=hello" || results[1] != ids[1]+"=hello again" {
			t.Errorf("tool calls %v, results %v", ids, results)
		}
		if final[0].Role != "system" || !strings.Contains(final[0].Content, `["echo"]`) {
			t.Errorf("system message = %+v, want the hookservice macro expanded", final[0])
		}
	})
}

func TestInputs(t *testing.T) {
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	c := newCLI(t)
	chain := c.write("echo.json", `{"id":"e","tasks":[{"id":"show","handler":"noop"}]}`)
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"Flag", "", []string{"-input", "from flag"}, "from flag\n"},
		{"Stdin", "from stdin\n", nil, "from stdin\n"},
		{"JSONRaw", "", []string{"-input-type", "json", "-input", `{"a": [1, 2]}`, "-raw"}, "{\n  \"a\": [\n    1,\n    2\n  ]\n}\n"},
		{"IntType", "", []string{"-input-type", "int", "-input", "42"}, "42\n"},
		{"ChatHistoryText", "", []string{"-input-type", "chat_history", "-input", "hi there"}, "hi there\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.run(tt.stdin, append([]string{"run", "-ollama", fake.URL(), "-chain", chain}, tt.args...)...)
			if r.code != 0 || r.stdout != tt.want {
				t.Errorf("exit %d stdout %q stderr %q; want %q", r.code, r.stdout, r.stderr, tt.want)
			}
		})
	}
}

func TestChatCompletionStartsHistoryFromString(t *testing.T) {
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	fake.Script(fakellm.Reply{Match: "hello model", Text: "hello human"})
	c := newCLI(t)
	chain := c.write("chat.yaml", "id: chat\ntasks:\n  - id: talk\n    handler: chat_completion\n")
	r := c.run("", "run", "-ollama", fake.URL(), "-model", "llama3.2:1b", "-chain", chain, "-input", "hello model")
	if r.code != 0 || r.stdout != "hello human\n" {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	msgs := modelCalls(fake)[0].Messages
	if len(msgs) != 1 || msgs[0].Role != "user" || msgs[0].Content != "hello model" {
		t.Errorf("messages = %+v, want the input as the user message", msgs)
	}
}

func TestConfigFileAndDefaultChain(t *testing.T) {
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	fake.Script(fakellm.Reply{Match: "", Text: "configured"})
	c := newCLI(t)
	c.write(".stepwise/config.yaml", fmt.Sprintf("ollama: %s\nmodel: qwen2.5:7b\ndefault_chain: chains/hi.yaml\nsteps: true\ntemplate_vars_from_env: [TEAM]\n", fake.URL()))
	c.write(".stepwise/chains/hi.yaml", "id: hi\ntasks:\n  - id: ask\n    handler: raw_string\n    prompt_template: \"{{var:TEAM}} asks {{.input}} via {{var:model}}\"\n")
	c.env = []string{"TEAM=blue"}
	r := c.run("", "run", "-input", "why?")
	if r.code != 0 || r.stdout != "configured\n" {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "1. ask (prompt_to_string)") {
		t.Errorf("steps from config not shown: %q", r.stderr)
	}
	if got := modelCalls(fake)[0]; got.Prompt != "blue asks why? via qwen2.5:7b" || got.Model != "qwen2.5:7b" {
		t.Errorf("request = %+v", got)
	}
	t.Run("FlagsWin", func(t *testing.T) {
		r := c.run("", "run", "-input", "why?", "-model", "llama3.2:1b", "-steps=false")
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("exit %d stderr %q", r.code, r.stderr)
		}
		reqs := modelCalls(fake)
		if reqs[len(reqs)-1].Model != "llama3.2:1b" {
			t.Errorf("model = %q, want the flag's", reqs[len(reqs)-1].Model)
		}
	})
	t.Run("DefaultChainJSON", func(t *testing.T) {
		c2 := newCLI(t)
		c2.write(".stepwise/default-chain.json", `{"id":"d","tasks":[{"id":"n","handler":"noop","prompt_template":"default chain ran"}]}`)
		r := c2.run("", "run", "-input", "x")
		if r.code != 0 || r.stdout != "default chain ran\n" {
			t.Errorf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("UnknownKey", func(t *testing.T) {
		c3 := newCLI(t)
		c3.write(".stepwise/config.yaml", "modle: x\n")
		r := c3.run("", "run", "-input", "x")
		if r.code != 2 || !strings.Contains(r.stderr, `unknown key "modle"`) {
			t.Errorf("exit %d stderr %q", r.code, r.stderr)
		}
	})
	t.Run("UnknownExtraModelKey", func(t *testing.T) {
		c4 := newCLI(t)
		c4.write(".stepwise/config.yaml", "extra_models:\n  - name: qwen2.5:7b\n    contxt: 4096\n")
		r := c4.run("", "run", "-input", "x")
		if r.code != 2 || !strings.Contains(r.stderr, "contxt") {
			t.Errorf("exit %d stderr %q", r.code, r.stderr)
		}
	})
	t.Run("TracingIsTrace", func(t *testing.T) {
		c5 := newCLI(t)
		c5.write(".stepwise/config.yaml", "tracing: true\n")
		c5.write(".stepwise/default-chain.json", `{"id":"d","tasks":[{"id":"n","handler":"noop"}]}`)
		r := c5.run("", "run", "-input", "x")
		if r.code != 0 || !strings.Contains(r.stderr, `"task_id":"n"`) {
			t.Errorf("exit %d stderr %q", r.code, r.stderr)
		}
	})
}

func TestErrorsAreOneClearLine(t *testing.T) {
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	c := newCLI(t)
	good := c.write("good.json", `{"id":"g","tasks":[{"id":"ask","handler":"raw_string"}]}`)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
	}{
		{"InvalidChain", []string{"-chain", c.write("bad.json", `{"id":"b","tasks":[{"id":"a","handler":"raw_strng","transition":{"branches":[{"operator":"default","goto":"nowhere"}]}}]}`), "-input", "x"},
			2, []string{`stepwise: invalid chain: task "a": tasks[0].handler: unknown handler "raw_strng"; did you mean "raw_string"?`, `stepwise: invalid chain: task "a": tasks[0].transition.branches[0].goto: unknown task "nowhere"`}},
		{"UnknownField", []string{"-chain", c.write("typo.yaml", "id: t\ntasks:\n  - id: a\n    handler: noop\n    promt_template: x\n"), "-input", "x"},
			2, []string{`stepwise: invalid chain: task "a": tasks[0].promt_template: unknown field; did you mean "prompt_template"?`}},
		{"MissingChainFile", []string{"-chain", "nope.json", "-input", "x"}, 2, []string{"stepwise: read chain: open nope.json: no such file or directory"}},
		{"NoInput", []string{"-chain", good}, 2, []string{"stepwise: no input: stdin was empty"}},
		{"BadInputType", []string{"-chain", good, "-input", "x", "-input-type", "text"}, 2, []string{`stepwise: -input-type: unknown data type "text"`}},
		{"NoModel", []string{"-chain", good, "-input", "x", "-ollama", fake.URL()}, 2, []string{`stepwise: task "ask" (prompt_to_string) needs a model: pass -model NAME`}},
		{"UnknownModel", []string{"-chain", good, "-input", "x", "-ollama", fake.URL(), "-model", "qwen2.5:0.5b"}, 1, []string{"qwen2.5:0.5b"}},
		{"BackendDown", []string{"-chain", good, "-input", "x", "-ollama", "http://127.0.0.1:1", "-model", "llama3.2:1b"}, 1, []string{`task "ask" failed`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.run("", append([]string{"run"}, tt.args...)...)
			if r.code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr %q", r.code, tt.wantCode, r.stderr)
			}
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if len(lines) != len(tt.want) {
				t.Errorf("stderr has %d lines, want %d:\n%s", len(lines), len(tt.want), r.stderr)
			}
			for i, w := range tt.want {
				if i < len(lines) && !strings.Contains(lines[i], w) {
					t.Errorf("line %d = %q, want it to contain %q", i, lines[i], w)
				}
			}
			if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic") {
				t.Errorf("stack trace on stderr:\n%s", r.stderr)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	fake.Script(fakellm.Reply{Text: "too late", Latency: 10 * time.Second})
	c := newCLI(t)
	chain := c.write("slow.json", `{"id":"s","tasks":[{"id":"wait","handler":"raw_string"}]}`)
	start := time.Now()
	r := c.run("", "run", "-ollama", fake.URL(), "-model", "llama3.2:1b", "-chain", chain, "-input", "x", "-timeout", "300ms")
	if r.code != 1 || !strings.Contains(r.stderr, "timed out after 300ms") || !strings.Contains(r.stderr, `task "wait" was running`) {
		t.Errorf("exit %d stderr %q", r.code, r.stderr)
	}
	if elapsed := time.Since(start); elapsed > 8*time.Second {
		t.Errorf("the run took %v; the timeout did not cancel the model call", elapsed)
	}
}

func TestFailedExecution(t *testing.T) {
	c := newCLI(t)
	chain := c.write("fail.json", `{"id":"f","tasks":[{"id":"stop","handler":"raise_error"}]}`)
	r := c.run("", "run", "-chain", chain, "-input", "the disk is full", "-steps")
	if r.code != 1 {
		t.Errorf("exit %d", r.code)
	}
	want := "  1. stop (raise_error) "
	if !strings.HasPrefix(r.stderr, want) || !strings.Contains(r.stderr, "stepwise: task \"stop\" failed: the disk is full\n") {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestVersionAndHelp(t *testing.T) {
	c := newCLI(t)
	if r := c.run("", "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "stepwise ") {
		t.Errorf("version: %+v", r)
	}
	if r := c.run("", "help"); r.code != 0 || !strings.Contains(r.stdout, "stepwise run") {
		t.Errorf("help: %+v", r)
	}
	if r := c.run("", "frobnicate"); r.code != 2 || !strings.Contains(r.stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %+v", r)
	}
	if r := c.run("", "run", "-h"); r.code != 0 || !strings.Contains(r.stderr, "-openai-base-url") {
		t.Errorf("run -h: %+v", r)
	}
}

// modelCalls are the recorded chat, generate and embed requests (not the
// model listings).
func modelCalls(fake *fakellm.Server) []fakellm.Request {
	var out []fakellm.Request
	for _, r := range fake.Requests() {
		if strings.Contains(r.Path, "chat") || strings.Contains(r.Path, "generate") || strings.Contains(r.Path, "embed") {
			out = append(out, r)
		}
	}
	return out
}
