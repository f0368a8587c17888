package fleet_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/fleet"
	"github.com/stepwise-run/stepwise/core/llm"
	"github.com/stepwise-run/stepwise/core/llm/fakellm"
	"github.com/stepwise-run/stepwise/core/llm/ollama"
	"github.com/stepwise-run/stepwise/core/llm/openai"
)

// epoch is the fixed time of the tests' clock.
var epoch = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// source is a SnapshotSource serving whatever snapshot the test set, and
// counting the reads.
type source struct {
	mu    sync.Mutex
	snap  *catalog.Snapshot
	err   error
	reads int
}

func (s *source) Snapshot(ctx context.Context, tenant string) (*catalog.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	if tenant != core.DefaultTenant {
		return nil, core.Errorf(core.ENOTFOUND, "tenant %q", tenant)
	}
	return s.snap, s.err
}

// read returns how many snapshots were read.
func (s *source) read() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

func (s *source) set(snap *catalog.Snapshot, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap, s.err = snap, err
}

// providers builds real clients for catalog backends and records each
// build, as the entry point's factory would.
type providers struct {
	mu    sync.Mutex
	built []string // "<id> key=<key>"
}

func (p *providers) New(b catalog.Backend, key string) (llm.Provider, error) {
	p.mu.Lock()
	p.built = append(p.built, b.ID+" key="+key)
	p.mu.Unlock()
	switch b.Type {
	case catalog.TypeOllama:
		return ollama.New(b.BaseURL, nil)
	case catalog.TypeOpenAI, catalog.TypeVLLM, catalog.TypeGemini:
		return openai.New(openai.Config{BaseURL: b.BaseURL, APIKey: key})
	}
	return nil, core.Errorf(core.EINVALID, "type: %q is not supported", b.Type)
}

func (p *providers) builds() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.built)
}

// fake starts a fake server with the given models.
func fake(t *testing.T, models ...string) *fakellm.Server {
	t.Helper()
	s := fakellm.Start()
	t.Cleanup(s.Close)
	var ms []fakellm.Model
	for _, m := range models {
		ms = append(ms, fakellm.Model{Name: m, ContextLength: 4096, Embed: strings.Contains(m, "embed")})
	}
	s.SetModels(ms...)
	return s
}

// downURL is the URL of a port nothing listens on.
func downURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	return url
}

// backend is a catalog backend created age minutes after the epoch.
func backend(id, typ, url string, age int) catalog.Backend {
	return catalog.Backend{ID: id, Name: "name-" + id, Type: typ, BaseURL: url, CreatedAt: epoch.Add(time.Duration(age) * time.Minute)}
}

// defaulted gives every snapshot of src the default models d, as the
// catalog fills in a snapshot's Defaults.
type defaulted struct {
	src *source
	d   catalog.Defaults
}

func (s defaulted) Snapshot(ctx context.Context, tenant string) (*catalog.Snapshot, error) {
	snap, err := s.src.Snapshot(ctx, tenant)
	if snap == nil {
		return nil, err
	}
	with := *snap
	with.Defaults = s.d
	return &with, err
}

// newFleet returns a fleet over src with the tests' clock, a cycle only at
// start and on Kick, and chat and task defaults of llama3.2:1b.
func newFleet(src *source, p *providers) *fleet.Fleet {
	return fleet.New(fleet.Config{
		Source: defaulted{src, catalog.Defaults{
			Chat: catalog.DefaultModel{Name: "llama3.2:1b"},
			Task: catalog.DefaultModel{Name: "llama3.2:1b"},
		}},
		NewProvider:  p.New,
		SyncInterval: time.Hour,
		Now:          func() time.Time { return epoch },
	})
}

// ask sends a chat for model ("" = the default) through l and returns the
// backend name that answered.
func ask(l core.LLM, model string) (string, error) {
	var sel core.ModelSelector
	if model != "" {
		sel.Models = []string{model}
	}
	out, err := l.Chat(context.Background(), core.ChatRequest{
		Select:   sel,
		Messages: []core.Message{{Role: core.RoleUser, Content: "hi"}},
	}, nil)
	return out.Usage.Backend, err
}

