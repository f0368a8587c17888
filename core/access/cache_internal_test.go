package access

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/infra/mem"
)

// TestCacheIsBounded: made-up secrets, each a lookup of its own, do not
// grow the cache without end, and a real key still works among them.
func TestCacheIsBounded(t *testing.T) {
	ctx := context.Background()
	keys := New(Config{Store: mem.New(), CacheTTL: time.Hour})
	_, secret, err := keys.Create(ctx, "acme", Spec{Name: "k", Scopes: []Scope{ScopeChat}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 25_000 {
		_, _ = keys.Authenticate(ctx, fmt.Sprintf("%s%032d", SecretPrefix, i))
	}
	keys.mu.Lock()
	n := len(keys.cache)
	keys.mu.Unlock()
	if n > maxCached {
		t.Errorf("%d lookups cached after 25,000 made-up secrets, want at most %d", n, maxCached)
	}
	if _, err := keys.Authenticate(ctx, secret); err != nil {
		t.Errorf("the real key among them: %v", err)
	}
}
