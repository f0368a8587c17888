package llm

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/stepwise-run/stepwise/core"
)

var _ core.LLM = (*Router)(nil)

// Router implements core.LLM over a list of backends. For each request it
// takes the requested models in order of preference (or the default model
// for the capability), skips those whose declaration rules them out, and
// tries the backends that may serve the model and list it, in the order of
// the request's routing policy, until one answers.
//
// Routing policies (core.RoutingPolicies; the request's
// ModelSelector.Policy, else the router's default, else ordered) order the
// backends able to serve one model: ordered keeps the order the backends
// were given; round_robin starts one further along the list with each
// request for the model; random shuffles them; least_busy prefers the
// fewest calls in flight, ties keeping the given order. Under every policy
// a backend that failed within the Health's cooldown goes after the others:
// the first healthy backend is tried first, and the failing one is tried
// last rather than not at all. An unknown policy is EINVALID.
//
// Model names are compared by ModelKey: a name without a ":tag" means
// ":latest", and nothing else is normalised. A Backend's Models are matched
// the same way.
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
// returned as it is. Any other error is returned at once. Every call's
// outcome and the calls in flight are recorded in the router's Health.
//
// The Usage of a result names the model as the backend spells it (with its
// tag, on Ollama) and the Name of the Backend. When no candidate serves, the
// error names the requested models, the capability and each backend's
// reason. Its code is ENOTFOUND when no backend failed in a way that may
// pass, ETIMEOUT when every such failure was a backend timing out, and
// EUNAVAILABLE otherwise, marked core.Upstream when every failure was an
// error the backend answered.
//
// Each backend's model listing is fetched the first time a request needs it
// and kept in the router's Cache until Refresh. A listing that fails is not
// kept: the backend is skipped for that request and asked again by the next
// one, so a backend that was down rejoins when it comes back. A Router is
// safe for concurrent use.
type Router struct {
	backends []Backend
	assigned []map[string]bool // per backend: model keys it may serve; nil = any
	declared map[string]Model  // by model key
	defaults Defaults
	policy   string
	health   *Health
	cache    *Cache
	slots    []*slot // per backend: where its listing is kept in the cache
}

// Option configures a Router.
type Option func(*Router)

// WithPolicy sets the routing policy of requests that name none ("" means
// core.PolicyOrdered). An unknown name makes those requests fail with
// EINVALID; CheckPolicy tells beforehand.
func WithPolicy(name string) Option {
	return func(r *Router) {
		if name != "" {
			r.policy = name
		}
	}
}

// WithHealth makes the router record into and order by h, which may be
// shared with the routers built before and after it. Without it a router
// has a Health of its own with the default cooldown.
func WithHealth(h *Health) Option {
	return func(r *Router) {
		if h != nil {
			r.health = h
		}
	}
}

// WithCache makes the router keep its backends' listings and its
// round-robin turns in c, which may be shared with the routers built
// before and after it. Without it a router has a Cache of its own.
func WithCache(c *Cache) Option {
	return func(r *Router) {
		if c != nil {
			r.cache = c
		}
	}
}

