package openai_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

// sdkReplies are the fake model's answers to the prompts of the SDK
// scripts in testdata/sdk (each answers any number of requests).
func sdkReplies() []fakellm.Reply {
	return []fakellm.Reply{
		{Match: "py capital", Text: "Paris."},
		{Match: "py stream", Text: "one two\nthree ✓"},
		{Match: "py weather", ToolCalls: []fakellm.Call{{ID: "call_py_w", Name: "get_weather", Arguments: map[string]any{"city": "Paris"}}}},
		{Match: "py 18C", Text: "It is 18C."},
		{Match: "py chain", Text: "chained."},
		{Match: "py hook", ToolCalls: []fakellm.Call{{ID: "call_py_e", Name: "echo", Arguments: map[string]any{"input": "py echoed"}}}},
		{Match: "py echoed", Text: "hooked."},
		{Match: "py trip", ToolCalls: []fakellm.Call{{ID: "call_py_t", Name: "get_weather", Arguments: map[string]any{"city": "Rome"}}}},
		{Match: "py 20C", Text: "Pack for 20C."},
		{Match: "py cut", Text: "one two three four", CutAfter: 2},
	}
}

// sdkClient is an official SDK's test script and how to run it.
type sdkClient struct {
	name   string
	script string
	// command returns the interpreter and whether the SDK is installed
	// (by make deps-test).
	command func() (string, bool)
}

var sdkClients = []sdkClient{
	{"python", "sdk_test.py", func() (string, bool) {
		py, err := filepath.Abs("../../.venv-sdk/bin/python")
		if err != nil {
			return "", false
		}
		_, err = os.Stat(py)
		return py, err == nil
	}},
	{"node", "sdk_test.mjs", func() (string, bool) {
		node, err := exec.LookPath("node")
		if err != nil {
			return "", false
		}
		_, err = os.Stat("testdata/sdk/node_modules/openai/package.json")
		return node, err == nil
	}},
}

// TestOfficialSDKs runs the official openai Python and Node SDKs, as
// make deps-test installs them, against the server over the fake model:
// chat whole and streamed, tools both ways, per-chain endpoints, models,
// embeddings, Responses, and the error cases. Without the SDKs it skips,
// except under CI, where it fails.
func TestOfficialSDKs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the SDKs' interpreters")
	}
	e := newEnv(t)
	e.ollama.Script(sdkReplies()...)
	e.chain(demoChain)
	e.chain(agentChain)
	for _, c := range sdkClients {
		t.Run(c.name, func(t *testing.T) {
			bin, ok := c.command()
			if !ok {
				if os.Getenv("CI") != "" {
					t.Fatalf("the %s SDK is not installed: run make deps-test", c.name)
				}
				t.Skipf("the %s SDK is not installed (make deps-test installs it)", c.name)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, c.script)
			cmd.Dir = "testdata/sdk"
			cmd.Env = append(os.Environ(),
				"STEPWISE_URL="+e.srv.URL, "STEPWISE_MODEL="+ollamaModel,
				"STEPWISE_GHOST_MODEL="+ghostModel, "STEPWISE_EMBED_MODEL="+embedModel,
				"NO_PROXY=127.0.0.1", "no_proxy=127.0.0.1")
			out, err := cmd.CombinedOutput()
			t.Logf("%s", out)
			if err != nil {
				t.Fatalf("the %s SDK's checks failed: %v", c.name, err)
			}
			if !strings.Contains(string(out), " 0 failed") {
				t.Errorf("the %s script did not report its checks", c.name)
			}
		})
	}
}