// stateOf returns the state of backend id.
func stateOf(t *testing.T, f *fleet.Fleet, id string) fleet.BackendState {
	t.Helper()
	for _, s := range f.States(context.Background()) {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no state for backend %s", id)
	return fleet.BackendState{}
}

// pulled returns the names of the models a state lists.
func pulled(s fleet.BackendState) []string {
	var out []string
	for _, m := range s.PulledModels {
		out = append(out, m.Name)
	}
	return out
}

func TestRouting(t *testing.T) {
	local := fake(t, "llama3.2:1b")
	cloud := fake(t, "gpt-4o-mini")
	mine := fake(t, "qwen2.5:7b")
	// The provider's backend (id = its type) holds the key; a user's own
	// OpenAI-compatible server must never be sent it.
	src := &source{snap: &catalog.Snapshot{
		Backends: []catalog.Backend{ // oldest first, as the catalog lists them
			backend("local", catalog.TypeOllama, local.URL(), 1),
			backend(catalog.ProviderOpenAI, catalog.TypeOpenAI, cloud.URL()+"/v1", 2),
			backend("mine", catalog.TypeOpenAI, mine.URL()+"/v1", 3),
		},
		Keys: map[string]string{catalog.ProviderOpenAI: "sk-test"},
	}}
	p := &providers{}
	f := newFleet(src, p)
	l := f.LLM() // before any Reload: the first call loads the catalog

	for _, tt := range []struct {
		name, model, want string
	}{
		{"a model only the cloud lists", "gpt-4o-mini", "name-openai"},
		{"a model only the user's server lists", "qwen2.5:7b", "name-mine"},
		{"a model only the local server lists", "llama3.2:1b", "name-local"},
		{"the default chat model", "", "name-local"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ask(l, tt.model)
			if err != nil || got != tt.want {
				t.Fatalf("served by %q (%v), want %s", got, err, tt.want)
			}
		})
	}
	if got, want := p.builds(), []string{"local key=", "openai key=sk-test", "mine key="}; !slices.Equal(got, want) {
		t.Errorf("clients built %q, want %q (oldest first, the key only for the provider's backend)", got, want)
	}
	if n := len(cloud.Requests()); n == 0 {
		t.Error("the cloud fake saw no request")
	}
}

