package main_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

// mcpServerEnv makes this test binary an MCP server over stdio (see
// serveMCPIfAsked), so that a config's mcp_servers can name it.
const mcpServerEnv = "STEPWISE_TEST_MCP_STDIO"

// serveMCPIfAsked runs the test binary as an MCP server with one tool,
// when the environment asks for it; TestMain calls it first.
func serveMCPIfAsked() {
	if os.Getenv(mcpServerEnv) != "1" {
		return
	}
	server := sdk.NewServer(&sdk.Implementation{Name: "weather", Version: "1"}, nil)
	type in struct {
		City string `json:"city"`
	}
	sdk.AddTool(server, &sdk.Tool{Name: "forecast", Description: "The forecast for a city."},
		func(_ context.Context, _ *sdk.CallToolRequest, a in) (*sdk.CallToolResult, any, error) {
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "sunny in " + a.City}}}, nil, nil
		})
	if err := server.Run(context.Background(), &sdk.StdioTransport{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestVibes runs the shipped vibes chain: the model asks local_exec for
// ls, the allowed program runs in the working directory, the model reads
// its output and answers; a refused program reaches the model as a
// refusal and runs nothing.
func TestVibes(t *testing.T) {
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	c := newCLI(t)
	c.write("notes.txt", "hello")
	canary := c.write("canary", "alive")
	fake.Script(
		fakellm.Reply{Match: "what files are here", ToolCalls: []fakellm.Call{{Name: "local_exec", Arguments: map[string]any{"command": "ls", "args": []any{"-1"}}}}},
		fakellm.Reply{Match: "notes.txt", Text: "There is a canary and notes.txt."},
		fakellm.Reply{Match: "remove the canary", ToolCalls: []fakellm.Call{{Name: "local_exec", Arguments: map[string]any{"command": "rm", "args": []any{canary}}}}},
		fakellm.Reply{Match: "not on the allow list", Text: "I may not remove files."},
	)
	base := []string{"run", "-ollama", fake.URL(), "-model", "qwen2.5:7b", "-chain", examplePath("vibes.json"),
		"-enable-local-exec", "-local-exec-allowed-commands", "ls,cat"}
	r := c.run("", append(base, "-input", "what files are here?")...)
	if r.code != 0 || r.stdout != "There is a canary and notes.txt.\n" {
		t.Fatalf("exit %d stdout %q stderr %s", r.code, r.stdout, r.stderr)
	}
	reqs := modelCalls(fake)
	offered := reqs[0].Tools
	if strings.Join(offered, ",") != "local_exec" || !strings.Contains(reqs[0].Messages[0].Content, "local_exec") {
		t.Errorf("the model was offered %v with the system message %q", offered, reqs[0].Messages[0].Content)
	}

	r = c.run("", append(base, "-input", "remove the canary")...)
	if r.code != 0 || r.stdout != "I may not remove files.\n" {
		t.Fatalf("exit %d stdout %q stderr %s", r.code, r.stdout, r.stderr)
	}
	if b, err := os.ReadFile(canary); err != nil || string(b) != "alive" {
		t.Errorf("the canary: %q %v", b, err)
	}

	t.Run("off unless enabled", func(t *testing.T) {
		r := c.run("", "run", "-ollama", fake.URL(), "-model", "qwen2.5:7b", "-chain", examplePath("vibes.json"), "-input", "what files are here?")
		if r.code == 0 || !strings.Contains(r.stderr, "local_exec") {
			t.Errorf("exit %d stderr %q: want a failure naming local_exec", r.code, r.stderr)
		}
	})
	t.Run("enabled without an allow list", func(t *testing.T) {
		r := c.run("", "run", "-ollama", fake.URL(), "-model", "qwen2.5:7b", "-chain", examplePath("vibes.json"), "-enable-local-exec", "-input", "x")
		if r.code != 2 || !strings.Contains(r.stderr, "allow list") {
			t.Errorf("exit %d stderr %q", r.code, r.stderr)
		}
	})
	t.Run("an interpreter on the allow list", func(t *testing.T) {
		c.write(".stepwise/config.yaml", "enable_local_exec: true\nlocal_exec_allowed_commands: [ls, python3]\n")
		defer os.Remove(filepath.Join(c.dir, ".stepwise", "config.yaml"))
		r := c.run("", "run", "-ollama", fake.URL(), "-model", "qwen2.5:7b", "-chain", examplePath("vibes.json"), "-input", "x")
		if r.code != 2 || !strings.Contains(r.stderr, "python3") {
			t.Errorf("exit %d stderr %q", r.code, r.stderr)
		}
	})
}

// TestMCPStdioFromConfig runs a chain whose model calls a tool of an MCP
// server the config starts as a command.
func TestMCPStdioFromConfig(t *testing.T) {
	fake := fakellm.Start()
	t.Cleanup(fake.Close)
	c := newCLI(t)
	c.env = []string{mcpServerEnv + "=1"}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c.write(".stepwise/config.yaml", fmt.Sprintf("mcp_servers:\n  - name: weather\n    command: [%q]\n", self))
	chain := c.write("chain.yaml", `id: ask
tasks:
  - id: chat
    handler: chat_completion
    execute_config: {hooks: [weather]}
    transition:
      branches:
        - {operator: equals, when: tool-call, goto: run}
        - {operator: default, goto: end}
  - id: run
    handler: execute_tool_calls
    transition:
      branches:
        - {operator: default, goto: chat}
`)
	fake.Script(
		fakellm.Reply{Match: "weather in Oslo", ToolCalls: []fakellm.Call{{Name: "weather_forecast", Arguments: map[string]any{"city": "Oslo"}}}},
		fakellm.Reply{Match: "sunny in Oslo", Text: "Sunny."},
	)
	r := c.run("", "run", "-ollama", fake.URL(), "-model", "qwen2.5:7b", "-chain", chain, "-input", "what is the weather in Oslo?")
	if r.code != 0 || r.stdout != "Sunny.\n" {
		t.Fatalf("exit %d stdout %q stderr %s", r.code, r.stdout, r.stderr)
	}
	t.Run("a bad entry names itself", func(t *testing.T) {
		c.write(".stepwise/config.yaml", "mcp_servers:\n  - name: both\n    command: [x]\n    url: https://example.com/mcp\n")
		r := c.run("", "run", "-ollama", fake.URL(), "-model", "qwen2.5:7b", "-chain", chain, "-input", "x")
		if r.code != 2 || !strings.Contains(r.stderr, "mcp_servers[0] (both)") {
			t.Errorf("exit %d stderr %q", r.code, r.stderr)
		}
	})
}
