package api_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// groupOut is a group as tests read it.
type groupOut struct {
	ID, Name, PurposeType string
}

func TestGroups(t *testing.T) {
	e := newEnv(t)
	var g groupOut
	res := e.do(req{method: "POST", path: "/groups", body: map[string]any{"name": "gpu", "purposeType": "Tasks"}})
	if res.status != http.StatusCreated {
		t.Fatalf("POST /groups = %d %s", res.status, res.body)
	}
	res.decode(t, &g)
	if g.ID == "" || g.Name != "gpu" || g.PurposeType != "Tasks" {
		t.Fatalf("created %+v", g)
	}

	t.Run("list all", func(t *testing.T) {
		var all []groupOut
		e.do(req{method: "GET", path: "/groups"}).decode(t, &all)
		if len(all) != 4 {
			t.Errorf("groups = %+v, want the 3 built-in ones and gpu", all)
		}
	})
	t.Run("by name", func(t *testing.T) {
		var got groupOut
		e.do(req{method: "GET", path: "/group-by-name/gpu"}).decode(t, &got)
		if got.ID != g.ID {
			t.Errorf("by name = %+v", got)
		}
	})
	t.Run("by purpose", func(t *testing.T) {
		var got []groupOut
		res := e.do(req{method: "GET", path: "/group-by-purpose/Tasks?limit=1"})
		res.decode(t, &got)
		if len(got) != 1 || got[0].ID != g.ID || res.header.Get("X-Next-Cursor") == "" {
			t.Fatalf("first page %+v, cursor %q", got, res.header.Get("X-Next-Cursor"))
		}
		res = e.do(req{method: "GET", path: "/group-by-purpose/Tasks?limit=1&cursor=" + url.QueryEscape(res.header.Get("X-Next-Cursor"))})
		res.decode(t, &got)
		if len(got) != 1 || got[0].ID != "internal_tasks_group" || res.header.Get("X-Next-Cursor") != "" {
			t.Errorf("second page %+v, cursor %q", got, res.header.Get("X-Next-Cursor"))
		}
	})
	t.Run("rename", func(t *testing.T) {
		var got groupOut
		e.do(req{method: "PUT", path: "/groups/" + g.ID, body: map[string]any{"name": "gpu-2", "purposeType": "Tasks"}}).decode(t, &got)
		if got.Name != "gpu-2" || got.ID != g.ID {
			t.Errorf("renamed %+v", got)
		}
	})

	tests := []struct {
		name, method, path string
		body               any
		status             int
		param, text        string
	}{
		{"no name", "POST", "/groups", map[string]any{"purposeType": "x"}, 422, "name", "required"},
		{"duplicate", "POST", "/groups", map[string]any{"name": "gpu-2"}, 409, "name", "gpu-2"},
		{"unknown field", "POST", "/groups", map[string]any{"name": "x", "purpose": "x"}, 422, "purpose", `did you mean "purposeType"`},
		{"rename built-in", "PUT", "/groups/internal_chat_group", map[string]any{"name": "chat"}, 403, "", "built in"},
		{"delete built-in", "DELETE", "/groups/internal_embed_group", nil, 403, "", "built in"},
		{"get missing", "GET", "/groups/ghost", nil, 404, "", "ghost"},
		{"name missing", "GET", "/group-by-name/ghost", nil, 404, "", "ghost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.do(req{method: tt.method, path: tt.path, body: tt.body}).wantError(t, tt.status, tt.param)
			if !strings.Contains(got.Error.Message, tt.text) {
				t.Errorf("message %q does not contain %q", got.Error.Message, tt.text)
			}
		})
	}

	t.Run("delete", func(t *testing.T) {
		var msg string
		e.do(req{method: "DELETE", path: "/groups/" + g.ID}).decode(t, &msg)
		if msg != "deleted" {
			t.Errorf("DELETE = %q", msg)
		}
		e.do(req{method: "GET", path: "/groups/" + g.ID}).wantError(t, http.StatusNotFound, "")
	})
}

