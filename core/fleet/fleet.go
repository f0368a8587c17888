// Package fleet keeps the live state of one tenant's backends. It builds
// the llm.Router from the catalog's snapshot (and builds a new one on each
// Reload), refreshes the backends' model listings on a cycle, keeps their
// health and listings across rebuilds, and runs the download queue: an
// Ollama backend assigned to affinity groups gets the groups' declared
// models it lacks pulled onto it, one at a time per backend, with the
// progress published to subscribers. A failed pull is retried after a
// growing delay; a download the user cancels or removes stays off the
// queue while its backend keeps the model assigned (see Fleet.Cancel).
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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/llm"
)

// SnapshotSource reads the catalog's snapshot of a tenant;
// *catalog.Catalog satisfies it. The fleet takes the snapshot as the
// catalog makes it: backends oldest first (the order the "ordered" policy
// tries them in), URLs normalised without a trailing "/", and Defaults
// filled in.
type SnapshotSource interface {
	Snapshot(ctx context.Context, tenant string) (*catalog.Snapshot, error)
}

// Config holds a Fleet's dependencies and settings.
type Config struct {
	// Source provides the backends, models, groups, keys and default
	// models. Required.
	Source SnapshotSource
	// Tenant whose backends the fleet serves (default core.DefaultTenant).
	// A fleet serves one tenant; an entry point that routes for several
	// builds one fleet per tenant.
	Tenant string
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
	cfg Config
	// health and cache outlive the routers: each Reload builds a router
	// that keeps the backends' health, listings and round-robin turns.
	health *llm.Health
	cache  *llm.Cache
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
	members  []member                 // every backend, oldest first
	declared map[string]catalog.Model // by llm.ModelKey
	defaults catalog.Defaults         // the snapshot's, providers lower-case
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
// and its cached listing survive an unrelated change.
type provided struct {
	typ, url, key string
	provider      llm.Provider
}

// New returns a Fleet for cfg. It does no I/O: the first Reload (or the
// first use of LLM, Defaults or States, or Run) reads the catalog.
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
		cache:     llm.NewCache(),
		kick:      make(chan struct{}, 1),
		providers: make(map[string]provided),
		dl:        newDownloads(),
	}
}

// Reload reads the snapshot and builds a new router from it: backends
// oldest first, each in groups serving its groups' models, the declared
// models with their capabilities and context lengths, and the snapshot's
// default models. Calls in flight finish on the router they started on.
// A backend keeps its client, and with it its cached listing, while its
// type, URL and key stay the same. A backend whose client cannot be built
// is kept out of routing and shows the error in States. An unknown
// default routing policy is EINVALID.
//
// Reload does not list the backends or queue downloads; Kick asks for that.
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

	b := &build{declared: make(map[string]catalog.Model, len(snap.Models)), defaults: snap.Defaults}
	// The configuration may spell a provider in any case; backend types
	// are lower-case.
	for _, d := range []*catalog.DefaultModel{&b.defaults.Embed, &b.defaults.Task, &b.defaults.Chat} {
		d.Provider = strings.ToLower(d.Provider)
	}
	models := make([]llm.Model, 0, len(snap.Models))
	for _, m := range snap.Models {
		name := cmp.Or(m.Model, m.ID)
		if _, dup := b.declared[llm.ModelKey(name)]; !dup {
			b.declared[llm.ModelKey(name)] = m
		}
		models = append(models, llm.Model{
			Name: name, ContextLength: m.ContextLength,
			CanChat: m.CanChat, CanPrompt: m.CanPrompt, CanEmbed: m.CanEmbed,
		})
	}

	var backends []llm.Backend
	kept := make(map[string]provided, len(snap.Backends))
	for _, cb := range snap.Backends {
		// Only the backend a provider configuration made gets its key
		// (the catalog keys them by backend id): a user's own backend of
		// type openai must never receive OpenAI's key.
		m := member{backend: cb, models: groupModels(snap, cb.ID), keyErr: snap.KeyErrors[cb.ID]}
		key := snap.Keys[cb.ID]
		if old, ok := f.providers[cb.ID]; ok && old.typ == cb.Type && old.url == cb.BaseURL && old.key == key {
			m.provider = old.provider
		} else {
			// What the old client listed says nothing of the new one.
			f.cache.Forget(cb.ID)
			m.provider, m.err = f.cfg.NewProvider(cb, key)
			if m.err == nil && m.provider == nil {
				m.err = core.Errorf(core.EINTERNAL, "no client for backend type %q", cb.Type)
			}
		}
		if m.err != nil {
			m.provider = nil
		} else {
			kept[cb.ID] = provided{typ: cb.Type, url: cb.BaseURL, key: key, provider: m.provider}
			backends = append(backends, llm.Backend{
				ID: cb.ID, Name: cb.Name, Type: cb.Type, Provider: m.provider, Models: m.models,
			})
		}
		b.members = append(b.members, m)
	}
	for id := range f.providers {
		if _, ok := kept[id]; !ok {
			f.cache.Forget(id) // the backend is gone, or its client is
		}
	}
	f.providers = kept

	b.router = llm.NewRouter(backends, models, llm.Defaults{
		Chat: b.defaults.Chat.Name, ChatProvider: b.defaults.Chat.Provider,
		Prompt: b.defaults.Task.Name, PromptProvider: b.defaults.Task.Provider,
		Embed: b.defaults.Embed.Name, EmbedProvider: b.defaults.Embed.Provider,
	}, llm.WithPolicy(f.cfg.Policy), llm.WithHealth(f.health), llm.WithCache(f.cache))
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
			if !seen[llm.ModelKey(name)] {
				seen[llm.ModelKey(name)] = true
				out = append(out, name)
			}
		}
	}
	return out
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

