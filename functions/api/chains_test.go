package api_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// demoChain is the chain the seed's scripts/openai-demo.sh posts, verbatim
// but for its model and id.
func demoChain(id string) string {
	return `{"id": "` + id + `", "debug": true, "token_limit": 4096, "tasks": [
	  {"id": "main_task", "handler": "model_execution", "system_instruction": "You are a helpful assistant.",
	   "execute_config": {"model": "` + chatModel + `"}, "transition": {"branches": [{"operator": "default", "goto": "format_response"}]}},
	  {"id": "format_response", "handler": "convert_to_openai_chat_response", "transition":
	   {"branches": [{"operator": "default", "goto": "end"}]}}]}`
}

// chainOut is a stored chain as tests read it.
type chainOut struct {
	ID         string
	Debug      bool
	TokenLimit int `json:"token_limit"`
	Tasks      []struct {
		ID                string
		Handler           string
		SystemInstruction string `json:"system_instruction"`
	}
}

func TestChains(t *testing.T) {
	e := newEnv(t)

	t.Run("openai-demo.sh chain", func(t *testing.T) {
		res := e.do(req{method: "POST", path: "/taskchains", body: demoChain("openai-demo")})
		if res.status != http.StatusCreated {
			t.Fatalf("POST /taskchains = %d %s", res.status, res.body)
		}
		var c chainOut
		res.decode(t, &c)
		if c.ID != "openai-demo" || !c.Debug || c.TokenLimit != 4096 || len(c.Tasks) != 2 || c.Tasks[0].Handler != "chat_completion" {
			t.Errorf("stored %+v", c)
		}
		var got chainOut
		e.do(req{method: "GET", path: "/taskchains/openai-demo"}).decode(t, &got)
		if got.Tasks[0].Handler != "chat_completion" || got.Tasks[1].Handler != "convert_to_openai_chat_response" {
			t.Errorf("read back %+v", got)
		}
	})
	t.Run("existing id is a conflict", func(t *testing.T) {
		e.do(req{method: "POST", path: "/taskchains", body: demoChain("openai-demo")}).wantError(t, http.StatusConflict, "id")
	})
	t.Run("YAML with aliases", func(t *testing.T) {
		body := "id: yaml-chain\ntasks:\n  - id: ask\n    type: raw_string\n    systemInstruction: Be brief.\n    timeout: 30s\n"
		res := e.do(req{method: "POST", path: "/taskchains", body: body, contentType: "application/yaml"})
		if res.status != http.StatusCreated {
			t.Fatalf("status %d %s", res.status, res.body)
		}
		var c chainOut
		res.decode(t, &c)
		if c.Tasks[0].Handler != "prompt_to_string" || c.Tasks[0].SystemInstruction != "Be brief." {
			t.Errorf("stored %+v", c)
		}
	})
	t.Run("replace", func(t *testing.T) {
		body := `{"tasks": [{"id": "only", "handler": "noop"}]}`
		var c chainOut
		res := e.do(req{method: "PUT", path: "/taskchains/yaml-chain", body: body})
		if res.status != http.StatusOK {
			t.Fatalf("PUT = %d %s", res.status, res.body)
		}
		res.decode(t, &c)
		if c.ID != "yaml-chain" || len(c.Tasks) != 1 || c.Tasks[0].Handler != "noop" {
			t.Errorf("replaced %+v", c)
		}
	})
	t.Run("delete", func(t *testing.T) {
		var msg string
		e.do(req{method: "DELETE", path: "/taskchains/yaml-chain"}).decode(t, &msg)
		if msg != "task chain yaml-chain deleted" {
			t.Errorf("DELETE = %q", msg)
		}
		e.do(req{method: "GET", path: "/taskchains/yaml-chain"}).wantError(t, http.StatusNotFound, "")
	})

	tests := []struct {
		name, method, path string
		body               string
		contentType        string
		status             int
		param              string
		text               string
	}{
		{"no id", "POST", "/taskchains", `{"tasks": [{"id": "a", "handler": "noop"}]}`, "", 422, "id", "missing"},
		{"no tasks", "POST", "/taskchains", `{"id": "x", "tasks": []}`, "", 422, "tasks", "at least one task"},
		{"unknown handler", "POST", "/taskchains", `{"id": "x", "tasks": [{"id": "a", "handler": "magic"}]}`, "", 422, "tasks[0].handler", "magic"},
		{"typo", "POST", "/taskchains", `{"id": "x", "tasks": [{"id": "a", "handler": "noop", "prompt_templat": "x"}]}`, "", 422, "tasks[0].prompt_templat", "prompt_template"},
		{"bad duration", "POST", "/taskchains", `{"id": "x", "tasks": [{"id": "a", "handler": "noop", "timeout": "soon"}]}`, "", 422, "tasks[0].timeout", "duration"},
		{"malformed YAML", "POST", "/taskchains", "id: [", "application/yaml", 400, "", "YAML"},
		{"YAML sent as JSON", "POST", "/taskchains", "id: x\ntasks: []\n", "", 400, "", "application/yaml"},
		{"id mismatch", "PUT", "/taskchains/openai-demo", `{"id": "other", "tasks": [{"id": "a", "handler": "noop"}]}`, "", 422, "id", "path"},
		{"replace missing", "PUT", "/taskchains/ghost", `{"tasks": [{"id": "a", "handler": "noop"}]}`, "", 404, "", "ghost"},
		{"delete missing", "DELETE", "/taskchains/ghost", "", "", 404, "", "ghost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body any
			if tt.body != "" {
				body = tt.body
			}
			res := e.do(req{method: tt.method, path: tt.path, body: body, contentType: tt.contentType})
			got := res.wantError(t, tt.status, tt.param)
			if !strings.Contains(got.Error.Message, tt.text) {
				t.Errorf("message %q does not contain %q", got.Error.Message, tt.text)
			}
		})
	}
}

