package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestReferencePayloads sends every route of the reference's §1 (the
// inventory's tables for meta, execution, chains, backends, models,
// groups and providers) its own request, as the reference's clients and
// tests send it, and checks the status and the shape of the answer: the
// top-level keys of an object, the element keys of a list, or the text of
// a string answer. Where stepwise answers differently on purpose,
// docs/server.md ("Where it differs from the reference") says why, and
// the case here expects stepwise's answer.
func TestReferencePayloads(t *testing.T) {
	e := newEnv(t)
	backendURL := e.llm.URL()
	var backendID, groupID string
	steps := []struct {
		name   string
		req    req
		status int
		// keys the answer (an object, or a list's first element) has.
		keys []string
		// text is a string answer.
		text string
		// then reads the answer.
		then func(t *testing.T, body []byte)
	}{
		{name: "GET /health", req: req{method: "GET", path: "/health"}, status: http.StatusOK},
		{name: "GET /version", req: req{method: "GET", path: "/version"}, status: http.StatusOK, keys: []string{"version", "nodeInstanceID", "tenancy"}},
		{name: "GET /supported", req: req{method: "GET", path: "/supported"}, status: http.StatusOK},
		{name: "GET /defaultmodel", req: req{method: "GET", path: "/defaultmodel"}, status: http.StatusOK, keys: []string{"modelName"}},
		{name: "POST /execute without a prompt", req: req{method: "POST", path: "/execute", body: map[string]any{"prompt": ""}}, status: http.StatusBadRequest},

		{name: "POST /taskchains", req: req{method: "POST", path: "/taskchains", body: map[string]any{"id": "ref-chain", "description": "d",
			"tasks": []any{map[string]any{"id": "a", "handler": "noop", "transition": map[string]any{"branches": []any{map[string]any{"operator": "default", "goto": "end"}}}}}}},
			status: http.StatusCreated, keys: []string{"id", "tasks"}},
		{name: "GET /taskchains", req: req{method: "GET", path: "/taskchains?limit=10"}, status: http.StatusOK, keys: []string{"id", "tasks"}},
		{name: "GET /taskchains/{id}", req: req{method: "GET", path: "/taskchains/ref-chain"}, status: http.StatusOK, keys: []string{"id", "tasks"}},
		{name: "PUT /taskchains/{id} with another id", req: req{method: "PUT", path: "/taskchains/ref-chain", body: map[string]any{"id": "other",
			"tasks": []any{map[string]any{"id": "a", "handler": "noop"}}}}, status: http.StatusUnprocessableEntity},
		{name: "DELETE /taskchains/{id}", req: req{method: "DELETE", path: "/taskchains/ref-chain"}, status: http.StatusOK, text: "task chain ref-chain deleted"},
		{name: "GET /taskchains/{id} deleted", req: req{method: "GET", path: "/taskchains/ref-chain"}, status: http.StatusNotFound},

		{name: "POST /backends", req: req{method: "POST", path: "/backends", body: map[string]any{"name": "ref-ollama", "baseUrl": backendURL, "type": "ollama"}},
			status: http.StatusCreated, keys: []string{"id", "name", "baseUrl", "type", "createdAt", "updatedAt"},
			then: func(t *testing.T, b []byte) { backendID = field(t, b, "id") }},
		{name: "POST /backends again", req: req{method: "POST", path: "/backends", body: map[string]any{"name": "ref-ollama", "baseUrl": backendURL, "type": "ollama"}}, status: http.StatusConflict},
		{name: "GET /backends", req: req{method: "GET", path: "/backends"}, status: http.StatusOK, keys: []string{"id", "name", "baseUrl", "type", "models", "pulledModels", "createdAt", "updatedAt"}},
		{name: "GET /state", req: req{method: "GET", path: "/state"}, status: http.StatusOK, keys: []string{"id", "name", "models", "pulledModels", "backend"}},
		{name: "GET /queue", req: req{method: "GET", path: "/queue"}, status: http.StatusOK},

		{name: "POST /models", req: req{method: "POST", path: "/models", body: map[string]any{"model": "smollm2:135m", "contextLength": 1024, "canChat": true, "canPrompt": true}},
			status: http.StatusCreated, keys: []string{"id", "model", "contextLength", "canChat", "canEmbed", "canPrompt", "canStream", "createdAt", "updatedAt"},
			then: func(t *testing.T, b []byte) {
				if id := field(t, b, "id"); id != "smollm2:135m" {
					t.Errorf("the model's id is %q, want its name", id)
				}
			}},
		{name: "POST /models without a context length", req: req{method: "POST", path: "/models", body: map[string]any{"model": "x:1b", "canChat": true}}, status: http.StatusBadRequest},
		{name: "POST /models with no capability", req: req{method: "POST", path: "/models", body: map[string]any{"model": "x:1b", "contextLength": 10}}, status: http.StatusBadRequest},
		{name: "GET /models", req: req{method: "GET", path: "/models?limit=100"}, status: http.StatusOK, keys: []string{"id", "model", "contextLength", "canChat"}},
		{name: "PUT /models/{id}", req: req{method: "PUT", path: "/models/smollm2:135m", body: map[string]any{"id": "smollm2:135m", "model": "smollm2:135m", "contextLength": 2048, "canChat": true, "canPrompt": true}},
			status: http.StatusOK, keys: []string{"id", "model", "contextLength"}},

		{name: "POST /groups", req: req{method: "POST", path: "/groups", body: map[string]any{"name": "ref-group", "purposeType": "ref-purpose"}},
			status: http.StatusCreated, keys: []string{"id", "name", "purposeType", "createdAt", "updatedAt"},
			then: func(t *testing.T, b []byte) { groupID = field(t, b, "id") }},
		{name: "GET /groups", req: req{method: "GET", path: "/groups"}, status: http.StatusOK, keys: []string{"id", "name", "purposeType"}},
		{name: "GET /group-by-name/{name}", req: req{method: "GET", path: "/group-by-name/ref-group"}, status: http.StatusOK, keys: []string{"id", "name"}},
		{name: "GET /group-by-purpose/{purpose}", req: req{method: "GET", path: "/group-by-purpose/ref-purpose"}, status: http.StatusOK, keys: []string{"id", "name"}},
		{name: "POST /backend-affinity", req: req{method: "POST", path: "/backend-affinity/{group}/backends/{backend}"}, status: http.StatusCreated, text: "backend assigned"},
		{name: "GET /backend-affinity/{group}/backends", req: req{method: "GET", path: "/backend-affinity/{group}/backends"}, status: http.StatusOK, keys: []string{"id", "name"}},
		{name: "POST /model-affinity", req: req{method: "POST", path: "/model-affinity/{group}/models/smollm2:135m"}, status: http.StatusOK, text: "model assigned"},
		{name: "GET /model-affinity/{group}/models", req: req{method: "GET", path: "/model-affinity/{group}/models"}, status: http.StatusOK, keys: []string{"id", "model"}},
		{name: "DELETE /model-affinity", req: req{method: "DELETE", path: "/model-affinity/{group}/models/smollm2:135m"}, status: http.StatusOK, text: "model removed"},
		{name: "DELETE /backend-affinity", req: req{method: "DELETE", path: "/backend-affinity/{group}/backends/{backend}"}, status: http.StatusOK, text: "backend removed"},
		{name: "DELETE /groups/{id}", req: req{method: "DELETE", path: "/groups/{group}"}, status: http.StatusOK, text: "deleted"},
		{name: "DELETE /models/{model}", req: req{method: "DELETE", path: "/models/smollm2:135m?purge=true"}, status: http.StatusOK, text: "model removed"},
		{name: "DELETE /backends/{id}", req: req{method: "DELETE", path: "/backends/{backend}"}, status: http.StatusOK, text: "backend removed"},

		{name: "GET /providers/gemini/status unconfigured", req: req{method: "GET", path: "/providers/gemini/status"}, status: http.StatusOK, keys: []string{"configured", "updatedAt", "provider"},
			then: func(t *testing.T, b []byte) {
				if strings.Contains(string(b), `"configured":true`) {
					t.Errorf("gemini is configured on a fresh database: %s", b)
				}
			}},
		{name: "POST /providers/openai/configure without a key", req: req{method: "POST", path: "/providers/openai/configure", body: map[string]any{"apiKey": ""}}, status: http.StatusUnprocessableEntity},
		{name: "POST /providers/openai/configure", req: req{method: "POST", path: "/providers/openai/configure", body: map[string]any{"apiKey": "sk-test", "upsert": true}},
			status: http.StatusOK, keys: []string{"configured", "updatedAt", "provider"}},
		{name: "POST /providers/openai/configure again without upsert", req: req{method: "POST", path: "/providers/openai/configure", body: map[string]any{"apiKey": "sk-test-2"}}, status: http.StatusUnprocessableEntity},
		{name: "POST /providers/gemini/configure", req: req{method: "POST", path: "/providers/gemini/configure", body: map[string]any{"apiKey": "g-test", "upsert": true}},
			status: http.StatusOK, keys: []string{"configured", "updatedAt", "provider"}},
		{name: "GET /providers/openai/status", req: req{method: "GET", path: "/providers/openai/status"}, status: http.StatusOK, keys: []string{"configured", "updatedAt", "provider"}},
		// Deliberately different: the key is never returned (the reference
		// answered it in plain text).
		{name: "GET /providers/{type}/config", req: req{method: "GET", path: "/providers/openai/config"}, status: http.StatusOK, keys: []string{"APIKey", "Type"},
			then: func(t *testing.T, b []byte) {
				if strings.Contains(string(b), "sk-test") {
					t.Errorf("the provider key is returned: %s", b)
				}
			}},
		{name: "GET /providers/configs", req: req{method: "GET", path: "/providers/configs"}, status: http.StatusOK, keys: []string{"APIKey", "Type"}},
		{name: "DELETE /providers/{type}/config", req: req{method: "DELETE", path: "/providers/gemini/config"}, status: http.StatusOK, text: "Provider config deleted successfully"},

		// §1.10–1.12: events, the event bridge and mappings, functions.
		{name: "POST /mappings", req: req{method: "POST", path: "/mappings", body: map[string]any{"path": "forms", "eventType": "form.sent", "eventSource": "forms",
			"aggregateType": "form", "aggregateIDField": "data.id", "version": 1, "metadataMapping": map[string]string{"who": "data.user"}}},
			status: http.StatusCreated, keys: []string{"path", "eventType", "eventSource", "aggregateType", "aggregateIDField", "version"}},
		{name: "POST /mappings again", req: req{method: "POST", path: "/mappings", body: map[string]any{"path": "forms", "eventType": "x", "eventSource": "s", "aggregateType": "a", "version": 1}}, status: http.StatusConflict},
		{name: "POST /mappings without a version", req: req{method: "POST", path: "/mappings", body: map[string]any{"path": "v0", "eventType": "x", "eventSource": "s", "aggregateType": "a"}}, status: http.StatusUnprocessableEntity},
		{name: "GET /mappings", req: req{method: "GET", path: "/mappings"}, status: http.StatusOK, keys: []string{"path", "eventType"}},
		{name: "GET /mapping?path=", req: req{method: "GET", path: "/mapping?path=forms"}, status: http.StatusOK, keys: []string{"path", "eventType"}},
		{name: "POST /sync", req: req{method: "POST", path: "/sync"}, status: http.StatusOK, text: "mappings synchronized"},
		{name: "POST /ingest without a path", req: req{method: "POST", path: "/ingest", body: map[string]any{"data": map[string]any{"id": "f1"}}}, status: http.StatusBadRequest},
		{name: "POST /ingest for an unknown path", req: req{method: "POST", path: "/ingest?path=nope", body: map[string]any{"data": map[string]any{"id": "f1"}}}, status: http.StatusNotFound},
		{name: "POST /ingest", req: req{method: "POST", path: "/ingest?path=forms", body: map[string]any{"data": map[string]any{"id": "f1", "user": "ada"}}},
			status: http.StatusCreated, keys: []string{"id", "nid", "received_at", "path", "payload"}},
		{name: "GET /raw-events", req: req{method: "GET", path: "/raw-events?limit=10"}, status: http.StatusOK, keys: []string{"id", "nid", "received_at", "path", "payload"}},
		{name: "POST /replay without a nid", req: req{method: "POST", path: "/replay"}, status: http.StatusBadRequest},
		{name: "POST /replay for an unknown nid", req: req{method: "POST", path: "/replay?nid=12345"}, status: http.StatusNotFound},
		{name: "POST /events", req: req{method: "POST", path: "/events", body: map[string]any{"event_type": "note", "event_source": "api", "aggregate_id": "n1", "aggregate_type": "note", "version": 1, "data": map[string]any{"x": 1}}},
			status: http.StatusCreated, keys: []string{"id", "created_at", "event_type", "event_source", "aggregate_id", "aggregate_type", "version", "data", "metadata"}},
		{name: "POST /events too old", req: req{method: "POST", path: "/events", body: map[string]any{"event_type": "note", "aggregate_id": "n1", "aggregate_type": "note", "version": 1, "created_at": "2000-01-01T00:00:00Z"}}, status: http.StatusUnprocessableEntity},
		{name: "POST /events without a version", req: req{method: "POST", path: "/events", body: map[string]any{"event_type": "note", "aggregate_id": "n1", "aggregate_type": "note"}}, status: http.StatusUnprocessableEntity},
		{name: "GET /events/type", req: req{method: "GET", path: "/events/type?event_type=form.sent"}, status: http.StatusOK, keys: []string{"id", "event_type", "aggregate_id", "metadata"}},
		{name: "GET /events/source", req: req{method: "GET", path: "/events/source?event_type=note&event_source=api"}, status: http.StatusOK, keys: []string{"id", "event_source"}},
		{name: "GET /events/aggregate", req: req{method: "GET", path: "/events/aggregate?event_type=note&aggregate_type=note&aggregate_id=n1"}, status: http.StatusOK, keys: []string{"id", "aggregate_id"}},
		{name: "GET /events/aggregate without its ids", req: req{method: "GET", path: "/events/aggregate?event_type=note"}, status: http.StatusUnprocessableEntity},
		{name: "GET /events/types", req: req{method: "GET", path: "/events/types"}, status: http.StatusOK},
		{name: "DELETE /events/type without a range", req: req{method: "DELETE", path: "/events/type?event_type=note"}, status: http.StatusUnprocessableEntity},
		{name: "DELETE /events/type", req: req{method: "DELETE", path: "/events/type?event_type=note&from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"}, status: http.StatusOK, text: "events deleted"},
		{name: "POST /functions", req: req{method: "POST", path: "/functions", body: map[string]any{"name": "f", "description": "d", "scriptType": "goja", "script": "function f(e) { return {} }"}},
			status: http.StatusCreated, keys: []string{"name", "description", "scriptType", "script"}},
		{name: "POST /functions invalid", req: req{method: "POST", path: "/functions", body: map[string]any{"name": "", "script": "1"}}, status: http.StatusUnprocessableEntity},
		{name: "GET /functions", req: req{method: "GET", path: "/functions?limit=10"}, status: http.StatusOK, keys: []string{"name", "script"}},
		{name: "POST /event-triggers", req: req{method: "POST", path: "/event-triggers", body: map[string]any{"name": "t", "description": "d", "listenFor": map[string]any{"type": "note"}, "type": "function", "function": "f"}},
			status: http.StatusCreated, keys: []string{"name", "listenFor", "type", "function"}},
		{name: "POST /event-triggers for a missing function", req: req{method: "POST", path: "/event-triggers", body: map[string]any{"name": "t2", "listenFor": map[string]any{"type": "note"}, "type": "function", "function": "nope"}}, status: http.StatusConflict},
		{name: "GET /event-triggers/event-type/{type}", req: req{method: "GET", path: "/event-triggers/event-type/note"}, status: http.StatusOK, keys: []string{"name", "function"}},
		{name: "GET /event-triggers/function/{name}", req: req{method: "GET", path: "/event-triggers/function/f"}, status: http.StatusOK, keys: []string{"name", "function"}},
		{name: "POST /executor/sync", req: req{method: "POST", path: "/executor/sync"}, status: http.StatusOK, text: "sync triggered"},
		{name: "DELETE /functions/{name}", req: req{method: "DELETE", path: "/functions/f"}, status: http.StatusOK, text: "function removed"},
		{name: "GET /event-triggers/{name} after its function went", req: req{method: "GET", path: "/event-triggers/t"}, status: http.StatusNotFound},
		{name: "DELETE /mapping?path=", req: req{method: "DELETE", path: "/mapping?path=forms"}, status: http.StatusOK, text: "mapping removed"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			r := st.req
			r.path = strings.NewReplacer("{group}", groupID, "{backend}", backendID).Replace(r.path)
			res := e.do(r)
			if res.status != st.status {
				t.Fatalf("= %d %s, want %d", res.status, res.body, st.status)
			}
			if st.text != "" {
				var s string
				if err := json.Unmarshal(res.body, &s); err != nil || s != st.text {
					t.Errorf("answer %s, want %q", res.body, st.text)
				}
			}
			if len(st.keys) > 0 {
				checkKeys(t, res.body, st.keys)
			}
			if st.then != nil {
				st.then(t, res.body)
			}
		})
	}
}

// checkKeys fails unless the answer, an object or a list whose first
// element is one, has every key.
func checkKeys(t *testing.T, body []byte, keys []string) {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil {
		var list []map[string]any
		if err := json.Unmarshal(body, &list); err != nil || len(list) == 0 {
			t.Fatalf("answer %s is neither an object nor a list of objects", body)
		}
		obj = list[0]
	}
	for _, k := range keys {
		if _, ok := obj[k]; !ok {
			t.Errorf("no %q in %s", k, body)
		}
	}
}

// field is a string field of an object answer.
func field(t *testing.T, body []byte, name string) string {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	s, _ := obj[name].(string)
	return s
}
