package coretest

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

func recordListTests(t *testing.T, newStore func(t *testing.T) core.RecordStore) {
	ctx := context.Background()

	t.Run("NewestFirstWithTiesByIDDescending", func(t *testing.T) {
		s := newStore(t)
		t0 := recordTime()
		for _, r := range []*core.Record{
			NewRecord("chain", "a", t0),
			NewRecord("chain", "d", t0.Add(-time.Hour)),
			NewRecord("chain", "b", t0.Add(time.Nanosecond)),
			NewRecord("chain", "e", t0),
			NewRecord("chain", "c", t0.Add(time.Nanosecond)),
		} {
			mustCreateRecord(t, s, "default", r)
		}
		ids, next := listIDs(t, s, "default", "chain", core.ListQuery{})
		if want := []string{"c", "b", "e", "a", "d"}; !reflect.DeepEqual(ids, want) || next != "" {
			t.Errorf("ListRecords = %v (next %q), want %v and no next page", ids, next, want)
		}
	})

	t.Run("PagingVisitsEveryRecordOnce", func(t *testing.T) {
		s := newStore(t)
		const n = 250
		var want []string
		for i := range n {
			want = append(want, fmt.Sprintf("r%03d", i))
			// Insert in a scrambled order, three records per instant, so
			// that pages end in the middle of a tie.
			j := i * 7 % n
			mustCreateRecord(t, s, "default", NewRecord("model", fmt.Sprintf("r%03d", j), recordTime().Add(time.Duration(j/3)*time.Second)))
		}
		slices.Reverse(want)
		checkPaging(t, "records", want, func(limit int, cursor string) ([]string, string) {
			return listIDs(t, s, "default", "model", core.ListQuery{Limit: limit, Cursor: cursor})
		})
	})

	t.Run("PrefixFilter", func(t *testing.T) {
		s := newStore(t)
		t0 := recordTime()
		for i, id := range []string{"chain-a", "chain", "other-chain-x", "chain-b", "a_b", "axb", "a%c", "A_b", "chain-c"} {
			mustCreateRecord(t, s, "default", NewRecord("chain", id, t0.Add(time.Duration(i)*time.Second)))
		}
		tests := []struct {
			prefix string
			want   []string
		}{
			{"chain-", []string{"chain-c", "chain-b", "chain-a"}},
			{"chain", []string{"chain-c", "chain-b", "chain", "chain-a"}},
			{"a_", []string{"a_b"}},
			{"a%", []string{"a%c"}},
			{"zzz", nil},
		}
		for _, tt := range tests {
			t.Run(tt.prefix, func(t *testing.T) {
				ids, _ := listIDs(t, s, "default", "chain", core.ListQuery{Prefix: tt.prefix})
				if !reflect.DeepEqual(ids, tt.want) {
					t.Errorf("Prefix %q = %v, want %v", tt.prefix, ids, tt.want)
				}
			})
		}
		t.Run("Paged", func(t *testing.T) {
			var got []string
			q := core.ListQuery{Prefix: "chain-", Limit: 1}
			for range 10 {
				ids, next := listIDs(t, s, "default", "chain", q)
				got = append(got, ids...)
				if next == "" {
					break
				}
				q.Cursor = next
			}
			if want := []string{"chain-c", "chain-b", "chain-a"}; !reflect.DeepEqual(got, want) {
				t.Errorf("paged with prefix = %v, want %v", got, want)
			}
		})
	})

	t.Run("BareTimestampCursor", func(t *testing.T) {
		s := newStore(t)
		t0 := recordTime()
		for _, r := range []*core.Record{
			NewRecord("group", "older", t0.Add(-time.Nanosecond)),
			NewRecord("group", "oldest", t0.Add(-time.Hour)),
			NewRecord("group", "at-a", t0),
			NewRecord("group", "at-z", t0),
			NewRecord("group", "newer", t0.Add(time.Second)),
		} {
			mustCreateRecord(t, s, "default", r)
		}
		tests := []struct {
			name, cursor string
			want         []string
		}{
			{"Nanoseconds", t0.Format(time.RFC3339Nano), []string{"older", "oldest"}},
			{"UTC", t0.UTC().Format(time.RFC3339Nano), []string{"older", "oldest"}},
			{"Seconds", t0.Add(time.Second).Truncate(time.Second).Format(time.RFC3339), []string{"at-z", "at-a", "older", "oldest"}},
			{"BeforeEverything", "2000-01-01T00:00:00Z", nil},
			{"AfterEverything", "2100-01-01T00:00:00Z", []string{"newer", "at-z", "at-a", "older", "oldest"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ids, _ := listIDs(t, s, "default", "group", core.ListQuery{Cursor: tt.cursor})
				if !reflect.DeepEqual(ids, tt.want) {
					t.Errorf("cursor %q = %v, want %v", tt.cursor, ids, tt.want)
				}
			})
		}
	})

	t.Run("InvalidQueryIsInvalid", func(t *testing.T) {
		s := newStore(t)
		mustCreateRecord(t, s, "default", NewRecord("group", "g", recordTime()))
		enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
		tests := []struct {
			name string
			q    core.ListQuery
		}{
			{"CursorNotBase64", core.ListQuery{Cursor: "not a cursor!"}},
			{"CursorWithoutSeparator", core.ListQuery{Cursor: enc("2026-01-01T00:00:00Z")}},
			{"CursorWithoutID", core.ListQuery{Cursor: enc("2026-01-01T00:00:00Z|")}},
			{"CursorWithBadTime", core.ListQuery{Cursor: enc("yesterday|g")}},
			{"LimitNegative", core.ListQuery{Limit: -1}},
			{"LimitAboveMax", core.ListQuery{Limit: core.MaxPageSize + 1}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				page, err := s.ListRecords(ctx, "default", "group", tt.q)
				wantCode(t, err, core.EINVALID)
				if len(page.Records) != 0 {
					t.Errorf("an invalid query returned %d records", len(page.Records))
				}
			})
		}
	})
}

