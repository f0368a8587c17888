package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/eventing"
	"github.com/stepwise-run/stepwise/events"
	"github.com/stepwise-run/stepwise/functions/internal/webapi"
)

// eventPoll is how often an event stream looks for new events: the store
// is the stream's source, so it works whichever process appended them.
const eventPoll = 250 * time.Millisecond

func (a *API) eventRoutes() {
	a.handle(http.MethodPost, "/events", a.onBus(a.appendEvent))
	a.handle(http.MethodGet, "/events", a.onBus(a.listEvents))
	a.handle(http.MethodGet, "/events/type", a.onBus(a.listEvents))
	a.handle(http.MethodGet, "/events/source", a.onBus(a.listEvents))
	a.handle(http.MethodGet, "/events/aggregate", a.onBus(a.eventsOfAggregate))
	a.handle(http.MethodGet, "/events/types", a.onBus(a.eventTypes))
	a.handle(http.MethodDelete, "/events/type", a.onBus(a.deleteEvents))
	a.handle(http.MethodGet, "/events/stream/{eventType}", a.onBus(a.streamEvents))
	a.handle(http.MethodGet, "/raw-events", a.onBus(a.listRawEvents))
	a.handle(http.MethodGet, "/raw-events/{nid}", a.onBus(a.getRawEvent))
	a.handle(http.MethodPost, "/replay", a.onBus(a.replay))
	a.handle(http.MethodPost, "/mappings", a.onBus(a.createMapping))
	a.handle(http.MethodGet, "/mappings", a.onBus(a.listMappings))
	a.handle(http.MethodGet, "/mapping", a.onBus(a.getMapping))
	a.handle(http.MethodPut, "/mapping", a.onBus(a.putMapping))
	a.handle(http.MethodDelete, "/mapping", a.onBus(a.deleteMapping))
	a.handle(http.MethodPost, "/sync", a.syncMappings)
	a.functionRoutes()
}

// onBus serves h with the event bus, or answers 503 when the API has
// none.
func (a *API) onBus(h func(http.ResponseWriter, *http.Request, *eventing.Bus)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.cfg.Events == nil {
			writeError(w, r, core.Errorf(core.EUNAVAILABLE, "events are not configured on this server"))
			return
		}
		h(w, r, a.cfg.Events)
	}
}

// eventView is an event as the reference's API shows it, with our names
// beside.
type eventView struct {
	ID            string          `json:"id"`
	CreatedAt     time.Time       `json:"created_at"`
	EventType     string          `json:"event_type"`
	EventSource   string          `json:"event_source"`
	AggregateID   string          `json:"aggregate_id"`
	AggregateType string          `json:"aggregate_type"`
	Version       int             `json:"version"`
	Data          json.RawMessage `json:"data"`
	Metadata      json.RawMessage `json:"metadata"`
	Hop           int             `json:"hop"`
}

func showEvent(ev events.Envelope) eventView {
	meta := ev.Metadata
	if len(meta) == 0 {
		meta = json.RawMessage(`{}`)
	}
	return eventView{ID: ev.ID, CreatedAt: ev.Time, EventType: ev.Type, EventSource: ev.Source, AggregateID: ev.Subject,
		AggregateType: ev.AggregateType, Version: ev.Version, Data: ev.Data, Metadata: meta, Hop: ev.Hop}
}

func showEvents(evs []events.Envelope) []eventView {
	out := make([]eventView, len(evs))
	for i, ev := range evs {
		out[i] = showEvent(ev)
	}
	return out
}

// eventClockSkew bounds how far a posted event's time may be from now, as
// the reference does.
const eventClockSkew = 10 * time.Minute

