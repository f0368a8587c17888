// Package fleet keeps the live state of one tenant's backends. It builds
// the llm.Router from the catalog's snapshot (and rebuilds it on Reload),
// refreshes the backends' model listings on a cycle, keeps their health
// across rebuilds, and runs the download queue: an Ollama backend assigned
// to affinity groups gets the groups' declared models it lacks pulled onto
// it, one at a time per backend, with the progress published to
// subscribers. A failed pull is retried after a growing delay; a download
// the user cancels or removes stays off the queue while its backend keeps
// the model assigned (see Fleet.Cancel).
//
// A fleet never deletes a model from a backend. The reference system
// deleted every model an Ollama server had that nobody had declared, which
// destroyed the user's own models; here a model the backend has but nobody
// declared stays, and is shown with no declared capabilities.
package fleet

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/llm"
)

// SnapshotSource reads the catalog's snapshot of a tenant;
// *catalog.Catalog satisfies it.
type SnapshotSource interface {
	Snapshot(ctx context.Context, tenant string) (*catalog.Snapshot, error)
}

// Config holds a Fleet's dependencies and settings.
type Config struct {
	// Source provides the backends, models, groups and keys. Required.
	Source SnapshotSource
	// Tenant whose backends the fleet serves (default core.DefaultTenant).
	Tenant string
	// Defaults are the default models per capability.
	Defaults catalog.Defaults
	// NewProvider builds the client of a backend, given the API key of its
	// type ("" when none is configured). It must do no I/O. Required.
	NewProvider func(b catalog.Backend, apiKey string) (llm.Provider, error)
	// Policy is the default routing policy ("" = core.PolicyOrdered).
	Policy string
	// SyncInterval is the time between two listing and download cycles
	// (default 10s).
	SyncInterval time.Duration
	// Logger receives what the background loop does (default: discard).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Fleet is the live state of one tenant's backends. It is safe for
// concurrent use.
type Fleet struct {
	cfg    Config
	health *llm.Health
	kick   chan struct{}
	cur    atomic.Pointer[build]

	reloadMu  sync.Mutex
	providers map[string]provided // by backend ID; guarded by reloadMu

	dl downloads
}

// build is the fleet as of one Reload: the router and every backend of the
// snapshot, including those kept out of routing.
type build struct {
	router   *llm.Router
	spec     spec
	members  []member                 // every backend, oldest first
	declared map[string]catalog.Model // by canonical name
	// defaults are the default models in use: the configured ones, else
	// the snapshot's (the models of the built-in groups).
	defaults catalog.Defaults
}

// spec is what a router is built from; an unchanged spec (with the same
// clients) keeps the router, with its cached listings and round-robin
// counters.
type spec struct {
	backends []llm.Backend
	models   []llm.Model
	defaults llm.Defaults
}

// member is one backend of the snapshot.
type member struct {
	backend catalog.Backend
	// models are the names its groups assign it; nil when it is in no
	// group.
	models []string
	// provider is its client, nil when it could not be built (err says
	// why); such a backend is kept out of routing.
	provider llm.Provider
	err      error
	// keyErr says why the provider key it should use could not be read.
	keyErr string
}

// provided is a client built for a backend, reused by later reloads while
// the backend's type, URL and key stay the same, so that its connections
// (and the router's knowledge of it) survive an unrelated change.
type provided struct {
	typ, url, key string
	provider      llm.Provider
}

// New returns a Fleet for cfg. It does no I/O: the first Reload (or the
// first use of LLM or States) reads the catalog.
func New(cfg Config) *Fleet {
	cfg.Tenant = cmp.Or(cfg.Tenant, core.DefaultTenant)
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Fleet{
		cfg:       cfg,
		health:    llm.NewHealth(0, cfg.Now),
		kick:      make(chan struct{}, 1),
		providers: make(map[string]provided),
		dl:        newDownloads(),
	}
}

// Reload reads the snapshot and rebuilds the router from it now: backends
// oldest first, each in groups serving its groups' models, the declared
// models with their capabilities and context lengths, and the default
// models. Calls in flight finish on the router they started on. A backend
// whose client cannot be built is kept out of routing and shows the error
// in States. An unknown default routing policy is EINVALID.
func (f *Fleet) Reload(ctx context.Context) error {
	if err := llm.CheckPolicy(f.cfg.Policy); err != nil {
		return err
	}
	// Reloads are serialised from reading the snapshot on, so that an
	// older snapshot is never applied over a newer one.
	f.reloadMu.Lock()
	defer f.reloadMu.Unlock()
	snap, err := f.cfg.Source.Snapshot(ctx, f.cfg.Tenant)
	if err != nil {
		return core.WrapError(core.ErrorCode(err), err, "fleet: reading the backends of tenant %q", f.cfg.Tenant)
	}
	if snap == nil {
		snap = &catalog.Snapshot{}
	}

	b := &build{declared: make(map[string]catalog.Model, len(snap.Models))}
	for _, m := range snap.Models {
		name := cmp.Or(m.Model, m.ID)
		if _, dup := b.declared[canonical(name)]; !dup {
			b.declared[canonical(name)] = m
		}
		b.spec.models = append(b.spec.models, llm.Model{
			Name: name, ContextLength: m.ContextLength,
			CanChat: m.CanChat, CanPrompt: m.CanPrompt, CanEmbed: m.CanEmbed,
		})
	}
	// The configured defaults win; the catalog's fill the gaps from the
	// models assigned to the built-in groups.
	pick := func(configured, catalogs catalog.DefaultModel) catalog.DefaultModel {
		m := catalogs
		if configured.Name != "" {
			m = configured
		}
		m.Provider = strings.ToLower(m.Provider)
		return m
	}
	b.defaults = catalog.Defaults{
		Embed: pick(f.cfg.Defaults.Embed, snap.Defaults.Embed),
		Task:  pick(f.cfg.Defaults.Task, snap.Defaults.Task),
		Chat:  pick(f.cfg.Defaults.Chat, snap.Defaults.Chat),
	}
	b.spec.defaults = llm.Defaults{
		Chat: b.defaults.Chat.Name, ChatProvider: b.defaults.Chat.Provider,
		Prompt: b.defaults.Task.Name, PromptProvider: b.defaults.Task.Provider,
		Embed: b.defaults.Embed.Name, EmbedProvider: b.defaults.Embed.Provider,
	}

	backends := slices.Clone(snap.Backends)
	slices.SortStableFunc(backends, func(x, y catalog.Backend) int { return x.CreatedAt.Compare(y.CreatedAt) })
	kept := make(map[string]provided, len(backends))
	rebuilt := false // a client in the router is new
	for _, cb := range backends {
		// Only the backend a provider configuration made gets its key
		// (the catalog keys them by backend id): a user's own backend of
		// type openai must never receive OpenAI's key.
		m := member{backend: cb, models: groupModels(snap, cb.ID), keyErr: snap.KeyErrors[cb.ID]}
		key := snap.Keys[cb.ID]
		if old, ok := f.providers[cb.ID]; ok && old.typ == cb.Type && old.url == cb.BaseURL && old.key == key {
			m.provider = old.provider
		} else {
			m.provider, m.err = f.cfg.NewProvider(cb, key)
			if m.err == nil && m.provider == nil {
				m.err = core.Errorf(core.EINTERNAL, "no client for backend type %q", cb.Type)
			}
			rebuilt = rebuilt || m.err == nil
		}
		if m.err != nil {
			m.provider = nil
		} else {
			kept[cb.ID] = provided{typ: cb.Type, url: cb.BaseURL, key: key, provider: m.provider}
			b.spec.backends = append(b.spec.backends, llm.Backend{
				ID: cb.ID, Name: cb.Name, Type: cb.Type, Provider: m.provider, Models: m.models,
			})
		}
		b.members = append(b.members, m)
	}
	f.providers = kept

	if prev := f.cur.Load(); prev != nil && !rebuilt && prev.spec.equal(b.spec) {
		b.router = prev.router
	} else {
		b.router = llm.NewRouter(b.spec.backends, b.spec.models, b.spec.defaults,
			llm.WithPolicy(f.cfg.Policy), llm.WithHealth(f.health))
	}
	f.cur.Store(b)
	return nil
}

// groupModels returns the union of the models of backend id's groups, in
// the order first met; nil when the backend is in no group, so that it
// serves every model it lists.
func groupModels(snap *catalog.Snapshot, id string) []string {
	groups := snap.BackendGroups[id]
	if len(groups) == 0 {
		return nil
	}
	out := []string{}
	seen := make(map[string]bool)
	for _, g := range groups {
		for _, name := range snap.GroupModels[g] {
			if !seen[canonical(name)] {
				seen[canonical(name)] = true
				out = append(out, name)
			}
		}
	}
	return out
}

// equal reports whether two specs build the same router, given that the
// clients of backends with the same ID are the same. (Clients are not
// compared: a Provider need not be a comparable type.)
func (s spec) equal(o spec) bool {
	return s.defaults == o.defaults &&
		slices.Equal(s.models, o.models) &&
		slices.EqualFunc(s.backends, o.backends, func(a, b llm.Backend) bool {
			return a.ID == b.ID && a.Name == b.Name && a.Type == b.Type &&
				(a.Models == nil) == (b.Models == nil) && slices.Equal(a.Models, b.Models)
		})
}

// current returns the current build, loading the first one if no Reload
// has happened yet.
func (f *Fleet) current(ctx context.Context) (*build, error) {
	if b := f.cur.Load(); b != nil {
		return b, nil
	}
	if err := f.Reload(ctx); err != nil {
		return nil, err
	}
	return f.cur.Load(), nil
}

// Defaults returns the default models in use, as of the last Reload: each
// configured one (Config.Defaults), else the catalog's choice from the
// built-in groups. Providers are lower-case. It loads the catalog on first
// use, like LLM.
func (f *Fleet) Defaults(ctx context.Context) (catalog.Defaults, error) {
	b, err := f.current(ctx)
	if err != nil {
		return catalog.Defaults{}, err
	}
	return b.defaults, nil
}

// Kick asks the background loop for a cycle now. It does not wait; kicks
// made while a cycle is pending are merged into it.
func (f *Fleet) Kick() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// Run is the background loop: at start, every SyncInterval and on Kick it
// reloads the snapshot, refreshes every backend's listing and queues the
// downloads that are missing. It returns when ctx ends, after the pulls it
// started have stopped.
func (f *Fleet) Run(ctx context.Context) {
	var pulls sync.WaitGroup
	defer pulls.Wait()
	t := time.NewTicker(f.cfg.SyncInterval)
	defer t.Stop()
	for {
		f.cycle(ctx, &pulls)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-f.kick:
		}
	}
}

