package catalog_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/catalog"
)

func TestCreateModel(t *testing.T) {
	tests := []struct {
		name string
		in   catalog.Model
		want catalog.Model
	}{
		{"Plain",
			catalog.Model{Model: "llama3", ContextLength: 8192, CanChat: true, CanStream: true},
			catalog.Model{ID: "llama3", Model: "llama3", ContextLength: 8192, CanChat: true, CanStream: true}},
		{"SlashAndColon",
			catalog.Model{Model: " library/qwen2.5:7b ", ContextLength: 1, CanPrompt: true},
			catalog.Model{ID: "library/qwen2.5:7b", Model: "library/qwen2.5:7b", ContextLength: 1, CanPrompt: true}},
		{"EmbedOnly",
			catalog.Model{Model: "nomic-embed-text", ContextLength: 2048, CanEmbed: true},
			catalog.Model{ID: "nomic-embed-text", Model: "nomic-embed-text", ContextLength: 2048, CanEmbed: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, options{})
			got, err := f.cat.CreateModel(ctx, tenant, tt.in)
			must(t, err)
			tt.want.CreatedAt = epoch().Add(1e9)
			tt.want.UpdatedAt = tt.want.CreatedAt
			if got != tt.want {
				t.Errorf("CreateModel = %+v, want %+v", got, tt.want)
			}
			read, err := f.cat.GetModel(ctx, tenant, tt.want.ID)
			must(t, err)
			if read != got {
				t.Errorf("GetModel = %+v, want %+v", read, got)
			}
			_, err = f.cat.CreateModel(ctx, tenant, tt.in)
			wantErr(t, err, core.ECONFLICT, `model: a model named "`+tt.want.Model+`" exists`)
		})
	}
}

func TestModelValidation(t *testing.T) {
	tests := []struct {
		name string
		in   catalog.Model
		want string
	}{
		{"ModelRequired", catalog.Model{Model: " ", ContextLength: 10, CanChat: true}, "model: required"},
		{"ContextZero", catalog.Model{Model: "m", CanChat: true}, "contextLength: must be greater than 0 (got 0)"},
		{"ContextNegative", catalog.Model{Model: "m", ContextLength: -1, CanChat: true}, "contextLength: must be greater than 0 (got -1)"},
		{"NoCapability", catalog.Model{Model: "m", ContextLength: 10, CanStream: true}, "canChat, canEmbed, canPrompt: at least one must be true"},
		{"AllAtOnce", catalog.Model{}, "model: required; contextLength: must be greater than 0 (got 0); canChat, canEmbed, canPrompt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, options{})
			_, err := f.cat.CreateModel(ctx, tenant, tt.in)
			wantErr(t, err, core.EINVALID, tt.want)
			if ids := rawIDs(t, f.store, catalog.KindModel); len(ids) != 0 {
				t.Fatalf("an invalid model was stored: %v", ids)
			}
			if strings.TrimSpace(tt.in.Model) == "" {
				return // an update takes its name from the path
			}
			m := mustModel(t, f.cat, "m")
			_, err = f.cat.UpdateModel(ctx, tenant, "m", tt.in)
			wantErr(t, err, core.EINVALID, tt.want)
			if got, _ := f.cat.GetModel(ctx, tenant, "m"); got != m {
				t.Errorf("an invalid update changed the model: %+v", got)
			}
		})
	}
}

