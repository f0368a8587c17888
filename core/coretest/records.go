package coretest

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// RecordStoreSuite checks a RecordStore: creation, reads by id and by key,
// compare-and-swap updates, key uniqueness, deletion, newest-first paging,
// tenant isolation, kinds as separate namespaces, and that a failed call
// changes nothing. newStore must return an empty store.
func RecordStoreSuite(t *testing.T, newStore func(t *testing.T) core.RecordStore) {
	t.Run("Create", func(t *testing.T) { recordCreateTests(t, newStore) })
	t.Run("Update", func(t *testing.T) { recordUpdateTests(t, newStore) })
	t.Run("List", func(t *testing.T) { recordListTests(t, newStore) })
	t.Run("Isolation", func(t *testing.T) { recordIsolationTests(t, newStore) })
}

// recordTime is the base instant of the suite's records. Its nanoseconds
// and non-UTC zone check that stores keep the instant exactly.
func recordTime() time.Time {
	return time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("UTC+1", 3600))
}

// NewRecord returns a record of kind with id, created (and updated) at
// createdAt, whose body names its id.
func NewRecord(kind, id string, createdAt time.Time, keys ...string) *core.Record {
	return &core.Record{
		Kind: kind, ID: id, Keys: keys,
		Body:      []byte(fmt.Sprintf(`{"id":%q,"n":1}`, id)),
		CreatedAt: createdAt, UpdatedAt: createdAt,
	}
}

func recordCreateTests(t *testing.T, newStore func(t *testing.T) core.RecordStore) {
	ctx := context.Background()

	t.Run("SetsVersionOneAndRoundTrips", func(t *testing.T) {
		s := newStore(t)
		r := NewRecord("backend", "b1", recordTime(), "name=local", "url=http://127.0.0.1:11434")
		r.UpdatedAt = recordTime().Add(time.Nanosecond)
		r.Body = []byte(`{"name": "local",  "nested": {"list": [1, 2.5, "é"]}}`)
		mustCreateRecord(t, s, "default", r)
		if r.Version != 1 {
			t.Errorf("Version after create = %d, want 1", r.Version)
		}
		got := mustGetRecord(t, s, "default", "backend", "b1")
		wantRecord(t, got, r)
		found, err := s.FindRecord(ctx, "default", "backend", "url=http://127.0.0.1:11434")
		if err != nil {
			t.Fatalf("FindRecord: %v", err)
		}
		wantRecord(t, found, r)
	})

	t.Run("DuplicateIDIsConflictAndStoresNothing", func(t *testing.T) {
		s := newStore(t)
		first := NewRecord("model", "m1", recordTime(), "name=first")
		mustCreateRecord(t, s, "default", first)
		dup := NewRecord("model", "m1", recordTime().Add(time.Hour), "name=second")
		dup.Body = []byte(`{"second":true}`)
		wantCode(t, s.CreateRecord(ctx, "default", dup), core.ECONFLICT)
		wantRecord(t, mustGetRecord(t, s, "default", "model", "m1"), first)
		_, err := s.FindRecord(ctx, "default", "model", "name=second")
		wantCode(t, err, core.ENOTFOUND)
	})

	t.Run("DuplicateKeyIsConflictAndStoresNothing", func(t *testing.T) {
		s := newStore(t)
		mustCreateRecord(t, s, "default", NewRecord("model", "m1", recordTime(), "name=shared"))
		dup := NewRecord("model", "m2", recordTime(), "alias=fresh", "name=shared")
		wantCode(t, s.CreateRecord(ctx, "default", dup), core.ECONFLICT)
		_, err := s.GetRecord(ctx, "default", "model", "m2")
		wantCode(t, err, core.ENOTFOUND)
		_, err = s.FindRecord(ctx, "default", "model", "alias=fresh")
		wantCode(t, err, core.ENOTFOUND)
		if got, err := s.FindRecord(ctx, "default", "model", "name=shared"); err != nil || got.ID != "m1" {
			t.Errorf("FindRecord(name=shared) = %v, %v; want m1", got, err)
		}
	})

	t.Run("MissingIsNotFound", func(t *testing.T) {
		s := newStore(t)
		mustCreateRecord(t, s, "default", NewRecord("group", "present", recordTime(), "name=present"))
		tests := []struct {
			name string
			call func() error
		}{
			{"Get", func() error { _, err := s.GetRecord(ctx, "default", "group", "absent"); return err }},
			{"Find", func() error { _, err := s.FindRecord(ctx, "default", "group", "name=absent"); return err }},
			{"Update", func() error {
				r := NewRecord("group", "absent", recordTime())
				r.Version = 1
				return s.UpdateRecord(ctx, "default", r)
			}},
			{"Delete", func() error { return s.DeleteRecord(ctx, "default", "group", "absent") }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) { wantCode(t, tt.call(), core.ENOTFOUND) })
		}
	})

	t.Run("DeleteRemovesTheRecordAndReleasesItsKeys", func(t *testing.T) {
		s := newStore(t)
		mustCreateRecord(t, s, "default", NewRecord("chain", "c1", recordTime(), "name=c"))
		if err := s.DeleteRecord(ctx, "default", "chain", "c1"); err != nil {
			t.Fatalf("DeleteRecord: %v", err)
		}
		_, err := s.GetRecord(ctx, "default", "chain", "c1")
		wantCode(t, err, core.ENOTFOUND)
		_, err = s.FindRecord(ctx, "default", "chain", "name=c")
		wantCode(t, err, core.ENOTFOUND)
		wantCode(t, s.DeleteRecord(ctx, "default", "chain", "c1"), core.ENOTFOUND)
		if ids, _ := listIDs(t, s, "default", "chain", core.ListQuery{}); len(ids) != 0 {
			t.Errorf("ListRecords after delete = %v, want none", ids)
		}
		again := NewRecord("chain", "c2", recordTime(), "name=c")
		mustCreateRecord(t, s, "default", again)
		if got, err := s.FindRecord(ctx, "default", "chain", "name=c"); err != nil || got.ID != "c2" {
			t.Errorf("FindRecord(name=c) after reuse = %v, %v; want c2", got, err)
		}
		reborn := NewRecord("chain", "c1", recordTime())
		mustCreateRecord(t, s, "default", reborn)
		if reborn.Version != 1 {
			t.Errorf("Version of a record created again after delete = %d, want 1", reborn.Version)
		}
	})

	t.Run("ReturnedRecordsDoNotAliasTheStore", func(t *testing.T) {
		s := newStore(t)
		r := NewRecord("backend", "alias", recordTime(), "name=kept")
		mustCreateRecord(t, s, "default", r)
		want := NewRecord("backend", "alias", recordTime(), "name=kept")
		want.Version = 1
		r.Body[2] = 'X'
		r.Keys[0] = "name=changed-by-caller"
		got := mustGetRecord(t, s, "default", "backend", "alias")
		got.Body[2] = 'Y'
		got.Keys[0] = "name=changed-after-get"
		found, err := s.FindRecord(ctx, "default", "backend", "name=kept")
		if err != nil {
			t.Fatalf("FindRecord: %v", err)
		}
		found.Body[2] = 'Z'
		page, err := s.ListRecords(ctx, "default", "backend", core.ListQuery{})
		if err != nil || len(page.Records) != 1 {
			t.Fatalf("ListRecords = %v, %v; want one record", page, err)
		}
		page.Records[0].Body[2] = 'W'
		page.Records[0].Keys[0] = "name=changed-after-list"
		wantRecord(t, mustGetRecord(t, s, "default", "backend", "alias"), want)
	})
}

