package api_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/core/meter"
	"github.com/stepwise-run/stepwise/functions/api"
	"github.com/stepwise-run/stepwise/functions/ingest"
	"github.com/stepwise-run/stepwise/functions/openai"
	"github.com/stepwise-run/stepwise/infra/mem"
)

// TestRoutesMatchDocument keeps the routes and docs/openapi.yaml in step:
// every route is documented and every documented operation is a route.
func TestRoutesMatchDocument(t *testing.T) {
	doc := loadDoc(t)
	store := mem.New()
	// With keys and a meter, so that /keys, /usage, /prices and /limits
	// are served.
	a := api.New(api.Config{Keys: access.New(access.Config{Store: store}), Meter: meter.New(store, store, nil, nil)})
	tail := regexp.MustCompile(`\{(\w+)\.\.\.\}`)
	served := map[string]bool{}
	for _, r := range a.Routes() {
		key := r.Method + " " + tail.ReplaceAllString(r.Pattern, "{$1}")
		if served[key] {
			t.Errorf("route %s registered twice", key)
		}
		served[key] = true
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		if openai.Owns(path) || ingest.Owns(path) {
			continue // functions/openai's and functions/ingest's
		}
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	for key := range served {
		if !documented[key] {
			t.Errorf("route %s is not in docs/openapi.yaml", key)
		}
	}
	for key := range documented {
		if !served[key] {
			t.Errorf("docs/openapi.yaml documents %s, which is no route", key)
		}
	}
	if len(served) == 0 || len(documented) == 0 {
		t.Errorf("%d routes, %d documented operations: nothing was compared", len(served), len(documented))
	}
}

func TestMeta(t *testing.T) {
	e := newEnv(t)
	t.Run("health", func(t *testing.T) {
		res := e.do(req{method: "GET", path: "/health"})
		if res.status != http.StatusOK || len(res.body) != 0 {
			t.Errorf("GET /health = %d %q, want 200 and no body", res.status, res.body)
		}
	})
	t.Run("version", func(t *testing.T) {
		var v map[string]string
		e.do(req{method: "GET", path: "/version"}).decode(t, &v)
		want := map[string]string{"version": "test", "nodeInstanceID": "node-1", "tenancy": "default"}
		for k, w := range want {
			if v[k] != w {
				t.Errorf("version %s = %q, want %q", k, v[k], w)
			}
		}
	})
	t.Run("openapi.json is the document", func(t *testing.T) {
		res := e.do(req{method: "GET", path: "/openapi.json"})
		var got map[string]any
		res.decode(t, &got)
		if got["openapi"] != "3.0.3" {
			t.Errorf("openapi = %v", got["openapi"])
		}
		paths, _ := got["paths"].(map[string]any)
		if len(paths) != e.doc.Paths.Len() {
			t.Errorf("served %d paths, the document has %d", len(paths), e.doc.Paths.Len())
		}
		if ct := res.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		responses := paths["/health"].(map[string]any)["get"].(map[string]any)["responses"].(map[string]any)
		if _, ok := responses["200"]; !ok {
			t.Errorf("status keys are not strings in the JSON form: %v", responses)
		}
	})
	t.Run("defaultmodel", func(t *testing.T) {
		var d map[string]string
		e.do(req{method: "GET", path: "/defaultmodel"}).decode(t, &d)
		want := map[string]string{"modelName": embedModel, "embedModel": embedModel, "taskModel": taskModel, "chatModel": chatModel}
		for k, w := range want {
			if d[k] != w {
				t.Errorf("defaultmodel %s = %q, want %q", k, d[k], w)
			}
		}
	})
	t.Run("supported", func(t *testing.T) {
		var names []string
		e.do(req{method: "GET", path: "/supported"}).decode(t, &names)
		if !slices.Equal(names, []string{"echo", "print"}) {
			t.Errorf("supported = %v", names)
		}
	})
}

func TestUnknownRoutes(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, method, path string
		status             int
		allow              string
	}{
		{"unknown path", "GET", "/nope", http.StatusNotFound, ""},
		{"root", "GET", "/", http.StatusNotFound, ""},
		{"wrong method", "DELETE", "/health", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"wrong method on a collection", "PATCH", "/taskchains", http.StatusMethodNotAllowed, "GET, HEAD, POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do(req{method: tt.method, path: tt.path})
			res.wantError(t, tt.status, "")
			if got := res.header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow = %q, want %q", got, tt.allow)
			}
		})
	}
}

// TestOpenAPIDocumentsAliases checks that the aliases the API accepts are
// written into the document, so that clients can find them.
func TestOpenAPIDocumentsAliases(t *testing.T) {
	doc := loadDoc(t)
	tests := []struct{ schema, alias string }{
		{"BackendInput", "baseURL"},
		{"TasksRequest", "input_type"},
		{"TasksRequest", "template_vars"},
		{"TasksRequest", "routingPolicy"},
		{"ExecuteRequest", "routingPolicy"},
	}
	for _, tt := range tests {
		t.Run(tt.schema+"."+tt.alias, func(t *testing.T) {
			p := doc.Components.Schemas[tt.schema].Value.Properties[tt.alias]
			if p == nil || !strings.Contains(p.Value.Description, "lias") {
				t.Errorf("%s.%s is not documented as an alias", tt.schema, tt.alias)
			}
		})
	}
	b, err := json.Marshal(doc.Components.Schemas["ChainInput"].Value.Description)
	if err != nil || !strings.Contains(string(b), "model_execution") {
		t.Errorf("ChainInput does not list the handler aliases: %s", b)
	}
}
