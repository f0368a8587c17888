package llm_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/llm"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
)

func TestRouterListings(t *testing.T) {
	sel := core.ModelSelector{Models: []string{"m:1b"}}
	ctx := context.Background()

	t.Run("a listing is fetched once and cached until Refresh", func(t *testing.T) {
		a := backend("a", "m:1b")
		r := llm.NewRouter([]llm.Backend{{Name: "a", Provider: a}}, nil, llm.Defaults{})
		for range 3 {
			if _, _, err := route(ctx, r, core.CapChat, sel); err != nil {
				t.Fatal(err)
			}
		}
		if n := a.lists(); n != 1 {
			t.Fatalf("listed %d times before Refresh, want 1", n)
		}
		if err := r.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if _, _, err := route(ctx, r, core.CapChat, sel); err != nil {
			t.Fatal(err)
		}
		if n := a.lists(); n != 2 {
			t.Errorf("listed %d times after Refresh, want 2", n)
		}
	})

	t.Run("later backends are not listed when an earlier one serves", func(t *testing.T) {
		a, b := backend("a", "m:1b"), backend("b", "m:1b")
		r := llm.NewRouter([]llm.Backend{{Name: "a", Provider: a}, {Name: "b", Provider: b}}, nil, llm.Defaults{})
		if _, _, err := route(ctx, r, core.CapChat, sel); err != nil {
			t.Fatal(err)
		}
		if n := b.lists(); n != 0 {
			t.Errorf("second backend listed %d times, want 0", n)
		}
	})

	t.Run("a failed listing is retried by the next request", func(t *testing.T) {
		a := &fakeProvider{name: "a", models: []string{"m:1b"}, listErr: unavailable("down")}
		r := llm.NewRouter([]llm.Backend{{Name: "a", Provider: a}}, nil, llm.Defaults{})
		if _, _, err := route(ctx, r, core.CapChat, sel); core.ErrorCode(err) != core.EUNAVAILABLE {
			t.Fatalf("error = %v, want unavailable", err)
		}
		a.mu.Lock()
		a.listErr = nil
		a.mu.Unlock()
		if _, backend, err := route(ctx, r, core.CapChat, sel); err != nil || backend != "a" {
			t.Fatalf("after recovery: backend %q, error %v", backend, err)
		}
	})

	t.Run("a failing backend is asked once per request", func(t *testing.T) {
		a := &fakeProvider{name: "a", listErr: unavailable("down")}
		r := llm.NewRouter([]llm.Backend{{Name: "a", Provider: a}}, nil, llm.Defaults{})
		_, _, err := route(ctx, r, core.CapChat, core.ModelSelector{Models: []string{"x:1b", "y:1b", "z:1b"}})
		if core.ErrorCode(err) != core.EUNAVAILABLE || strings.Count(err.Error(), "listing models failed") != 1 {
			t.Fatalf("error = %v", err)
		}
		if n := a.lists(); n != 1 {
			t.Errorf("listed %d times, want 1", n)
		}
	})

	t.Run("Refresh names the backends that fail", func(t *testing.T) {
		a := &fakeProvider{name: "a", listErr: unavailable("connection refused")}
		b := backend("b", "m:1b")
		r := llm.NewRouter([]llm.Backend{{Name: "a", Provider: a}, {Name: "b", Provider: b}}, nil, llm.Defaults{})
		err := r.Refresh(ctx)
		if core.ErrorCode(err) != core.EUNAVAILABLE || !strings.Contains(err.Error(), "a: connection refused") {
			t.Fatalf("Refresh error = %v", err)
		}
		if strings.Contains(err.Error(), "b:") {
			t.Errorf("Refresh error names the healthy backend: %v", err)
		}
		if _, backend, err := route(ctx, r, core.CapChat, sel); err != nil || backend != "b" {
			t.Errorf("after Refresh: backend %q, error %v", backend, err)
		}
	})

	t.Run("concurrent first requests share one listing", func(t *testing.T) {
		a := &fakeProvider{name: "a", models: []string{"m:1b"}, delay: 50 * time.Millisecond}
		r := llm.NewRouter([]llm.Backend{{Name: "a", Provider: a}}, nil, llm.Defaults{})
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for range 32 {
			wg.Go(func() {
				_, _, err := route(ctx, r, core.CapChat, sel)
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if n := a.lists(); n != 1 {
			t.Errorf("listed %d times, want 1", n)
		}
		if n := len(a.called()); n != 32 {
			t.Errorf("%d calls, want 32", n)
		}
	})
}

func TestRouterCallerContext(t *testing.T) {
	sel := core.ModelSelector{Models: []string{"m:1b"}}

	t.Run("the caller's deadline is not a reason to fall over", func(t *testing.T) {
		slow := &ctxProvider{fakeProvider{name: "slow", models: []string{"m:1b"}}}
		next := backend("next", "m:1b")
		r := llm.NewRouter([]llm.Backend{{Name: "slow", Provider: slow}, {Name: "next", Provider: next}}, nil, llm.Defaults{})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		_, _, err := route(ctx, r, core.CapChat, sel)
		if core.ErrorCode(err) != core.ETIMEOUT || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error = %v, want the caller's deadline", err)
		}
		if calls := next.called(); len(calls) != 0 {
			t.Errorf("next backend was tried: %q", calls)
		}
	})

	t.Run("the caller's deadline on the last candidate stays a timeout", func(t *testing.T) {
		slow := &ctxProvider{fakeProvider{name: "slow", models: []string{"m:1b"}}}
		r := llm.NewRouter([]llm.Backend{{Name: "slow", Provider: slow}}, nil, llm.Defaults{})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		_, _, err := route(ctx, r, core.CapChat, sel)
		if core.ErrorCode(err) != core.ETIMEOUT || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error = %v, want the caller's deadline", err)
		}
	})

	t.Run("a canceled context tries nothing", func(t *testing.T) {
		a := backend("a", "m:1b")
		r := llm.NewRouter([]llm.Backend{{Name: "a", Provider: a}}, nil, llm.Defaults{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, _, err := route(ctx, r, core.CapChat, sel)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error = %v, want context.Canceled in its chain", err)
		}
		if calls := a.called(); len(calls) != 0 {
			t.Errorf("backend was called: %q", calls)
		}
	})
}

func TestRouterStreamedFailure(t *testing.T) {
	for _, tt := range []struct {
		name       string
		withDelta  bool
		wantErr    bool
		wantDeltas string
	}{
		{"a failure after streamed text is final", true, true, "half an ans"},
		{"without a delta func the next backend serves", false, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := &fakeProvider{name: "a", models: []string{"m:1b"}, partial: true,
				fail: map[string]error{"m:1b": unavailable("stream cut")}}
			b := backend("b", "m:1b")
			r := llm.NewRouter([]llm.Backend{{Name: "a", Provider: a}, {Name: "b", Provider: b}}, nil, llm.Defaults{Chat: "m:1b"})
			var deltas strings.Builder
			var onDelta core.DeltaFunc
			if tt.withDelta {
				onDelta = func(d core.Delta) { deltas.WriteString(d.Text) }
			}
			out, err := r.Chat(context.Background(), core.ChatRequest{}, onDelta)
			if tt.wantErr {
				if core.ErrorCode(err) != core.EUNAVAILABLE || len(b.called()) != 0 {
					t.Fatalf("error %v, second backend calls %q", err, b.called())
				}
			} else if err != nil || out.Usage.Backend != "b" {
				t.Fatalf("backend %q, error %v", out.Usage.Backend, err)
			}
			if deltas.String() != tt.wantDeltas {
				t.Errorf("caller saw %q, want %q", deltas.String(), tt.wantDeltas)
			}
		})
	}
}

func TestRouterSharedListingOutlivesItsFirstCaller(t *testing.T) {
	a := &fakeProvider{name: "a", models: []string{"m:1b"}, delay: 150 * time.Millisecond}
	r := llm.NewRouter([]llm.Backend{{Name: "a", Provider: a}}, nil, llm.Defaults{})
	sel := core.ModelSelector{Models: []string{"m:1b"}}
	impatient, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	var errA, errB error
	wg.Go(func() { _, _, errA = route(impatient, r, core.CapChat, sel) })
	time.Sleep(5 * time.Millisecond) // B joins the listing A started
	wg.Go(func() { _, _, errB = route(context.Background(), r, core.CapChat, sel) })
	wg.Wait()
	if core.ErrorCode(errA) != core.ETIMEOUT {
		t.Errorf("impatient caller: %v, want a timeout", errA)
	}
	if errB != nil {
		t.Errorf("patient caller failed with the first caller's deadline: %v", errB)
	}
	if n := a.lists(); n != 1 {
		t.Errorf("listed %d times, want 1 shared listing", n)
	}
}

func TestRouterNamesOtherTags(t *testing.T) {
	a := backend("a", "llama3.2:1b", "llama3.2:3b", "qwen2.5:7b")
	r := llm.NewRouter([]llm.Backend{{Name: "a", Provider: a}}, nil, llm.Defaults{})
	_, _, err := route(context.Background(), r, core.CapChat, core.ModelSelector{Models: []string{"llama3.2"}})
	if core.ErrorCode(err) != core.ENOTFOUND || !strings.Contains(err.Error(), "a does not list llama3.2 (it has llama3.2:1b, llama3.2:3b)") {
		t.Errorf("error = %v", err)
	}
}

func TestRouterListingsForState(t *testing.T) {
	ctx := context.Background()
	up, fakeUp := liveBackend(t, "up", "ollama", false)
	down, _ := liveBackend(t, "down", "ollama", true)
	up.ID, down.ID = "id-up", "id-down"
	fakeUp.SetModels(fakellm.Model{Name: "llama3.2:1b"})
	health := llm.NewHealth(0, nil)
	r := llm.NewRouter([]llm.Backend{up, down}, nil, llm.Defaults{}, llm.WithHealth(health))
	for _, l := range r.Cached() {
		if l.Models != nil || l.Err != nil {
			t.Errorf("before any listing Cached has %+v", l)
		}
	}
	if n := len(fakeUp.Requests()); n != 0 {
		t.Errorf("Cached asked the backend (%d requests)", n)
	}

	got := r.Listings(ctx)
	if len(got) != 2 || got[0].ID != "id-up" || got[1].ID != "id-down" {
		t.Fatalf("listings %+v, want one per backend in order", got)
	}
	if got[0].Err != nil || len(got[0].Models) != 1 || got[0].Models[0].Name != "llama3.2:1b" || got[0].Models[0].Digest == "" {
		t.Errorf("up: %+v", got[0])
	}
	if core.ErrorCode(got[1].Err) != core.EUNAVAILABLE || got[1].Models != nil {
		t.Errorf("down: %+v, want an unavailable error", got[1])
	}
	if h := health.Of("id-down"); !h.Failing() {
		t.Errorf("a backend whose listing was refused is not failing: %+v", h)
	}

	t.Run("a cached listing is not fetched again", func(t *testing.T) {
		fakeUp.Reset()
		r.Listings(ctx)
		if n := len(fakeUp.Requests()); n != 0 {
			t.Errorf("the backend saw %d requests", n)
		}
		cached := r.Cached()
		if len(cached[0].Models) != 1 || cached[1].Err == nil {
			t.Errorf("Cached %+v, want up's listing and down's error", cached)
		}
	})
	t.Run("RefreshBackend sees a newly pulled model", func(t *testing.T) {
		fakeUp.SetModels(fakellm.Model{Name: "llama3.2:1b"}, fakellm.Model{Name: "phi4:14b"})
		if len(r.Listings(ctx)[0].Models) != 1 {
			t.Fatal("the cached listing changed before the refresh")
		}
		if err := r.RefreshBackend(ctx, "id-up"); err != nil {
			t.Fatal(err)
		}
		if models := r.Listings(ctx)[0].Models; len(models) != 2 || models[1].Name != "phi4:14b" {
			t.Errorf("after the refresh: %+v", models)
		}
		if _, err := chatWith(ctx, r, "phi4:14b", "", "hi"); err != nil {
			t.Errorf("routing to the pulled model: %v", err)
		}
	})
	t.Run("RefreshBackend of a down or unknown backend", func(t *testing.T) {
		if err := r.RefreshBackend(ctx, "id-down"); core.ErrorCode(err) != core.EUNAVAILABLE || !strings.Contains(err.Error(), "down") {
			t.Errorf("down: %v", err)
		}
		if err := r.RefreshBackend(ctx, "nope"); core.ErrorCode(err) != core.ENOTFOUND {
			t.Errorf("unknown: %v", err)
		}
	})
}

func TestRouterCacheOutlivesRebuild(t *testing.T) {
	ctx := context.Background()
	sel := func(model string) core.ModelSelector { return core.ModelSelector{Models: []string{model}} }
	cache := llm.NewCache()
	old := backend("old", "m:1b")
	first := llm.NewRouter([]llm.Backend{{ID: "x", Name: "old", Provider: old}}, nil, llm.Defaults{}, llm.WithCache(cache))
	if _, _, err := route(ctx, first, core.CapChat, sel("m:1b")); err != nil {
		t.Fatal(err)
	}
	rebuilt := llm.NewRouter([]llm.Backend{{ID: "x", Name: "old", Provider: old}}, []llm.Model{{Name: "m:1b", CanChat: true}},
		llm.Defaults{}, llm.WithCache(cache))
	fresh := backend("fresh", "m:1b", "n:1b")
	var replaced *llm.Router

	steps := []struct {
		name               string
		do                 func(t *testing.T)
		oldLists, newLists int
	}{
		{name: "a rebuilt router keeps the listing", oldLists: 1, do: func(t *testing.T) {
			if _, backend, err := route(ctx, rebuilt, core.CapChat, sel("m:1b")); err != nil || backend != "old" {
				t.Fatalf("backend %q, error %v", backend, err)
			}
		}},
		{name: "a forgotten backend is listed by its new client", oldLists: 1, newLists: 1, do: func(t *testing.T) {
			cache.Forget("x")
			replaced = llm.NewRouter([]llm.Backend{{ID: "x", Name: "fresh", Provider: fresh}}, nil, llm.Defaults{}, llm.WithCache(cache))
			if _, backend, err := route(ctx, replaced, core.CapChat, sel("n:1b")); err != nil || backend != "fresh" {
				t.Fatalf("backend %q, error %v", backend, err)
			}
		}},
		{name: "a router built before keeps the old client's listing to itself", oldLists: 2, newLists: 1, do: func(t *testing.T) {
			if err := rebuilt.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if _, _, err := route(ctx, rebuilt, core.CapChat, sel("n:1b")); core.ErrorCode(err) != core.ENOTFOUND {
				t.Errorf("the old router served n:1b (%v), which only the new client lists", err)
			}
			if _, backend, err := route(ctx, replaced, core.CapChat, sel("n:1b")); err != nil || backend != "fresh" {
				t.Errorf("after the old router's refresh the new one routes to %q (%v)", backend, err)
			}
		}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do(t)
			if n := old.lists(); n != st.oldLists {
				t.Errorf("old client listed %d times, want %d", n, st.oldLists)
			}
			if n := fresh.lists(); n != st.newLists {
				t.Errorf("new client listed %d times, want %d", n, st.newLists)
			}
		})
	}
}