func TestAffinity(t *testing.T) {
	e := newEnv(t)
	backend := e.addOllama("local-ollama")
	const model = "library/phi3:mini"
	e.do(req{method: "POST", path: "/models", body: map[string]any{"model": model, "contextLength": 4096, "canPrompt": true}})

	t.Run("backends", func(t *testing.T) {
		for range 2 { // assigning twice is not an error
			res := e.do(req{method: "POST", path: "/backend-affinity/internal_chat_group/backends/" + backend})
			if res.status != http.StatusCreated || !strings.Contains(string(res.body), "backend assigned") {
				t.Fatalf("assign = %d %s", res.status, res.body)
			}
		}
		var groups []groupOut
		e.do(req{method: "GET", path: "/backend-affinity/" + backend + "/groups"}).decode(t, &groups)
		if len(groups) != 1 || groups[0].ID != "internal_chat_group" {
			t.Errorf("groups of the backend = %+v", groups)
		}
		var msg string
		e.do(req{method: "DELETE", path: "/backend-affinity/internal_chat_group/backends/" + backend}).decode(t, &msg)
		if msg != "backend removed" {
			t.Errorf("unassign = %q", msg)
		}
		var members []any
		e.do(req{method: "GET", path: "/backend-affinity/internal_chat_group/backends"}).decode(t, &members)
		if len(members) != 0 {
			t.Errorf("members after unassign = %v", members)
		}
	})
	t.Run("models with a slash", func(t *testing.T) {
		res := e.do(req{method: "POST", path: "/model-affinity/internal_tasks_group/models/" + model})
		if res.status != http.StatusOK || !strings.Contains(string(res.body), "model assigned") {
			t.Fatalf("assign = %d %s", res.status, res.body)
		}
		var models []modelOut
		e.do(req{method: "GET", path: "/model-affinity/internal_tasks_group/models"}).decode(t, &models)
		found := false
		for _, m := range models {
			found = found || m.ID == model
		}
		if !found {
			t.Errorf("models of the group = %+v", models)
		}
		// A segment follows the id here: its '/' must be sent as %2F.
		var groups []groupOut
		res = e.do(req{method: "GET", path: "/model-affinity/library%2Fphi3:mini/groups"})
		if res.status != http.StatusOK {
			t.Fatalf("groups of the model = %d %s", res.status, res.body)
		}
		if res.decode(t, &groups); len(groups) != 1 || groups[0].ID != "internal_tasks_group" {
			t.Errorf("groups of the model = %+v", groups)
		}
		var msg string
		e.do(req{method: "DELETE", path: "/model-affinity/internal_tasks_group/models/library%2Fphi3:mini"}).decode(t, &msg)
		if msg != "model removed" {
			t.Errorf("unassign = %q", msg)
		}
	})

	tests := []struct {
		name, method, path string
		status             int
		text               string
	}{
		{"missing group", "POST", "/backend-affinity/ghost/backends/" + backend, 404, "ghost"},
		{"missing backend", "POST", "/backend-affinity/internal_tasks_group/backends/ghost", 404, "ghost"},
		{"not assigned", "DELETE", "/backend-affinity/internal_tasks_group/backends/" + backend, 404, ""},
		{"missing model", "POST", "/model-affinity/internal_tasks_group/models/ghost:1b", 404, "ghost:1b"},
		{"default model stays", "DELETE", "/model-affinity/internal_embed_group/models/" + embedModel, 403, embedModel},
		{"groups of a missing backend", "GET", "/backend-affinity/ghost/groups", 404, "ghost"},
		{"models of a missing group", "GET", "/model-affinity/ghost/models", 404, "ghost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.do(req{method: tt.method, path: tt.path}).wantError(t, tt.status, "")
			if !strings.Contains(got.Error.Message, tt.text) {
				t.Errorf("message %q does not contain %q", got.Error.Message, tt.text)
			}
		})
	}
}