// Defaults returns the default models in use, as of the last Reload: the
// snapshot's (each configured one, else the catalog's choice from the
// built-in groups), with lower-case providers. It loads the catalog on
// first use, like LLM.
func (f *Fleet) Defaults(ctx context.Context) (catalog.Defaults, error) {
	b, err := f.current(ctx)
	if err != nil {
		return catalog.Defaults{}, err
	}
	return b.defaults, nil
}

// Kick asks the background loop for a sync cycle now. It does not wait;
// kicks made while a cycle is pending are merged into it. It does not read
// the catalog: after a change to it, call Reload first.
func (f *Fleet) Kick() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// outsideChanges is about how often Run reloads the catalog on its own, to
// pick up the changes made outside this process (see Run).
const outsideChanges = time.Minute

// reloadEvery returns every how many ticks of interval Run reloads the
// catalog: about once per outsideChanges, every tick when the interval is
// longer.
func reloadEvery(interval time.Duration) int { return max(1, int(outsideChanges/interval)) }

// Run is the background loop. At start, every SyncInterval and on Kick it
// runs a sync cycle: it refreshes every backend's listing, ends the
// download holds that no longer stand and queues the downloads that are
// missing.
//
// Run reads the catalog itself only when nothing is loaded (at start,
// unless a Reload came first, and until a read succeeds) and at about one
// tick a minute (every 6th at the default interval of 10 s; see
// reloadEvery), before that tick's sync. A catalog write made through this
// process is followed by Reload and Kick, so it shows at once; the
// periodic reload is for the changes made elsewhere — another process on
// the same database, another instance of a deployed function — which thus
// show within about a minute.
//
// Run returns when ctx ends, after the pulls it started have stopped.
func (f *Fleet) Run(ctx context.Context) {
	var pulls sync.WaitGroup
	defer pulls.Wait()
	t := time.NewTicker(f.cfg.SyncInterval)
	defer t.Stop()
	every := reloadEvery(f.cfg.SyncInterval)
	reload := false
	for ticks := 0; ; {
		if reload || f.cur.Load() == nil {
			f.reload(ctx)
		}
		f.sync(ctx, &pulls)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ticks++
			reload = ticks%every == 0
		case <-f.kick:
			reload = false
		}
	}
}

// reload is Reload for the background loop, which logs its failure and
// goes on with the backends it has.
func (f *Fleet) reload(ctx context.Context) {
	if err := f.Reload(ctx); err != nil && ctx.Err() == nil {
		f.cfg.Logger.Warn("fleet: reload failed; keeping the current backends", "err", err)
	}
}

// sync runs one listing and download cycle on the current build: it lists
// every backend again, ends the holds the backends no longer justify,
// queues the models the Ollama backends lack, and starts a worker for
// every backend with queued jobs and none running.
func (f *Fleet) sync(ctx context.Context, pulls *sync.WaitGroup) {
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

	assigned := make(map[string]assignment) // the Ollama backends, by URL
	for _, m := range b.members {
		if m.backend.Type == catalog.TypeOllama {
			assigned[m.backend.BaseURL] = m.assignment()
		}
	}
	for _, h := range f.dl.release(assigned) {
		f.cfg.Logger.Info("fleet: download no longer held", "url", h.url, "model", h.model)
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
			have[llm.ModelKey(info.Name)] = true
		}
		var missing []string
		for _, name := range m.models {
			if !have[llm.ModelKey(name)] {
				missing = append(missing, name)
			}
		}
		f.dl.want(m.backend.BaseURL, missing, now)
	}
	for _, url := range f.dl.idle() {
		pulls.Go(func() { f.work(ctx, url) })
	}
}

// assignment returns the backend's ID and the models its groups assign
// it, by model key.
func (m member) assignment() assignment {
	a := assignment{id: m.backend.ID, models: make(map[string]bool, len(m.models))}
	for _, name := range m.models {
		a.models[llm.ModelKey(name)] = true
	}
	return a
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
