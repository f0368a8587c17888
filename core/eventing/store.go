// Package eventing is stepwise's event platform: webhook deliveries
// stored as raw events before they are answered, mappings that turn them
// into domain events, the event log, and the JavaScript functions and
// chains that triggers run when an event arrives. Everything is kept in
// the record port, per tenant; each write is idempotent, so that a
// redelivered webhook, a replayed raw event or a retried function run
// adds nothing twice.
package eventing

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/events"
)

// Record kinds.
const (
	KindRawEvent  = "raw_event"
	KindMapping   = "event_mapping"
	KindEvent     = "event"
	KindEventType = "event_type"
	KindFunction  = "function"
	KindTrigger   = "event_trigger"
	KindRun       = "function_run"
)

// Sealer encrypts mapping secrets before they are stored (core/seal).
type Sealer interface {
	Seal(plaintext, context []byte) ([]byte, error)
	Open(sealed, context []byte) ([]byte, error)
}

// SealedValue stands for a mapping's signing secret in answers.
const SealedValue = "[sealed]"

// Store keeps the raw events, mappings and events of every tenant.
type Store struct {
	records core.RecordStore
	sealer  Sealer
	now     func() time.Time
}

// NewStore returns the event store of records; now nil means time.Now.
func NewStore(records core.RecordStore, sealer Sealer, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{records: records, sealer: sealer, now: now}
}

// deliveryKey keeps a tenant's deliveries unique per path.
func deliveryKey(path, id string) string { return "delivery:" + path + "\x00" + id }

// bodyKey keeps a tenant's deliveries of one body unique per path.
func bodyKey(path, hash string) string { return "body:" + path + "\x00" + hash }

// AddRawEvent stores a delivery. One whose delivery id was stored before
// is not stored again: the first one is returned with dup true.
func (s *Store) AddRawEvent(ctx context.Context, tenant string, raw *events.RawEvent) (stored *events.RawEvent, dup bool, err error) {
	raw.ID = "raw_" + uuid.Must(uuid.NewV7()).String()
	raw.ReceivedAt = s.now().UTC()
	raw.NID = raw.ReceivedAt.UnixNano()
	for attempt := 0; ; attempt++ {
		body, err := json.Marshal(raw)
		if err != nil {
			return nil, false, core.WrapError(core.EINVALID, err, "payload")
		}
		keys := []string{"nid:" + strconv.FormatInt(raw.NID, 10)}
		if raw.DeliveryID != "" {
			keys = append(keys, deliveryKey(raw.Path, raw.DeliveryID))
		}
		if raw.BodyHash != "" {
			keys = append(keys, bodyKey(raw.Path, raw.BodyHash))
		}
		r := &core.Record{Kind: KindRawEvent, ID: raw.ID, Keys: keys, Body: body, CreatedAt: raw.ReceivedAt, UpdatedAt: raw.ReceivedAt}
		err = s.records.CreateRecord(ctx, tenant, r)
		if err == nil {
			return raw, false, nil
		}
		if core.ErrorCode(err) != core.ECONFLICT {
			return nil, false, err
		}
		for _, k := range keys[1:] {
			if prev, ferr := s.records.FindRecord(ctx, tenant, KindRawEvent, k); ferr == nil {
				out, derr := decodeRaw(prev)
				return out, true, derr
			}
		}
		if attempt > 10 {
			return nil, false, err
		}
		// Two deliveries in the same nanosecond: the next nid.
		raw.NID++
	}
}

// UpdateRawEvent records what became of a raw event.
func (s *Store) UpdateRawEvent(ctx context.Context, tenant string, raw *events.RawEvent) error {
	for attempt := 0; ; attempt++ {
		r, err := s.records.GetRecord(ctx, tenant, KindRawEvent, raw.ID)
		if err != nil {
			return err
		}
		if r.Body, err = json.Marshal(raw); err != nil {
			return core.WrapError(core.EINTERNAL, err, "encode raw event %s", raw.ID)
		}
		r.UpdatedAt = s.now().UTC()
		err = s.records.UpdateRecord(ctx, tenant, r)
		if core.ErrorCode(err) != core.ECONFLICT || attempt > 5 {
			return err
		}
	}
}

func decodeRaw(r *core.Record) (*events.RawEvent, error) {
	var raw events.RawEvent
	if err := json.Unmarshal(r.Body, &raw); err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "decode raw event %s", r.ID)
	}
	return &raw, nil
}

