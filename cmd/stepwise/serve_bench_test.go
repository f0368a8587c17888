package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core/coretest"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/core/llm/ollama"
	"github.com/stepwise-run/stepwise/functions/api"
)

// BenchmarkServeTasks measures POST /tasks with a one-step chain on a
// server over SQLite, beside the same prompt sent straight to the fake
// backend through the same client library, in one run. Each reports
// requests per second and its p50 and p99 latency; each tasks benchmark also
// reports the p50 and p99 it adds over the direct call with as many clients.
func BenchmarkServeTasks(b *testing.B) {
	fake := fakellm.Start()
	b.Cleanup(fake.Close)
	fake.Script(fakellm.Reply{Match: "", Text: "pong"})
	dir := b.TempDir()
	o := &serveOptions{
		addr: "127.0.0.1:0", dbPath: filepath.Join(dir, "bench.db"), keyFile: filepath.Join(dir, "key"),
		policy: core.PolicyOrdered, syncInterval: time.Minute, maxBody: api.DefaultMaxBodyBytes,
		readTimeout: time.Minute, writeTimeout: time.Minute, idleTimeout: time.Minute, shutdownTimeout: 5 * time.Second,
		workers: 4, deliverySteps: 50, deliveryTimeout: time.Minute, leaseTTL: time.Minute, sweepInterval: time.Minute, syncTimeout: 25 * time.Second,
		defaults:  catalog.Defaults{Task: catalog.DefaultModel{Name: "llama3.2:1b", ContextLength: 8192}},
		ollamaURL: fake.URL(), ollamaName: "fake",
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	served := make(chan error, 1)
	go func() {
		served <- serve(ctx, o, slog.New(slog.DiscardHandler), func(a string) { addrc <- a })
	}()
	var base string
	select {
	case a := <-addrc:
		base = "http://" + a
	case err := <-served:
		b.Fatalf("serve: %v", err)
	}
	b.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			b.Errorf("serve: %v", err)
		}
	})

	direct, err := ollama.New(fake.URL(), nil)
	if err != nil {
		b.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	body := []byte(`{"input":"ping","inputType":"string","chain":{"id":"one","tasks":[{"id":"ask","handler":"prompt_to_string"}]}}`)

	callDirect := func() error {
		_, err := direct.Prompt(context.Background(), "llama3.2:1b", core.PromptRequest{Prompt: "ping"}, nil)
		return err
	}
	callTasks := func() error {
		resp, err := hc.Post(base+"/tasks", "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return core.Errorf(core.EINTERNAL, "POST /tasks = %d", resp.StatusCode)
		}
		return nil
	}
	// A 50-step chain in one POST /tasks beside the same 50 prompts sent
	// straight to the backend: the server's cost per step, a SQLite
	// checkpoint included.
	b.Run("steps=50", func(b *testing.B) {
		long := []byte(`{"input":"start","inputType":"string","chain":` + promptChain(benchSteps) + `}`)
		var directTime, tasksTime time.Duration
		for b.Loop() {
			start := time.Now()
			prev := "start"
			for i := 1; i <= benchSteps; i++ {
				c, err := direct.Prompt(context.Background(), "llama3.2:1b", core.PromptRequest{Prompt: fmt.Sprintf("step %d after %s", i, prev)}, nil)
				if err != nil {
					b.Fatal(err)
				}
				prev = c.Message.Content
			}
			directTime += time.Since(start)
			start = time.Now()
			resp, err := hc.Post(base+"/tasks", "application/json", bytes.NewReader(long))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("POST /tasks = %d", resp.StatusCode)
			}
			tasksTime += time.Since(start)
		}
		per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N*benchSteps) / 1000 }
		b.ReportMetric(per(directTime), "direct-µs/step")
		b.ReportMetric(per(tasksTime), "serve-µs/step")
		b.ReportMetric(per(tasksTime-directTime), "ours-µs/step")
	})
	// One client shows the latency the server adds; eight show the
	// throughput and the latency under load on this machine.
	for _, clients := range []int{1, 8} {
		var directP50, directP99 time.Duration
		b.Run(fmt.Sprintf("direct/clients=%d", clients), func(b *testing.B) {
			directP50, directP99 = coretest.Latencies(b, clients, coretest.Timed(callDirect))
		})
		b.Run(fmt.Sprintf("tasks/clients=%d", clients), func(b *testing.B) {
			p50, p99 := coretest.Latencies(b, clients, coretest.Timed(callTasks))
			if directP50 > 0 {
				b.ReportMetric(float64(p50-directP50)/1e3, "added-p50-µs")
				b.ReportMetric(float64(p99-directP99)/1e3, "added-p99-µs")
			}
		})
	}
}
