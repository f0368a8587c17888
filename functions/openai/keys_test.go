package openai_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	goopenai "github.com/sashabaranov/go-openai"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
)

// TestKeys drives the function with go-openai on a server that requires
// keys: the SDK's own way of sending one works, a missing or wrong key is
// OpenAI's 401 invalid_api_key, a key limited to some models or chains,
// or without the chat scope, is refused the others, and another tenant's
// key reaches none of the default tenant's backends and chains.
func TestKeys(t *testing.T) {
	e := newEnv(t, envOptions{keys: true})
	ctx := context.Background()
	spec := func(scopes []access.Scope, models, chains []string) string {
		_, secret, err := e.keys.Create(ctx, core.DefaultTenant, access.Spec{Name: "k", Scopes: scopes, Models: models, Chains: chains})
		if err != nil {
			t.Fatal(err)
		}
		return secret
	}
	chat := spec([]access.Scope{access.ScopeChat}, nil, nil)
	limited := spec([]access.Scope{access.ScopeChat}, []string{openaiModel}, []string{"only-this"})
	runner := spec([]access.Scope{access.ScopeExecutions}, nil, nil)
	_, globex, err := e.keys.Create(ctx, "globex", access.Spec{Name: "another tenant", Scopes: []access.Scope{access.ScopeAdmin}})
	if err != nil {
		t.Fatal(err)
	}
	client := func(secret, path string) *goopenai.Client {
		cfg := goopenai.DefaultConfig(secret)
		cfg.BaseURL = e.srv.URL + path
		return goopenai.NewClientWithConfig(cfg)
	}
	ask := func(c *goopenai.Client, model string) error {
		_, err := c.CreateChatCompletion(ctx, goopenai.ChatCompletionRequest{Model: model, Messages: user("hi")})
		return err
	}
	for _, tt := range []struct {
		name   string
		secret string
		path   string
		model  string
		status int
		code   string
	}{
		{"chat key", chat, "/v1", openaiModel, 0, ""},
		{"limited key, its model", limited, "/v1", openaiModel, 0, ""},
		{"limited key, another model", limited, "/v1", ollamaModel, http.StatusForbidden, "forbidden"},
		{"limited key, another chain", limited, "/openai/demo/v1", "demo", http.StatusForbidden, "forbidden"},
		{"no chat scope", runner, "/v1", openaiModel, http.StatusForbidden, "forbidden"},
		{"an OpenAI key", "sk-proj-abc", "/v1", openaiModel, http.StatusUnauthorized, "invalid_api_key"},
		{"unknown key", access.SecretPrefix + "nosuchkeynosuchkeynosuchkey", "/v1", openaiModel, http.StatusUnauthorized, "invalid_api_key"},
		{"no key", "", "/v1", openaiModel, http.StatusUnauthorized, "invalid_api_key"},
		// The default tenant's backends and chains are not another's.
		{"another tenant, default's model", globex, "/v1", openaiModel, http.StatusNotFound, "model_not_found"},
		{"another tenant, default's chain", globex, "/openai/demo/v1", "demo", http.StatusNotFound, "chain_not_found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := ask(client(tt.secret, tt.path), tt.model)
			if tt.status == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var apiErr *goopenai.APIError
			if !errors.As(err, &apiErr) || apiErr.HTTPStatusCode != tt.status || apiErr.Code != tt.code {
				t.Fatalf("error %v, want %d %s", err, tt.status, tt.code)
			}
		})
	}
}
