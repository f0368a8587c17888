package api_test

import (
	"net/http"
	"strings"
	"testing"
)

// modelOut is a declared model as tests read it.
type modelOut struct {
	ID, Model                               string
	ContextLength                           int
	CanChat, CanEmbed, CanPrompt, CanStream bool
}

func TestModels(t *testing.T) {
	e := newEnv(t)
	const slashed = "library/phi3:mini"

	t.Run("declare", func(t *testing.T) {
		res := e.do(req{method: "POST", path: "/models", body: map[string]any{"model": slashed, "contextLength": 4096, "canChat": true, "canStream": true}})
		if res.status != http.StatusCreated {
			t.Fatalf("POST /models = %d %s", res.status, res.body)
		}
		var m modelOut
		res.decode(t, &m)
		if m.ID != slashed || m.Model != slashed || m.ContextLength != 4096 || !m.CanChat || m.CanPrompt {
			t.Errorf("declared %+v", m)
		}
	})
	// A name with '/' is the tail of the path: as is, or escaped.
	for _, path := range []string{"/models/" + slashed, "/models/library%2Fphi3:mini"} {
		t.Run("get "+path, func(t *testing.T) {
			var m modelOut
			res := e.do(req{method: "GET", path: path})
			if res.status != http.StatusOK {
				t.Fatalf("GET %s = %d %s", path, res.status, res.body)
			}
			if res.decode(t, &m); m.ID != slashed {
				t.Errorf("GET %s = %+v", path, m)
			}
		})
	}
	t.Run("update", func(t *testing.T) {
		var m modelOut
		res := e.do(req{method: "PUT", path: "/models/" + slashed, body: map[string]any{"contextLength": 8192, "canPrompt": true}})
		if res.status != http.StatusOK {
			t.Fatalf("PUT = %d %s", res.status, res.body)
		}
		if res.decode(t, &m); m.ContextLength != 8192 || !m.CanPrompt || m.CanChat {
			t.Errorf("updated %+v", m)
		}
	})
	t.Run("list", func(t *testing.T) {
		var ms []modelOut
		e.do(req{method: "GET", path: "/models"}).decode(t, &ms)
		names := map[string]bool{}
		for _, m := range ms {
			names[m.ID] = true
		}
		for _, want := range []string{slashed, embedModel, taskModel, chatModel} {
			if !names[want] {
				t.Errorf("list lacks %s: %v", want, ms)
			}
		}
	})

	tests := []struct {
		name, method, path string
		body               any
		status             int
		param, text        string
	}{
		// A declaration the catalog refuses is a 400, as the reference
		// answers it; a body that cannot be read is a 422 as everywhere.
		{"no name", "POST", "/models", map[string]any{"contextLength": 10, "canChat": true}, 400, "model", "required"},
		{"no context", "POST", "/models", map[string]any{"model": "a:1b", "canChat": true}, 400, "contextLength", ""},
		{"context not a number", "POST", "/models", map[string]any{"model": "a:1b", "contextLength": "big", "canChat": true}, 422, "contextLength", "want an integer"},
		{"no capability", "POST", "/models", map[string]any{"model": "a:1b", "contextLength": 10}, 400, "", "can"},
		{"typo", "POST", "/models", map[string]any{"model": "a:1b", "contextLength": 10, "canChatt": true}, 422, "canChatt", `did you mean "canChat"`},
		{"duplicate", "POST", "/models", map[string]any{"model": slashed, "contextLength": 10, "canChat": true}, 409, "model", slashed},
		{"rename", "PUT", "/models/" + slashed, map[string]any{"model": "other:1b", "contextLength": 10, "canChat": true}, 422, "model", "other:1b"},
		{"get missing", "GET", "/models/ghost:1b", nil, 404, "", "ghost:1b"},
		{"default model", "DELETE", "/models/" + taskModel, nil, 403, "", taskModel},
		{"bad purge", "DELETE", "/models/" + slashed + "?purge=maybe", nil, 400, "purge", "maybe"},
		{"delete missing", "DELETE", "/models/ghost:1b", nil, 404, "", "ghost:1b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.do(req{method: tt.method, path: tt.path, body: tt.body}).wantError(t, tt.status, tt.param)
			if !strings.Contains(got.Error.Message, tt.text) {
				t.Errorf("message %q does not contain %q", got.Error.Message, tt.text)
			}
		})
	}

	t.Run("delete with purge", func(t *testing.T) {
		var msg string
		e.do(req{method: "DELETE", path: "/models/" + slashed + "?purge=true"}).decode(t, &msg)
		if msg != "model removed" {
			t.Errorf("DELETE = %q", msg)
		}
		e.do(req{method: "GET", path: "/models/" + slashed}).wantError(t, http.StatusNotFound, "")
	})
}
