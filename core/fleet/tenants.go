package fleet

import (
	"cmp"
	"context"
	"sync"

	"github.com/stepwise-run/stepwise/core"
)

// Tenants keeps one Fleet per tenant, each over that tenant's backends
// only, made on first use from one Config (its Tenant is set per fleet).
// A request of one tenant can therefore never be routed to another's
// backends. It is safe for concurrent use.
type Tenants struct {
	cfg Config

	mu     sync.Mutex
	fleets map[string]*Fleet
	bg     context.Context // set by Run: fleets made later start their loops on it
	loops  sync.WaitGroup
}

// NewTenants returns the fleets of every tenant, made as they are needed.
// It does no I/O.
func NewTenants(cfg Config) *Tenants {
	return &Tenants{cfg: cfg, fleets: map[string]*Fleet{}}
}

// For returns tenant's fleet ("" is the default tenant), making it on
// first use. It does no I/O: the fleet reads its catalog when first used.
func (t *Tenants) For(tenant string) *Fleet {
	tenant = cmp.Or(tenant, core.DefaultTenant)
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.fleets[tenant]
	if !ok {
		cfg := t.cfg
		cfg.Tenant = tenant
		f = New(cfg)
		t.fleets[tenant] = f
		if t.bg != nil {
			t.loops.Go(func() { f.Run(t.bg) })
		}
	}
	return f
}

// Run runs the background loop (listing, downloads, reloads) of every
// fleet, those made later included, until ctx ends.
func (t *Tenants) Run(ctx context.Context) {
	t.mu.Lock()
	t.bg = ctx
	for _, f := range t.fleets {
		t.loops.Go(func() { f.Run(ctx) })
	}
	t.mu.Unlock()
	<-ctx.Done()
	t.loops.Wait()
}

// LLM returns a core.LLM that routes each call over the fleet of the
// request's tenant.
func (t *Tenants) LLM() core.LLM { return byTenant{t} }

type byTenant struct{ t *Tenants }

// Chat implements core.LLM.
func (b byTenant) Chat(ctx context.Context, req core.ChatRequest, onDelta core.DeltaFunc) (core.Completion, error) {
	return b.t.For(req.Tenant).LLM().Chat(ctx, req, onDelta)
}

// Prompt implements core.LLM.
func (b byTenant) Prompt(ctx context.Context, req core.PromptRequest, onDelta core.DeltaFunc) (core.Completion, error) {
	return b.t.For(req.Tenant).LLM().Prompt(ctx, req, onDelta)
}

// Embed implements core.LLM.
func (b byTenant) Embed(ctx context.Context, req core.EmbedRequest) (core.Embedding, error) {
	return b.t.For(req.Tenant).LLM().Embed(ctx, req)
}

// Reload reloads every fleet made so far (see Fleet.Reload), for an entry
// point without background loops (a Lambda function), and returns the
// first error.
func (t *Tenants) Reload(ctx context.Context) error {
	t.mu.Lock()
	fleets := make([]*Fleet, 0, len(t.fleets))
	for _, f := range t.fleets {
		fleets = append(fleets, f)
	}
	t.mu.Unlock()
	var first error
	for _, f := range fleets {
		if err := f.Reload(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}