func TestReload(t *testing.T) {
	a := fake(t, "llama3.2:1b")
	b := fake(t, "qwen2.5:7b")
	snapA := &catalog.Snapshot{Backends: []catalog.Backend{backend("a", catalog.TypeOllama, a.URL(), 1)}}
	snapAB := &catalog.Snapshot{Backends: []catalog.Backend{
		backend("a", catalog.TypeOllama, a.URL(), 1),
		backend("b", catalog.TypeOllama, b.URL(), 2),
	}}
	snapB := &catalog.Snapshot{Backends: []catalog.Backend{backend("b", catalog.TypeOllama, b.URL(), 2)}}
	src := &source{snap: snapA}
	p := &providers{}
	f := newFleet(src, p)
	ctx := context.Background()
	if err := f.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	l := f.LLM()

	steps := []struct {
		name     string
		snap     *catalog.Snapshot
		snapErr  error
		reload   bool
		wantErr  string // code of the Reload error
		model    string
		want     string // backend serving model; "" = none
		states   []string
		newBuild int // clients built by this step
	}{
		{name: "a model of a backend not loaded yet is not found", snap: snapAB, model: "qwen2.5:7b", states: []string{"a"}},
		{name: "reload picks up the new backend", snap: snapAB, reload: true, model: "qwen2.5:7b", want: "name-b", states: []string{"a", "b"}, newBuild: 1},
		{name: "an unchanged reload builds no client", snap: snapAB, reload: true, model: "llama3.2:1b", want: "name-a", states: []string{"a", "b"}},
		{name: "a failing catalog keeps the current backends", snapErr: core.Errorf(core.EUNAVAILABLE, "store down"), reload: true,
			wantErr: core.EUNAVAILABLE, model: "llama3.2:1b", want: "name-a", states: []string{"a", "b"}},
		{name: "reload drops a removed backend", snap: snapB, reload: true, model: "llama3.2:1b", states: []string{"b"}},
		{name: "a changed key rebuilds the client", snap: &catalog.Snapshot{Backends: snapB.Backends, Keys: map[string]string{"b": "k2"}},
			reload: true, model: "qwen2.5:7b", want: "name-b", states: []string{"b"}, newBuild: 1},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := len(p.builds())
			src.set(st.snap, st.snapErr)
			if st.reload {
				err := f.Reload(ctx)
				if core.ErrorCode(err) != st.wantErr && !(st.wantErr == "" && err == nil) {
					t.Fatalf("Reload: %v, want code %q", err, st.wantErr)
				}
			}
			got, err := ask(l, st.model)
			switch {
			case st.want == "" && core.ErrorCode(err) != core.ENOTFOUND:
				t.Errorf("served by %q (%v), want not found", got, err)
			case st.want != "" && (err != nil || got != st.want):
				t.Errorf("served by %q (%v), want %s", got, err, st.want)
			}
			var ids []string
			for _, s := range f.States(ctx) {
				ids = append(ids, s.ID)
			}
			if !slices.Equal(ids, st.states) {
				t.Errorf("states of %q, want %q", ids, st.states)
			}
			if n := len(p.builds()) - before; n != st.newBuild {
				t.Errorf("%d clients built, want %d", n, st.newBuild)
			}
		})
	}
}

func TestReloadRejectsUnknownPolicy(t *testing.T) {
	src := &source{snap: &catalog.Snapshot{}}
	f := fleet.New(fleet.Config{Source: src, NewProvider: (&providers{}).New, Policy: "fastest"})
	err := f.Reload(context.Background())
	if core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), "least_busy") {
		t.Fatalf("error %v, want invalid naming the policies", err)
	}
}

func TestGroups(t *testing.T) {
	a := fake(t, "llama3.2:1b", "qwen2.5:7b", "nomic-embed-text:latest")
	b := fake(t, "llama3.2:1b", "qwen2.5:7b")
	src := &source{snap: &catalog.Snapshot{
		Backends: []catalog.Backend{ // oldest first, as the catalog lists them
			backend("a", catalog.TypeOllama, a.URL(), 1),
			backend("b", catalog.TypeOllama, b.URL(), 2),
		},
		Models: []catalog.Model{
			{ID: "llama3.2:1b", Model: "llama3.2:1b", ContextLength: 65536, CanChat: true, CanPrompt: true, CanStream: true},
			{ID: "nomic-embed-text", Model: "nomic-embed-text", ContextLength: 2048, CanEmbed: true},
		},
		Groups:        []catalog.Group{{ID: "g1", Name: "chat"}, {ID: "g2", Name: "embed"}},
		BackendGroups: map[string][]string{"a": {"g1", "g2"}},
		GroupModels:   map[string][]string{"g1": {"llama3.2:1b"}, "g2": {"nomic-embed-text", "llama3.2:1b"}},
	}}
	f := newFleet(src, &providers{})
	l := f.LLM()

	for _, tt := range []struct {
		name, model, want string
	}{
		{"a grouped backend serves its groups' models first", "llama3.2:1b", "name-a"},
		{"a model outside its groups goes to the ungrouped backend", "qwen2.5:7b", "name-b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := ask(l, tt.model); err != nil || got != tt.want {
				t.Fatalf("served by %q (%v), want %s", got, err, tt.want)
			}
		})
	}
	t.Run("an embedding served only by its group's backend", func(t *testing.T) {
		out, err := l.Embed(context.Background(), core.EmbedRequest{Select: core.ModelSelector{Models: []string{"nomic-embed-text"}}, Text: "x"})
		if err != nil || out.Usage.Backend != "name-a" {
			t.Fatalf("served by %q (%v)", out.Usage.Backend, err)
		}
	})

	states := f.States(context.Background())
	if len(states) != 2 || states[0].ID != "a" || states[1].ID != "b" {
		t.Fatalf("states %+v, want a then b", states)
	}
	if got := states[0].Models; !slices.Equal(got, []string{"llama3.2:1b", "nomic-embed-text"}) {
		t.Errorf("a serves %q, want the union of its groups", got)
	}
	if states[1].Models != nil {
		t.Errorf("b is in no group but serves %q", states[1].Models)
	}
	byName := map[string]fleet.ModelStatus{}
	for _, m := range states[0].PulledModels {
		byName[m.Name] = m
	}
	if m := byName["llama3.2:1b"]; !m.CanChat || !m.CanPrompt || !m.CanStream || m.CanEmbed || m.ContextLength != 65536 ||
		m.Size == 0 || m.Digest == "" || m.Details.Family != "llama" {
		t.Errorf("declared model %+v", m)
	}
	if m := byName["nomic-embed-text:latest"]; !m.CanEmbed || m.CanChat || m.ContextLength != 2048 {
		t.Errorf("declared embedding model (listed with its tag) %+v", m)
	}
	if m, ok := byName["qwen2.5:7b"]; !ok || m.CanChat || m.CanPrompt || m.CanEmbed || m.CanStream || m.ContextLength != 0 {
		t.Errorf("undeclared model %+v (listed %v), want no capability", m, ok)
	}
}

