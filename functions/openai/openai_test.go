package openai_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stepwise-run/stepwise/functions/openai"
)

func TestNotImplementedYet(t *testing.T) {
	for _, path := range []string{"/v1/chat/completions", "/v1/models"} {
		t.Run(path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			openai.New().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{}`)))
			if rec.Code != http.StatusNotImplemented {
				t.Errorf("status %d, want 501", rec.Code)
			}
			var env struct {
				Error struct{ Message, Type, Code string }
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env.Error.Code != "not_implemented" || env.Error.Message == "" {
				t.Errorf("body %s (%v), want the OpenAI error envelope", rec.Body, err)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}
