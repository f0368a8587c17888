package ingest_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	awsevents "github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/core/eventing"
	"github.com/stepwise-run/stepwise/core/seal"
	"github.com/stepwise-run/stepwise/events"
	"github.com/stepwise-run/stepwise/functions/ingest"
	"github.com/stepwise-run/stepwise/infra/mem"
	"github.com/stepwise-run/stepwise/infra/sqlite"
)

const secret = "webhook-secret"

func sign(body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// newBus returns a bus over records with a signed GitHub mapping and an
// unsigned one, for tenant.
func newBus(t testing.TB, records core.RecordStore, tenant string) *eventing.Bus {
	t.Helper()
	box, err := seal.New(seal.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	bus := eventing.NewBus(eventing.Config{Store: eventing.NewStore(records, box, nil), Functions: eventing.NewFunctions(records, nil)})
	for _, m := range []events.Mapping{
		{Path: "github", EventType: "github", EventTypeField: "$headers.X-GitHub-Event", EventSource: "github", AggregateType: "repository",
			AggregateIDField: "repository.full_name", Version: 1, Signature: &events.Signature{Scheme: events.SchemeGitHub, Secret: secret}},
		{Path: "open", EventType: "note", EventSource: "form", AggregateType: "form", AggregateIDField: "id", Version: 1},
	} {
		if _, err := bus.Store().SaveMapping(context.Background(), tenant, m, true); err != nil {
			t.Fatal(err)
		}
	}
	return bus
}

const (
	pushBody  = `{"repository": {"full_name": "acme/api"}}`
	otherPush = `{"repository": {"full_name": "acme/web"}}`
)

// lambdaPost sends a request as the Lambda entry point gets it: an HTTP
// event of payload format 2.0.
func lambdaPost(t *testing.T, h http.Handler, path, query, body string, headers map[string]string) awsevents.APIGatewayV2HTTPResponse {
	t.Helper()
	ev := awsevents.APIGatewayV2HTTPRequest{
		Version: "2.0", RouteKey: "$default", RawPath: path, RawQueryString: query, Headers: headers, Body: body,
		RequestContext: awsevents.APIGatewayV2HTTPRequestContext{
			HTTP: awsevents.APIGatewayV2HTTPRequestContextHTTPDescription{Method: http.MethodPost, Path: path, SourceIP: "203.0.113.7"},
		},
	}
	resp, err := httpadapter.NewV2(h).ProxyWithContext(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestIngest(t *testing.T) {
	store := mem.New()
	bus := newBus(t, store, core.DefaultTenant)
	h := ingest.New(ingest.Config{Bus: bus})
	github := map[string]string{"content-type": "application/json", "x-github-event": "push", "x-github-delivery": "d-1", "x-hub-signature-256": sign(pushBody)}

	resp := lambdaPost(t, h, "/ingest", "path=github", pushBody, github)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d %s", resp.StatusCode, resp.Body)
	}
	var raw events.RawEvent
	if err := json.Unmarshal([]byte(resp.Body), &raw); err != nil || raw.ID == "" || raw.Path != "github" || len(raw.EventIDs) != 1 {
		t.Fatalf("raw event %s (%v)", resp.Body, err)
	}
	evs, _ := bus.Store().Events(context.Background(), core.DefaultTenant, eventing.EventQuery{Type: "push"})
	if len(evs) != 1 || evs[0].Subject != "acme/api" {
		t.Errorf("events %+v", evs)
	}
	t.Run("a redelivery answers the first raw event", func(t *testing.T) {
		resp := lambdaPost(t, h, "/ingest", "path=github", pushBody, github)
		if resp.StatusCode != http.StatusOK || resp.Headers["X-Stepwise-Duplicate"] != "true" || !strings.Contains(resp.Body, raw.ID) {
			t.Errorf("status %d %v %s", resp.StatusCode, resp.Headers, resp.Body)
		}
	})
	for _, tt := range []struct {
		name, path, query, body string
		headers                 map[string]string
		status                  int
	}{
		{"the path as a path", "/ingest/github", "", otherPush, map[string]string{"x-github-event": "push", "x-github-delivery": "d-2", "x-hub-signature-256": sign(otherPush)}, http.StatusCreated},
		// GitHub signs no delivery id: the same signed body under a new one
		// is a replay of the first, not a new delivery.
		{"a captured body under a new delivery id", "/ingest", "path=github", pushBody, map[string]string{"x-github-event": "push", "x-github-delivery": "forged", "x-hub-signature-256": sign(pushBody)}, http.StatusOK},
		{"a bad signature", "/ingest", "path=github", pushBody, map[string]string{"x-hub-signature-256": sign("other")}, http.StatusUnauthorized},
		{"an unknown path", "/ingest", "path=nope", pushBody, nil, http.StatusNotFound},
		{"no path", "/ingest", "", pushBody, nil, http.StatusBadRequest},
		{"not JSON", "/ingest", "path=open", "id=1", nil, http.StatusUnprocessableEntity},
		{"no aggregate id: stored, and 422", "/ingest", "path=open", `{"text": "hi"}`, nil, http.StatusUnprocessableEntity},
		{"an unsigned mapping without keys", "/ingest", "path=open", `{"id": "n1"}`, nil, http.StatusCreated},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := lambdaPost(t, h, tt.path, tt.query, tt.body, tt.headers)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d %s, want %d", resp.StatusCode, resp.Body, tt.status)
			}
			var env struct {
				Error struct{ Message, Type, Code string }
			}
			if tt.status >= 400 && (json.Unmarshal([]byte(resp.Body), &env) != nil || env.Error.Message == "") {
				t.Errorf("body %s is not the error envelope", resp.Body)
			}
		})
	}
	t.Run("GET is not allowed", func(t *testing.T) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ingest?path=github", nil))
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != http.MethodPost {
			t.Errorf("status %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
		}
	})
}

