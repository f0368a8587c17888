package meter

import (
	"context"
	"fmt"
	"testing"

	"github.com/stepwise-run/stepwise/infra/mem"
)

// TestCacheIsBounded: prices asked of made-up model names, each a lookup
// of its own, do not grow the cache without end.
func TestCacheIsBounded(t *testing.T) {
	ctx := context.Background()
	s := mem.New()
	m := New(s, s, nil, nil)
	for i := range 25_000 {
		_, _ = m.GetPrice(ctx, "acme", fmt.Sprintf("made-up-%d", i))
	}
	m.mu.Lock()
	n := len(m.cache)
	m.mu.Unlock()
	if n > maxCached {
		t.Errorf("%d lookups cached after 25,000 made-up models, want at most %d", n, maxCached)
	}
}
