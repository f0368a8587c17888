package openai_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/core/coretest"
	"github.com/stepwise-run/stepwise/core/meter"

	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

// BenchmarkProxy measures what the routed proxy adds to a chat completion,
// in one run beside the backend called directly with the same client and
// body: latency p50/p99 at 1 and 64 concurrent clients for whole answers,
// and the time to the first token of a streamed answer (the fake model
// streams ten pieces 1 ms apart there).
//
//	go test -run '^$' -bench Proxy -benchtime 2000x ./functions/openai/
func BenchmarkProxy(b *testing.B) {
	e := newEnv(b)
	// Streamed answers are paced like a model generating; whole ones come
	// at once, as the backend sends them.
	e.oai.Script(fakellm.Reply{Match: "ping", Text: "one two three four five six seven eight nine ten"},
		fakellm.Reply{Match: "paced", Text: "one two three four five six seven eight nine ten", Gap: time.Millisecond})
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxConnsPerHost: 128}}
	body := func(stream bool) []byte {
		prompt := "ping"
		if stream {
			prompt = "paced"
		}
		return fmt.Appendf(nil, `{"model":%q,"stream":%t,"messages":[{"role":"user","content":%q}]}`, openaiModel, stream, prompt)
	}
	targets := []struct{ name, url string }{
		{"direct", e.oai.URL() + "/v1/chat/completions"},
		{"proxy", e.srv.URL + "/v1/chat/completions"},
	}
	whole := func(url string) func() (time.Duration, error) {
		data := body(false)
		return func() (time.Duration, error) {
			t0 := time.Now()
			resp, err := hc.Post(url, "application/json", bytes.NewReader(data))
			if err != nil {
				return 0, err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return 0, fmt.Errorf("status %d", resp.StatusCode)
			}
			return time.Since(t0), nil
		}
	}
	// firstToken times the first data line carrying content.
	firstToken := func(url string) func() (time.Duration, error) {
		data := body(true)
		return func() (time.Duration, error) {
			t0 := time.Now()
			resp, err := hc.Post(url, "application/json", bytes.NewReader(data))
			if err != nil {
				return 0, err
			}
			defer resp.Body.Close()
			r := bufio.NewReader(resp.Body)
			var ttft time.Duration
			for {
				line, err := r.ReadString('\n')
				if ttft == 0 && strings.Contains(line, `"content":"one`) {
					ttft = time.Since(t0)
				}
				if err != nil {
					break
				}
			}
			if ttft == 0 {
				return 0, fmt.Errorf("no token in the stream")
			}
			return ttft, nil
		}
	}
	for _, run := range []struct {
		name    string
		clients int
		call    func(string) func() (time.Duration, error)
	}{
		{"whole/clients=1", 1, whole},
		{"whole/clients=64", 64, whole},
		{"first-token/clients=1", 1, firstToken},
	} {
		var base [2]time.Duration
		for _, tg := range targets {
			b.Run(run.name+"/"+tg.name, func(b *testing.B) {
				p50, p99 := coretest.Latencies(b, run.clients, run.call(tg.url))
				if tg.name == "direct" {
					base = [2]time.Duration{p50, p99}
					return
				}
				b.ReportMetric(float64(p50-base[0])/1e3, "added-p50-µs")
				b.ReportMetric(float64(p99-base[1])/1e3, "added-p99-µs")
			})
		}
	}
}

// BenchmarkKeysAndLimits measures what a key check and the reservation and
// settling of a call add to a proxied whole answer, beside the same proxy
// without keys or a meter, in one run: the key has a daily spend budget
// and requests and tokens per minute, the model a price.
//
//	go test -run '^$' -bench KeysAndLimits -benchtime 3000x ./functions/openai/
func BenchmarkKeysAndLimits(b *testing.B) {
	ctx := context.Background()
	reply := fakellm.Reply{Text: "one two three four five six seven eight nine ten"}
	plain := newEnv(b)
	plain.oai.Script(reply)
	metered := newEnv(b, envOptions{keys: true, meter: true})
	metered.oai.Script(reply)
	if _, err := metered.meter.SetPrice(ctx, core.DefaultTenant, meter.Price{Model: openaiModel, InputPerMTok: 0.15, OutputPerMTok: 0.6}); err != nil {
		b.Fatal(err)
	}
	_, secret, err := metered.keys.Create(ctx, core.DefaultTenant, access.Spec{Name: "bench", Scopes: []access.Scope{access.ScopeChat},
		Limits: &access.Limits{Spend: []access.Spend{{Window: "day", USD: 1e6}}, RequestsPerMinute: 1e9, TokensPerMinute: 1e12}})
	if err != nil {
		b.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	data := fmt.Appendf(nil, `{"model":%q,"messages":[{"role":"user","content":"ping"}]}`, openaiModel)
	call := func(url, key string) func() (time.Duration, error) {
		return coretest.Timed(func() error {
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(data))
			if key != "" {
				req.Header.Set("Authorization", "Bearer "+key)
			}
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		})
	}
	var base time.Duration
	b.Run("open", func(b *testing.B) {
		base, _ = coretest.Latencies(b, 1, call(plain.srv.URL+"/v1/chat/completions", ""))
	})
	b.Run("key+limits", func(b *testing.B) {
		p50, _ := coretest.Latencies(b, 1, call(metered.srv.URL+"/v1/chat/completions", secret))
		b.ReportMetric(float64(p50-base)/1e3, "added-p50-µs")
	})
}