func recordUpdateTests(t *testing.T, newStore func(t *testing.T) core.RecordStore) {
	ctx := context.Background()

	t.Run("CompareAndSwap", func(t *testing.T) {
		s := newStore(t)
		r := NewRecord("model", "m1", recordTime(), "name=m1")
		mustCreateRecord(t, s, "default", r)
		stale := *r
		r.Body = []byte(`{"v":2}`)
		r.UpdatedAt = recordTime().Add(time.Minute)
		if err := s.UpdateRecord(ctx, "default", r); err != nil {
			t.Fatalf("UpdateRecord: %v", err)
		}
		if r.Version != 2 {
			t.Errorf("Version after update = %d, want 2", r.Version)
		}
		wantRecord(t, mustGetRecord(t, s, "default", "model", "m1"), r)
		stale.Body = []byte(`{"stale":true}`)
		stale.Keys = []string{"name=stale"}
		wantCode(t, s.UpdateRecord(ctx, "default", &stale), core.ECONFLICT)
		if stale.Version != 1 {
			t.Errorf("Version after a failed update = %d, want it left at 1", stale.Version)
		}
		wantRecord(t, mustGetRecord(t, s, "default", "model", "m1"), r)
		_, err := s.FindRecord(ctx, "default", "model", "name=stale")
		wantCode(t, err, core.ENOTFOUND)
	})

	t.Run("KeepsCreatedAt", func(t *testing.T) {
		s := newStore(t)
		r := NewRecord("model", "m1", recordTime())
		mustCreateRecord(t, s, "default", r)
		r.CreatedAt = recordTime().Add(48 * time.Hour)
		r.UpdatedAt = recordTime().Add(time.Hour + time.Nanosecond)
		if err := s.UpdateRecord(ctx, "default", r); err != nil {
			t.Fatalf("UpdateRecord: %v", err)
		}
		got := mustGetRecord(t, s, "default", "model", "m1")
		if !got.CreatedAt.Equal(recordTime()) || !got.UpdatedAt.Equal(r.UpdatedAt) {
			t.Errorf("after update CreatedAt = %v, UpdatedAt = %v; want %v (kept) and %v", got.CreatedAt, got.UpdatedAt, recordTime(), r.UpdatedAt)
		}
	})

	t.Run("TakingAnotherRecordsKeyIsConflictAndChangesNothing", func(t *testing.T) {
		s := newStore(t)
		mustCreateRecord(t, s, "default", NewRecord("backend", "a", recordTime(), "name=a"))
		b := NewRecord("backend", "b", recordTime(), "name=b")
		mustCreateRecord(t, s, "default", b)
		want := *b
		next := *b
		next.Keys = []string{"url=new", "name=a"}
		next.Body = []byte(`{"changed":true}`)
		wantCode(t, s.UpdateRecord(ctx, "default", &next), core.ECONFLICT)
		wantRecord(t, mustGetRecord(t, s, "default", "backend", "b"), &want)
		if got, err := s.FindRecord(ctx, "default", "backend", "name=b"); err != nil || got.ID != "b" {
			t.Errorf("FindRecord(name=b) = %v, %v; want b to keep its key", got, err)
		}
		if got, err := s.FindRecord(ctx, "default", "backend", "name=a"); err != nil || got.ID != "a" {
			t.Errorf("FindRecord(name=a) = %v, %v; want a to keep its key", got, err)
		}
		_, err := s.FindRecord(ctx, "default", "backend", "url=new")
		wantCode(t, err, core.ENOTFOUND)
	})

	t.Run("KeysReleasedByUpdateCanBeReused", func(t *testing.T) {
		s := newStore(t)
		a := NewRecord("backend", "a", recordTime(), "name=old", "url=kept")
		mustCreateRecord(t, s, "default", a)
		a.Keys = []string{"url=kept", "name=new"}
		if err := s.UpdateRecord(ctx, "default", a); err != nil {
			t.Fatalf("UpdateRecord: %v", err)
		}
		_, err := s.FindRecord(ctx, "default", "backend", "name=old")
		wantCode(t, err, core.ENOTFOUND)
		for _, k := range a.Keys {
			if got, err := s.FindRecord(ctx, "default", "backend", k); err != nil || got.ID != "a" {
				t.Errorf("FindRecord(%s) = %v, %v; want a", k, got, err)
			}
		}
		mustCreateRecord(t, s, "default", NewRecord("backend", "b", recordTime(), "name=old"))
		if got, err := s.FindRecord(ctx, "default", "backend", "name=old"); err != nil || got.ID != "b" {
			t.Errorf("FindRecord(name=old) = %v, %v; want b", got, err)
		}
	})

	t.Run("ConcurrentUpdatesHaveOneWinner", func(t *testing.T) {
		s := newStore(t)
		r := NewRecord("chain", "race", recordTime(), "name=race")
		mustCreateRecord(t, s, "default", r)
		const n = 8
		var wg sync.WaitGroup
		errs := make([]error, n)
		mine := make([]core.Record, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mine[i] = *r
				mine[i].Body = []byte(fmt.Sprintf(`{"worker":%d}`, i))
				mine[i].Keys = []string{fmt.Sprintf("worker=%d", i)}
				errs[i] = s.UpdateRecord(ctx, "default", &mine[i])
			}()
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch core.ErrorCode(err) {
			case "":
				if winner >= 0 {
					t.Errorf("workers %d and %d both won", winner, i)
				}
				winner = i
			case core.ECONFLICT:
			default:
				t.Errorf("worker %d: unexpected error: %v", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("no update won the race")
		}
		wantRecord(t, mustGetRecord(t, s, "default", "chain", "race"), &mine[winner])
		for i := range n {
			_, err := s.FindRecord(ctx, "default", "chain", fmt.Sprintf("worker=%d", i))
			if i != winner {
				wantCode(t, err, core.ENOTFOUND)
			} else if err != nil {
				t.Errorf("the winner's key is not stored: %v", err)
			}
		}
	})
}

func recordIsolationTests(t *testing.T, newStore func(t *testing.T) core.RecordStore) {
	ctx := context.Background()

	t.Run("TenantsAreIsolated", func(t *testing.T) {
		s := newStore(t)
		a := NewRecord("backend", "same", recordTime(), "name=same")
		mustCreateRecord(t, s, "tenant-a", a)
		other := NewRecord("backend", "same", recordTime(), "name=same")
		other.Version = 1
		tests := []struct {
			name string
			call func() error
		}{
			{"Get", func() error { _, err := s.GetRecord(ctx, "tenant-b", "backend", "same"); return err }},
			{"Find", func() error { _, err := s.FindRecord(ctx, "tenant-b", "backend", "name=same"); return err }},
			{"Update", func() error { return s.UpdateRecord(ctx, "tenant-b", other) }},
			{"Delete", func() error { return s.DeleteRecord(ctx, "tenant-b", "backend", "same") }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) { wantCode(t, tt.call(), core.ENOTFOUND) })
		}
		t.Run("List", func(t *testing.T) {
			if ids, _ := listIDs(t, s, "tenant-b", "backend", core.ListQuery{}); len(ids) != 0 {
				t.Errorf("tenant-b lists %v, want none", ids)
			}
		})
		t.Run("CreateWithTheSameIDAndKeys", func(t *testing.T) {
			b := NewRecord("backend", "same", recordTime().Add(time.Hour), "name=same")
			b.Body = []byte(`{"tenant":"b"}`)
			mustCreateRecord(t, s, "tenant-b", b)
			b.Body = []byte(`{"tenant":"b","v":2}`)
			if err := s.UpdateRecord(ctx, "tenant-b", b); err != nil {
				t.Fatalf("tenant-b UpdateRecord: %v", err)
			}
			if err := s.DeleteRecord(ctx, "tenant-b", "backend", "same"); err != nil {
				t.Fatalf("tenant-b DeleteRecord: %v", err)
			}
		})
		wantRecord(t, mustGetRecord(t, s, "tenant-a", "backend", "same"), a)
		if got, err := s.FindRecord(ctx, "tenant-a", "backend", "name=same"); err != nil || got.ID != "same" {
			t.Errorf("tenant-a FindRecord = %v, %v; want its record", got, err)
		}
	})

	t.Run("KindsAreSeparateNamespaces", func(t *testing.T) {
		s := newStore(t)
		m := NewRecord("model", "x", recordTime(), "name=x")
		g := NewRecord("group", "x", recordTime(), "name=x")
		g.Body = []byte(`{"group":true}`)
		mustCreateRecord(t, s, "default", m)
		mustCreateRecord(t, s, "default", g)
		wantRecord(t, mustGetRecord(t, s, "default", "model", "x"), m)
		wantRecord(t, mustGetRecord(t, s, "default", "group", "x"), g)
		if err := s.DeleteRecord(ctx, "default", "model", "x"); err != nil {
			t.Fatalf("DeleteRecord: %v", err)
		}
		if got, err := s.FindRecord(ctx, "default", "group", "name=x"); err != nil || !bytes.Equal(got.Body, g.Body) {
			t.Errorf("group FindRecord after the model's delete = %v, %v; want the group", got, err)
		}
		if ids, _ := listIDs(t, s, "default", "model", core.ListQuery{}); len(ids) != 0 {
			t.Errorf("models = %v after delete, want none", ids)
		}
	})
}