// appendEvent is POST /events: the reference's event (or our envelope's
// names), appended and handed to its triggers.
func (a *API) appendEvent(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	var b struct {
		ID            string          `json:"id"`
		CreatedAt     *time.Time      `json:"created_at"`
		EventType     string          `json:"event_type"`
		EventSource   string          `json:"event_source"`
		AggregateID   string          `json:"aggregate_id"`
		AggregateType string          `json:"aggregate_type"`
		Version       int             `json:"version"`
		Data          json.RawMessage `json:"data"`
		Metadata      json.RawMessage `json:"metadata"`
		NID           *int64          `json:"nid"`
	}
	aliases := map[string]string{"type": "event_type", "source": "event_source", "subject": "aggregate_id", "time": "created_at",
		"eventType": "event_type", "eventSource": "event_source", "aggregateID": "aggregate_id", "aggregateType": "aggregate_type", "createdAt": "created_at"}
	if err := decodeInto(r, &b, aliases); err != nil {
		writeError(w, r, err)
		return
	}
	now := time.Now().UTC()
	switch {
	case b.EventType == "":
		writeError(w, r, invalid("event_type", "event_type: required"))
		return
	case b.AggregateID == "":
		writeError(w, r, invalid("aggregate_id", "aggregate_id: required"))
		return
	case b.AggregateType == "":
		writeError(w, r, invalid("aggregate_type", "aggregate_type: required"))
		return
	case b.Version <= 0:
		writeError(w, r, invalid("version", "version: must be at least 1"))
		return
	case b.CreatedAt != nil && (b.CreatedAt.Before(now.Add(-eventClockSkew)) || b.CreatedAt.After(now.Add(eventClockSkew))):
		writeError(w, r, invalid("created_at", "created_at: the event is too old or too new (more than %s from now)", eventClockSkew))
		return
	}
	ev := events.Envelope{ID: b.ID, Tenant: webapi.Tenant(r.Context()), Type: b.EventType, Source: b.EventSource, Subject: b.AggregateID,
		AggregateType: b.AggregateType, Version: b.Version, Time: now, Data: b.Data, Metadata: b.Metadata}
	if ev.ID == "" {
		ev.ID = uuid.Must(uuid.NewV7()).String()
	}
	if b.CreatedAt != nil {
		ev.Time = b.CreatedAt.UTC()
	}
	if ev.Source == "" {
		ev.Source = "api"
	}
	if len(ev.Data) == 0 || string(ev.Data) == "null" {
		ev.Data = json.RawMessage(`{}`)
	}
	if string(ev.Metadata) == "null" {
		ev.Metadata = nil
	}
	if err := ev.Validate(); err != nil {
		writeError(w, r, invalid("", "%v", err))
		return
	}
	if err := bus.Append(r.Context(), ev); err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusCreated, showEvent(ev))
}

// timeRange reads ?from, ?to (RFC 3339; from defaults to a day ago, as
// the reference's) and ?limit.
func timeRange(r *http.Request, defaultFrom bool) (eventing.TimeRange, error) {
	q := r.URL.Query()
	var tr eventing.TimeRange
	for _, f := range []struct {
		name string
		into *time.Time
	}{{"from", &tr.From}, {"to", &tr.To}} {
		if s := q.Get(f.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return tr, badRequest(f.name, "%s %q: want an RFC 3339 time", f.name, s)
			}
			*f.into = t
		}
	}
	if tr.From.IsZero() && defaultFrom {
		tr.From = time.Now().Add(-24 * time.Hour)
	}
	var err error
	tr.Limit, err = limitParam(r)
	return tr, err
}

func (a *API) listEvents(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	a.queryEvents(w, r, false, bus)
}

func (a *API) eventsOfAggregate(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	a.queryEvents(w, r, true, bus)
}

// queryEvents lists events by ?event_type (also ?type), ?event_source,
// ?aggregate_type and ?aggregate_id in a time range; /events/aggregate
// requires the three ids, as the reference does.
func (a *API) queryEvents(w http.ResponseWriter, r *http.Request, aggregate bool, bus *eventing.Bus) {
	q := r.URL.Query()
	eq := eventing.EventQuery{Type: q.Get("event_type"), Source: q.Get("event_source"), Subject: q.Get("aggregate_id"), AggregateType: q.Get("aggregate_type")}
	if eq.Type == "" {
		eq.Type = q.Get("type")
	}
	if aggregate && (eq.Type == "" || eq.Subject == "" || eq.AggregateType == "") {
		writeError(w, r, invalid("aggregate_id", "event_type, aggregate_type and aggregate_id: all three are required"))
		return
	}
	var err error
	if eq.TimeRange, err = timeRange(r, r.URL.Path != "/events"); err != nil {
		writeError(w, r, err)
		return
	}
	evs, err := bus.Store().Events(r.Context(), webapi.Tenant(r.Context()), eq)
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, showEvents(evs))
}

func (a *API) eventTypes(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	tr, err := timeRange(r, false)
	if err != nil {
		writeError(w, r, err)
		return
	}
	types, err := bus.Store().EventTypes(r.Context(), webapi.Tenant(r.Context()), tr)
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, types)
}

func (a *API) deleteEvents(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	q := r.URL.Query()
	for _, p := range []string{"event_type", "from", "to"} {
		if q.Get(p) == "" {
			writeError(w, r, invalid(p, "%s: required", p))
			return
		}
	}
	tr, err := timeRange(r, false)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if _, err := bus.Store().DeleteEvents(r.Context(), webapi.Tenant(r.Context()), q.Get("event_type"), tr); err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, "events deleted")
}

