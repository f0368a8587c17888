package llm

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

var _ core.LLM = (*Router)(nil)

// Router implements core.LLM over a list of backends. For each request it
// takes the requested models in order of preference (or the default model
// for the capability), skips those whose declaration rules them out, and
// tries every backend that lists the model, in the order the backends were
// given, until one answers.
//
// Model names are compared exactly, except that a name without a ":tag"
// means ":latest": "llama3" and "llama3:latest" are the same model, while
// "qwen2.5:7b" and "qwen2.5:0.5b" are not, and neither case nor an "org/"
// prefix is ever ignored.
//
// A model that is not declared but that a backend lists may be used for
// every capability and has an unknown context length. This keeps ad-hoc use
// convenient (any model pulled into Ollama works without configuration);
// declare a model to restrict its capabilities or to give its context
// length.
//
// A candidate that fails with a retryable error (EUNAVAILABLE, ENOTFOUND, or
// ETIMEOUT while the caller's context is still live) gives way to the next,
// unless part of its answer has already been passed to the caller's
// onDelta: the caller cannot take streamed text back, so that failure is
// returned as it is. Any other error is returned at once.
//
// The Usage of a result names the model as the backend spells it (with its
// tag, on Ollama) and the Name of the Backend. When no candidate serves, the
// error names the requested models, the capability and each backend's
// reason; its code is EUNAVAILABLE if some backend failed in a way that may
// pass, ENOTFOUND otherwise.
//
// Each backend's model listing is fetched the first time a request needs it
// and cached until Refresh. A listing that fails is not cached: the backend
// is skipped for that request and asked again by the next one, so a backend
// that was down rejoins when it comes back. A Router is safe for concurrent
// use.
type Router struct {
	backends []Backend
	declared map[string]Model // by canonical name
	defaults Defaults

	mu       sync.Mutex
	listings []*listing // one per backend, nil until first needed
}

// listing is one fetch of a backend's model list. ready is closed when the
// fetch has finished; names and err are written under Router.mu before that.
type listing struct {
	ready chan struct{}
	done  bool
	names map[string]string // canonical name → name as the backend spells it
	err   error
}

// NewRouter returns a Router over backends, which are tried in the given
// order. models are the declared models and defaults the model used for
// each capability when a request names none.
func NewRouter(backends []Backend, models []Model, defaults Defaults) *Router {
	r := &Router{
		backends: slices.Clone(backends),
		declared: make(map[string]Model, len(models)),
		defaults: defaults,
		listings: make([]*listing, len(backends)),
	}
	for _, m := range models {
		key := canonical(m.Name)
		if _, dup := r.declared[key]; !dup {
			r.declared[key] = m
		}
	}
	return r
}

// canonical returns the name with its tag made explicit. A ":" counts as a
// tag separator only after the last "/", so a registry host with a port
// ("localhost:5000/llama3") is not mistaken for a tag.
func canonical(name string) string {
	if strings.LastIndex(name, ":") > strings.LastIndex(name, "/") {
		return name
	}
	return name + ":latest"
}

// Chat implements core.LLM.
func (r *Router) Chat(ctx context.Context, req core.ChatRequest, onDelta core.DeltaFunc) (core.Completion, error) {
	var out core.Completion
	model, backend, err := r.route(ctx, core.CapChat, req.Select, func(p Provider, model string) (bool, error) {
		d, streamed := watch(onDelta)
		var err error
		out, err = p.Chat(ctx, model, req, d)
		return *streamed, err
	})
	if err != nil {
		return core.Completion{}, err
	}
	out.Usage.Model, out.Usage.Backend = model, backend
	return out, nil
}