func TestUnhealthyBackends(t *testing.T) {
	up := fake(t, "llama3.2:1b")
	src := &source{snap: &catalog.Snapshot{Backends: []catalog.Backend{
		backend("down", catalog.TypeOllama, downURL(t), 1),
		backend("broken", catalog.TypeOllama, "not a url", 2),
		backend("up", catalog.TypeOllama, up.URL(), 3),
	}}}
	f := newFleet(src, &providers{})
	if err := f.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, err := ask(f.LLM(), ""); err != nil || got != "name-up" {
		t.Fatalf("served by %q (%v), want the backend that is up", got, err)
	}
	for _, tt := range []struct {
		id        string
		reachable bool
		errParts  []string
		models    []string
	}{
		{id: "down", errParts: []string{"listing models", "connection refused"}},
		{id: "broken", errParts: []string{"client:", "not a url"}},
		{id: "up", reachable: true, models: []string{"llama3.2:1b"}},
	} {
		t.Run(tt.id, func(t *testing.T) {
			s := stateOf(t, f, tt.id)
			if s.Reachable != tt.reachable || !slices.Equal(pulled(s), tt.models) {
				t.Errorf("state %+v", s)
			}
			for _, part := range tt.errParts {
				if !strings.Contains(s.Error, part) {
					t.Errorf("error %q does not say %q", s.Error, part)
				}
			}
			if tt.errParts == nil && s.Error != "" {
				t.Errorf("error %q, want none", s.Error)
			}
		})
	}
}

func TestStatesBeforeAnyReload(t *testing.T) {
	src := &source{err: errors.New("catalog unreadable")}
	f := newFleet(src, &providers{})
	if s := f.States(context.Background()); s != nil {
		t.Errorf("states %+v from an unreadable catalog", s)
	}
	if _, err := ask(f.LLM(), "llama3.2:1b"); err == nil || !strings.Contains(err.Error(), "catalog unreadable") {
		t.Errorf("error %v, want the catalog's", err)
	}
}

func TestStateShowsAKeyThatDoesNotOpen(t *testing.T) {
	cloud := fake(t, "gpt-4o-mini")
	src := &source{snap: &catalog.Snapshot{
		Backends:  []catalog.Backend{backend(catalog.ProviderOpenAI, catalog.TypeOpenAI, cloud.URL()+"/v1", 1)},
		KeyErrors: map[string]string{catalog.ProviderOpenAI: "the stored API key does not open"},
	}}
	f := newFleet(src, &providers{})
	if err := f.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := stateOf(t, f, catalog.ProviderOpenAI)
	if !strings.Contains(st.Error, "api key: the stored API key does not open") {
		t.Errorf("state error = %q, want the key's problem", st.Error)
	}
}

