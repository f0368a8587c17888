package catalog_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/catalog"
)

func TestCreateGroup(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, options{})
	g, err := f.cat.CreateGroup(ctx, tenant, catalog.Group{ID: "ignored", Name: " fast ", PurposeType: " Chat "})
	must(t, err)
	want := catalog.Group{ID: "id-001", Name: "fast", PurposeType: "Chat", CreatedAt: epoch().Add(1e9), UpdatedAt: epoch().Add(1e9)}
	if g != want {
		t.Fatalf("CreateGroup = %+v, want %+v", g, want)
	}
	reads := []struct {
		name string
		get  func() (catalog.Group, error)
	}{
		{"ByID", func() (catalog.Group, error) { return f.cat.GetGroup(ctx, tenant, "id-001") }},
		{"ByName", func() (catalog.Group, error) { return f.cat.GetGroupByName(ctx, tenant, "fast") }},
	}
	for _, tt := range reads {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.get()
			must(t, err)
			if got != want {
				t.Errorf("read %+v, want %+v", got, want)
			}
		})
	}
	errs := []struct {
		name     string
		call     func() error
		wantCode string
		wantMsg  string
	}{
		{"DuplicateName", func() error {
			_, err := f.cat.CreateGroup(ctx, tenant, catalog.Group{Name: "fast"})
			return err
		}, core.ECONFLICT, `name: a group named "fast" exists`},
		{"NameRequired", func() error {
			_, err := f.cat.CreateGroup(ctx, tenant, catalog.Group{PurposeType: "Chat"})
			return err
		}, core.EINVALID, "name: required"},
		{"NameTooLong", func() error {
			_, err := f.cat.CreateGroup(ctx, tenant, catalog.Group{Name: strings.Repeat("g", 129)})
			return err
		}, core.EINVALID, "name: longer than 128 characters"},
		{"BuiltinName", func() error {
			_, err := f.cat.CreateGroup(ctx, tenant, catalog.Group{Name: catalog.GroupChat})
			return err
		}, core.EFORBIDDEN, `name: "internal_chat_group" is reserved for a built-in group`},
		{"GetMissing", func() error {
			_, err := f.cat.GetGroup(ctx, tenant, "nope")
			return err
		}, core.ENOTFOUND, `group "nope" not found`},
		{"GetByNameMissing", func() error {
			_, err := f.cat.GetGroupByName(ctx, tenant, "nope")
			return err
		}, core.ENOTFOUND, `group named "nope" not found`},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, tt.call(), tt.wantCode, tt.wantMsg)
		})
	}
	if n := len(rawIDs(t, f.store, catalog.KindGroup)); n != 1 {
		t.Errorf("%d groups stored, want 1", n)
	}
}

