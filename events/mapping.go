package events

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// RawEvent is one webhook delivery as it was received, stored before it
// is answered.
type RawEvent struct {
	ID string `json:"id"`
	// NID is the reference system's numeric id.
	NID        int64       `json:"nid"`
	ReceivedAt time.Time   `json:"received_at"`
	Path       string      `json:"path"`
	Headers    http.Header `json:"headers,omitempty"`
	Payload    any         `json:"payload"`
	// DeliveryID is the sender's id of the delivery (X-GitHub-Delivery,
	// webhook-id, ...): a second delivery with the same one is the same
	// raw event.
	DeliveryID string `json:"delivery_id,omitempty"`
	// BodyHash identifies the delivery by its body too, for signature
	// schemes that sign no id or time (a captured body could be sent
	// again under a new delivery id).
	BodyHash string `json:"body_hash,omitempty"`
	// EventIDs are the domain events derived from it; Error why none
	// could be.
	EventIDs []string `json:"event_ids,omitempty"`
	Error    string   `json:"error_message,omitempty"`
}

// Mapping turns the raw events of one ingest path into domain events. Its
// *Field members are field paths (ParsePath): JSONPath into the payload,
// with or without "$.", or "$headers.Name" for a header.
type Mapping struct {
	Path               string            `json:"path"`
	EventType          string            `json:"eventType"`
	EventSource        string            `json:"eventSource"`
	AggregateType      string            `json:"aggregateType"`
	AggregateIDField   string            `json:"aggregateIDField"`
	AggregateTypeField string            `json:"aggregateTypeField,omitempty"`
	EventTypeField     string            `json:"eventTypeField,omitempty"`
	EventSourceField   string            `json:"eventSourceField,omitempty"`
	EventIDField       string            `json:"eventIDField,omitempty"`
	Version            int               `json:"version"`
	MetadataMapping    map[string]string `json:"metadataMapping,omitempty"`
	// DeliveryIDField names where the sender's delivery id is, to
	// deduplicate deliveries (default: the header the signature scheme
	// uses, else X-GitHub-Delivery, webhook-id or Idempotency-Key).
	DeliveryIDField string `json:"deliveryIDField,omitempty"`
	// Signature, if set, is checked on every delivery before anything is
	// stored.
	Signature *Signature `json:"signature,omitempty"`
}

// Check validates a mapping, naming the field at fault.
func (m *Mapping) Check() error {
	switch {
	case m.Path == "":
		return fmt.Errorf("path: required")
	case len(m.Path) > MaxNameLen || strings.ContainsAny(m.Path, " \t\r\n?#"):
		return fmt.Errorf("path: %q must be at most %d characters without spaces, ? or #", m.Path, MaxNameLen)
	case m.EventType == "" && m.EventTypeField == "":
		return fmt.Errorf("eventType: required (or eventTypeField)")
	case m.EventSource == "" && m.EventSourceField == "":
		return fmt.Errorf("eventSource: required (or eventSourceField)")
	case m.AggregateType == "" && m.AggregateTypeField == "":
		return fmt.Errorf("aggregateType: required (or aggregateTypeField)")
	case m.Version <= 0:
		return fmt.Errorf("version: must be at least 1")
	case len(m.EventType) > MaxNameLen || strings.Contains(m.EventType, "#"):
		return fmt.Errorf("eventType: at most %d characters, no #", MaxNameLen)
	case len(m.EventSource) > MaxNameLen:
		return fmt.Errorf("eventSource: at most %d characters", MaxNameLen)
	}
	for _, f := range []struct{ name, path string }{
		{"aggregateIDField", m.AggregateIDField}, {"aggregateTypeField", m.AggregateTypeField},
		{"eventTypeField", m.EventTypeField}, {"eventSourceField", m.EventSourceField},
		{"eventIDField", m.EventIDField}, {"deliveryIDField", m.DeliveryIDField},
	} {
		if f.path == "" {
			continue
		}
		if _, err := ParsePath(f.path); err != nil {
			return fmt.Errorf("%s: %v", f.name, err)
		}
	}
	for k, p := range m.MetadataMapping {
		if _, err := ParsePath(p); err != nil {
			return fmt.Errorf("metadataMapping.%s: %v", k, err)
		}
	}
	if m.Signature != nil {
		if err := m.Signature.check(); err != nil {
			return fmt.Errorf("signature.%v", err)
		}
	}
	return nil
}

