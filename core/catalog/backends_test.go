package catalog_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/catalog"
)

func TestCreateBackend(t *testing.T) {
	long := strings.Repeat("é", catalog.MaxNameLength)
	tests := []struct {
		name string
		in   catalog.Backend
		want catalog.Backend
	}{
		{"Plain",
			catalog.Backend{Name: "gpu-1", BaseURL: "http://10.0.0.1:11434", Type: "ollama"},
			catalog.Backend{Name: "gpu-1", BaseURL: "http://10.0.0.1:11434", Type: "ollama"}},
		{"Normalised",
			catalog.Backend{ID: "ignored", Name: "  vllm  ", BaseURL: " https://vllm.example/v1/ ", Type: "VLLM"},
			catalog.Backend{Name: "vllm", BaseURL: "https://vllm.example/v1", Type: "vllm"}},
		{"LongestName",
			catalog.Backend{Name: long, BaseURL: "http://h", Type: "openai"},
			catalog.Backend{Name: long, BaseURL: "http://h", Type: "openai"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, options{})
			got, err := f.cat.CreateBackend(ctx, tenant, tt.in)
			must(t, err)
			tt.want.ID = "id-001"
			tt.want.CreatedAt = epoch().Add(1e9)
			tt.want.UpdatedAt = tt.want.CreatedAt
			if got != tt.want {
				t.Errorf("CreateBackend = %+v, want %+v", got, tt.want)
			}
			read, err := f.cat.GetBackend(ctx, tenant, got.ID)
			must(t, err)
			if read != got {
				t.Errorf("GetBackend = %+v, want %+v", read, got)
			}
			r, err := f.store.GetRecord(ctx, tenant, catalog.KindBackend, got.ID)
			must(t, err)
			wantKeys := []string{"name=" + tt.want.Name, "url=" + tt.want.BaseURL}
			if !reflect.DeepEqual(r.Keys, wantKeys) {
				t.Errorf("record keys %v, want %v", r.Keys, wantKeys)
			}
		})
	}
}

func TestBackendValidation(t *testing.T) {
	valid := catalog.Backend{Name: "b", BaseURL: "http://h:1", Type: "ollama"}
	with := func(change func(b *catalog.Backend)) catalog.Backend {
		b := valid
		change(&b)
		return b
	}
	tests := []struct {
		name string
		in   catalog.Backend
		want string
	}{
		{"NameRequired", with(func(b *catalog.Backend) { b.Name = " " }), "name: required"},
		{"NameTooLong", with(func(b *catalog.Backend) { b.Name = strings.Repeat("n", 129) }), "name: longer than 128 characters"},
		{"URLRequired", with(func(b *catalog.Backend) { b.BaseURL = "" }), "baseUrl: required"},
		{"URLNotHTTP", with(func(b *catalog.Backend) { b.BaseURL = "ftp://x" }), `baseUrl: "ftp://x" is not an http(s) URL`},
		{"URLNoScheme", with(func(b *catalog.Backend) { b.BaseURL = "localhost:11434" }), `baseUrl: "localhost:11434" is not an http(s) URL`},
		{"URLRelative", with(func(b *catalog.Backend) { b.BaseURL = "/v1" }), `baseUrl: "/v1" is not an http(s) URL`},
		{"URLMalformed", with(func(b *catalog.Backend) { b.BaseURL = "http://h:port" }), `baseUrl: "http://h:port" is not an http(s) URL`},
		{"URLNoHost", with(func(b *catalog.Backend) { b.BaseURL = "http:///v1" }), `baseUrl: "http:///v1" has no host`},
		{"TypeRequired", with(func(b *catalog.Backend) { b.Type = "" }), "type: required"},
		{"TypeUnknown", with(func(b *catalog.Backend) { b.Type = "foo" }), `type: "foo" is not one of ollama, vllm, openai, gemini`},
		{"AllAtOnce", catalog.Backend{}, "name: required; baseUrl: required; type: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, options{})
			_, err := f.cat.CreateBackend(ctx, tenant, tt.in)
			wantErr(t, err, core.EINVALID, tt.want)
			if ids := rawIDs(t, f.store, catalog.KindBackend); len(ids) != 0 {
				t.Fatalf("an invalid backend was stored: %v", ids)
			}
			b, err := f.cat.CreateBackend(ctx, tenant, valid)
			must(t, err)
			_, err = f.cat.UpdateBackend(ctx, tenant, b.ID, tt.in)
			wantErr(t, err, core.EINVALID, tt.want)
			if got, _ := f.cat.GetBackend(ctx, tenant, b.ID); got != b {
				t.Errorf("an invalid update changed the backend: %+v", got)
			}
		})
	}
}

