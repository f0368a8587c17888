package access_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stepwise-run/stepwise/core"
	"github.com/stepwise-run/stepwise/core/access"
	"github.com/stepwise-run/stepwise/infra/mem"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newKeys(t *testing.T, ttl time.Duration) (*access.Keys, *mem.Store, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)}
	store := mem.New()
	return access.New(access.Config{Store: store, CacheTTL: ttl, Now: c.now}), store, c
}

func TestCreateAndAuthenticate(t *testing.T) {
	ctx := context.Background()
	keys, store, _ := newKeys(t, 0)
	key, secret, err := keys.Create(ctx, "acme", access.Spec{Name: "ci", Scopes: []access.Scope{access.ScopeChat}, Models: []string{"gpt-4o-mini"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, access.SecretPrefix) || len(secret) < 32 || !strings.HasPrefix(secret, key.Prefix) || key.Prefix == secret {
		t.Errorf("secret %q, prefix %q", secret, key.Prefix)
	}
	// What is stored holds the hash, never the secret.
	page, _ := store.ListRecords(ctx, access.KeyTenant, access.KindKey, core.ListQuery{})
	if len(page.Records) != 1 || strings.Contains(string(page.Records[0].Body), secret) {
		t.Fatalf("stored %d records: %s", len(page.Records), page.Records[0].Body)
	}
	// Nor does what is shown.
	shown, _ := json.Marshal(key)
	if strings.Contains(string(shown), secret) || strings.Contains(string(shown), "hash") {
		t.Errorf("the key as shown holds its secret or hash: %s", shown)
	}
	got, err := keys.Authenticate(ctx, secret)
	if err != nil || got.ID != key.ID || got.Tenant != "acme" || !got.Has(access.ScopeChat) || got.Has(access.ScopeAdmin) {
		t.Fatalf("Authenticate = %+v, %v", got, err)
	}
	if !got.AllowsModel("gpt-4o-mini") || got.AllowsModel("o3") || !got.AllowsChain("any") {
		t.Errorf("allowed models/chains wrong: %+v", got)
	}
}

func TestAuthenticateRefuses(t *testing.T) {
	ctx := context.Background()
	keys, _, clk := newKeys(t, -1)
	exp := clk.now().Add(time.Hour)
	_, expiring, err := keys.Create(ctx, "acme", access.Spec{Name: "short", Scopes: []access.Scope{access.ScopeChat}, ExpiresAt: &exp})
	if err != nil {
		t.Fatal(err)
	}
	revoked, revokedSecret, _ := keys.Create(ctx, "acme", access.Spec{Name: "old", Scopes: []access.Scope{access.ScopeChat}})
	if _, err := keys.Revoke(ctx, "acme", revoked.ID); err != nil {
		t.Fatal(err)
	}
	clk.add(2 * time.Hour)
	for _, tt := range []struct{ name, secret, msg string }{
		{"not ours", "sk-proj-abc", "begin with sk-sw-"},
		{"unknown", access.SecretPrefix + "nosuchsecretnosuchsecret", "invalid API key sk-sw-nosuch…"},
		{"revoked", revokedSecret, "was revoked"},
		{"expired", expiring, "expired at"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := keys.Authenticate(ctx, tt.secret)
			if core.ErrorCode(err) != core.EUNAUTHORIZED || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Authenticate = %v, want EUNAUTHORIZED saying %q", err, tt.msg)
			}
			if len(tt.secret) > 20 && strings.Contains(err.Error(), tt.secret) {
				t.Errorf("the error repeats the secret: %v", err)
			}
		})
	}
}