// deliveryHeaders are where senders put their delivery ids, in order.
var deliveryHeaders = []string{"X-GitHub-Delivery", "Webhook-Id", "X-Gitlab-Event-UUID", "X-Request-Id", "Idempotency-Key"}

// DeliveryID is the sender's id of a delivery, "" if it gives none.
func (m *Mapping) DeliveryID(payload any, headers http.Header) string {
	if m.DeliveryIDField != "" {
		p, err := ParsePath(m.DeliveryIDField)
		if err == nil {
			v, _ := p.Lookup(payload, headers)
			return Text(v)
		}
	}
	if m.Signature != nil {
		switch m.Signature.Scheme {
		case SchemeStripe:
			// Stripe's delivery id is its event's id, in the signed body.
			if obj, ok := payload.(map[string]any); ok {
				if id, ok := obj["id"].(string); ok {
					return id
				}
			}
		case SchemeStandard:
			// Standard Webhooks sign webhook-id.
			if id := headers.Get("Webhook-Id"); id != "" {
				return id
			}
		}
	}
	for _, h := range deliveryHeaders {
		if v := headers.Get(h); v != "" {
			return v
		}
	}
	return ""
}

// Derive makes the domain event of a raw event. Its id is the payload's
// eventIDField if the mapping names one, else the raw event's id and a
// hash of the mapping: deriving again with the same mapping gives the
// same event, and a changed mapping a new one.
func (m *Mapping) Derive(raw *RawEvent, tenant string) (Envelope, error) {
	look := func(field, path string) (string, bool, error) {
		if path == "" {
			return "", false, nil
		}
		p, err := ParsePath(path)
		if err != nil {
			return "", false, fmt.Errorf("%s: %v", field, err)
		}
		v, ok := p.Lookup(raw.Payload, raw.Headers)
		return Text(v), ok && Text(v) != "", nil
	}
	ev := Envelope{Tenant: tenant, Type: m.EventType, Source: m.EventSource, AggregateType: m.AggregateType,
		Version: m.Version, Time: raw.ReceivedAt}
	for _, f := range []struct {
		field, path string
		into        *string
		required    bool
	}{
		{"eventTypeField", m.EventTypeField, &ev.Type, false},
		{"eventSourceField", m.EventSourceField, &ev.Source, false},
		{"aggregateTypeField", m.AggregateTypeField, &ev.AggregateType, true},
		{"aggregateIDField", m.AggregateIDField, &ev.Subject, true},
		{"eventIDField", m.EventIDField, &ev.ID, false},
	} {
		v, ok, err := look(f.field, f.path)
		switch {
		case err != nil:
			return Envelope{}, err
		case ok:
			*f.into = v
		case f.required && f.path != "":
			return Envelope{}, fmt.Errorf("%s: %q is not in the payload", f.field, f.path)
		}
	}
	if m.AggregateIDField == "" {
		return Envelope{}, fmt.Errorf("aggregateIDField: required to ingest")
	}
	if ev.ID == "" {
		ev.ID = raw.ID + "/" + m.fingerprint()
	}
	data := raw.Payload
	if _, ok := data.(map[string]any); !ok {
		data = map[string]any{"payload": data}
	}
	b, err := json.Marshal(data)
	if err != nil {
		return Envelope{}, fmt.Errorf("payload: %v", err)
	}
	ev.Data = b
	if len(m.MetadataMapping) > 0 {
		meta := map[string]string{}
		for k, path := range m.MetadataMapping {
			if v, ok, err := look("metadataMapping."+k, path); err != nil {
				return Envelope{}, err
			} else if ok {
				meta[k] = v
			}
		}
		if ev.Metadata, err = json.Marshal(meta); err != nil {
			return Envelope{}, err
		}
	}
	if err := ev.Validate(); err != nil {
		return Envelope{}, err
	}
	return ev, nil
}

// fingerprint is a short hash of what the mapping derives.
func (m *Mapping) fingerprint() string {
	c := *m
	c.Signature = nil
	b, _ := json.Marshal(c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}