// TestIngestWithKeys: with keys, a key decides the tenant; without one a
// delivery must carry the signature of a mapping that checks one.
func TestIngestWithKeys(t *testing.T) {
	store := mem.New()
	keys := access.New(access.Config{Store: store})
	_, keySecret, err := keys.Create(context.Background(), "acme", access.Spec{Name: "hooks", Scopes: []access.Scope{access.ScopeAdmin}})
	if err != nil {
		t.Fatal(err)
	}
	bus := newBus(t, store, "acme")
	h := ingest.New(ingest.Config{Bus: bus, Keys: keys})
	signed := map[string]string{"x-github-event": "push", "x-github-delivery": "k-1", "x-hub-signature-256": sign(pushBody)}
	for _, tt := range []struct {
		name, query, body string
		headers           map[string]string
		status            int
	}{
		{"signed, for a tenant", "path=github&tenant=acme", pushBody, signed, http.StatusCreated},
		{"unsigned, without a key", "path=open&tenant=acme", `{"id": "n1"}`, nil, http.StatusUnauthorized},
		{"unsigned, with a key", "path=open", `{"id": "n2"}`, map[string]string{"authorization": "Bearer " + keySecret}, http.StatusCreated},
		{"a bad key", "path=open", `{"id": "n3"}`, map[string]string{"authorization": "Bearer sk-sw-nope"}, http.StatusUnauthorized},
		{"the default tenant has no such mapping", "path=github", pushBody, map[string]string{"x-hub-signature-256": sign(pushBody)}, http.StatusNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if resp := lambdaPost(t, h, "/ingest", tt.query, tt.body, tt.headers); resp.StatusCode != tt.status {
				t.Errorf("status %d %s, want %d", resp.StatusCode, resp.Body, tt.status)
			}
		})
	}
}

// BenchmarkIngest is a signed delivery answered by the handler over a
// SQLite file, the raw event and its event stored first: the figures are
// the answer's p50 and p99.
func BenchmarkIngest(b *testing.B) {
	store, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	bus := newBus(b, store, core.DefaultTenant)
	h := ingest.New(ingest.Config{Bus: bus})
	var took []time.Duration
	i := 0
	for b.Loop() {
		i++
		req := httptest.NewRequest(http.MethodPost, "/ingest?path=github", strings.NewReader(pushBody))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("bench-%d", i))
		req.Header.Set("X-Hub-Signature-256", sign(pushBody))
		rec := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(rec, req)
		took = append(took, time.Since(start))
		if rec.Code != http.StatusCreated {
			b.Fatalf("status %d %s", rec.Code, rec.Body)
		}
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
}