// Prompt implements core.LLM.
func (r *Router) Prompt(ctx context.Context, req core.PromptRequest, onDelta core.DeltaFunc) (core.Completion, error) {
	var out core.Completion
	model, backend, err := r.route(ctx, core.CapPrompt, req.Select, func(p Provider, model string) (bool, error) {
		d, streamed := watch(onDelta)
		var err error
		out, err = p.Prompt(ctx, model, req, d)
		return *streamed, err
	})
	if err != nil {
		return core.Completion{}, err
	}
	out.Usage.Model, out.Usage.Backend = model, backend
	return out, nil
}

// Embed implements core.LLM.
func (r *Router) Embed(ctx context.Context, req core.EmbedRequest) (core.Embedding, error) {
	var out core.Embedding
	model, backend, err := r.route(ctx, core.CapEmbed, req.Select, func(p Provider, model string) (bool, error) {
		var err error
		out, err = p.Embed(ctx, model, req.Text)
		return false, err
	})
	if err != nil {
		return core.Embedding{}, err
	}
	out.Usage.Model, out.Usage.Backend = model, backend
	return out, nil
}

// Refresh lists the models of every backend again, replacing the cached
// listings. Backends are asked concurrently. A backend whose listing fails
// loses its cached listing (and is asked again when next needed); the error
// names every such backend.
func (r *Router) Refresh(ctx context.Context) error {
	fresh := make([]*listing, len(r.backends))
	var wg sync.WaitGroup
	for i := range r.backends {
		fresh[i] = &listing{ready: make(chan struct{})}
		wg.Go(func() { r.fetch(ctx, i, fresh[i]) })
	}
	wg.Wait()

	var failed []string
	r.mu.Lock()
	for i, l := range fresh {
		r.listings[i] = l
		if l.err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", r.backends[i].Name, l.err))
		}
	}
	r.mu.Unlock()
	if len(failed) > 0 {
		return core.Errorf(core.EUNAVAILABLE, "listing models failed: %s", strings.Join(failed, "; "))
	}
	return nil
}

// fetch lists the models of backend i into l and marks l finished.
func (r *Router) fetch(ctx context.Context, i int, l *listing) {
	infos, err := r.backends[i].Provider.Models(ctx)
	names := make(map[string]string, len(infos))
	for _, m := range infos {
		key := canonical(m.Name)
		if _, dup := names[key]; !dup {
			names[key] = m.Name
		}
	}
	r.mu.Lock()
	l.done = true
	if err != nil {
		l.err = err
	} else {
		l.names = names
	}
	r.mu.Unlock()
	close(l.ready)
}

// listTimeout bounds one fetch of a backend's model list.
const listTimeout = 30 * time.Second

