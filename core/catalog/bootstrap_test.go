package catalog_test

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/seal"
	"github.com/stepwise-run/stepwise/infra/mem"
)

// stored returns every record of the tenant, by kind.
func stored(t *testing.T, s core.RecordStore) map[string][]*core.Record {
	t.Helper()
	out := map[string][]*core.Record{}
	for _, k := range []string{
		catalog.KindChain, catalog.KindBackend, catalog.KindModel, catalog.KindGroup,
		catalog.KindBackendInGroup, catalog.KindModelInGroup, catalog.KindProvider,
	} {
		out[k] = rawRecords(t, s, k)
	}
	return out
}

// capabilities is a model's declaration without its times.
type capabilities struct {
	ContextLength                           int
	CanChat, CanEmbed, CanPrompt, CanStream bool
}

func capsOf(m catalog.Model) capabilities {
	return capabilities{m.ContextLength, m.CanChat, m.CanEmbed, m.CanPrompt, m.CanStream}
}

func TestBootstrap(t *testing.T) {
	defaults := catalog.Defaults{
		Embed: catalog.DefaultModel{Name: "nomic-embed-text", Provider: "ollama"},
		Task:  catalog.DefaultModel{Name: "gpt-4o-mini", Provider: "openai", ContextLength: 128000},
		Chat:  catalog.DefaultModel{Name: "library/llama3:8b", ContextLength: 8192},
	}
	ctx := context.Background()
	f := newFixture(t, options{defaults: defaults})
	must(t, f.cat.Bootstrap(ctx, tenant, catalog.BootstrapConfig{OllamaURL: "http://127.0.0.1:11434/"}))

	t.Run("Models", func(t *testing.T) {
		want := map[string]capabilities{
			"nomic-embed-text":  {ContextLength: 2048, CanEmbed: true},
			"gpt-4o-mini":       {ContextLength: 128000, CanPrompt: true, CanChat: true},
			"library/llama3:8b": {ContextLength: 8192, CanChat: true, CanPrompt: true, CanStream: true},
		}
		for name, caps := range want {
			m, err := f.cat.GetModel(ctx, tenant, name)
			must(t, err)
			if capsOf(m) != caps {
				t.Errorf("%s declared %+v, want %+v", name, capsOf(m), caps)
			}
		}
	})
	t.Run("GroupModels", func(t *testing.T) {
		for group, model := range map[string]string{
			catalog.GroupEmbed: "nomic-embed-text", catalog.GroupTasks: "gpt-4o-mini", catalog.GroupChat: "library/llama3:8b",
		} {
			ms, err := f.cat.ListGroupModels(ctx, tenant, group)
			must(t, err)
			if got := modelNames(ms); !reflect.DeepEqual(got, []string{model}) {
				t.Errorf("models of %s: %v, want %s", group, got, model)
			}
		}
	})
	t.Run("OllamaBackend", func(t *testing.T) {
		bs, _, err := f.cat.ListBackends(ctx, tenant, core.ListQuery{})
		must(t, err)
		if len(bs) != 1 || bs[0].Name != "local-ollama" || bs[0].Type != "ollama" || bs[0].BaseURL != "http://127.0.0.1:11434" {
			t.Fatalf("backends %+v, want one local-ollama", bs)
		}
		gs, err := f.cat.ListBackendGroups(ctx, tenant, bs[0].ID)
		must(t, err)
		want := []string{catalog.GroupChat, catalog.GroupTasks, catalog.GroupEmbed}
		if got := groupNames(gs); !reflect.DeepEqual(got, want) {
			t.Errorf("groups of local-ollama: %v, want %v", got, want)
		}
	})
	t.Run("Idempotent", func(t *testing.T) {
		before := stored(t, f.store)
		snapBefore, err := f.cat.Snapshot(ctx, tenant)
		must(t, err)
		must(t, f.cat.Bootstrap(ctx, tenant, catalog.BootstrapConfig{OllamaURL: "http://127.0.0.1:11434/"}))
		if after := stored(t, f.store); !reflect.DeepEqual(after, before) {
			t.Errorf("a second bootstrap changed the records:\n%v\nwant\n%v", after, before)
		}
		snapAfter, err := f.cat.Snapshot(ctx, tenant)
		must(t, err)
		if !reflect.DeepEqual(snapAfter, snapBefore) {
			t.Errorf("a second bootstrap changed the snapshot:\n%+v\nwant\n%+v", snapAfter, snapBefore)
		}
	})
}

