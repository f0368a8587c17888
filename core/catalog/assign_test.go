package catalog_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/catalog"
)

func backendNames(bs []catalog.Backend) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Name)
	}
	return out
}

func groupNames(gs []catalog.Group) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.Name)
	}
	return out
}

func modelNames(ms []catalog.Model) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func TestAssignBackend(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, options{})
	b1 := mustBackend(t, f.cat, "b1", "http://b1")
	b2 := mustBackend(t, f.cat, "b2", "http://b2")
	g1, g2 := mustGroup(t, f.cat, "g1", ""), mustGroup(t, f.cat, "g2", "")
	// b2 is assigned first, but b1 is older: listings go by registration.
	must(t, f.cat.AssignBackend(ctx, tenant, g1.ID, b2.ID))
	must(t, f.cat.AssignBackend(ctx, tenant, g1.ID, b1.ID))
	must(t, f.cat.AssignBackend(ctx, tenant, g2.ID, b1.ID))

	t.Run("Twice", func(t *testing.T) {
		must(t, f.cat.AssignBackend(ctx, tenant, g1.ID, b1.ID))
		if n := len(rawIDs(t, f.store, catalog.KindBackendInGroup)); n != 3 {
			t.Errorf("%d assignments, want 3", n)
		}
	})
	t.Run("ListGroupBackends", func(t *testing.T) {
		bs, err := f.cat.ListGroupBackends(ctx, tenant, g1.ID)
		must(t, err)
		if got := backendNames(bs); !reflect.DeepEqual(got, []string{"b1", "b2"}) {
			t.Errorf("backends of g1: %v, want b1 b2", got)
		}
	})
	t.Run("ListBackendGroups", func(t *testing.T) {
		gs, err := f.cat.ListBackendGroups(ctx, tenant, b1.ID)
		must(t, err)
		if got := groupNames(gs); !reflect.DeepEqual(got, []string{"g2", "g1"}) {
			t.Errorf("groups of b1: %v, want g2 g1", got)
		}
	})
	errs := []struct {
		name     string
		call     func() error
		wantCode string
		wantMsg  string
	}{
		{"MissingGroup", func() error { return f.cat.AssignBackend(ctx, tenant, "nope", b1.ID) }, core.ENOTFOUND, `group "nope" not found`},
		{"MissingBackend", func() error { return f.cat.AssignBackend(ctx, tenant, g1.ID, "nope") }, core.ENOTFOUND, `backend "nope" not found`},
		{"UnassignNotAssigned", func() error { return f.cat.UnassignBackend(ctx, tenant, g2.ID, b2.ID) }, core.ENOTFOUND,
			`backend "` + b2.ID + `" is not assigned to group "` + g2.ID + `"`},
		{"ListGroupBackendsMissing", func() error {
			_, err := f.cat.ListGroupBackends(ctx, tenant, "nope")
			return err
		}, core.ENOTFOUND, `group "nope" not found`},
		{"ListBackendGroupsMissing", func() error {
			_, err := f.cat.ListBackendGroups(ctx, tenant, "nope")
			return err
		}, core.ENOTFOUND, `backend "nope" not found`},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, tt.call(), tt.wantCode, tt.wantMsg)
		})
	}
	t.Run("Unassign", func(t *testing.T) {
		must(t, f.cat.UnassignBackend(ctx, tenant, g1.ID, b1.ID))
		bs, err := f.cat.ListGroupBackends(ctx, tenant, g1.ID)
		must(t, err)
		if got := backendNames(bs); !reflect.DeepEqual(got, []string{"b2"}) {
			t.Errorf("backends of g1 after unassigning b1: %v", got)
		}
		wantErr(t, f.cat.UnassignBackend(ctx, tenant, g1.ID, b1.ID), core.ENOTFOUND, "is not assigned")
	})
	t.Run("DanglingSkipped", func(t *testing.T) {
		// A delete that raced an assign can leave an assignment behind;
		// listings and snapshots ignore it.
		must(t, f.store.RecordStore.DeleteRecord(ctx, tenant, catalog.KindBackend, b2.ID))
		bs, err := f.cat.ListGroupBackends(ctx, tenant, g1.ID)
		must(t, err)
		if len(bs) != 0 {
			t.Errorf("backends of g1: %v, want none", backendNames(bs))
		}
		s, err := f.cat.Snapshot(ctx, tenant)
		must(t, err)
		if _, ok := s.BackendGroups[b2.ID]; ok {
			t.Errorf("snapshot lists groups of a deleted backend: %v", s.BackendGroups)
		}
	})
}