func TestUpdateGroup(t *testing.T) {
	tests := []struct {
		name     string
		id       string
		in       catalog.Group
		want     catalog.Group
		wantCode string
		wantMsg  string
	}{
		{name: "Rename", id: "id-001", in: catalog.Group{Name: "renamed", PurposeType: "Tasks"},
			want: catalog.Group{ID: "id-001", Name: "renamed", PurposeType: "Tasks"}},
		{name: "BuiltinKeepsName", id: catalog.GroupChat, in: catalog.Group{Name: catalog.GroupChat},
			want: catalog.Group{ID: catalog.GroupChat, Name: catalog.GroupChat, PurposeType: catalog.PurposeChat}},
		{name: "BuiltinRename", id: catalog.GroupChat, in: catalog.Group{Name: "chat"},
			wantCode: core.EFORBIDDEN, wantMsg: `group "internal_chat_group" is built in and cannot be renamed`},
		{name: "BuiltinPurpose", id: catalog.GroupEmbed, in: catalog.Group{Name: catalog.GroupEmbed, PurposeType: "Chat"},
			wantCode: core.EFORBIDDEN, wantMsg: `purposeType: group "internal_embed_group" is built in; its purpose stays "Embedder"`},
		{name: "ToBuiltinName", id: "id-001", in: catalog.Group{Name: catalog.GroupTasks},
			wantCode: core.EFORBIDDEN, wantMsg: `name: "internal_tasks_group" is reserved for a built-in group`},
		{name: "ToTakenName", id: "id-001", in: catalog.Group{Name: "b"},
			wantCode: core.ECONFLICT, wantMsg: `name: a group named "b" exists`},
		{name: "NameRequired", id: "id-001", in: catalog.Group{PurposeType: "x"},
			wantCode: core.EINVALID, wantMsg: "name: required"},
		{name: "IDMismatch", id: "id-001", in: catalog.Group{ID: "id-002", Name: "a"},
			wantCode: core.EINVALID, wantMsg: `id: "id-002" does not match the path ("id-001")`},
		{name: "Missing", id: "nope", in: catalog.Group{Name: "x"},
			wantCode: core.ENOTFOUND, wantMsg: `group "nope" not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, options{})
			mustGroup(t, f.cat, "a", "Chat")
			mustGroup(t, f.cat, "b", "Chat")
			must(t, f.cat.EnsureBuiltinGroups(ctx, tenant))
			before, err := f.cat.ListGroups(ctx, tenant)
			must(t, err)
			got, err := f.cat.UpdateGroup(ctx, tenant, tt.id, tt.in)
			if tt.wantCode != "" {
				wantErr(t, err, tt.wantCode, tt.wantMsg)
				after, err := f.cat.ListGroups(ctx, tenant)
				must(t, err)
				if !reflect.DeepEqual(after, before) {
					t.Errorf("a failed update changed the groups:\n%+v\nwant\n%+v", after, before)
				}
				return
			}
			must(t, err)
			old, _ := findGroup(before, tt.id)
			tt.want.CreatedAt = old.CreatedAt
			if got.UpdatedAt.Compare(old.UpdatedAt) <= 0 {
				t.Errorf("UpdatedAt %v not after %v", got.UpdatedAt, old.UpdatedAt)
			}
			tt.want.UpdatedAt = got.UpdatedAt
			if got != tt.want {
				t.Errorf("UpdateGroup = %+v, want %+v", got, tt.want)
			}
			if read, _ := f.cat.GetGroupByName(ctx, tenant, tt.want.Name); read != tt.want {
				t.Errorf("GetGroupByName = %+v, want %+v", read, tt.want)
			}
		})
	}
}

func findGroup(gs []catalog.Group, id string) (catalog.Group, bool) {
	for _, g := range gs {
		if g.ID == id {
			return g, true
		}
	}
	return catalog.Group{}, false
}

func TestDeleteGroup(t *testing.T) {
	ctx := context.Background()
	for _, id := range []string{catalog.GroupEmbed, catalog.GroupTasks, catalog.GroupChat} {
		t.Run("Builtin/"+id, func(t *testing.T) {
			f := newFixture(t, options{})
			must(t, f.cat.EnsureBuiltinGroups(ctx, tenant))
			wantErr(t, f.cat.DeleteGroup(ctx, tenant, id), core.EFORBIDDEN, `group "`+id+`" is built in and cannot be deleted`)
			if _, err := f.cat.GetGroup(ctx, tenant, id); err != nil {
				t.Errorf("built-in group gone: %v", err)
			}
		})
	}
	t.Run("RemovesAssignments", func(t *testing.T) {
		f := newFixture(t, options{})
		b := mustBackend(t, f.cat, "b", "http://b")
		mustModel(t, f.cat, "m/1")
		g, other := mustGroup(t, f.cat, "g", ""), mustGroup(t, f.cat, "other", "")
		for _, gid := range []string{g.ID, other.ID} {
			must(t, f.cat.AssignBackend(ctx, tenant, gid, b.ID))
			must(t, f.cat.AssignModel(ctx, tenant, gid, "m/1"))
		}
		must(t, f.cat.DeleteGroup(ctx, tenant, g.ID))
		if got := rawIDs(t, f.store, catalog.KindBackendInGroup); !reflect.DeepEqual(got, []string{other.ID + "/" + b.ID}) {
			t.Errorf("backend assignments %v, want only the other group's", got)
		}
		if got := rawIDs(t, f.store, catalog.KindModelInGroup); !reflect.DeepEqual(got, []string{other.ID + "/m%2F1"}) {
			t.Errorf("model assignments %v, want only the other group's", got)
		}
		_, err := f.cat.GetGroup(ctx, tenant, g.ID)
		wantErr(t, err, core.ENOTFOUND, "not found")
	})
	t.Run("Missing", func(t *testing.T) {
		f := newFixture(t, options{})
		wantErr(t, f.cat.DeleteGroup(ctx, tenant, "nope"), core.ENOTFOUND, `group "nope" not found`)
	})
	for _, kind := range []string{catalog.KindBackendInGroup, catalog.KindModelInGroup} {
		t.Run("AssignmentRemovalFails/"+kind, func(t *testing.T) {
			f := newFixture(t, options{})
			b := mustBackend(t, f.cat, "b", "http://b")
			mustModel(t, f.cat, "m")
			g := mustGroup(t, f.cat, "g", "")
			must(t, f.cat.AssignBackend(ctx, tenant, g.ID, b.ID))
			must(t, f.cat.AssignModel(ctx, tenant, g.ID, "m"))
			f.store.failDelete = kind
			wantErr(t, f.cat.DeleteGroup(ctx, tenant, g.ID), core.EUNAVAILABLE, "store is down")
			if _, err := f.cat.GetGroup(ctx, tenant, g.ID); err != nil {
				t.Errorf("the group was deleted though its assignments were not: %v", err)
			}
		})
	}
}

func TestListGroupsByPurpose(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, options{})
	// Newest first: c4 e3 c3 c2 e2 c1 e1.
	for _, n := range []string{"e1", "c1", "e2", "c2", "c3", "e3", "c4"} {
		purpose := "Chat"
		if n[0] == 'e' {
			purpose = "Embedder"
		}
		mustGroup(t, f.cat, n, purpose)
	}
	tests := []struct {
		name    string
		purpose string
		limit   int
		want    [][]string
	}{
		{"ChatByTwo", "Chat", 2, [][]string{{"c4", "c3"}, {"c2", "c1"}}},
		{"ChatByThree", "Chat", 3, [][]string{{"c4", "c3", "c2"}, {"c1"}}},
		{"EmbedderAll", "Embedder", 0, [][]string{{"e3", "e2", "e1"}}},
		{"EmbedderExactPage", "Embedder", 3, [][]string{{"e3", "e2", "e1"}}},
		{"None", "Tasks", 2, [][]string{nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pages [][]string
			q := core.ListQuery{Limit: tt.limit}
			for {
				gs, next, err := f.cat.ListGroupsByPurpose(ctx, tenant, tt.purpose, q)
				must(t, err)
				var names []string
				for _, g := range gs {
					names = append(names, g.Name)
				}
				pages = append(pages, names)
				if next == "" {
					break
				}
				q.Cursor = next
			}
			if !reflect.DeepEqual(pages, tt.want) {
				t.Errorf("pages %v, want %v", pages, tt.want)
			}
		})
	}
	t.Run("BadLimit", func(t *testing.T) {
		_, _, err := f.cat.ListGroupsByPurpose(ctx, tenant, "Chat", core.ListQuery{Limit: 5000})
		wantErr(t, err, core.EINVALID, "limit")
	})
	t.Run("ListGroups", func(t *testing.T) {
		gs, err := f.cat.ListGroups(ctx, tenant)
		must(t, err)
		if len(gs) != 7 || gs[0].Name != "c4" || gs[6].Name != "e1" {
			t.Errorf("ListGroups = %+v, want all 7 newest first", gs)
		}
	})
}

func TestEnsureBuiltinGroups(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, options{})
	must(t, f.cat.EnsureBuiltinGroups(ctx, tenant))
	first := rawRecords(t, f.store, catalog.KindGroup)
	must(t, f.cat.EnsureBuiltinGroups(ctx, tenant))
	if again := rawRecords(t, f.store, catalog.KindGroup); !reflect.DeepEqual(again, first) {
		t.Errorf("a second run changed the groups:\n%v\nwant\n%v", again, first)
	}
	for _, want := range []struct{ id, purpose string }{
		{catalog.GroupEmbed, "Embedder"}, {catalog.GroupTasks, "Tasks"}, {catalog.GroupChat, "Chat"},
	} {
		t.Run(want.id, func(t *testing.T) {
			g, err := f.cat.GetGroupByName(ctx, tenant, want.id)
			must(t, err)
			if g.ID != want.id || g.PurposeType != want.purpose {
				t.Errorf("built-in group %+v, want id %q purpose %q", g, want.id, want.purpose)
			}
		})
	}
}

// rawRecords returns every record of kind as stored, for comparisons of
// versions and bodies.
func rawRecords(t *testing.T, s core.RecordStore, kind string) []*core.Record {
	t.Helper()
	page, err := s.ListRecords(context.Background(), tenant, kind, core.ListQuery{Limit: core.MaxPageSize})
	must(t, err)
	return page.Records
}

func TestGroupListingsSpanStorePages(t *testing.T) {
	// More groups than one store page holds: the catalog must follow the
	// store's cursors.
	ctx := context.Background()
	f := newFixture(t, options{})
	n := core.MaxPageSize + 5
	for i := range n {
		purpose := "Chat"
		if i%2 == 1 {
			purpose = "Tasks"
		}
		mustGroup(t, f.cat, fmt.Sprintf("g%04d", i), purpose)
	}
	all, err := f.cat.ListGroups(ctx, tenant)
	must(t, err)
	if len(all) != n {
		t.Errorf("ListGroups returned %d groups, want %d", len(all), n)
	}
	seen := map[string]bool{}
	q := core.ListQuery{Limit: 300}
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		gs, next, err := f.cat.ListGroupsByPurpose(ctx, tenant, "Tasks", q)
		must(t, err)
		for _, g := range gs {
			if g.PurposeType != "Tasks" || seen[g.ID] {
				t.Fatalf("group %+v listed twice or of the wrong purpose", g)
			}
			seen[g.ID] = true
		}
		if next == "" {
			break
		}
		q.Cursor = next
	}
	if len(seen) != n/2 {
		t.Errorf("listed %d Tasks groups, want %d", len(seen), n/2)
	}
}