func TestBootstrapCases(t *testing.T) {
	tests := []struct {
		name     string
		defaults catalog.Defaults
		setup    func(t *testing.T, f *fixture)
		cfg      catalog.BootstrapConfig
		check    func(t *testing.T, f *fixture)
	}{
		{name: "SharedDefaultMergesCapabilities",
			defaults: catalog.Defaults{Task: catalog.DefaultModel{Name: "m", ContextLength: 4096}, Chat: catalog.DefaultModel{Name: "m", ContextLength: 9999}},
			check: func(t *testing.T, f *fixture) {
				m, err := f.cat.GetModel(context.Background(), tenant, "m")
				must(t, err)
				if want := (capabilities{ContextLength: 4096, CanChat: true, CanPrompt: true, CanStream: true}); capsOf(m) != want {
					t.Errorf("declared %+v, want %+v", capsOf(m), want)
				}
			}},
		{name: "ExistingDeclarationKept",
			defaults: catalog.Defaults{Chat: catalog.DefaultModel{Name: "m", ContextLength: 4096}},
			setup: func(t *testing.T, f *fixture) {
				_, err := f.cat.CreateModel(context.Background(), tenant, catalog.Model{Model: "m", ContextLength: 100, CanEmbed: true})
				must(t, err)
			},
			check: func(t *testing.T, f *fixture) {
				m, err := f.cat.GetModel(context.Background(), tenant, "m")
				must(t, err)
				if want := (capabilities{ContextLength: 100, CanEmbed: true}); capsOf(m) != want {
					t.Errorf("declared %+v, want the existing %+v", capsOf(m), want)
				}
				ms, err := f.cat.ListGroupModels(context.Background(), tenant, catalog.GroupChat)
				must(t, err)
				if len(ms) != 1 {
					t.Errorf("chat group models %v, want m", modelNames(ms))
				}
			}},
		{name: "NoDefaultsNoOllama",
			check: func(t *testing.T, f *fixture) {
				got := stored(t, f.store)
				if len(got[catalog.KindGroup]) != 3 || len(got[catalog.KindModel]) != 0 || len(got[catalog.KindBackend]) != 0 {
					t.Errorf("records %v, want only the built-in groups", got)
				}
			}},
		{name: "CustomOllamaName",
			cfg: catalog.BootstrapConfig{OllamaURL: "http://gpu:11434", OllamaName: "gpu-box"},
			check: func(t *testing.T, f *fixture) {
				bs, _, err := f.cat.ListBackends(context.Background(), tenant, core.ListQuery{})
				must(t, err)
				if got := backendNames(bs); !reflect.DeepEqual(got, []string{"gpu-box"}) {
					t.Errorf("backends %v, want gpu-box", got)
				}
			}},
		{name: "OllamaURLRegisteredUnderAnotherName",
			setup: func(t *testing.T, f *fixture) { mustBackend(t, f.cat, "mine", "http://gpu:11434") },
			cfg:   catalog.BootstrapConfig{OllamaURL: "http://gpu:11434/"},
			check: func(t *testing.T, f *fixture) {
				bs, _, err := f.cat.ListBackends(context.Background(), tenant, core.ListQuery{})
				must(t, err)
				if got := backendNames(bs); !reflect.DeepEqual(got, []string{"mine"}) {
					t.Fatalf("backends %v, want only mine", got)
				}
				gs, err := f.cat.ListBackendGroups(context.Background(), tenant, bs[0].ID)
				must(t, err)
				if len(gs) != 3 {
					t.Errorf("mine is in %v, want the 3 built-in groups", groupNames(gs))
				}
			}},
		{name: "OllamaNameExistsElsewhere",
			setup: func(t *testing.T, f *fixture) { mustBackend(t, f.cat, "local-ollama", "http://old:11434") },
			cfg:   catalog.BootstrapConfig{OllamaURL: "http://new:11434"},
			check: func(t *testing.T, f *fixture) {
				bs, _, err := f.cat.ListBackends(context.Background(), tenant, core.ListQuery{})
				must(t, err)
				if len(bs) != 1 || bs[0].BaseURL != "http://old:11434" {
					t.Errorf("backends %+v, want the existing local-ollama left as it is", bs)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, options{defaults: tt.defaults})
			if tt.setup != nil {
				tt.setup(t, f)
			}
			must(t, f.cat.Bootstrap(context.Background(), tenant, tt.cfg))
			tt.check(t, f)
		})
	}
	t.Run("BadOllamaURL", func(t *testing.T) {
		f := newFixture(t, options{})
		err := f.cat.Bootstrap(context.Background(), tenant, catalog.BootstrapConfig{OllamaURL: "ollama:11434"})
		wantErr(t, err, core.EINVALID, `baseUrl: "ollama:11434" is not an http(s) URL`)
	})
}

