package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// stamp returns the clock's time in UTC. UTC also drops the monotonic
// reading, so a time read back from the store equals the one returned.
func (c *Catalog) stamp() time.Time { return c.now().UTC() }

// noun is how messages name a record of kind.
func noun(kind string) string {
	switch kind {
	case KindBackendInGroup:
		return "backend assignment"
	case KindModelInGroup:
		return "model assignment"
	}
	return kind
}

// notFound is the ENOTFOUND of a missing record, in the catalog's words
// rather than the store adapter's.
func notFound(kind, id string) error {
	return core.Errorf(core.ENOTFOUND, "%s %q not found", noun(kind), id)
}

// get reads one record.
func (c *Catalog) get(ctx context.Context, tenant, kind, id string) (*core.Record, error) {
	r, err := c.store.GetRecord(ctx, tenant, kind, id)
	if core.ErrorCode(err) == core.ENOTFOUND {
		return nil, notFound(kind, id)
	}
	return r, err
}

// remove deletes one record.
func (c *Catalog) remove(ctx context.Context, tenant, kind, id string) error {
	err := c.store.DeleteRecord(ctx, tenant, kind, id)
	if core.ErrorCode(err) == core.ENOTFOUND {
		return notFound(kind, id)
	}
	return err
}

// encode is the body of a record.
func encode(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "encoding a catalog record")
	}
	return b, nil
}

// decode reads the body of a record. A body that does not decode was not
// written by the catalog: it is an internal error, not the caller's.
func decode[T any](r *core.Record) (T, error) {
	var v T
	if err := json.Unmarshal(r.Body, &v); err != nil {
		return v, core.WrapError(core.EINTERNAL, err, "stored %s %q is not readable", noun(r.Kind), r.ID)
	}
	return v, nil
}

// decodeAll decodes the bodies of records, in order.
func decodeAll[T any](rs []*core.Record) ([]T, error) {
	out := make([]T, 0, len(rs))
	for _, r := range rs {
		v, err := decode[T](r)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// listAll pages through every record of kind whose id starts with prefix,
// newest first. Catalog kinds stay small enough to hold in memory.
func (c *Catalog) listAll(ctx context.Context, tenant, kind, prefix string) ([]*core.Record, error) {
	var all []*core.Record
	q := core.ListQuery{Prefix: prefix, Limit: core.MaxPageSize}
	for {
		page, err := c.store.ListRecords(ctx, tenant, kind, q)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Records...)
		if page.Next == "" {
			return all, nil
		}
		q.Cursor = page.Next
	}
}

// filteredPage returns one page of the records of kind that keep accepts,
// with the cursor of the next page: the store pages over every record, so
// the catalog pages over the kept ones itself, with the same cursors.
func (c *Catalog) filteredPage(ctx context.Context, tenant, kind string, q core.ListQuery, keep func(*core.Record) (bool, error)) ([]*core.Record, string, error) {
	limit, err := core.PageLimit(q.Limit)
	if err != nil {
		return nil, "", err
	}
	var kept []*core.Record
	sq := core.ListQuery{Prefix: q.Prefix, Cursor: q.Cursor, Limit: core.MaxPageSize}
	for {
		page, err := c.store.ListRecords(ctx, tenant, kind, sq)
		if err != nil {
			return nil, "", err
		}
		for _, r := range page.Records {
			ok, err := keep(r)
			if err != nil {
				return nil, "", err
			}
			if !ok {
				continue
			}
			if len(kept) == limit {
				last := kept[limit-1]
				return kept, core.EncodeCursor(last.CreatedAt, last.ID), nil
			}
			kept = append(kept, r)
		}
		if page.Next == "" {
			return kept, "", nil
		}
		sq.Cursor = page.Next
	}
}

// uniqueKey is a secondary key of a record and the conflict its collision
// means, in words that name the field ("name: a backend named ...").
type uniqueKey struct {
	key      string
	conflict string
}

// keyStrings returns the keys to store.
func keyStrings(keys []uniqueKey) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.key
	}
	return out
}

// keyConflict explains an ECONFLICT of a write: the first of keys that
// another record than self holds, as ECONFLICT naming the field; nil when
// none does (the conflict was something else).
func (c *Catalog) keyConflict(ctx context.Context, tenant, kind, self string, keys []uniqueKey) error {
	for _, k := range keys {
		r, err := c.store.FindRecord(ctx, tenant, kind, k.key)
		switch {
		case core.ErrorCode(err) == core.ENOTFOUND:
		case err != nil:
			return err
		case r.ID != self:
			return core.Errorf(core.ECONFLICT, "%s", k.conflict)
		}
	}
	return nil
}

// create stores a new record with keys. A collision is ECONFLICT naming
// the field: idTaken for the record's id, the key's own words for a key.
func (c *Catalog) create(ctx context.Context, tenant string, r *core.Record, keys []uniqueKey, idTaken string) error {
	r.Keys = keyStrings(keys)
	err := c.store.CreateRecord(ctx, tenant, r)
	if core.ErrorCode(err) != core.ECONFLICT {
		return err
	}
	if _, gerr := c.store.GetRecord(ctx, tenant, r.Kind, r.ID); gerr == nil {
		return core.Errorf(core.ECONFLICT, "%s", idTaken)
	}
	if kerr := c.keyConflict(ctx, tenant, r.Kind, r.ID, keys); kerr != nil {
		return kerr
	}
	return err
}

// update rewrites a record under compare-and-swap: it reads the record,
// lets change set its body and keys, and writes it back at the version it
// read. A write that loses a race with another writer is tried once more
// on a fresh read; a key collision is returned as ECONFLICT naming the
// field.
func (c *Catalog) update(ctx context.Context, tenant, kind, id string, change func(r *core.Record) ([]uniqueKey, error)) (*core.Record, error) {
	for attempt := 0; ; attempt++ {
		r, err := c.get(ctx, tenant, kind, id)
		if err != nil {
			return nil, err
		}
		keys, err := change(r)
		if err != nil {
			return nil, err
		}
		r.Keys = keyStrings(keys)
		err = c.store.UpdateRecord(ctx, tenant, r)
		switch core.ErrorCode(err) {
		case "":
			return r, nil
		case core.ENOTFOUND:
			return nil, notFound(kind, id)
		case core.ECONFLICT:
			if kerr := c.keyConflict(ctx, tenant, kind, id, keys); kerr != nil {
				return nil, kerr
			}
			if attempt == 0 {
				continue
			}
		}
		return nil, err
	}
}

// problems collects the validation problems of one write, each naming its
// field, so that the caller learns of all of them at once.
type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// err is EINVALID listing the problems, or nil.
func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return core.Errorf(core.EINVALID, "%s", strings.Join(p, "; "))
}

// checkPathID rejects a body id that differs from the id in the path.
func checkPathID(bodyID, pathID string) error {
	if bodyID != "" && bodyID != pathID {
		return core.Errorf(core.EINVALID, "id: %q does not match the path (%q)", bodyID, pathID)
	}
	return nil
}