// RawEvent returns a raw event by id or nid.
func (s *Store) RawEvent(ctx context.Context, tenant, id string) (*events.RawEvent, error) {
	r, err := s.records.GetRecord(ctx, tenant, KindRawEvent, id)
	if core.ErrorCode(err) == core.ENOTFOUND {
		if _, perr := strconv.ParseInt(id, 10, 64); perr == nil {
			r, err = s.records.FindRecord(ctx, tenant, KindRawEvent, "nid:"+id)
		}
	}
	if core.ErrorCode(err) == core.ENOTFOUND {
		return nil, core.Errorf(core.ENOTFOUND, "no raw event %q", id)
	}
	if err != nil {
		return nil, err
	}
	return decodeRaw(r)
}

// TimeRange bounds a listing: records created in [From, To).
type TimeRange struct {
	From, To time.Time
	Limit    int
}

// RawEvents lists raw events newest first within the range.
func (s *Store) RawEvents(ctx context.Context, tenant string, q TimeRange) ([]*events.RawEvent, error) {
	var out []*events.RawEvent
	err := s.scan(ctx, tenant, KindRawEvent, "", q, func(r *core.Record) (bool, error) {
		raw, err := decodeRaw(r)
		if err == nil {
			out = append(out, raw)
		}
		return true, err
	})
	return out, err
}

// scan walks a kind's records newest first within q, calling keep for
// each until it returns false or q.Limit records were kept.
func (s *Store) scan(ctx context.Context, tenant, kind, prefix string, q TimeRange, keep func(*core.Record) (bool, error)) error {
	limit, err := core.PageLimit(q.Limit)
	if err != nil {
		return err
	}
	cursor := ""
	if !q.To.IsZero() {
		cursor = q.To.UTC().Format(time.RFC3339Nano)
	}
	kept := 0
	for {
		page, err := s.records.ListRecords(ctx, tenant, kind, core.ListQuery{Prefix: prefix, Cursor: cursor, Limit: core.MaxPageSize})
		if err != nil {
			return err
		}
		for _, r := range page.Records {
			if !q.From.IsZero() && r.CreatedAt.Before(q.From) {
				return nil
			}
			ok, err := keep(r)
			if err != nil {
				return err
			}
			if ok {
				kept++
			}
			if kept >= limit {
				return nil
			}
		}
		if page.Next == "" {
			return nil
		}
		cursor = page.Next
	}
}

// mappingSealContext binds a mapping's sealed secret to its tenant and
// path.
func mappingSealContext(tenant, path string) []byte {
	return []byte("event-mapping\x00" + tenant + "\x00" + path)
}