func TestSnapshot(t *testing.T) {
	ctx := context.Background()
	store := mem.New()
	box, err := seal.New(seal.GenerateKey())
	must(t, err)
	// Every record is created at the same instant, so backends fall back
	// to their ids for the order; the ids run backwards.
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := []string{"z", "y", "x", "w", "v"}
	cat := catalog.New(catalog.Config{
		Store:  store,
		Sealer: box,
		Now:    func() time.Time { return now },
		NewID: func() string {
			id := ids[0]
			ids = ids[1:]
			return id
		},
	})
	must(t, cat.EnsureBuiltinGroups(ctx, tenant))
	bz := mustBackend(t, cat, "first", "http://first")   // id z
	by := mustBackend(t, cat, "second", "http://second") // id y
	g := mustGroup(t, cat, "g", "")                      // id x
	for _, m := range []string{"m1", "m2"} {
		_, err := cat.CreateModel(ctx, tenant, catalog.Model{Model: m, ContextLength: 1, CanChat: true})
		must(t, err)
	}
	must(t, cat.AssignBackend(ctx, tenant, g.ID, bz.ID))
	must(t, cat.AssignBackend(ctx, tenant, catalog.GroupChat, bz.ID))
	must(t, cat.AssignModel(ctx, tenant, g.ID, "m2"))
	must(t, cat.AssignModel(ctx, tenant, g.ID, "m1"))
	_, err = cat.ConfigureProvider(ctx, tenant, catalog.ProviderOpenAI, openAIKey, false)
	must(t, err)

	s, err := cat.Snapshot(ctx, tenant)
	must(t, err)
	checks := []struct {
		name      string
		got, want any
	}{
		{"BackendOrder", backendNames(s.Backends), []string{"openai", "second", "first"}},
		{"BackendIDs", []string{s.Backends[1].ID, s.Backends[2].ID}, []string{by.ID, bz.ID}},
		{"Models", len(s.Models), 2},
		{"Groups", len(s.Groups), 4},
		{"BackendGroups", s.BackendGroups, map[string][]string{bz.ID: {catalog.GroupChat, g.ID}}},
		{"GroupModels", s.GroupModels, map[string][]string{g.ID: {"m1", "m2"}}},
		{"Keys", s.Keys, map[string]string{catalog.ProviderOpenAI: openAIKey}},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !reflect.DeepEqual(c.got, c.want) {
				t.Errorf("got %v, want %v", c.got, c.want)
			}
		})
	}

	t.Run("UndecryptableKeyLeftOut", func(t *testing.T) {
		other, err := seal.New(seal.GenerateKey())
		must(t, err)
		// The same store read with another key: the key does not open.
		s, err := catalog.New(catalog.Config{Store: store, Sealer: other}).Snapshot(ctx, tenant)
		must(t, err)
		if len(s.Keys) != 0 || len(s.Backends) != 3 {
			t.Errorf("keys %d, backends %d: want no key and every backend", len(s.Keys), len(s.Backends))
		}
	})
	t.Run("OtherTenantEmpty", func(t *testing.T) {
		s, err := cat.Snapshot(ctx, "t2")
		must(t, err)
		if len(s.Backends)+len(s.Models)+len(s.Groups)+len(s.Keys) != 0 || s.BackendGroups == nil || s.GroupModels == nil || s.Keys == nil {
			t.Errorf("snapshot of an empty tenant %+v: want empty, non-nil maps", s)
		}
	})
}