// cycle runs one listing and download cycle.
func (f *Fleet) cycle(ctx context.Context, pulls *sync.WaitGroup) {
	if err := f.Reload(ctx); err != nil {
		f.cfg.Logger.Warn("fleet: reload failed; keeping the current backends", "err", err)
	}
	b := f.cur.Load()
	if b == nil || ctx.Err() != nil {
		return
	}
	if err := b.router.Refresh(ctx); err != nil {
		f.cfg.Logger.Debug("fleet: listing models", "err", err)
	}
	listed := make(map[string]llm.Listing)
	for _, l := range b.router.Cached() {
		listed[l.ID] = l
	}
	now := f.cfg.Now()
	for _, m := range b.members {
		l, ok := listed[m.backend.ID]
		if m.backend.Type != catalog.TypeOllama || m.models == nil || !ok || l.Err != nil {
			continue
		}
		if _, can := m.provider.(llm.Puller); !can {
			continue
		}
		have := make(map[string]bool, len(l.Models))
		for _, info := range l.Models {
			have[canonical(info.Name)] = true
		}
		var missing []string
		for _, name := range m.models {
			if !have[canonical(name)] {
				missing = append(missing, name)
			}
		}
		f.dl.want(m.backend.BaseURL, missing, now)
	}
	for _, url := range f.dl.idle() {
		pulls.Go(func() { f.work(ctx, url) })
	}
}

