package openai_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goopenai "github.com/sashabaranov/go-openai"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/core/meter"
	"github.com/stepwise-run/stepwise/functions/openai"
)

// TestLedgerCountsWhatTheBackendsReported: after whole and streamed chat
// on both protocols, embeddings, a stored response and a per-chain
// request, the ledger's totals equal, token for token, the usage the
// answers reported, which is what the fake backends counted.
func TestLedgerCountsWhatTheBackendsReported(t *testing.T) {
	e := newEnv(t, envOptions{meter: true})
	e.chain(demoChain)
	ctx := context.Background()
	var in, out, calls int
	count := func(u goopenai.Usage) {
		in, out, calls = in+u.PromptTokens, out+u.CompletionTokens, calls+1
	}
	for _, model := range []string{ollamaModel, openaiModel} {
		resp, err := e.client.CreateChatCompletion(ctx, goopenai.ChatCompletionRequest{Model: model, Messages: user("count me")})
		if err != nil {
			t.Fatal(err)
		}
		count(resp.Usage)
		stream, err := e.client.CreateChatCompletionStream(ctx, goopenai.ChatCompletionRequest{Model: model, Messages: user("count me too"),
			StreamOptions: &goopenai.StreamOptions{IncludeUsage: true}})
		if err != nil {
			t.Fatal(err)
		}
		got := readStream(t, stream)
		stream.Close()
		if got.usage == nil {
			t.Fatal("no usage in the stream")
		}
		count(*got.usage)
	}
	emb, err := e.client.CreateEmbeddings(ctx, goopenai.EmbeddingRequest{Model: goopenai.EmbeddingModel(embedModel), Input: []string{"one text", "another"}})
	if err != nil {
		t.Fatal(err)
	}
	count(goopenai.Usage{PromptTokens: emb.Usage.PromptTokens})
	chain, err := e.clientAt("/openai/demo/v1").CreateChatCompletion(ctx, goopenai.ChatCompletionRequest{Model: "demo", Messages: user("through the chain")})
	if err != nil {
		t.Fatal(err)
	}
	count(chain.Usage)
	res := e.post("/v1/responses", `{"model":"`+ollamaModel+`","input":"a stored response"}`)
	var stored struct {
		Usage struct {
			InputTokens  int `json:"input_tokens"`
			OutputTokens int `json:"output_tokens"`
		} `json:"usage"`
	}
	res.decode(t, &stored)
	count(goopenai.Usage{PromptTokens: stored.Usage.InputTokens, CompletionTokens: stored.Usage.OutputTokens})

	// A reasoning model behind a prompt cache reports both.
	e.oai.Script(fakellm.Reply{Match: "think", Text: "thought", CachedTokens: 2, ReasoningTokens: 5})
	resp, err := e.client.CreateChatCompletion(ctx, goopenai.ChatCompletionRequest{Model: openaiModel, Messages: user("think hard")})
	if err != nil {
		t.Fatal(err)
	}
	count(resp.Usage)

	// The ledger is written after each answer has left.
	var sum meter.Summary
	waitFor(t, "the ledger to hold every call", func() bool {
		var err error
		sum, err = e.meter.Summarize(ctx, core.DefaultTenant, meter.Query{From: time.Now(), To: time.Now()})
		return err == nil && sum.Total.Requests >= calls
	})
	if sum.Total.CachedTokens != 2 || sum.Total.ReasoningTokens != 5 {
		t.Errorf("ledger cached %d, reasoning %d; want 2 and 5", sum.Total.CachedTokens, sum.Total.ReasoningTokens)
	}
	if sum.Total.Requests != calls || sum.Total.TokensIn != in || sum.Total.TokensOut != out || in == 0 || out == 0 {
		t.Errorf("ledger %+v; the answers reported %d calls, %d tokens in, %d out", sum.Total, calls, in, out)
	}
}