// listingOf returns the models backend i lists, fetching them if no listing
// is cached or the cached attempt failed. Concurrent requests share one
// fetch rather than each listing the backend. The fetch runs on its own
// context, detached from the request that started it, so that a caller
// giving up does not fail the listing for every other caller waiting on it.
func (r *Router) listingOf(ctx context.Context, i int) (map[string]string, error) {
	r.mu.Lock()
	l := r.listings[i]
	if l == nil || (l.done && l.err != nil) {
		l = &listing{ready: make(chan struct{})}
		r.listings[i] = l
		go func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), listTimeout)
			defer cancel()
			r.fetch(fctx, i, l)
		}()
	}
	r.mu.Unlock()
	select {
	case <-l.ready:
		return l.names, l.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// watch wraps onDelta so that the caller can tell whether any text reached
// it. A nil onDelta stays nil: providers may skip work for it.
func watch(onDelta core.DeltaFunc) (core.DeltaFunc, *bool) {
	streamed := new(bool)
	if onDelta == nil {
		return nil, streamed
	}
	return func(s string) {
		*streamed = true
		onDelta(s)
	}, streamed
}

// route finds candidates for capability c and calls try on each until one
// succeeds, returning the model (as the backend spells it) and the backend
// name that answered. try reports whether text was already streamed to the
// caller; if so a failure is final, because the next candidate's answer
// would be spliced onto the start of this one in the caller's stream.
func (r *Router) route(ctx context.Context, c core.Capability, sel core.ModelSelector, try func(p Provider, model string) (bool, error)) (string, string, error) {
	names := sel.Models
	if len(names) == 0 {
		d := r.defaults.of(c)
		if d == "" {
			return "", "", core.Errorf(core.ENOTFOUND, "no default model is configured for %s", c)
		}
		names = []string{d}
	}
	var backends []int
	for i, b := range r.backends {
		if len(sel.Providers) == 0 || slices.Contains(sel.Providers, b.Type) {
			backends = append(backends, i)
		}
	}
	if len(backends) == 0 {
		return "", "", core.Errorf(core.ENOTFOUND, "no backend can serve %s with %s: no backend of provider %s is configured",
			c, quoteAll(names), strings.Join(sel.Providers, ", "))
	}

	var (
		reasons   []string
		transient bool // some failure may go away: answer EUNAVAILABLE, not ENOTFOUND
		listFail  = make(map[int]bool)
	)
	for _, name := range names {
		want := canonical(name)
		if m, ok := r.declared[want]; ok {
			if !m.can(c) {
				reasons = append(reasons, fmt.Sprintf("%s is not declared for %s", name, c))
				continue
			}
			if m.ContextLength > 0 && sel.ContextTokens > 0 && m.ContextLength < sel.ContextTokens {
				reasons = append(reasons, fmt.Sprintf("%s has a context of %d tokens, the request needs %d",
					name, m.ContextLength, sel.ContextTokens))
				continue
			}
		}
		for _, i := range backends {
			if err := ctx.Err(); err != nil {
				return "", "", core.WrapError(core.ETIMEOUT, err, "%s with %s", c, quoteAll(names))
			}
			b := r.backends[i]
			if listFail[i] {
				continue // asked once in this request already
			}
			listed, err := r.listingOf(ctx, i)
			if err != nil {
				if ctx.Err() != nil {
					return "", "", core.WrapError(core.ETIMEOUT, ctx.Err(), "%s with %s", c, quoteAll(names))
				}
				listFail[i] = true
				transient = true
				reasons = append(reasons, fmt.Sprintf("%s: listing models failed: %v", b.Name, err))
				continue
			}
			served, ok := listed[want]
			if !ok {
				reasons = append(reasons, fmt.Sprintf("%s does not list %s%s", b.Name, name, otherTags(listed, want)))
				continue
			}
			streamed, err := try(b.Provider, served)
			if err == nil {
				return served, b.Name, nil
			}
			if streamed || !retryable(ctx, err) {
				return "", "", err
			}
			if core.ErrorCode(err) != core.ENOTFOUND {
				transient = true
			}
			reasons = append(reasons, fmt.Sprintf("%s: %v", b.Name, err))
		}
	}
	code := core.ENOTFOUND
	if transient {
		code = core.EUNAVAILABLE
	}
	return "", "", core.Errorf(code, "no backend could serve %s with %s: %s", c, quoteAll(names), strings.Join(reasons, "; "))
}

// otherTags names the models a listing has under the same name as want
// with another tag ("llama3.2" asked, "llama3.2:1b" listed), as a hint.
func otherTags(listed map[string]string, want string) string {
	base := want[:strings.LastIndex(want, ":")]
	var same []string
	for key, served := range listed {
		if key[:strings.LastIndex(key, ":")] == base {
			same = append(same, served)
		}
	}
	if len(same) == 0 {
		return ""
	}
	slices.Sort(same)
	return " (it has " + strings.Join(same, ", ") + ")"
}

// retryable reports whether another candidate may succeed where err failed:
// the backend is down or overloaded, it timed out on its own (not because
// the caller's context is done), or it does not have the model.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	switch core.ErrorCode(err) {
	case core.EUNAVAILABLE, core.ETIMEOUT, core.ENOTFOUND:
		return true
	}
	return false
}

// quoteAll renders model names for an error message.
func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	if len(q) == 1 {
		return "model " + q[0]
	}
	return "models " + strings.Join(q, ", ")
}
