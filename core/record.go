package core

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

// Record is one stored document of the catalog: a chain, a backend, a
// model, a group, an assignment or a provider configuration. Stores keep
// the body as opaque JSON; the typed view lives in core/catalog, so that a
// new kind of record needs no change to any adapter.
type Record struct {
	// Kind names the collection ("chain", "backend", ...).
	Kind string
	// ID is unique within the tenant and kind.
	ID string
	// Keys are secondary keys, each unique within the tenant and kind
	// ("name=local-ollama", "url=http://..."). A write that would give two
	// records of a kind the same key is ECONFLICT.
	Keys []string
	// Body is the record's JSON document.
	Body json.RawMessage
	// Version is the compare-and-swap token: 1 after creation, one more
	// after every update.
	Version int64
	// CreatedAt and UpdatedAt are set by the caller and kept as given (at
	// nanosecond precision).
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Page sizes for list calls.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// ListQuery selects one page of a kind's records. Records are listed
// newest first (CreatedAt descending, then ID descending).
type ListQuery struct {
	// Prefix keeps only records whose ID starts with it.
	Prefix string
	// Cursor is where the page starts: "" for the first page, else the
	// Next of the previous page. For compatibility with the reference
	// system a bare RFC 3339 timestamp is also accepted, meaning "records
	// created before this instant".
	Cursor string
	// Limit is the page size: 0 means DefaultPageSize; above MaxPageSize
	// or below 0 is EINVALID.
	Limit int
}

// RecordPage is one page of records.
type RecordPage struct {
	Records []*Record
	// Next is the cursor of the following page, "" on the last page.
	Next string
}

// RecordStore is the port that keeps catalog records. Every record belongs
// to a tenant; one tenant never sees another's records. Implementations
// must be safe for concurrent use, and a call that fails changes nothing.
type RecordStore interface {
	// CreateRecord stores a new record and sets r.Version to 1.
	// ECONFLICT if the tenant has a record of that kind with the same ID
	// or any of the same Keys.
	CreateRecord(ctx context.Context, tenant string, r *Record) error
	// GetRecord returns a record by ID. ENOTFOUND if there is none.
	GetRecord(ctx context.Context, tenant, kind, id string) (*Record, error)
	// FindRecord returns the record of kind that has key among its Keys.
	// ENOTFOUND if there is none.
	FindRecord(ctx context.Context, tenant, kind, key string) (*Record, error)
	// UpdateRecord replaces the body, keys and UpdatedAt of the record
	// with r's ID, only if its stored version equals r.Version; the stored
	// CreatedAt is kept. On success r.Version is incremented. ENOTFOUND if
	// there is no such record; ECONFLICT if the version moved on or a key
	// belongs to another record.
	UpdateRecord(ctx context.Context, tenant string, r *Record) error
	// DeleteRecord removes a record. ENOTFOUND if there is none.
	DeleteRecord(ctx context.Context, tenant, kind, id string) error
	// ListRecords returns one page of a kind's records, newest first.
	// EINVALID for a malformed cursor or limit.
	ListRecords(ctx context.Context, tenant, kind string, q ListQuery) (RecordPage, error)
}

// PageLimit checks a ListQuery's limit and returns the page size to use.
func PageLimit(limit int) (int, error) {
	switch {
	case limit == 0:
		return DefaultPageSize, nil
	case limit < 0 || limit > MaxPageSize:
		return 0, Errorf(EINVALID, "limit %d: want 1 to %d", limit, MaxPageSize)
	}
	return limit, nil
}

// Bounds checks a ListQuery and returns its page size and, when the query
// has a cursor (ok), the position the page starts after. A store's
// ListRecords starts with it.
func (q ListQuery) Bounds() (limit int, after Position, ok bool, err error) {
	if limit, err = PageLimit(q.Limit); err != nil {
		return 0, Position{}, false, err
	}
	after, ok, err = DecodeCursor(q.Cursor)
	return limit, after, ok, err
}

// Position is a place in a newest-first listing: the CreatedAt and ID of
// the last record of a page. The next page holds the records that sort
// after it: created earlier, or created at the same instant with a
// smaller ID.
type Position struct {
	CreatedAt time.Time
	// ID is "" for a bare-timestamp cursor, which takes every record
	// created strictly before CreatedAt.
	ID string
}

// After reports whether a record with the given creation time and id
// belongs after p in a newest-first listing.
func (p Position) After(createdAt time.Time, id string) bool {
	if p.ID == "" {
		return createdAt.Before(p.CreatedAt)
	}
	return createdAt.Before(p.CreatedAt) || (createdAt.Equal(p.CreatedAt) && id < p.ID)
}

// EncodeCursor returns the opaque cursor of the page that follows the
// record with createdAt and id.
func EncodeCursor(createdAt time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(createdAt.UTC().Format(time.RFC3339Nano) + "|" + id))
}

// DecodeCursor parses a cursor made by EncodeCursor or a bare RFC 3339
// timestamp. ok is false for "" (the first page). A cursor that is
// neither is EINVALID.
func DecodeCursor(cursor string) (p Position, ok bool, err error) {
	if cursor == "" {
		return Position{}, false, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, cursor); err == nil {
		return Position{CreatedAt: t}, true, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return Position{}, false, Errorf(EINVALID, "cursor %q is not one this server returned", cursor)
	}
	ts, id, found := strings.Cut(string(raw), "|")
	t, err := time.Parse(time.RFC3339Nano, ts)
	if !found || err != nil || id == "" {
		return Position{}, false, Errorf(EINVALID, "cursor %q is not one this server returned", cursor)
	}
	return Position{CreatedAt: t, ID: id}, true, nil
}