// TestLimitsOverHTTP: a key's rate limit is OpenAI's 429 with Retry-After;
// a priced model's whole answer says what it cost; racing requests for a
// budget never spend past it.
func TestLimitsOverHTTP(t *testing.T) {
	e := newEnv(t, envOptions{meter: true, keys: true})
	ctx := context.Background()
	if _, err := e.meter.SetPrice(ctx, core.DefaultTenant, meter.Price{Model: openaiModel, InputPerMTok: 100, OutputPerMTok: 200}); err != nil {
		t.Fatal(err)
	}
	keyOf := func(l access.Limits) (id, secret string) {
		k, s, err := e.keys.Create(ctx, core.DefaultTenant, access.Spec{Name: "k", Scopes: []access.Scope{access.ScopeChat}, Limits: &l})
		if err != nil {
			t.Fatal(err)
		}
		return k.ID, s
	}
	secret := func(l access.Limits) string { _, s := keyOf(l); return s }
	post := func(key string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/chat/completions",
			strings.NewReader(`{"model":"`+openaiModel+`","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}

	t.Run("rate limit", func(t *testing.T) {
		key := secret(access.Limits{RequestsPerMinute: 2})
		for i := range 2 {
			if res := post(key); res.StatusCode != http.StatusOK {
				t.Fatalf("call %d = %d", i+1, res.StatusCode)
			}
		}
		res := post(key)
		if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
			t.Errorf("third call = %d, Retry-After %q; want 429 with it", res.StatusCode, res.Header.Get("Retry-After"))
		}
		cfg := goopenai.DefaultConfig(key)
		cfg.BaseURL = e.srv.URL + "/v1"
		_, err := goopenai.NewClientWithConfig(cfg).CreateChatCompletion(ctx, goopenai.ChatCompletionRequest{Model: openaiModel, Messages: user("hi")})
		var apiErr *goopenai.APIError
		if !errors.As(err, &apiErr) || apiErr.Code != "rate_limit_exceeded" || apiErr.Type != "rate_limit_error" {
			t.Errorf("through go-openai: %v", err)
		}
	})
	t.Run("cost header", func(t *testing.T) {
		res := post(secret(access.Limits{}))
		if c := res.Header.Get(openai.CostHeader); res.StatusCode != http.StatusOK || c == "" || c == "0.000000" {
			t.Errorf("status %d, cost %q", res.StatusCode, c)
		}
	})
	t.Run("racing for a budget", func(t *testing.T) {
		// A call reserves its worst case, 50 tokens out (10,000 micros and
		// a little for its input), and settles at what it used, far less:
		// the budget of $0.05 lets more than four through, but the spend
		// of all of them together never passes it.
		id, key := keyOf(access.Limits{Spend: []access.Spend{{Window: "day", USD: 0.05}}})
		var (
			wg               sync.WaitGroup
			granted, refused atomic.Int64
		)
		for range 60 {
			wg.Go(func() {
				switch res := post(key); res.StatusCode {
				case http.StatusOK:
					granted.Add(1)
				case http.StatusTooManyRequests:
					refused.Add(1)
				default:
					t.Errorf("status %d", res.StatusCode)
				}
			})
		}
		wg.Wait()
		// The ledger is written after each answer has left.
		var sum meter.Summary
		waitFor(t, "the ledger to hold every granted call", func() bool {
			var err error
			sum, err = e.meter.Summarize(ctx, core.DefaultTenant, meter.Query{From: time.Now(), To: time.Now(), Key: id})
			return err == nil && int64(sum.Total.Requests) >= granted.Load()
		})
		if granted.Load() < 4 || refused.Load() == 0 || int64(sum.Total.Requests) != granted.Load() {
			t.Errorf("%d granted, %d refused, %d in the ledger", granted.Load(), refused.Load(), sum.Total.Requests)
		}
		if sum.Total.CostMicros > 50_000 {
			t.Errorf("the key spent $%s, past its $0.05 budget", sum.Total.CostMicros)
		}
	})
}
