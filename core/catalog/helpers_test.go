package catalog_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/catalog"
	"github.com/stepwise-run/stepwise/core/seal"
	"github.com/stepwise-run/stepwise/infra/mem"
)

const tenant = "t1"

// epoch is the fake clock's first reading.
func epoch() time.Time { return time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC) }

// clock is a fake clock that moves one second on every reading, so that
// records created one after the other sort by creation.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

// fixture is a Catalog over an in-memory store, with its parts.
type fixture struct {
	cat   *catalog.Catalog
	store *faultStore
	box   *seal.Box
}

// options tune newFixture.
type options struct {
	defaults catalog.Defaults
	noSealer bool
}

func newFixture(t *testing.T, o options) *fixture {
	t.Helper()
	box, err := seal.New(seal.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	store := &faultStore{RecordStore: mem.New()}
	var ids sync.Mutex
	n := 0
	cfg := catalog.Config{
		Store:    store,
		Sealer:   box,
		Defaults: o.defaults,
		Now:      (&clock{t: epoch()}).Now,
		NewID: func() string {
			ids.Lock()
			defer ids.Unlock()
			n++
			return fmt.Sprintf("id-%03d", n)
		},
	}
	if o.noSealer {
		cfg.Sealer = nil
	}
	return &fixture{cat: catalog.New(cfg), store: store, box: box}
}

// faultStore is a RecordStore that fails chosen calls, to check that the
// catalog stops at the first failure and reports it.
type faultStore struct {
	core.RecordStore
	mu sync.Mutex
	// failDelete fails DeleteRecord of this kind.
	failDelete string
	// beforeUpdate runs before every UpdateRecord; it may simulate a
	// concurrent writer.
	beforeUpdate func(r *core.Record)
}

func (s *faultStore) DeleteRecord(ctx context.Context, tenant, kind, id string) error {
	s.mu.Lock()
	fail := s.failDelete == kind
	s.mu.Unlock()
	if fail {
		return core.Errorf(core.EUNAVAILABLE, "store is down")
	}
	return s.RecordStore.DeleteRecord(ctx, tenant, kind, id)
}

func (s *faultStore) UpdateRecord(ctx context.Context, tenant string, r *core.Record) error {
	s.mu.Lock()
	before := s.beforeUpdate
	s.mu.Unlock()
	if before != nil {
		before(r)
	}
	return s.RecordStore.UpdateRecord(ctx, tenant, r)
}

// wantErr checks an error's code and that its message says want.
func wantErr(t *testing.T, err error, code, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s %q", code, want)
	}
	if got := core.ErrorCode(err); got != code {
		t.Errorf("code = %s, want %s (error %q)", got, code, err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
}

// must fails the test on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustBackend(t *testing.T, c *catalog.Catalog, name, url string) catalog.Backend {
	t.Helper()
	b, err := c.CreateBackend(context.Background(), tenant, catalog.Backend{Name: name, BaseURL: url, Type: catalog.TypeOllama})
	must(t, err)
	return b
}

func mustModel(t *testing.T, c *catalog.Catalog, name string) catalog.Model {
	t.Helper()
	m, err := c.CreateModel(context.Background(), tenant, catalog.Model{Model: name, ContextLength: 4096, CanChat: true})
	must(t, err)
	return m
}

func mustGroup(t *testing.T, c *catalog.Catalog, name, purpose string) catalog.Group {
	t.Helper()
	g, err := c.CreateGroup(context.Background(), tenant, catalog.Group{Name: name, PurposeType: purpose})
	must(t, err)
	return g
}

// rawIDs lists the ids of every record of kind, straight from the store.
func rawIDs(t *testing.T, s core.RecordStore, kind string) []string {
	t.Helper()
	var ids []string
	for _, r := range rawRecords(t, s, kind) {
		ids = append(ids, r.ID)
	}
	return ids
}