func TestSnapshotDefaults(t *testing.T) {
	ctx := context.Background()
	configured := catalog.Defaults{Chat: catalog.DefaultModel{Name: "env-chat:1b", ContextLength: 2048}}
	f := newFixture(t, options{defaults: configured})
	must(t, f.cat.EnsureBuiltinGroups(ctx, tenant))
	for _, a := range []struct{ group, model string }{
		{catalog.GroupTasks, "zeta:7b"}, {catalog.GroupTasks, "alpha:7b"},
		{catalog.GroupChat, "other-chat:1b"}, {catalog.GroupEmbed, "embed:latest"},
	} {
		mustModel(t, f.cat, a.model)
		must(t, f.cat.AssignModel(ctx, tenant, a.group, a.model))
	}
	want := catalog.Defaults{
		Embed: catalog.DefaultModel{Name: "embed:latest"},
		Task:  catalog.DefaultModel{Name: "alpha:7b"},
		Chat:  configured.Chat, // the configured one wins over the group's
	}
	snap, err := f.cat.Snapshot(ctx, tenant)
	must(t, err)
	if snap.Defaults != want {
		t.Errorf("Snapshot.Defaults = %+v, want %+v", snap.Defaults, want)
	}
}

func TestParseDefaults(t *testing.T) {
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	d, err := catalog.ParseDefaults(env(map[string]string{"TASK_MODEL": "phi3:3.8b", "TASK_PROVIDER": "Ollama", "CHAT_MODEL_CONTEXT_LENGTH": "8192"}))
	if err != nil {
		t.Fatal(err)
	}
	want := catalog.Defaults{
		Embed: catalog.DefaultModel{ContextLength: catalog.DefaultContextLength},
		Task:  catalog.DefaultModel{Name: "phi3:3.8b", Provider: "ollama", ContextLength: catalog.DefaultContextLength},
		Chat:  catalog.DefaultModel{ContextLength: 8192},
	}
	if d != want {
		t.Errorf("ParseDefaults = %+v, want %+v", d, want)
	}
	for name, vars := range map[string]map[string]string{
		"EMBED_PROVIDER":             {"EMBED_PROVIDER": "bedrock"},
		"CHAT_MODEL_CONTEXT_LENGTH":  {"CHAT_MODEL_CONTEXT_LENGTH": "-1"},
		"TASK_MODEL_CONTEXT_LENGTH:": {"TASK_MODEL_CONTEXT_LENGTH": "lots"},
	} {
		if _, err := catalog.ParseDefaults(env(vars)); core.ErrorCode(err) != core.EINVALID || !strings.HasPrefix(err.Error(), strings.TrimSuffix(name, ":")) {
			t.Errorf("%s: err = %v, want EINVALID naming it", name, err)
		}
	}
}

// writeCounter counts the writes a store is asked for.
type writeCounter struct {
	core.RecordStore
	mu     sync.Mutex
	writes int
}

func (w *writeCounter) CreateRecord(ctx context.Context, tenant string, r *core.Record) error {
	w.mu.Lock()
	w.writes++
	w.mu.Unlock()
	return w.RecordStore.CreateRecord(ctx, tenant, r)
}

func (w *writeCounter) UpdateRecord(ctx context.Context, tenant string, r *core.Record) error {
	w.mu.Lock()
	w.writes++
	w.mu.Unlock()
	return w.RecordStore.UpdateRecord(ctx, tenant, r)
}

// TestBootstrapAgainWritesNothing: every start bootstraps, and on a
// catalog that has it all already (the common case, and every Lambda cold
// start) that must be reads only.
func TestBootstrapAgainWritesNothing(t *testing.T) {
	ctx := context.Background()
	store := &writeCounter{RecordStore: mem.New()}
	d := catalog.Defaults{
		Embed: catalog.DefaultModel{Name: "nomic-embed-text:latest", ContextLength: 2048},
		Task:  catalog.DefaultModel{Name: "phi3:3.8b", ContextLength: 2048},
		Chat:  catalog.DefaultModel{Name: "phi3:3.8b", ContextLength: 2048},
	}
	cat := catalog.New(catalog.Config{Store: store, Defaults: d})
	b := catalog.BootstrapConfig{OllamaURL: "http://127.0.0.1:11434"}
	must(t, cat.Bootstrap(ctx, tenant, b))
	if store.writes == 0 {
		t.Fatal("the first bootstrap wrote nothing")
	}
	store.writes = 0
	must(t, cat.Bootstrap(ctx, tenant, b))
	if store.writes != 0 {
		t.Errorf("a second bootstrap asked for %d writes, want none", store.writes)
	}
}