func TestUpdateModel(t *testing.T) {
	tests := []struct {
		name     string
		id       string
		in       catalog.Model
		wantCode string
		wantMsg  string
	}{
		{"NoName", "org/m:1", catalog.Model{ContextLength: 100, CanEmbed: true}, "", ""},
		{"SameName", "org/m:1", catalog.Model{ID: "org/m:1", Model: "org/m:1", ContextLength: 100, CanEmbed: true}, "", ""},
		{"Rename", "org/m:1", catalog.Model{Model: "other", ContextLength: 100, CanEmbed: true}, core.EINVALID, `model: "org/m:1" cannot be renamed to "other"`},
		{"IDMismatch", "org/m:1", catalog.Model{ID: "other", ContextLength: 100, CanEmbed: true}, core.EINVALID, `id: "other" does not match the path ("org/m:1")`},
		{"Missing", "nope", catalog.Model{ContextLength: 100, CanEmbed: true}, core.ENOTFOUND, `model "nope" not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, options{})
			old := mustModel(t, f.cat, "org/m:1")
			got, err := f.cat.UpdateModel(ctx, tenant, tt.id, tt.in)
			if tt.wantCode != "" {
				wantErr(t, err, tt.wantCode, tt.wantMsg)
				return
			}
			must(t, err)
			want := catalog.Model{ID: "org/m:1", Model: "org/m:1", ContextLength: 100, CanEmbed: true, CreatedAt: old.CreatedAt, UpdatedAt: epoch().Add(2e9)}
			if got != want {
				t.Errorf("UpdateModel = %+v, want %+v", got, want)
			}
			if read, _ := f.cat.GetModel(ctx, tenant, "org/m:1"); read != want {
				t.Errorf("GetModel = %+v, want %+v", read, want)
			}
		})
	}
}

func TestDeleteModel(t *testing.T) {
	ctx := context.Background()
	defaults := catalog.Defaults{
		Embed: catalog.DefaultModel{Name: "embedder"},
		Task:  catalog.DefaultModel{Name: "tasker"},
		Chat:  catalog.DefaultModel{Name: "chatter"},
	}
	forbidden := []struct{ name, model, role string }{
		{"DefaultEmbed", "embedder", "embedding"},
		{"DefaultTask", "tasker", "task"},
		{"DefaultChat", "chatter", "chat"},
	}
	for _, tt := range forbidden {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, options{defaults: defaults})
			must(t, f.cat.Bootstrap(ctx, tenant, catalog.BootstrapConfig{}))
			wantErr(t, f.cat.DeleteModel(ctx, tenant, tt.model), core.EFORBIDDEN, `model "`+tt.model+`" is the configured default `+tt.role+` model`)
			if _, err := f.cat.GetModel(ctx, tenant, tt.model); err != nil {
				t.Errorf("the default model is gone: %v", err)
			}
		})
	}
	t.Run("RemovesAssignments", func(t *testing.T) {
		f := newFixture(t, options{defaults: defaults})
		must(t, f.cat.Bootstrap(ctx, tenant, catalog.BootstrapConfig{}))
		mustModel(t, f.cat, "org/x:1")
		g := mustGroup(t, f.cat, "g", "")
		for _, gid := range []string{g.ID, catalog.GroupChat} {
			must(t, f.cat.AssignModel(ctx, tenant, gid, "org/x:1"))
		}
		must(t, f.cat.DeleteModel(ctx, tenant, "org/x:1"))
		for _, id := range rawIDs(t, f.store, catalog.KindModelInGroup) {
			if id == g.ID+"/org%2Fx:1" || id == catalog.GroupChat+"/org%2Fx:1" {
				t.Errorf("assignment %q outlived its model", id)
			}
		}
		if n := len(rawIDs(t, f.store, catalog.KindModelInGroup)); n != 3 {
			t.Errorf("%d assignments left, want the 3 of the default models", n)
		}
		_, err := f.cat.GetModel(ctx, tenant, "org/x:1")
		wantErr(t, err, core.ENOTFOUND, `model "org/x:1" not found`)
	})
	t.Run("Missing", func(t *testing.T) {
		f := newFixture(t, options{})
		wantErr(t, f.cat.DeleteModel(ctx, tenant, "nope"), core.ENOTFOUND, `model "nope" not found`)
	})
	t.Run("AssignmentRemovalFails", func(t *testing.T) {
		f := newFixture(t, options{})
		mustModel(t, f.cat, "m")
		g := mustGroup(t, f.cat, "g", "")
		must(t, f.cat.AssignModel(ctx, tenant, g.ID, "m"))
		f.store.failDelete = catalog.KindModelInGroup
		wantErr(t, f.cat.DeleteModel(ctx, tenant, "m"), core.EUNAVAILABLE, "store is down")
		if _, err := f.cat.GetModel(ctx, tenant, "m"); err != nil {
			t.Errorf("the model was deleted though its assignments were not: %v", err)
		}
	})
}

func TestListModels(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, options{})
	for _, n := range []string{"a", "b/c:1", "d"} {
		mustModel(t, f.cat, n)
	}
	var names []string
	q := core.ListQuery{Limit: 1}
	for {
		ms, next, err := f.cat.ListModels(ctx, tenant, q)
		must(t, err)
		for _, m := range ms {
			names = append(names, m.ID)
		}
		if next == "" {
			break
		}
		q.Cursor = next
	}
	if want := []string{"d", "b/c:1", "a"}; !reflect.DeepEqual(names, want) {
		t.Errorf("models %v, want %v", names, want)
	}
	_, _, err := f.cat.ListModels(ctx, tenant, core.ListQuery{Cursor: "%%%"})
	wantErr(t, err, core.EINVALID, "cursor")
}

func TestCreateModelIDMustBeItsName(t *testing.T) {
	f := newFixture(t, options{})
	_, err := f.cat.CreateModel(context.Background(), tenant, catalog.Model{ID: "foo", Model: "bar", ContextLength: 10, CanChat: true})
	wantErr(t, err, core.EINVALID, `id: "foo" differs from model "bar"`)
	if ids := rawIDs(t, f.store, catalog.KindModel); len(ids) != 0 {
		t.Fatalf("stored %v", ids)
	}
	m, err := f.cat.CreateModel(context.Background(), tenant, catalog.Model{ID: "bar", Model: "bar", ContextLength: 10, CanChat: true})
	if err != nil || m.ID != "bar" {
		t.Fatalf("create with matching id = %+v, %v", m, err)
	}
}