// listIDs lists one page and returns its record IDs and Next cursor.
func listIDs(t *testing.T, s core.RecordStore, tenant, kind string, q core.ListQuery) ([]string, string) {
	t.Helper()
	page, err := s.ListRecords(context.Background(), tenant, kind, q)
	if err != nil {
		t.Fatalf("ListRecords(%s, %+v): %v", kind, q, err)
	}
	var ids []string
	for _, r := range page.Records {
		if r.Kind != kind {
			t.Errorf("ListRecords(%s) returned a %s", kind, r.Kind)
		}
		ids = append(ids, r.ID)
	}
	if url.QueryEscape(page.Next) != page.Next {
		t.Errorf("Next cursor %q is not URL-safe", page.Next)
	}
	return ids, page.Next
}

// checkPaging pages through the items want lists, newest first, with list
// (a limit and a cursor in, a page's IDs and the next cursor out): pages
// of 100 must visit each once, in order, and limits 0 and MaxPageSize give
// the default page size and everything (so want needs more items than the
// default page and at most MaxPageSize).
func checkPaging(t *testing.T, what string, want []string, list func(limit int, cursor string) ([]string, string)) {
	t.Helper()
	n := len(want)
	var got []string
	var sizes []int
	cursor := ""
	for range n {
		ids, next := list(100, cursor)
		got = append(got, ids...)
		sizes = append(sizes, len(ids))
		if next == "" {
			break
		}
		cursor = next
	}
	var wantSizes []int
	for left := n; left > 0; left -= 100 {
		wantSizes = append(wantSizes, min(left, 100))
	}
	if !reflect.DeepEqual(sizes, wantSizes) {
		t.Errorf("page sizes = %v, want %v", sizes, wantSizes)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("paged through %d %s, want each of the %d once, newest first:\n got %v\nwant %v", len(got), what, n, got, want)
	}
	ids, next := list(0, "")
	if len(ids) != core.DefaultPageSize || next == "" {
		t.Errorf("limit 0 gave %d %s (next %q), want %d and a next page", len(ids), what, next, core.DefaultPageSize)
	}
	ids, next = list(core.MaxPageSize, "")
	if len(ids) != n || next != "" {
		t.Errorf("limit %d gave %d %s (next %q), want all %d and no next page", core.MaxPageSize, len(ids), what, next, n)
	}
}
