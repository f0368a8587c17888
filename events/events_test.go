package events_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/events"
)

const githubPush = `{"ref": "refs/heads/main", "repository": {"full_name": "acme/api", "id": 42},
 "commits": [{"id": "c1", "author": {"name": "ada"}}, {"id": "c2"}], "odd key": {"x": true}}`

func payload(t *testing.T) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(githubPush), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestPath(t *testing.T) {
	headers := http.Header{"X-Github-Event": {"push"}}
	for _, tt := range []struct {
		path, want string
		found      bool
	}{
		{"repository.full_name", "acme/api", true},
		{"$.repository.full_name", "acme/api", true},
		{"$.repository.id", "42", true},
		{"commits[1].id", "c2", true},
		{"commits.id", "c1", true}, // an array where a name is wanted: its first element
		{"commits", "", true},
		{"commits[0].author.name", "ada", true},
		{"$['odd key'].x", "true", true},
		{"$headers.x-github-event", "push", true},
		{"$headers.X-Missing", "", false},
		{"repository.nope", "", false},
		{"commits[9].id", "", false},
	} {
		t.Run(tt.path, func(t *testing.T) {
			p, err := events.ParsePath(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			v, ok := p.Lookup(payload(t), headers)
			if ok != tt.found || tt.want != "" && events.Text(v) != tt.want {
				t.Errorf("Lookup = %v, %v; want %q, %v", v, ok, tt.want, tt.found)
			}
		})
	}
	for _, bad := range []string{"", "a..b", "a[", "a[x]", "$headers."} {
		if _, err := events.ParsePath(bad); err == nil {
			t.Errorf("ParsePath(%q) accepted", bad)
		}
	}
}

func TestDerive(t *testing.T) {
	raw := &events.RawEvent{ID: "raw-1", ReceivedAt: time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC), Path: "github",
		Headers: http.Header{"X-Github-Event": {"push"}, "X-Github-Delivery": {"d-1"}}, Payload: payload(t)}
	m := events.Mapping{Path: "github", EventType: "github.event", EventTypeField: "$headers.X-GitHub-Event", EventSource: "github",
		AggregateType: "repository", AggregateIDField: "repository.full_name", Version: 2,
		MetadataMapping: map[string]string{"ref": "$.ref", "delivery": "$headers.X-GitHub-Delivery"}}
	if err := m.Check(); err != nil {
		t.Fatal(err)
	}
	ev, err := m.Derive(raw, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != "push" || ev.Source != "github" || ev.Subject != "acme/api" || ev.AggregateType != "repository" || ev.Version != 2 ||
		ev.Tenant != "acme" || !ev.Time.Equal(raw.ReceivedAt) || !strings.HasPrefix(ev.ID, "raw-1/") {
		t.Errorf("event %+v", ev)
	}
	if string(ev.Metadata) != `{"delivery":"d-1","ref":"refs/heads/main"}` || !strings.Contains(string(ev.Data), `"full_name":"acme/api"`) {
		t.Errorf("metadata %s, data %s", ev.Metadata, ev.Data)
	}
	again, _ := m.Derive(raw, "acme")
	if again.ID != ev.ID {
		t.Errorf("the same mapping gave ids %s and %s", ev.ID, again.ID)
	}
	m2 := m
	m2.Version = 3
	if other, _ := m2.Derive(raw, "acme"); other.ID == ev.ID {
		t.Errorf("a changed mapping gave the same id %s", ev.ID)
	}
	if got := m.DeliveryID(raw.Payload, raw.Headers); got != "d-1" {
		t.Errorf("delivery id %q", got)
	}
	t.Run("the sender's event id", func(t *testing.T) {
		m := m
		m.EventIDField = "commits[0].id"
		if ev, err := m.Derive(raw, "acme"); err != nil || ev.ID != "c1" {
			t.Errorf("id %q, %v", ev.ID, err)
		}
	})
	t.Run("a missing aggregate id", func(t *testing.T) {
		m := m
		m.AggregateIDField = "repository.owner"
		if _, err := m.Derive(raw, "acme"); err == nil || !strings.Contains(err.Error(), "aggregateIDField") {
			t.Errorf("error %v", err)
		}
	})
	for _, tt := range []struct {
		name  string
		edit  func(*events.Mapping)
		field string
	}{
		{"no path", func(m *events.Mapping) { m.Path = "" }, "path"},
		{"a path with a ?", func(m *events.Mapping) { m.Path = "a?b" }, "path"},
		{"no version", func(m *events.Mapping) { m.Version = 0 }, "version"},
		{"no type", func(m *events.Mapping) { m.EventType, m.EventTypeField = "", "" }, "eventType"},
		{"a bad field path", func(m *events.Mapping) { m.AggregateIDField = "a[" }, "aggregateIDField"},
		{"a bad metadata path", func(m *events.Mapping) { m.MetadataMapping = map[string]string{"k": "a..b"} }, "metadataMapping.k"},
		{"an unknown scheme", func(m *events.Mapping) { m.Signature = &events.Signature{Scheme: "md5", Secret: "x"} }, "signature.scheme"},
		{"no secret", func(m *events.Mapping) { m.Signature = &events.Signature{Scheme: "github"} }, "signature.secret"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := m
			tt.edit(&m)
			if err := m.Check(); err == nil || !strings.HasPrefix(err.Error(), tt.field+":") {
				t.Errorf("Check: %v, want an error naming %s", err, tt.field)
			}
		})
	}
}

