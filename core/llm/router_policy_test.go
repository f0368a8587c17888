package llm_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

// clock is a test clock that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// waitFor polls cond until it holds, failing the test after a few seconds.
// It synchronises with work in flight; it asserts nothing about timing.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// chatWith asks r for model under policy and returns the backend that
// answered.
func chatWith(ctx context.Context, r *llm.Router, model, policy, text string) (string, error) {
	out, err := r.Chat(ctx, core.ChatRequest{
		Select:   core.ModelSelector{Models: []string{model}, Policy: policy},
		Messages: []core.Message{{Role: core.RoleUser, Content: text}},
	}, nil)
	return out.Usage.Backend, err
}

func TestRouterPolicies(t *testing.T) {
	const m1, m2 = "llama3.2:1b", "qwen2.5:7b"
	for _, tt := range []struct {
		name          string
		routerPolicy  string // the router's default
		requestPolicy string
		models        []string // one call per model, in turn
		want          []string // backend of each call; nil: check that every backend served
	}{
		{name: "ordered serves from the first", models: []string{m1, m1, m1}, want: []string{"a", "a", "a"}},
		{name: "round robin rotates", routerPolicy: core.PolicyRoundRobin,
			models: []string{m1, m1, m1, m1, m1}, want: []string{"a", "b", "c", "a", "b"}},
		{name: "round robin rotates per model", requestPolicy: core.PolicyRoundRobin,
			models: []string{m1, m2, m1, m2, m1}, want: []string{"a", "a", "b", "b", "c"}},
		{name: "the request's policy wins over the router's", routerPolicy: core.PolicyRoundRobin, requestPolicy: core.PolicyOrdered,
			models: []string{m1, m1, m1}, want: []string{"a", "a", "a"}},
		{name: "least busy breaks ties by order", routerPolicy: core.PolicyLeastBusy,
			models: []string{m1, m1, m1}, want: []string{"a", "a", "a"}},
		{name: "random spreads over every backend", requestPolicy: core.PolicyRandom,
			models: slices.Repeat([]string{m1}, 60)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var backends []llm.Backend
			fakes := map[string]*fakellm.Server{}
			for _, name := range []string{"a", "b", "c"} {
				b, fake := liveBackend(t, name, "ollama", false)
				backends = append(backends, b)
				fakes[name] = fake
			}
			r := llm.NewRouter(backends, nil, llm.Defaults{}, llm.WithPolicy(tt.routerPolicy))
			var got []string
			for _, m := range tt.models {
				backend, err := chatWith(context.Background(), r, m, tt.requestPolicy, "hi")
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, backend)
			}
			if tt.want != nil && !slices.Equal(got, tt.want) {
				t.Errorf("served by %q, want %q", got, tt.want)
			}
			for name, fake := range fakes {
				n := served(fake)
				if n != strings.Count(strings.Join(got, ""), name) {
					t.Errorf("%s saw %d requests, the router reports %q", name, n, got)
				}
				if tt.want == nil && n == 0 {
					t.Errorf("%s never served: %q", name, got)
				}
			}
		})
	}
}