func TestBackendConflicts(t *testing.T) {
	tests := []struct {
		name   string
		in     catalog.Backend
		update bool
		want   string
	}{
		{"CreateSameName", catalog.Backend{Name: "a", BaseURL: "http://other", Type: "ollama"}, false, `name: a backend named "a" exists`},
		{"CreateSameURL", catalog.Backend{Name: "c", BaseURL: "http://a:1/", Type: "vllm"}, false, `baseUrl: a backend with URL "http://a:1" exists`},
		{"UpdateToTakenName", catalog.Backend{Name: "a", BaseURL: "http://b:1", Type: "ollama"}, true, `name: a backend named "a" exists`},
		{"UpdateToTakenURL", catalog.Backend{Name: "b", BaseURL: "http://a:1", Type: "ollama"}, true, `baseUrl: a backend with URL "http://a:1" exists`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, options{})
			mustBackend(t, f.cat, "a", "http://a:1")
			b := mustBackend(t, f.cat, "b", "http://b:1")
			var err error
			if tt.update {
				_, err = f.cat.UpdateBackend(ctx, tenant, b.ID, tt.in)
			} else {
				_, err = f.cat.CreateBackend(ctx, tenant, tt.in)
			}
			wantErr(t, err, core.ECONFLICT, tt.want)
			if n := len(rawIDs(t, f.store, catalog.KindBackend)); n != 2 {
				t.Errorf("%d backends stored, want 2", n)
			}
		})
	}
}