func hmacHex(key, msg string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

func TestSignatures(t *testing.T) {
	body := []byte(`{"id": "evt_1", "type": "charge.succeeded"}`)
	now := time.Unix(1_800_000_000, 0)
	ts := fmt.Sprint(now.Unix())
	old := fmt.Sprint(now.Add(-10 * time.Minute).Unix())
	key := []byte("0123456789abcdef")
	whsec := "whsec_" + base64.StdEncoding.EncodeToString(key)
	standard := func(id, ts string) string {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id + "." + ts + "." + string(body)))
		return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	for _, tt := range []struct {
		name    string
		sig     events.Signature
		headers http.Header
		ok      bool
	}{
		{"github", events.Signature{Scheme: "github", Secret: "s3"}, http.Header{"X-Hub-Signature-256": {"sha256=" + hmacHex("s3", string(body))}}, true},
		{"github, wrong secret", events.Signature{Scheme: "github", Secret: "s3"}, http.Header{"X-Hub-Signature-256": {"sha256=" + hmacHex("other", string(body))}}, false},
		{"github, missing", events.Signature{Scheme: "github", Secret: "s3"}, http.Header{}, false},
		{"stripe", events.Signature{Scheme: "stripe", Secret: "whsec_x"}, http.Header{"Stripe-Signature": {"t=" + ts + ",v1=" + hmacHex("whsec_x", ts+"."+string(body)) + ",v0=00"}}, true},
		{"stripe, too old", events.Signature{Scheme: "stripe", Secret: "whsec_x"}, http.Header{"Stripe-Signature": {"t=" + old + ",v1=" + hmacHex("whsec_x", old+"."+string(body))}}, false},
		{"stripe, another body", events.Signature{Scheme: "stripe", Secret: "whsec_x"}, http.Header{"Stripe-Signature": {"t=" + ts + ",v1=" + hmacHex("whsec_x", ts+".{}")}}, false},
		{"standard", events.Signature{Scheme: "standard", Secret: whsec}, http.Header{"Webhook-Id": {"msg_1"}, "Webhook-Timestamp": {ts}, "Webhook-Signature": {"v1,bm9wZQ== " + standard("msg_1", ts)}}, true},
		{"standard, another id", events.Signature{Scheme: "standard", Secret: whsec}, http.Header{"Webhook-Id": {"msg_2"}, "Webhook-Timestamp": {ts}, "Webhook-Signature": {standard("msg_1", ts)}}, false},
		{"standard, too old", events.Signature{Scheme: "standard", Secret: whsec}, http.Header{"Webhook-Id": {"msg_1"}, "Webhook-Timestamp": {old}, "Webhook-Signature": {standard("msg_1", old)}}, false},
		{"hmac in a named header", events.Signature{Scheme: "hmac-sha256", Secret: "k", Header: "X-Sig"}, http.Header{"X-Sig": {hmacHex("k", string(body))}}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.sig.Verify(body, tt.headers, now)
			if tt.ok && err != nil || !tt.ok && !errors.Is(err, events.ErrBadSignature) {
				t.Errorf("Verify: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