func mustCreateRecord(t *testing.T, s core.RecordStore, tenant string, r *core.Record) {
	t.Helper()
	if err := s.CreateRecord(context.Background(), tenant, r); err != nil {
		t.Fatalf("CreateRecord(%s %s): %v", r.Kind, r.ID, err)
	}
}

func mustGetRecord(t *testing.T, s core.RecordStore, tenant, kind, id string) *core.Record {
	t.Helper()
	r, err := s.GetRecord(context.Background(), tenant, kind, id)
	if err != nil {
		t.Fatalf("GetRecord(%s %s): %v", kind, id, err)
	}
	return r
}

// wantRecord checks that got holds what want does: same identity, keys
// (in order), body bytes, version and instants.
func wantRecord(t *testing.T, got, want *core.Record) {
	t.Helper()
	if got.Kind != want.Kind || got.ID != want.ID || got.Version != want.Version {
		t.Errorf("record = %s %s v%d, want %s %s v%d", got.Kind, got.ID, got.Version, want.Kind, want.ID, want.Version)
	}
	if !bytes.Equal(got.Body, want.Body) {
		t.Errorf("%s body = %s, want %s", want.ID, got.Body, want.Body)
	}
	if (len(got.Keys) != 0 || len(want.Keys) != 0) && !reflect.DeepEqual(got.Keys, want.Keys) {
		t.Errorf("%s keys = %q, want %q", want.ID, got.Keys, want.Keys)
	}
	if !got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("%s created/updated = %v / %v, want %v / %v", want.ID, got.CreatedAt, got.UpdatedAt, want.CreatedAt, want.UpdatedAt)
	}
}
