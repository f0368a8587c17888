// Package unimplemented answers for a function whose entry point is
// deployed before its handlers are built: every request gets 501 Not
// Implemented in the OpenAI error envelope the other functions use, so a
// client sees a clear, well-formed refusal rather than a 404 or a crash.
package unimplemented

import (
	"encoding/json"
	"net/http"
)

// Handler answers every request 501, naming what is not there yet.
func Handler(what string) http.Handler {
	body, _ := json.Marshal(map[string]any{"error": map[string]any{
		"message": what + " is not implemented yet",
		"type":    "api_error",
		"code":    "not_implemented",
		"param":   nil,
	}})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotImplemented)
		_, _ = w.Write(body)
	})
}