// streamEvents is the live stream of one type's events, read from the
// store so that it sees events whichever process appended them. The
// first frame is the reference's greeting.
func (a *API) streamEvents(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	typ, tenant := r.PathValue("eventType"), webapi.Tenant(r.Context())
	s, err := webapi.StartStream(w, a.cfg.Heartbeat)
	if err != nil {
		return
	}
	if err := s.Data(0, "", []byte("Connected to event stream for type: "+typ)); err != nil {
		return
	}
	since := time.Now().UTC()
	seen := map[string]bool{}
	tick := time.NewTicker(eventPoll)
	defer tick.Stop()
	beat := time.NewTicker(a.cfg.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-a.closing:
			return
		case <-beat.C:
			if s.Heartbeat() != nil {
				return
			}
		case <-tick.C:
			evs, err := bus.Store().Events(r.Context(), tenant, eventing.EventQuery{Type: typ, TimeRange: eventing.TimeRange{From: since.Add(-eventPoll), Limit: core.MaxPageSize}})
			if err != nil {
				return
			}
			for i := len(evs) - 1; i >= 0; i-- {
				ev := evs[i]
				if seen[ev.ID] {
					continue
				}
				seen[ev.ID] = true
				if err := s.Event(0, "", showEvent(ev)); err != nil {
					return
				}
				// A client sets created_at within ten minutes of now: one
				// in the future must not hide the events after it.
				if ev.Time.After(since) && !ev.Time.After(time.Now()) {
					since = ev.Time
				}
			}
			if len(seen) > 10_000 {
				clear(seen)
			}
		}
	}
}

func (a *API) listRawEvents(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	tr, err := timeRange(r, false)
	if err != nil {
		writeError(w, r, err)
		return
	}
	raws, err := bus.Store().RawEvents(r.Context(), webapi.Tenant(r.Context()), tr)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeList(w, raws, "")
}

func (a *API) getRawEvent(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	raw, err := bus.Store().RawEvent(r.Context(), webapi.Tenant(r.Context()), r.PathValue("nid"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, raw)
}

// replay is POST /replay?nid= (or ?id=): the raw event's event derived
// again with its path's current mapping.
func (a *API) replay(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	id := r.URL.Query().Get("nid")
	if id == "" {
		id = r.URL.Query().Get("id")
	}
	if id == "" {
		writeError(w, r, badRequest("nid", "nid: required"))
		return
	}
	if _, err := bus.Replay(r.Context(), webapi.Tenant(r.Context()), id); err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusAccepted, "event replayed")
}

func (a *API) decodeMapping(r *http.Request) (events.Mapping, error) {
	var m events.Mapping
	aliases := map[string]string{"event_type": "eventType", "event_source": "eventSource", "aggregate_type": "aggregateType",
		"aggregate_id_field": "aggregateIDField", "aggregateIdField": "aggregateIDField", "aggregate_type_field": "aggregateTypeField",
		"event_type_field": "eventTypeField", "event_source_field": "eventSourceField", "event_id_field": "eventIDField",
		"eventIdField": "eventIDField", "metadata_mapping": "metadataMapping", "delivery_id_field": "deliveryIDField", "deliveryIdField": "deliveryIDField"}
	err := decodeInto(r, &m, aliases)
	return m, err
}

func (a *API) createMapping(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	a.saveMapping(w, r, true, bus)
}

func (a *API) putMapping(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	a.saveMapping(w, r, false, bus)
}

// saveMapping stores a mapping; on PUT the path in the query string is
// the one changed, whatever the body says.
func (a *API) saveMapping(w http.ResponseWriter, r *http.Request, create bool, bus *eventing.Bus) {
	m, err := a.decodeMapping(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	status := http.StatusCreated
	if !create {
		if m.Path = r.URL.Query().Get("path"); m.Path == "" {
			writeError(w, r, badRequest("path", "path: required (?path=)"))
			return
		}
		status = http.StatusOK
	}
	saved, err := bus.Store().SaveMapping(r.Context(), webapi.Tenant(r.Context()), m, create)
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, status, eventing.Shown(saved))
}

func (a *API) listMappings(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	list, err := bus.Store().Mappings(r.Context(), webapi.Tenant(r.Context()))
	if err != nil {
		writeError(w, r, err)
		return
	}
	shown := make([]*events.Mapping, len(list))
	for i, m := range list {
		shown[i] = eventing.Shown(m)
	}
	writeList(w, shown, "")
}

func (a *API) getMapping(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	m, err := bus.Store().Mapping(r.Context(), webapi.Tenant(r.Context()), r.URL.Query().Get("path"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, eventing.Shown(m))
}

func (a *API) deleteMapping(w http.ResponseWriter, r *http.Request, bus *eventing.Bus) {
	if err := bus.Store().DeleteMapping(r.Context(), webapi.Tenant(r.Context()), r.URL.Query().Get("path")); err != nil {
		writeError(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, "mapping removed")
}

// syncMappings is the reference's cache refresh; mappings are read from
// the store on every delivery here, so there is nothing to refresh.
func (a *API) syncMappings(w http.ResponseWriter, _ *http.Request) {
	webapi.WriteJSON(w, http.StatusOK, "mappings synchronized")
}