// storedMapping is a mapping's record body: its secret sealed.
type storedMapping struct {
	events.Mapping
	SealedSecret string    `json:"sealedSecret,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

// SaveMapping creates (create true) or replaces a mapping. A secret given
// as SealedValue keeps the stored one.
func (s *Store) SaveMapping(ctx context.Context, tenant string, m events.Mapping, create bool) (*events.Mapping, error) {
	var old *events.Mapping
	var rec *core.Record
	if !create {
		var err error
		if rec, err = s.records.GetRecord(ctx, tenant, KindMapping, m.Path); core.ErrorCode(err) == core.ENOTFOUND {
			return nil, core.Errorf(core.ENOTFOUND, "no mapping for path %q", m.Path)
		} else if err != nil {
			return nil, err
		}
		if old, err = s.openMapping(tenant, rec); err != nil {
			return nil, err
		}
		if m.Signature != nil && m.Signature.Secret == SealedValue {
			if old.Signature == nil {
				return nil, core.Errorf(core.EINVALID, "signature.secret: %s stands for the stored secret, and this mapping has none", SealedValue)
			}
			m.Signature.Secret = old.Signature.Secret
		}
	}
	if err := m.Check(); err != nil {
		return nil, core.Errorf(core.EINVALID, "%v", err)
	}
	st := storedMapping{Mapping: m, UpdatedAt: s.now().UTC()}
	st.CreatedAt = st.UpdatedAt
	if rec != nil {
		var prev storedMapping
		if err := json.Unmarshal(rec.Body, &prev); err == nil && !prev.CreatedAt.IsZero() {
			st.CreatedAt = prev.CreatedAt
		}
	}
	if m.Signature != nil {
		if s.sealer == nil {
			return nil, core.Errorf(core.EUNAVAILABLE, "signature.secret: sealing it needs the secret key, and none is configured")
		}
		sealed, err := s.sealer.Seal([]byte(m.Signature.Secret), mappingSealContext(tenant, m.Path))
		if err != nil {
			return nil, core.WrapError(core.EINTERNAL, err, "seal the secret of mapping %s", m.Path)
		}
		sig := *m.Signature
		sig.Secret = ""
		st.Signature = &sig
		st.SealedSecret = base64.StdEncoding.EncodeToString(sealed)
	}
	body, err := json.Marshal(st)
	if err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "encode mapping %s", m.Path)
	}
	if create {
		err = s.records.CreateRecord(ctx, tenant, &core.Record{Kind: KindMapping, ID: m.Path, Body: body, CreatedAt: st.CreatedAt, UpdatedAt: st.UpdatedAt})
		if core.ErrorCode(err) == core.ECONFLICT {
			return nil, core.Errorf(core.ECONFLICT, "path: a mapping for %q exists", m.Path)
		}
	} else {
		rec.Body, rec.UpdatedAt = body, st.UpdatedAt
		err = s.records.UpdateRecord(ctx, tenant, rec)
	}
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// Mapping returns a path's mapping, its secret open.
func (s *Store) Mapping(ctx context.Context, tenant, path string) (*events.Mapping, error) {
	r, err := s.records.GetRecord(ctx, tenant, KindMapping, path)
	if core.ErrorCode(err) == core.ENOTFOUND {
		return nil, core.Errorf(core.ENOTFOUND, "no mapping for path %q", path)
	}
	if err != nil {
		return nil, err
	}
	return s.openMapping(tenant, r)
}

func (s *Store) openMapping(tenant string, r *core.Record) (*events.Mapping, error) {
	var st storedMapping
	if err := json.Unmarshal(r.Body, &st); err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "decode mapping %s", r.ID)
	}
	m := st.Mapping
	if st.SealedSecret != "" && m.Signature != nil {
		if s.sealer == nil {
			return nil, core.Errorf(core.EUNAVAILABLE, "mapping %s has a sealed secret and no secret key is configured", m.Path)
		}
		b, err := base64.StdEncoding.DecodeString(st.SealedSecret)
		if err == nil {
			b, err = s.sealer.Open(b, mappingSealContext(tenant, m.Path))
		}
		if err != nil {
			return nil, core.WrapError(core.EINTERNAL, err, "open the secret of mapping %s", m.Path)
		}
		sig := *m.Signature
		sig.Secret = string(b)
		m.Signature = &sig
	}
	return &m, nil
}

// Mappings lists a tenant's mappings.
func (s *Store) Mappings(ctx context.Context, tenant string) ([]*events.Mapping, error) {
	var out []*events.Mapping
	err := s.scan(ctx, tenant, KindMapping, "", TimeRange{Limit: core.MaxPageSize}, func(r *core.Record) (bool, error) {
		m, err := s.openMapping(tenant, r)
		if err == nil {
			out = append(out, m)
		}
		return true, err
	})
	return out, err
}

// DeleteMapping removes a path's mapping.
func (s *Store) DeleteMapping(ctx context.Context, tenant, path string) error {
	err := s.records.DeleteRecord(ctx, tenant, KindMapping, path)
	if core.ErrorCode(err) == core.ENOTFOUND {
		return core.Errorf(core.ENOTFOUND, "no mapping for path %q", path)
	}
	return err
}

// Shown is a mapping as answers show it: its secret sealed.
func Shown(m *events.Mapping) *events.Mapping {
	out := *m
	if m.Signature != nil {
		sig := *m.Signature
		sig.Secret = SealedValue
		out.Signature = &sig
	}
	return &out
}

// eventRecordID is where an event is kept: its type first, so that a
// listing by type is a prefix.
func eventRecordID(typ, id string) string { return typ + "#" + id }

// AddEvent stores an event; added is false when it was stored before
// (the same id), which is not an error.
func (s *Store) AddEvent(ctx context.Context, ev events.Envelope) (added bool, err error) {
	if err := ev.Validate(); err != nil {
		return false, core.Errorf(core.EINVALID, "event: %v", err)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return false, core.WrapError(core.EINTERNAL, err, "encode event %s", ev.ID)
	}
	err = s.records.CreateRecord(ctx, ev.Tenant, &core.Record{Kind: KindEvent, ID: eventRecordID(ev.Type, ev.ID), Keys: []string{"id:" + ev.ID},
		Body: body, CreatedAt: ev.Time.UTC(), UpdatedAt: s.now().UTC()})
	if core.ErrorCode(err) == core.ECONFLICT {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// The type joins the list of types; it may be there already.
	typeRec := &core.Record{Kind: KindEventType, ID: ev.Type, Body: json.RawMessage(`{}`), CreatedAt: ev.Time.UTC(), UpdatedAt: ev.Time.UTC()}
	if err := s.records.CreateRecord(ctx, ev.Tenant, typeRec); err != nil && core.ErrorCode(err) != core.ECONFLICT {
		return true, err
	}
	return true, nil
}

// Event returns an event by id.
func (s *Store) Event(ctx context.Context, tenant, id string) (events.Envelope, error) {
	r, err := s.records.FindRecord(ctx, tenant, KindEvent, "id:"+id)
	if core.ErrorCode(err) == core.ENOTFOUND {
		return events.Envelope{}, core.Errorf(core.ENOTFOUND, "no event %q", id)
	}
	if err != nil {
		return events.Envelope{}, err
	}
	return decodeEvent(r)
}

func decodeEvent(r *core.Record) (events.Envelope, error) {
	var ev events.Envelope
	if err := json.Unmarshal(r.Body, &ev); err != nil {
		return events.Envelope{}, core.WrapError(core.EINTERNAL, err, "decode event %s", r.ID)
	}
	return ev, nil
}

// EventQuery selects events: of a type (or every type), optionally of a
// source and subject, in a time range, newest first.
type EventQuery struct {
	Type, Source, Subject, AggregateType string
	TimeRange
}

// Events lists the events q selects.
func (s *Store) Events(ctx context.Context, tenant string, q EventQuery) ([]events.Envelope, error) {
	prefix := ""
	if q.Type != "" {
		prefix = q.Type + "#"
	}
	out := []events.Envelope{}
	err := s.scan(ctx, tenant, KindEvent, prefix, q.TimeRange, func(r *core.Record) (bool, error) {
		ev, err := decodeEvent(r)
		if err != nil {
			return false, err
		}
		if q.Source != "" && ev.Source != q.Source || q.Subject != "" && ev.Subject != q.Subject || q.AggregateType != "" && ev.AggregateType != q.AggregateType {
			return false, nil
		}
		out = append(out, ev)
		return true, nil
	})
	return out, err
}

// EventTypes lists the types of the tenant's events, newest first.
func (s *Store) EventTypes(ctx context.Context, tenant string, q TimeRange) ([]string, error) {
	out := []string{}
	err := s.scan(ctx, tenant, KindEventType, "", q, func(r *core.Record) (bool, error) {
		out = append(out, r.ID)
		return true, nil
	})
	return out, err
}

// DeleteEvents removes a type's events in the range and answers how many.
func (s *Store) DeleteEvents(ctx context.Context, tenant, typ string, q TimeRange) (int, error) {
	if typ == "" {
		return 0, core.Errorf(core.EINVALID, "event_type: required")
	}
	var ids []string
	q.Limit = core.MaxPageSize
	total := 0
	for {
		ids = ids[:0]
		err := s.scan(ctx, tenant, KindEvent, typ+"#", q, func(r *core.Record) (bool, error) {
			ids = append(ids, r.ID)
			return true, nil
		})
		if err != nil {
			return 0, err
		}
		for _, id := range ids {
			if err := s.records.DeleteRecord(ctx, tenant, KindEvent, id); err != nil && core.ErrorCode(err) != core.ENOTFOUND {
				return 0, err
			}
		}
		total += len(ids)
		if len(ids) < core.MaxPageSize {
			return total, nil
		}
	}
}

// checkName is the rule for the names of functions and triggers.
func checkName(field, name string) error {
	if name == "" || len(name) > 64 {
		return core.Errorf(core.EINVALID, "%s: 1 to 64 characters", field)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return core.Errorf(core.EINVALID, "%s: %q may have letters, digits, _, - and . only", field, name)
		}
	}
	return nil
}
