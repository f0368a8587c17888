package lambdaenv_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core/access"
)

// TestKeysOnLambda: with STEPWISE_AUTH=on the API behind API Gateway
// requires a key; the bootstrap key, derived from the secret key, is
// there from the first cold start, and a key it makes works at once.
func TestKeysOnLambda(t *testing.T) {
	d := deploy(t, map[string]string{"STEPWISE_AUTH": "on"})
	if d.env.Keys == nil {
		t.Fatal("STEPWISE_AUTH=on left the routes open")
	}
	call := func(method, path, secret string) (int, string) {
		t.Helper()
		ev := apigwEvent(t, method, path, nil, false)
		if secret != "" {
			ev.Headers["authorization"] = "Bearer " + secret
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := d.proxy(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		return out.StatusCode, out.Body
	}
	root := access.BootstrapSecret(d.env.Settings.SecretKey)
	for _, tt := range []struct {
		name, method, path, secret string
		status                     int
	}{
		{"health is open", http.MethodGet, "/health", "", http.StatusOK},
		{"no key", http.MethodGet, "/backends", "", http.StatusUnauthorized},
		{"the bootstrap key", http.MethodGet, "/backends", root, http.StatusOK},
		{"no key on the OpenAI routes", http.MethodGet, "/v1/models", "", http.StatusUnauthorized},
		{"the bootstrap key on the OpenAI routes", http.MethodGet, "/v1/models", root, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if status, body := call(tt.method, tt.path, tt.secret); status != tt.status {
				t.Errorf("%s %s = %d %s, want %d", tt.method, tt.path, status, body, tt.status)
			}
		})
	}
}