// canonical returns a model name with its tag made explicit, as the router
// compares names: "llama3" is "llama3:latest".
func canonical(name string) string {
	if strings.LastIndex(name, ":") > strings.LastIndex(name, "/") {
		return name
	}
	return name + ":latest"
}

// LLM returns a core.LLM that always routes through the current router,
// so that it can be handed out once and still follow every Reload.
func (f *Fleet) LLM() core.LLM { return routed{f} }

// routed forwards every call to the fleet's current router.
type routed struct{ f *Fleet }

// Chat implements core.LLM.
func (r routed) Chat(ctx context.Context, req core.ChatRequest, onDelta core.DeltaFunc) (core.Completion, error) {
	b, err := r.f.current(ctx)
	if err != nil {
		return core.Completion{}, err
	}
	return b.router.Chat(ctx, req, onDelta)
}

// Prompt implements core.LLM.
func (r routed) Prompt(ctx context.Context, req core.PromptRequest, onDelta core.DeltaFunc) (core.Completion, error) {
	b, err := r.f.current(ctx)
	if err != nil {
		return core.Completion{}, err
	}
	return b.router.Prompt(ctx, req, onDelta)
}

// Embed implements core.LLM.
func (r routed) Embed(ctx context.Context, req core.EmbedRequest) (core.Embedding, error) {
	b, err := r.f.current(ctx)
	if err != nil {
		return core.Embedding{}, err
	}
	return b.router.Embed(ctx, req)
}