func TestDefaults(t *testing.T) {
	src := &source{snap: &catalog.Snapshot{Defaults: catalog.Defaults{
		Embed: catalog.DefaultModel{Name: "nomic-embed-text:latest", Provider: "Ollama", ContextLength: 2048},
		Task:  catalog.DefaultModel{Name: "llama3.2:1b"},
		Chat:  catalog.DefaultModel{Name: "from-the-group:1b", Provider: "OpenAI"},
	}}}
	f := fleet.New(fleet.Config{Source: src, NewProvider: (&providers{}).New})
	got, err := f.Defaults(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := catalog.Defaults{ // the snapshot's, providers lower-cased
		Embed: catalog.DefaultModel{Name: "nomic-embed-text:latest", Provider: "ollama", ContextLength: 2048},
		Task:  catalog.DefaultModel{Name: "llama3.2:1b"},
		Chat:  catalog.DefaultModel{Name: "from-the-group:1b", Provider: "openai"},
	}
	if got != want {
		t.Errorf("Defaults = %+v, want %+v", got, want)
	}
	if n := src.read(); n != 1 {
		t.Errorf("the catalog was read %d times, want once", n)
	}
}

func TestReloadKeepsListings(t *testing.T) {
	a := fake(t, "llama3.2:1b")
	snap := func(keys map[string]string, models ...catalog.Model) *catalog.Snapshot {
		return &catalog.Snapshot{Backends: []catalog.Backend{backend("a", catalog.TypeOllama, a.URL(), 1)}, Models: models, Keys: keys}
	}
	src := &source{snap: snap(nil)}
	f := newFleet(src, &providers{})
	ctx := context.Background()
	for _, st := range []struct {
		name  string
		snap  *catalog.Snapshot
		lists int // listings the backend has seen after the step
	}{
		{name: "the first call lists the backend", snap: snap(nil), lists: 1},
		{name: "a change to the models keeps the listing", snap: snap(nil, catalog.Model{ID: "llama3.2:1b", Model: "llama3.2:1b", CanChat: true}), lists: 1},
		{name: "a new client lists afresh", snap: snap(map[string]string{"a": "k2"}), lists: 2},
	} {
		t.Run(st.name, func(t *testing.T) {
			src.set(st.snap, nil)
			if err := f.Reload(ctx); err != nil {
				t.Fatal(err)
			}
			if got, err := ask(f.LLM(), "llama3.2:1b"); err != nil || got != "name-a" {
				t.Fatalf("served by %q (%v), want name-a", got, err)
			}
			if n := requests(a, http.MethodGet, "/api/tags"); n != st.lists {
				t.Errorf("the backend was listed %d times, want %d", n, st.lists)
			}
		})
	}
}

func TestCatalogReads(t *testing.T) {
	for _, tt := range []struct {
		name   string
		reload bool // Reload before Run, as the local server does
	}{
		{"Run loads a catalog nobody loaded", false},
		{"Run does not load it again", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := fake(t, "llama3.2:1b")
			src := &source{snap: &catalog.Snapshot{Backends: []catalog.Backend{backend("a", catalog.TypeOllama, srv.URL(), 1)}}}
			f := newFleet(src, &providers{})
			if tt.reload {
				if err := f.Reload(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			run(t, f)
			waitFor(t, "the first sync listed the backend", func() bool { return requests(srv, http.MethodGet, "/api/tags") == 1 })
			f.Kick()
			waitFor(t, "the kicked sync listed it again", func() bool { return requests(srv, http.MethodGet, "/api/tags") == 2 })
			if n := src.read(); n != 1 {
				t.Errorf("the catalog was read %d times, want once", n)
			}
		})
	}
}