// TestListPaging pages through chains with the X-Next-Cursor header.
func TestListPaging(t *testing.T) {
	e := newEnv(t)
	for i := range 5 {
		body := fmt.Sprintf(`{"id": "c%d", "tasks": [{"id": "a", "handler": "noop"}]}`, i)
		if res := e.do(req{method: "POST", path: "/taskchains", body: body}); res.status != http.StatusCreated {
			t.Fatalf("create c%d: %d %s", i, res.status, res.body)
		}
	}
	var seen []string
	cursor, pages := "", 0
	for {
		path := "/taskchains?limit=2"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		res := e.do(req{method: "GET", path: path})
		var page []chainOut
		res.decode(t, &page)
		pages++
		for _, c := range page {
			seen = append(seen, c.ID)
		}
		cursor = res.header.Get("X-Next-Cursor")
		if cursor == "" {
			break
		}
		if pages > 5 {
			t.Fatalf("no last page after %d pages: %v", pages, seen)
		}
	}
	if got := strings.Join(seen, ","); got != "c4,c3,c2,c1,c0" || pages != 3 {
		t.Errorf("paged %s in %d pages, want c4..c0 newest first in 3", got, pages)
	}

	t.Run("whole list has no cursor", func(t *testing.T) {
		res := e.do(req{method: "GET", path: "/taskchains"})
		if c := res.header.Get("X-Next-Cursor"); c != "" {
			t.Errorf("X-Next-Cursor = %q on the only page", c)
		}
	})
	for _, tt := range []struct{ name, query, param string }{
		{"limit too large", "limit=1001", "limit"},
		{"limit not a number", "limit=ten", "limit"},
		{"limit negative", "limit=-1", "limit"},
		{"bad cursor", "cursor=not-a-cursor", "cursor"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/taskchains", "/backends", "/models", "/group-by-purpose/Tasks", "/providers/configs"} {
				e.do(req{method: "GET", path: path + "?" + tt.query}).wantError(t, http.StatusBadRequest, tt.param)
			}
		})
	}
}