// TestRevokedWithinTheCacheTTL: another process's revocation reaches a
// cached key once the cache's TTL has passed; this process's at once.
func TestRevokedWithinTheCacheTTL(t *testing.T) {
	ctx := context.Background()
	keys, store, clk := newKeys(t, 10*time.Second)
	other := access.New(access.Config{Store: store, Now: clk.now}) // another process on the same store
	key, secret, _ := keys.Create(ctx, "acme", access.Spec{Name: "k", Scopes: []access.Scope{access.ScopeChat}})
	if _, err := keys.Authenticate(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Revoke(ctx, "acme", key.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Authenticate(ctx, secret); err != nil {
		t.Errorf("within the TTL the cached key still works here: %v", err)
	}
	clk.add(10 * time.Second)
	if _, err := keys.Authenticate(ctx, secret); core.ErrorCode(err) != core.EUNAUTHORIZED {
		t.Errorf("after the TTL: %v, want the revocation seen", err)
	}
	if _, err := other.Authenticate(ctx, secret); core.ErrorCode(err) != core.EUNAUTHORIZED {
		t.Errorf("on the revoking process: %v, want refused at once", err)
	}
}

func TestRotate(t *testing.T) {
	ctx := context.Background()
	keys, _, _ := newKeys(t, 0)
	key, old, _ := keys.Create(ctx, "acme", access.Spec{Name: "k", Scopes: []access.Scope{access.ScopeAdmin}})
	rotated, fresh, err := keys.Rotate(ctx, "acme", key.ID)
	if err != nil || fresh == old || rotated.Prefix == key.Prefix || rotated.ID != key.ID {
		t.Fatalf("Rotate = %+v, %q, %v", rotated, fresh, err)
	}
	if _, err := keys.Authenticate(ctx, old); core.ErrorCode(err) != core.EUNAUTHORIZED {
		t.Errorf("old secret: %v, want refused", err)
	}
	if got, err := keys.Authenticate(ctx, fresh); err != nil || got.ID != key.ID {
		t.Errorf("new secret: %+v, %v", got, err)
	}
	if _, err := keys.Revoke(ctx, "acme", key.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := keys.Rotate(ctx, "acme", key.ID); core.ErrorCode(err) != core.ECONFLICT {
		t.Errorf("rotating a revoked key: %v, want ECONFLICT", err)
	}
}

func TestTenantsAreApart(t *testing.T) {
	ctx := context.Background()
	keys, _, _ := newKeys(t, 0)
	a, _, _ := keys.Create(ctx, "acme", access.Spec{Name: "a", Scopes: []access.Scope{access.ScopeAdmin}})
	if _, _, err := keys.Create(ctx, "acme-2", access.Spec{Name: "b", Scopes: []access.Scope{access.ScopeAdmin}}); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Get(ctx, "acme-2", a.ID); core.ErrorCode(err) != core.ENOTFOUND {
		t.Errorf("another tenant's key: %v, want ENOTFOUND", err)
	}
	if _, err := keys.Revoke(ctx, "acme-2", a.ID); core.ErrorCode(err) != core.ENOTFOUND {
		t.Errorf("revoking another tenant's key: %v, want ENOTFOUND", err)
	}
	list, _, err := keys.List(ctx, "acme", core.ListQuery{})
	if err != nil || len(list) != 1 || list[0].ID != a.ID {
		t.Errorf("acme's keys = %+v, %v; want only its own (not acme-2's)", list, err)
	}
	tenants, err := keys.Tenants(ctx)
	slices.Sort(tenants)
	if err != nil || !slices.Equal(tenants, []string{"acme", "acme-2"}) {
		t.Errorf("Tenants = %q, %v", tenants, err)
	}
}

func TestCreateRefuses(t *testing.T) {
	ctx := context.Background()
	keys, _, clk := newKeys(t, 0)
	past := clk.now().Add(-time.Minute)
	for _, tt := range []struct {
		name, tenant, msg string
		spec              access.Spec
	}{
		{"reserved tenant", "_access", "tenant", access.Spec{Name: "x", Scopes: []access.Scope{access.ScopeChat}}},
		{"bad tenant", "Acme Corp", "tenant", access.Spec{Name: "x", Scopes: []access.Scope{access.ScopeChat}}},
		{"no name", "acme", "name", access.Spec{Scopes: []access.Scope{access.ScopeChat}}},
		{"no scope", "acme", "scopes", access.Spec{Name: "x"}},
		{"unknown scope", "acme", "scopes[1]", access.Spec{Name: "x", Scopes: []access.Scope{access.ScopeChat, "root"}}},
		{"expired already", "acme", "expiresAt", access.Spec{Name: "x", Scopes: []access.Scope{access.ScopeChat}, ExpiresAt: &past}},
		{"empty model", "acme", "models[0]", access.Spec{Name: "x", Scopes: []access.Scope{access.ScopeChat}, Models: []string{""}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := keys.Create(ctx, tt.tenant, tt.spec)
			if core.ErrorCode(err) != core.EINVALID || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Create = %v, want EINVALID naming %q", err, tt.msg)
			}
		})
	}
	if exists, _ := keys.Any(ctx); exists {
		t.Error("a refused key was stored")
	}
}

func TestBootstrap(t *testing.T) {
	ctx := context.Background()
	keys, _, _ := newKeys(t, 0)
	secret := access.BootstrapSecret([]byte("0123456789abcdef0123456789abcdef"))
	if secret != access.BootstrapSecret([]byte("0123456789abcdef0123456789abcdef")) || secret == access.BootstrapSecret([]byte("another key")) {
		t.Fatal("the bootstrap secret is not a function of the sealing key alone")
	}
	if made, err := keys.Bootstrap(ctx, "sk-sw-short"); made || core.ErrorCode(err) != core.EINVALID {
		t.Errorf("a short secret: %v, %v", made, err)
	}
	if made, err := keys.Bootstrap(ctx, secret); !made || err != nil {
		t.Fatalf("first Bootstrap = %v, %v", made, err)
	}
	k, err := keys.Authenticate(ctx, secret)
	if err != nil || k.Tenant != core.DefaultTenant || !k.Has(access.ScopeOperator) || !k.Has(access.ScopeAdmin) {
		t.Fatalf("the bootstrap key: %+v, %v", k, err)
	}
	if _, err := keys.Revoke(ctx, k.Tenant, k.ID); err != nil {
		t.Fatal(err)
	}
	// A cold start after the operator revoked it does not bring it back.
	if made, err := keys.Bootstrap(ctx, secret); made || err != nil {
		t.Errorf("Bootstrap with keys there = %v, %v", made, err)
	}
	if _, err := keys.Authenticate(ctx, secret); core.ErrorCode(err) != core.EUNAUTHORIZED {
		t.Errorf("the revoked bootstrap key: %v", err)
	}
}
