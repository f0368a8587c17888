package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

// benchSteps is the length of the chain the CLI benchmark runs.
const benchSteps = 50

// promptChain is a chain of n prompt_to_string tasks, each asking about
// the previous answer.
func promptChain(n int) string {
	var tasks []string
	for i := 1; i <= n; i++ {
		next := "end"
		if i < n {
			next = fmt.Sprintf("t%d", i+1)
		}
		tasks = append(tasks, fmt.Sprintf(`{"id":"t%d","handler":"prompt_to_string","prompt_template":"step %d after {{.previous_output}}","transition":{"branches":[{"operator":"default","goto":%q}]}}`, i, i, next))
	}
	return `{"id":"bench","max_steps":1000,"tasks":[` + strings.Join(tasks, ",") + `]}`
}

// BenchmarkRunCommand is `stepwise run` of a 50-step prompt_to_string
// chain over the real command path (flags, chain file, router, engine,
// progress, output) against the fake model over HTTP, beside the same 50
// streamed calls made by a bare Ollama client in the same run. The
// figures are µs per step: the direct call's, stepwise's, and stepwise's
// own (the difference), which the issue bounds to 40 µs. The process
// start is left out: it is paid once per run, not per step.
func BenchmarkRunCommand(b *testing.B) {
	fake := fakellm.Start()
	b.Cleanup(fake.Close)
	fake.Script(fakellm.Reply{Text: "ok"})
	dir := b.TempDir()
	chainPath := filepath.Join(dir, "bench.json")
	if err := os.WriteFile(chainPath, []byte(promptChain(benchSteps)), 0o644); err != nil {
		b.Fatal(err)
	}
	e := env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }, workdir: dir, homedir: dir}
	args := []string{"-chain", chainPath, "-ollama", fake.URL(), "-model", "llama3.2:1b", "-input", "start"}
	ctx := context.Background()

	// The direct client: a POST of the same request, its NDJSON stream
	// read line by line and decoded, as a small Go program would.
	hc := &http.Client{Transport: http.DefaultTransport}
	directRun := func() {
		prev := "start"
		for i := 1; i <= benchSteps; i++ {
			body, _ := json.Marshal(map[string]any{"model": "llama3.2:1b", "prompt": fmt.Sprintf("step %d after %s", i, prev), "stream": true})
			resp, err := hc.Post(fake.URL()+"/api/generate", "application/json", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			var out strings.Builder
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				var chunk struct {
					Response string `json:"response"`
				}
				if err := json.Unmarshal(sc.Bytes(), &chunk); err != nil {
					b.Fatal(err)
				}
				out.WriteString(chunk.Response)
			}
			_ = resp.Body.Close()
			prev = out.String()
		}
	}
	cliRun := func() {
		o, err := parseRunFlags(args, e)
		if err != nil {
			b.Fatal(err)
		}
		if code, err := run(ctx, o, e); code != exitOK || err != nil {
			b.Fatalf("run: exit %d, %v", code, err)
		}
	}
	// Warm both: connections, the fake's first answers.
	directRun()
	cliRun()
	var directTime, cliTime time.Duration
	for b.Loop() {
		start := time.Now()
		directRun()
		directTime += time.Since(start)
		start = time.Now()
		cliRun()
		cliTime += time.Since(start)
	}
	perStep := func(d time.Duration) float64 {
		return float64(d.Nanoseconds()) / float64(b.N*benchSteps) / 1000
	}
	b.ReportMetric(perStep(directTime), "direct-µs/step")
	b.ReportMetric(perStep(cliTime), "stepwise-µs/step")
	b.ReportMetric(perStep(cliTime-directTime), "ours-µs/step")
}