func TestUpdateBackend(t *testing.T) {
	tests := []struct {
		name     string
		id       string
		in       catalog.Backend
		wantCode string
		wantMsg  string
	}{
		{"Rename", "id-001", catalog.Backend{Name: "renamed", BaseURL: "http://new:2/", Type: "openai"}, "", ""},
		{"SameKeys", "id-001", catalog.Backend{ID: "id-001", Name: "a", BaseURL: "http://a:1", Type: "vllm"}, "", ""},
		{"IDMismatch", "id-001", catalog.Backend{ID: "id-002", Name: "a", BaseURL: "http://a:1", Type: "vllm"}, core.EINVALID, `id: "id-002" does not match the path ("id-001")`},
		{"Missing", "nope", catalog.Backend{Name: "x", BaseURL: "http://x", Type: "vllm"}, core.ENOTFOUND, `backend "nope" not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, options{})
			old := mustBackend(t, f.cat, "a", "http://a:1")
			got, err := f.cat.UpdateBackend(ctx, tenant, tt.id, tt.in)
			if tt.wantCode != "" {
				wantErr(t, err, tt.wantCode, tt.wantMsg)
				return
			}
			must(t, err)
			want := catalog.Backend{ID: old.ID, Name: tt.in.Name, BaseURL: strings.TrimSuffix(tt.in.BaseURL, "/"), Type: tt.in.Type,
				CreatedAt: old.CreatedAt, UpdatedAt: epoch().Add(2e9)}
			if got != want {
				t.Errorf("UpdateBackend = %+v, want %+v", got, want)
			}
			read, err := f.cat.GetBackend(ctx, tenant, old.ID)
			must(t, err)
			if read != want {
				t.Errorf("GetBackend = %+v, want %+v", read, want)
			}
			// The old keys are free again.
			if tt.in.Name != "a" {
				mustBackend(t, f.cat, "a", "http://a:1")
			}
		})
	}
}

func TestUpdateRace(t *testing.T) {
	tests := []struct {
		name string
		// races is how many updates of another writer slip in before
		// the catalog's writes.
		races    int
		wantCode string
	}{
		{"NoRace", 0, ""},
		{"OneRaceRetried", 1, ""},
		{"TwoRacesConflict", 2, core.ECONFLICT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, options{})
			b := mustBackend(t, f.cat, "a", "http://a:1")
			left := tt.races
			f.store.beforeUpdate = func(r *core.Record) {
				if left == 0 {
					return
				}
				left--
				other, err := f.store.RecordStore.GetRecord(ctx, tenant, r.Kind, r.ID)
				must(t, err)
				must(t, f.store.RecordStore.UpdateRecord(ctx, tenant, other))
			}
			_, err := f.cat.UpdateBackend(ctx, tenant, b.ID, catalog.Backend{Name: "renamed", BaseURL: "http://a:1", Type: "ollama"})
			if tt.wantCode != "" {
				wantErr(t, err, tt.wantCode, "version")
				return
			}
			must(t, err)
			got, err := f.cat.GetBackend(ctx, tenant, b.ID)
			must(t, err)
			if got.Name != "renamed" {
				t.Errorf("after the update the name is %q", got.Name)
			}
		})
	}
}

func TestDeleteBackend(t *testing.T) {
	ctx := context.Background()
	t.Run("RemovesAssignments", func(t *testing.T) {
		f := newFixture(t, options{})
		b := mustBackend(t, f.cat, "a", "http://a:1")
		keep := mustBackend(t, f.cat, "b", "http://b:1")
		g1, g2 := mustGroup(t, f.cat, "g1", ""), mustGroup(t, f.cat, "g2", "")
		for _, g := range []string{g1.ID, g2.ID} {
			must(t, f.cat.AssignBackend(ctx, tenant, g, b.ID))
		}
		must(t, f.cat.AssignBackend(ctx, tenant, g1.ID, keep.ID))
		must(t, f.cat.DeleteBackend(ctx, tenant, b.ID))
		if ids := rawIDs(t, f.store, catalog.KindBackendInGroup); !reflect.DeepEqual(ids, []string{g1.ID + "/" + keep.ID}) {
			t.Errorf("assignments left: %v, want only the other backend's", ids)
		}
		_, err := f.cat.GetBackend(ctx, tenant, b.ID)
		wantErr(t, err, core.ENOTFOUND, `backend "id-001" not found`)
	})
	t.Run("Missing", func(t *testing.T) {
		f := newFixture(t, options{})
		wantErr(t, f.cat.DeleteBackend(ctx, tenant, "nope"), core.ENOTFOUND, `backend "nope" not found`)
	})
	t.Run("AssignmentRemovalFails", func(t *testing.T) {
		f := newFixture(t, options{})
		b := mustBackend(t, f.cat, "a", "http://a:1")
		g := mustGroup(t, f.cat, "g", "")
		must(t, f.cat.AssignBackend(ctx, tenant, g.ID, b.ID))
		f.store.failDelete = catalog.KindBackendInGroup
		wantErr(t, f.cat.DeleteBackend(ctx, tenant, b.ID), core.EUNAVAILABLE, "store is down")
		if _, err := f.cat.GetBackend(ctx, tenant, b.ID); err != nil {
			t.Errorf("the backend was deleted though its assignments were not: %v", err)
		}
	})
}

func TestListBackends(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, options{})
	for _, n := range []string{"a", "b", "c"} {
		mustBackend(t, f.cat, n, "http://"+n)
	}
	first, next, err := f.cat.ListBackends(ctx, tenant, core.ListQuery{Limit: 2})
	must(t, err)
	second, last, err := f.cat.ListBackends(ctx, tenant, core.ListQuery{Limit: 2, Cursor: next})
	must(t, err)
	var names []string
	for _, b := range append(first, second...) {
		names = append(names, b.Name)
	}
	if !reflect.DeepEqual(names, []string{"c", "b", "a"}) || next == "" || last != "" {
		t.Errorf("pages %v (next %q, last %q), want c b | a", names, next, last)
	}
	_, _, err = f.cat.ListBackends(ctx, tenant, core.ListQuery{Limit: -5})
	wantErr(t, err, core.EINVALID, "limit")
}