// NewRouter returns a Router over backends. models are the declared models
// and defaults the model used for each capability when a request names
// none. A Backend without an ID gets its Name as ID.
func NewRouter(backends []Backend, models []Model, defaults Defaults, opts ...Option) *Router {
	r := &Router{
		backends: slices.Clone(backends),
		assigned: make([]map[string]bool, len(backends)),
		declared: make(map[string]Model, len(models)),
		defaults: defaults,
		policy:   core.PolicyOrdered,
		slots:    make([]*slot, len(backends)),
	}
	for _, o := range opts {
		o(r)
	}
	if r.health == nil {
		r.health = NewHealth(0, nil)
	}
	if r.cache == nil {
		r.cache = NewCache()
	}
	for i := range r.backends {
		b := &r.backends[i]
		if b.ID == "" {
			b.ID = b.Name
		}
		r.slots[i] = r.cache.slot(b.ID)
		if b.Models != nil {
			r.assigned[i] = make(map[string]bool, len(b.Models))
			for _, m := range b.Models {
				r.assigned[i][ModelKey(m)] = true
			}
		}
	}
	for _, m := range models {
		key := ModelKey(m.Name)
		if _, dup := r.declared[key]; !dup {
			r.declared[key] = m
		}
	}
	return r
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

// watch wraps onDelta so that the caller can tell whether any text reached
// it. A nil onDelta stays nil: providers may skip work for it.
func watch(onDelta core.DeltaFunc) (core.DeltaFunc, *bool) {
	streamed := new(bool)
	if onDelta == nil {
		return nil, streamed
	}
	return func(d core.Delta) {
		*streamed = true
		onDelta(d)
	}, streamed
}

// route finds candidates for capability c and calls try on each until one
// succeeds, returning the model (as the backend spells it) and the backend
// name that answered. try reports whether text was already streamed to the
// caller; if so a failure is final, because the next candidate's answer
// would be spliced onto the start of this one in the caller's stream.
func (r *Router) route(ctx context.Context, c core.Capability, sel core.ModelSelector, try func(p Provider, model string) (bool, error)) (string, string, error) {
	policy := cmp.Or(sel.Policy, r.policy)
	if err := CheckPolicy(policy); err != nil {
		return "", "", err
	}
	names := sel.Models
	if len(names) == 0 {
		d, provider := r.defaults.of(c)
		if d == "" {
			return "", "", core.Errorf(core.ENOTFOUND, "no default model is configured for %s", c)
		}
		names = []string{d}
		if len(sel.Providers) == 0 && provider != "" {
			sel.Providers = []string{provider}
		}
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
		reasons  []string
		failed   failures
		listFail = make(map[int]bool)
	)
	for _, name := range names {
		want := ModelKey(name)
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
		var cands []int
		for _, i := range backends {
			if r.assigned[i] != nil && !r.assigned[i][want] {
				reasons = append(reasons, fmt.Sprintf("%s is not assigned %s", r.backends[i].Name, name))
				continue
			}
			cands = append(cands, i)
		}
		for _, i := range r.order(policy, want, cands) {
			if err := ctx.Err(); err != nil {
				return "", "", core.WrapError(core.ETIMEOUT, err, "%s with %s", c, quoteAll(names))
			}
			b := r.backends[i]
			if listFail[i] {
				continue // asked once in this request already
			}
			l, err := r.listingOf(ctx, i)
			if err != nil {
				if ctx.Err() != nil {
					return "", "", core.WrapError(core.ETIMEOUT, ctx.Err(), "%s with %s", c, quoteAll(names))
				}
				listFail[i] = true
				failed.add(err)
				reasons = append(reasons, fmt.Sprintf("%s: listing models failed: %v", b.Name, err))
				continue
			}
			served, ok := l.names[want]
			if !ok {
				reasons = append(reasons, fmt.Sprintf("%s does not list %s%s", b.Name, name, otherTags(l.names, want)))
				continue
			}
			streamed, err := r.attempt(ctx, b.ID, func() (bool, error) { return try(b.Provider, served) })
			if err == nil {
				if policy == core.PolicyRoundRobin {
					r.servedTurn(want)
				}
				return served, b.Name, nil
			}
			if streamed || !retryable(ctx, err) {
				return "", "", err
			}
			if core.ErrorCode(err) != core.ENOTFOUND {
				failed.add(err)
			}
			reasons = append(reasons, fmt.Sprintf("%s: %v", b.Name, err))
		}
	}
	return "", "", failed.aggregate(fmt.Sprintf("no backend could serve %s with %s: %s", c, quoteAll(names), strings.Join(reasons, "; ")))
}

// failures tallies the calls of one request that failed in a way that may
// pass (a backend not having the model is not one of them), so that the
// error of a request no candidate served tells the caller what to expect
// of a retry.
type failures struct {
	n, timeouts, upstream int
}

// add counts one failed call.
func (f *failures) add(err error) {
	f.n++
	if core.ErrorCode(err) == core.ETIMEOUT {
		f.timeouts++
	}
	if core.IsUpstream(err) {
		f.upstream++
	}
}

// aggregate returns the error of a request that no candidate served, with
// msg as its message: ENOTFOUND when no call failed (no backend has the
// model); ETIMEOUT when every failed call timed out on the backend's side;
// EUNAVAILABLE marked core.Upstream when every backend answered with a
// refusal or a failure of its own, so that the caller learns the backends,
// not its request, are at fault; EUNAVAILABLE otherwise.
func (f *failures) aggregate(msg string) error {
	switch {
	case f.n == 0:
		return core.Errorf(core.ENOTFOUND, "%s", msg)
	case f.timeouts == f.n:
		return core.Errorf(core.ETIMEOUT, "%s", msg)
	case f.upstream == f.n:
		return core.Upstream(core.Errorf(core.EUNAVAILABLE, "%s", msg))
	}
	return core.Errorf(core.EUNAVAILABLE, "%s", msg)
}

// attempt makes one call to backend id, counting it in flight and
// recording its outcome in the Health. A call that panics is uncounted and
// records nothing, so that least_busy does not shun the backend forever.
func (r *Router) attempt(ctx context.Context, id string, call func() (bool, error)) (streamed bool, err error) {
	r.health.begin(id)
	err = core.Errorf(core.EINTERNAL, "the call did not return") // what end sees on a panic
	defer func() { r.health.end(ctx, id, err) }()
	return call()
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
