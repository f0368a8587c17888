package mem

import (
	"bytes"
	"context"
	"slices"
	"strings"

	"github.com/stepwise-run/stepwise/core"
)

// kindKey names one collection: records are unique per tenant and kind.
type kindKey struct{ tenant, kind string }

// kindRecords is one tenant's records of one kind, with the index of their
// secondary keys that makes key uniqueness a map lookup.
type kindRecords struct {
	byID  map[string]*core.Record
	byKey map[string]string // secondary key -> record ID
}

// copyRecord returns a deep copy of r, so that the store and its callers
// never share a slice.
func copyRecord(r *core.Record) *core.Record {
	c := *r
	c.Keys = slices.Clone(r.Keys)
	if r.Body != nil {
		c.Body = bytes.Clone(r.Body)
	}
	return &c
}

// collection returns the records of tenant and kind, creating the
// collection when create is set; it returns nil otherwise. The caller holds
// s.mu.
func (s *Store) collection(tenant, kind string, create bool) *kindRecords {
	k := kindKey{tenant, kind}
	c := s.records[k]
	if c == nil && create {
		c = &kindRecords{byID: map[string]*core.Record{}, byKey: map[string]string{}}
		s.records[k] = c
	}
	return c
}

// keyTaken returns a key of keys that belongs to a record other than id.
func (c *kindRecords) keyTaken(keys []string, id string) (string, bool) {
	for _, k := range keys {
		if owner, ok := c.byKey[k]; ok && owner != id {
			return k, true
		}
	}
	return "", false
}

// CreateRecord implements core.RecordStore.
func (s *Store) CreateRecord(_ context.Context, tenant string, r *core.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.collection(tenant, r.Kind, true)
	if _, ok := c.byID[r.ID]; ok {
		return core.Errorf(core.ECONFLICT, "%s %q already exists", r.Kind, r.ID)
	}
	if k, taken := c.keyTaken(r.Keys, r.ID); taken {
		return core.Errorf(core.ECONFLICT, "%s key %q is taken by another record", r.Kind, k)
	}
	stored := copyRecord(r)
	stored.Version = 1
	c.byID[r.ID] = stored
	for _, k := range r.Keys {
		c.byKey[k] = r.ID
	}
	r.Version = 1
	return nil
}

// GetRecord implements core.RecordStore.
func (s *Store) GetRecord(_ context.Context, tenant, kind, id string) (*core.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.collection(tenant, kind, false); c != nil {
		if r, ok := c.byID[id]; ok {
			return copyRecord(r), nil
		}
	}
	return nil, core.Errorf(core.ENOTFOUND, "%s %q not found", kind, id)
}

// FindRecord implements core.RecordStore.
func (s *Store) FindRecord(_ context.Context, tenant, kind, key string) (*core.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.collection(tenant, kind, false); c != nil {
		if id, ok := c.byKey[key]; ok {
			return copyRecord(c.byID[id]), nil
		}
	}
	return nil, core.Errorf(core.ENOTFOUND, "%s with key %q not found", kind, key)
}

// UpdateRecord implements core.RecordStore.
func (s *Store) UpdateRecord(_ context.Context, tenant string, r *core.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.collection(tenant, r.Kind, false)
	var old *core.Record
	if c != nil {
		old = c.byID[r.ID]
	}
	if old == nil {
		return core.Errorf(core.ENOTFOUND, "%s %q not found", r.Kind, r.ID)
	}
	if old.Version != r.Version {
		return core.Errorf(core.ECONFLICT, "%s %q is at version %d, not %d", r.Kind, r.ID, old.Version, r.Version)
	}
	if k, taken := c.keyTaken(r.Keys, r.ID); taken {
		return core.Errorf(core.ECONFLICT, "%s key %q is taken by another record", r.Kind, k)
	}
	next := copyRecord(r)
	next.Version = old.Version + 1
	next.CreatedAt = old.CreatedAt
	for _, k := range old.Keys {
		delete(c.byKey, k)
	}
	for _, k := range next.Keys {
		c.byKey[k] = r.ID
	}
	c.byID[r.ID] = next
	r.Version = next.Version
	return nil
}

// DeleteRecord implements core.RecordStore.
func (s *Store) DeleteRecord(_ context.Context, tenant, kind, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.collection(tenant, kind, false)
	var old *core.Record
	if c != nil {
		old = c.byID[id]
	}
	if old == nil {
		return core.Errorf(core.ENOTFOUND, "%s %q not found", kind, id)
	}
	for _, k := range old.Keys {
		delete(c.byKey, k)
	}
	delete(c.byID, id)
	return nil
}

// ListRecords implements core.RecordStore. It sorts the whole collection
// on every call, which is fine for the sizes a test or a local run holds.
func (s *Store) ListRecords(_ context.Context, tenant, kind string, q core.ListQuery) (core.RecordPage, error) {
	limit, pos, hasPos, err := q.Bounds()
	if err != nil {
		return core.RecordPage{}, err
	}
	s.mu.Lock()
	var matches []*core.Record
	if c := s.collection(tenant, kind, false); c != nil {
		for _, r := range c.byID {
			if strings.HasPrefix(r.ID, q.Prefix) && (!hasPos || pos.After(r.CreatedAt, r.ID)) {
				matches = append(matches, copyRecord(r))
			}
		}
	}
	s.mu.Unlock()
	slices.SortFunc(matches, func(a, b *core.Record) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	page := core.RecordPage{Records: matches}
	if len(matches) > limit {
		page.Records = matches[:limit:limit]
		last := page.Records[limit-1]
		page.Next = core.EncodeCursor(last.CreatedAt, last.ID)
	}
	return page, nil
}