func TestRouterRoundRobinOutlivesRebuild(t *testing.T) {
	providers := []*fakeProvider{backend("a", "m:1b"), backend("b", "m:1b"), backend("c", "m:1b")}
	var backends []llm.Backend
	for _, p := range providers {
		backends = append(backends, llm.Backend{Name: p.name, Provider: p})
	}
	for _, tt := range []struct {
		name   string
		shared bool
		want   []string
	}{
		{"a shared cache continues the rotation", true, []string{"a", "b", "c", "a"}},
		{"each router alone starts it afresh", false, []string{"a", "a", "a", "a"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cache := llm.NewCache()
			var got []string
			for range tt.want {
				opts := []llm.Option{llm.WithPolicy(core.PolicyRoundRobin)}
				if tt.shared {
					opts = append(opts, llm.WithCache(cache))
				}
				r := llm.NewRouter(backends, nil, llm.Defaults{}, opts...) // rebuilt for every request
				backend, err := chatWith(context.Background(), r, "m:1b", "", "hi")
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, backend)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("served by %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRouterLeastBusyPrefersIdle(t *testing.T) {
	a, fakeA := liveBackend(t, "a", "ollama", false)
	b, _ := liveBackend(t, "b", "ollama", false)
	fakeA.Script(fakellm.Reply{Match: "slow", Latency: time.Minute})
	health := llm.NewHealth(0, nil)
	r := llm.NewRouter([]llm.Backend{a, b}, nil, llm.Defaults{}, llm.WithPolicy(core.PolicyLeastBusy), llm.WithHealth(health))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow := make(chan error, 1)
	go func() {
		_, err := chatWith(ctx, r, "llama3.2:1b", "", "slow")
		slow <- err
	}()
	waitFor(t, "a has the slow call", func() bool { return served(fakeA) == 1 })
	if n := health.Of("a").InFlight; n != 1 {
		t.Fatalf("a has %d calls in flight, want 1", n)
	}

	got, err := chatWith(context.Background(), r, "llama3.2:1b", "", "fast")
	if err != nil || got != "b" {
		t.Fatalf("served by %q (%v) while a was busy, want b", got, err)
	}

	cancel()
	if err := <-slow; core.ErrorCode(err) != core.ETIMEOUT {
		t.Fatalf("slow call: %v, want a timeout", err)
	}
	h := health.Of("a")
	if h.InFlight != 0 || h.Failing() {
		t.Errorf("after the caller gave up a is %+v, want idle and not failing", h)
	}
	if got, err := chatWith(context.Background(), r, "llama3.2:1b", "", "again"); err != nil || got != "a" {
		t.Errorf("served by %q (%v) once both were idle, want a", got, err)
	}
}

func TestRouterFailingBackendGoesLast(t *testing.T) {
	for _, tt := range []struct {
		name      string
		policy    string
		breakA    func(*fakellm.Server)
		wantLater string // backend serving once the cooldown is over
	}{
		{name: "ordered: status 500", policy: core.PolicyOrdered,
			breakA: func(f *fakellm.Server) { f.Script(fakellm.Reply{Status: 500, Times: 1}) }, wantLater: "a"},
		{name: "least busy: status 500", policy: core.PolicyLeastBusy,
			breakA: func(f *fakellm.Server) { f.Script(fakellm.Reply{Status: 500, Times: 1}) }, wantLater: "a"},
		{name: "ordered: closed server", policy: core.PolicyOrdered,
			breakA: func(f *fakellm.Server) { f.Close() }, wantLater: "b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			a, fakeA := liveBackend(t, "a", "ollama", false)
			b, _ := liveBackend(t, "b", "ollama", false)
			clk := newClock()
			h := llm.NewHealth(time.Minute, clk.now)
			r := llm.NewRouter([]llm.Backend{a, b}, nil, llm.Defaults{}, llm.WithPolicy(tt.policy), llm.WithHealth(h))
			if err := r.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			tt.breakA(fakeA)

			if got, err := chatWith(ctx, r, "llama3.2:1b", "", "one"); err != nil || got != "b" {
				t.Fatalf("first call served by %q (%v), want b after a failed", got, err)
			}
			failedAt := h.Of("a").LastFailure
			if !h.Of("a").Failing() || failedAt.IsZero() || h.Of("a").LastError == "" {
				t.Fatalf("a's health %+v, want a recorded failure", h.Of("a"))
			}

			clk.add(time.Second)
			if got, err := chatWith(ctx, r, "llama3.2:1b", "", "two"); err != nil || got != "b" {
				t.Fatalf("second call served by %q (%v), want b", got, err)
			}
			if h.Of("a").LastFailure != failedAt {
				t.Errorf("a was tried again within its cooldown")
			}

			clk.add(time.Minute)
			if got, err := chatWith(ctx, r, "llama3.2:1b", "", "three"); err != nil || got != tt.wantLater {
				t.Errorf("after the cooldown served by %q (%v), want %s", got, err, tt.wantLater)
			}
			if h.Of("a").LastFailure == failedAt && h.Of("a").LastSuccess.Before(clk.now()) {
				t.Errorf("a was not tried first after its cooldown: %+v", h.Of("a"))
			}
		})
	}
}

func TestRouterHealthSurvivesRebuild(t *testing.T) {
	a, fakeA := liveBackend(t, "a", "ollama", false)
	b, _ := liveBackend(t, "b", "ollama", false)
	a.ID = "backend-a"
	h := llm.NewHealth(0, nil)
	fakeA.Script(fakellm.Reply{Status: 503, Times: 1})
	first := llm.NewRouter([]llm.Backend{a, b}, nil, llm.Defaults{}, llm.WithHealth(h))
	if got, err := chatWith(context.Background(), first, "llama3.2:1b", "", "x"); err != nil || got != "b" {
		t.Fatalf("served by %q (%v), want b", got, err)
	}
	a.Name = "renamed"
	rebuilt := llm.NewRouter([]llm.Backend{a, b}, nil, llm.Defaults{}, llm.WithHealth(h))
	if got, err := chatWith(context.Background(), rebuilt, "llama3.2:1b", "", "y"); err != nil || got != "b" {
		t.Errorf("the rebuilt router sent the call to %q (%v), want b while a cools down", got, err)
	}
	if n := served(fakeA); n != 1 {
		t.Errorf("a saw %d calls, want only the one that failed", n)
	}
}

func TestRouterAssignedModels(t *testing.T) {
	for _, tt := range []struct {
		name        string
		assigned    [][]string // per backend; nil = any
		listed      [][]string
		model       string
		wantBackend string
		wantMsg     []string // when no backend serves
	}{
		{name: "a backend serves only its models", assigned: [][]string{{"other:1b"}, nil},
			listed: [][]string{{"m:1b"}, {"m:1b"}}, model: "m:1b", wantBackend: "b"},
		{name: "names are matched with their tags made explicit", assigned: [][]string{{"llama3"}, nil},
			listed: [][]string{{"llama3:latest"}, {"llama3:latest"}}, model: "llama3:latest", wantBackend: "a"},
		{name: "another tag is not assigned", assigned: [][]string{{"qwen2.5:0.5b"}},
			listed: [][]string{{"qwen2.5:7b"}}, model: "qwen2.5:7b", wantMsg: []string{"a is not assigned qwen2.5:7b"}},
		{name: "an empty list serves nothing", assigned: [][]string{{}},
			listed: [][]string{{"m:1b"}}, model: "m:1b", wantMsg: []string{"a is not assigned m:1b"}},
		{name: "assigned but not pulled", assigned: [][]string{{"m:1b"}},
			listed: [][]string{{"n:1b"}}, model: "m:1b", wantMsg: []string{"a does not list m:1b"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var backends []llm.Backend
			var fakes []*fakeProvider
			for i, models := range tt.listed {
				p := backend(string(rune('a'+i)), models...)
				fakes = append(fakes, p)
				backends = append(backends, llm.Backend{Name: p.name, Provider: p, Models: tt.assigned[i]})
			}
			r := llm.NewRouter(backends, nil, llm.Defaults{})
			_, got, err := route(context.Background(), r, core.CapChat, core.ModelSelector{Models: []string{tt.model}})
			if tt.wantMsg != nil {
				if core.ErrorCode(err) != core.ENOTFOUND {
					t.Fatalf("error %v, want not found", err)
				}
				for _, s := range tt.wantMsg {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
			} else if err != nil || got != tt.wantBackend {
				t.Fatalf("served by %q (%v), want %s", got, err, tt.wantBackend)
			}
			for i, p := range fakes {
				if calls := p.called(); len(calls) > 0 && p.name != tt.wantBackend {
					t.Errorf("backend %d was called: %q", i, calls)
				}
			}
		})
	}
}

func TestRouterUnknownPolicy(t *testing.T) {
	for _, tt := range []struct {
		name                  string
		routerPolicy, request string
		wantErr               bool
	}{
		{name: "named by the request", request: "fastest", wantErr: true},
		{name: "the router's default", routerPolicy: "fastest", wantErr: true},
		{name: "a valid request policy overrides a bad default", routerPolicy: "fastest", request: core.PolicyRandom},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := backend("a", "m:1b")
			r := llm.NewRouter([]llm.Backend{{Name: "a", Provider: a}}, nil, llm.Defaults{}, llm.WithPolicy(tt.routerPolicy))
			_, _, err := route(context.Background(), r, core.CapChat, core.ModelSelector{Models: []string{"m:1b"}, Policy: tt.request})
			if !tt.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if core.ErrorCode(err) != core.EINVALID {
				t.Fatalf("error %v, want invalid", err)
			}
			for _, s := range []string{`"fastest"`, "routing_policy", strings.Join(core.RoutingPolicies(), ", ")} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if calls := a.called(); len(calls) != 0 {
				t.Errorf("the backend was called: %q", calls)
			}
			if err := llm.CheckPolicy("fastest"); core.ErrorCode(err) != core.EINVALID {
				t.Errorf("CheckPolicy: %v", err)
			}
		})
	}
}