func TestAssignModel(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, options{})
	for _, n := range []string{"x", "y", "x/y", "x/y:latest"} {
		mustModel(t, f.cat, n)
	}
	g1, g2 := mustGroup(t, f.cat, "g1", ""), mustGroup(t, f.cat, "g2", "")
	must(t, f.cat.AssignModel(ctx, tenant, g1.ID, "x/y"))
	must(t, f.cat.AssignModel(ctx, tenant, g1.ID, "x"))
	must(t, f.cat.AssignModel(ctx, tenant, g2.ID, "x/y:latest"))
	must(t, f.cat.AssignModel(ctx, tenant, g2.ID, "x/y"))
	must(t, f.cat.AssignModel(ctx, tenant, g2.ID, "x/y"))

	t.Run("RecordIDsEscaped", func(t *testing.T) {
		want := []string{g2.ID + "/x%2Fy", g2.ID + "/x%2Fy:latest", g1.ID + "/x", g1.ID + "/x%2Fy"}
		if got := rawIDs(t, f.store, catalog.KindModelInGroup); !reflect.DeepEqual(got, want) {
			t.Errorf("assignment ids %v, want %v", got, want)
		}
	})
	members := []struct {
		name  string
		group string
		want  []string
	}{
		{"G1", g1.ID, []string{"x", "x/y"}},
		{"G2", g2.ID, []string{"x/y", "x/y:latest"}},
	}
	for _, tt := range members {
		t.Run("ListGroupModels/"+tt.name, func(t *testing.T) {
			ms, err := f.cat.ListGroupModels(ctx, tenant, tt.group)
			must(t, err)
			if got := modelNames(ms); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("models %v, want %v", got, tt.want)
			}
		})
	}
	groupsOf := []struct {
		model string
		want  []string
	}{
		{"x", []string{"g1"}},
		{"y", nil},
		{"x/y", []string{"g2", "g1"}},
		{"x/y:latest", []string{"g2"}},
	}
	for _, tt := range groupsOf {
		t.Run("ListModelGroups/"+tt.model, func(t *testing.T) {
			gs, err := f.cat.ListModelGroups(ctx, tenant, tt.model)
			must(t, err)
			if got := groupNames(gs); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("groups %v, want %v", got, tt.want)
			}
		})
	}
	errs := []struct {
		name     string
		call     func() error
		wantCode string
		wantMsg  string
	}{
		{"MissingGroup", func() error { return f.cat.AssignModel(ctx, tenant, "nope", "x") }, core.ENOTFOUND, `group "nope" not found`},
		{"MissingModel", func() error { return f.cat.AssignModel(ctx, tenant, g1.ID, "a/b") }, core.ENOTFOUND, `model "a/b" not found`},
		{"UnassignNotAssigned", func() error { return f.cat.UnassignModel(ctx, tenant, g1.ID, "y") }, core.ENOTFOUND,
			`model "y" is not assigned to group "` + g1.ID + `"`},
		{"ListGroupModelsMissing", func() error {
			_, err := f.cat.ListGroupModels(ctx, tenant, "nope")
			return err
		}, core.ENOTFOUND, `group "nope" not found`},
		{"ListModelGroupsMissing", func() error {
			_, err := f.cat.ListModelGroups(ctx, tenant, "nope")
			return err
		}, core.ENOTFOUND, `model "nope" not found`},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, tt.call(), tt.wantCode, tt.wantMsg)
		})
	}
	t.Run("Unassign", func(t *testing.T) {
		must(t, f.cat.UnassignModel(ctx, tenant, g2.ID, "x/y"))
		ms, err := f.cat.ListGroupModels(ctx, tenant, g2.ID)
		must(t, err)
		if got := modelNames(ms); !reflect.DeepEqual(got, []string{"x/y:latest"}) {
			t.Errorf("models of g2 after unassigning x/y: %v", got)
		}
	})
}

func TestUnassignDefaultModel(t *testing.T) {
	defaults := catalog.Defaults{
		Embed: catalog.DefaultModel{Name: "embedder"},
		Chat:  catalog.DefaultModel{Name: "chatter"},
	}
	tests := []struct {
		name     string
		group    string
		model    string
		wantCode string
		wantMsg  string
	}{
		{"DefaultFromItsGroup", catalog.GroupEmbed, "embedder", core.EFORBIDDEN,
			`model "embedder" is the configured default embedding model and stays in built-in group "internal_embed_group"`},
		{"ChatDefaultFromItsGroup", catalog.GroupChat, "chatter", core.EFORBIDDEN, "default chat model"},
		{"DefaultFromAnotherBuiltin", catalog.GroupTasks, "embedder", "", ""},
		{"OtherModelFromBuiltin", catalog.GroupEmbed, "other", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, options{defaults: defaults})
			must(t, f.cat.Bootstrap(ctx, tenant, catalog.BootstrapConfig{}))
			mustModel(t, f.cat, "other")
			must(t, f.cat.AssignModel(ctx, tenant, tt.group, tt.model))
			err := f.cat.UnassignModel(ctx, tenant, tt.group, tt.model)
			ms, lerr := f.cat.ListGroupModels(ctx, tenant, tt.group)
			must(t, lerr)
			in := false
			for _, m := range ms {
				in = in || m.ID == tt.model
			}
			if tt.wantCode != "" {
				wantErr(t, err, tt.wantCode, tt.wantMsg)
				if !in {
					t.Errorf("the default model left its group")
				}
				return
			}
			must(t, err)
			if in {
				t.Errorf("model %q still in %q", tt.model, tt.group)
			}
		})
	}
}
