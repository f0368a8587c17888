// Package access decides who may call stepwise: API keys, their scopes,
// the chains and models they may use, and the tenant each one acts for.
//
// A key's secret is shown once, when the key is made or rotated; the store
// keeps its SHA-256 and a visible prefix. Key records live under a tenant
// of their own (KeyTenant), so that a secret finds its key — and with it
// the tenant — in one lookup whatever the tenant is; a record's id begins
// with its tenant, so one tenant's keys are listed without reading
// another's.
package access

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// KeyTenant is the store tenant that holds every key record. Tenant names
// beginning with "_" are reserved, so no user's tenant can be it.
const KeyTenant = "_access"

// KindKey is the record kind of API keys.
const KindKey = "apikey"

// SecretPrefix begins every secret, so that a leaked one is recognisable
// (secret scanners match it) and an OpenAI key is not mistaken for ours.
const SecretPrefix = "sk-sw-"

// DefaultCacheTTL is how long Authenticate trusts a key it has looked up:
// a revoked key is refused within it.
const DefaultCacheTTL = 10 * time.Second

// Scope is what a key may do.
type Scope string

// Scopes.
const (
	// ScopeAdmin manages the tenant: its catalog (chains, backends,
	// models, groups, providers), its keys and its usage; and everything
	// ScopeChat and ScopeExecutions allow.
	ScopeAdmin Scope = "admin"
	// ScopeChat calls the OpenAI-compatible routes.
	ScopeChat Scope = "chat"
	// ScopeExecutions runs chains and reads their executions.
	ScopeExecutions Scope = "executions"
	// ScopeOperator makes keys for any tenant: the install's own key.
	ScopeOperator Scope = "operator"
)

// scopes lists every scope, in the order documents show them.
var scopes = []Scope{ScopeAdmin, ScopeChat, ScopeExecutions, ScopeOperator}

// Key is an API key as it is stored and shown; the secret is never part
// of it.
type Key struct {
	ID     string `json:"id"`
	Tenant string `json:"tenant"`
	Name   string `json:"name"`
	// Prefix is the secret's first characters, to tell keys apart.
	Prefix string  `json:"prefix"`
	Scopes []Scope `json:"scopes"`
	// Chains and Models, when not empty, are all the key may use.
	Chains    []string   `json:"chains,omitempty"`
	Models    []string   `json:"models,omitempty"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	// Limits bound what the key may spend and how fast it may call.
	Limits    *Limits    `json:"limits,omitempty"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
	CreatedAt time.Time  `json:"createdAt"`
	UpdatedAt time.Time  `json:"updatedAt"`

	hash    string
	version int64
}

// Has reports whether the key grants scope; admin grants chat and
// executions too.
func (k *Key) Has(s Scope) bool {
	if slices.Contains(k.Scopes, s) {
		return true
	}
	return slices.Contains(k.Scopes, ScopeAdmin) && (s == ScopeChat || s == ScopeExecutions)
}

// AllowsChain reports whether the key may run chain.
func (k *Key) AllowsChain(chain string) bool {
	return len(k.Chains) == 0 || slices.Contains(k.Chains, chain)
}

// AllowsModel reports whether the key may call model.
func (k *Key) AllowsModel(model string) bool {
	return len(k.Models) == 0 || slices.Contains(k.Models, model)
}

// Spec is what a new key is made from.
type Spec struct {
	Name      string     `json:"name"`
	Scopes    []Scope    `json:"scopes"`
	Chains    []string   `json:"chains,omitempty"`
	Models    []string   `json:"models,omitempty"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	Limits    *Limits    `json:"limits,omitempty"`
}

// Keys makes, finds and checks API keys. It is safe for concurrent use.
type Keys struct {
	store core.RecordStore
	now   func() time.Time
	ttl   time.Duration

	mu    sync.Mutex
	cache map[string]cached // by the secret's hash
}

type cached struct {
	key     *Key // nil: no key has this secret
	fetched time.Time
}

// maxCached bounds the cached lookups, found or not.
const maxCached = 10_000

// negativeTTL bounds how long "no such key" is trusted, so that a key
// made on another process works there within a second, while a client
// retrying a wrong secret still costs one read a second.
const negativeTTL = time.Second

func (c cached) trust(ttl time.Duration) time.Duration {
	if c.key == nil {
		return min(ttl, negativeTTL)
	}
	return ttl
}

// Config configures Keys.
type Config struct {
	Store core.RecordStore
	// CacheTTL is how long a looked-up key is trusted (default
	// DefaultCacheTTL; negative: not cached).
	CacheTTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// New returns the keys kept in cfg.Store.
func New(cfg Config) *Keys {
	k := &Keys{store: cfg.Store, now: cfg.Now, ttl: cfg.CacheTTL, cache: map[string]cached{}}
	if k.now == nil {
		k.now = time.Now
	}
	if k.ttl == 0 {
		k.ttl = DefaultCacheTTL
	}
	return k
}

// CheckTenant refuses a tenant name that cannot be one: empty, reserved
// (beginning with "_"), or outside 1 to 64 of a-z, 0-9, "-" and "_".
func CheckTenant(tenant string) error {
	if tenant == "" || len(tenant) > 64 || tenant[0] == '_' || tenant[0] == '-' {
		return core.Errorf(core.EINVALID, "tenant %q: want 1 to 64 of a-z, 0-9, - and _, not beginning with - or _", tenant)
	}
	for _, c := range tenant {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return core.Errorf(core.EINVALID, "tenant %q: want 1 to 64 of a-z, 0-9, - and _, not beginning with - or _", tenant)
		}
	}
	return nil
}

func (s *Spec) check(now time.Time) error {
	if strings.TrimSpace(s.Name) == "" || len(s.Name) > 128 {
		return core.Errorf(core.EINVALID, "name: want 1 to 128 characters")
	}
	if len(s.Scopes) == 0 {
		return core.Errorf(core.EINVALID, "scopes: want at least one of %s", scopeList())
	}
	for i, sc := range s.Scopes {
		if !slices.Contains(scopes, sc) {
			return core.Errorf(core.EINVALID, "scopes[%d]: %q is not one of %s", i, sc, scopeList())
		}
	}
	if s.ExpiresAt != nil && !s.ExpiresAt.After(now) {
		return core.Errorf(core.EINVALID, "expiresAt: %s is not in the future", s.ExpiresAt.Format(time.RFC3339))
	}
	for i, c := range s.Chains {
		if c == "" {
			return core.Errorf(core.EINVALID, "chains[%d]: empty", i)
		}
	}
	for i, m := range s.Models {
		if m == "" {
			return core.Errorf(core.EINVALID, "models[%d]: empty", i)
		}
	}
	if s.Limits != nil {
		return s.Limits.Check("limits")
	}
	return nil
}

func scopeList() string {
	var b strings.Builder
	for i, s := range scopes {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(s))
	}
	return b.String()
}

// Create makes a key for tenant and returns it with its secret, which is
// not kept and cannot be shown again.
func (k *Keys) Create(ctx context.Context, tenant string, spec Spec) (*Key, string, error) {
	secret, err := newSecret()
	if err != nil {
		return nil, "", err
	}
	key, err := k.create(ctx, tenant, spec, secret)
	if err != nil {
		return nil, "", err
	}
	return key, secret, nil
}

// create checks spec and stores a key for tenant whose secret is secret.
func (k *Keys) create(ctx context.Context, tenant string, spec Spec, secret string) (*Key, error) {
	if err := CheckTenant(tenant); err != nil {
		return nil, err
	}
	now := k.now().UTC()
	if err := spec.check(now); err != nil {
		return nil, err
	}
	id, err := randomText(9)
	if err != nil {
		return nil, err
	}
	key := &Key{ID: "key_" + id, Tenant: tenant, Name: spec.Name, Prefix: prefixOf(secret),
		Scopes: slices.Clone(spec.Scopes), Chains: spec.Chains, Models: spec.Models, ExpiresAt: spec.ExpiresAt, Limits: spec.Limits,
		CreatedAt: now, UpdatedAt: now, hash: hashOf(secret)}
	r, err := key.record()
	if err != nil {
		return nil, err
	}
	if err := k.store.CreateRecord(ctx, KeyTenant, r); err != nil {
		return nil, err
	}
	key.version = r.Version
	return key, nil
}

// Get returns tenant's key id. ENOTFOUND if tenant has none of that id.
func (k *Keys) Get(ctx context.Context, tenant, id string) (*Key, error) {
	r, err := k.store.GetRecord(ctx, KeyTenant, KindKey, recordID(tenant, id))
	if core.ErrorCode(err) == core.ENOTFOUND {
		return nil, core.Errorf(core.ENOTFOUND, "key %q not found", id)
	}
	if err != nil {
		return nil, err
	}
	return decode(r)
}

// List returns one page of tenant's keys, newest first.
func (k *Keys) List(ctx context.Context, tenant string, q core.ListQuery) ([]*Key, string, error) {
	q.Prefix = tenant + "/"
	page, err := k.store.ListRecords(ctx, KeyTenant, KindKey, q)
	if err != nil {
		return nil, "", err
	}
	out := make([]*Key, 0, len(page.Records))
	for _, r := range page.Records {
		key, err := decode(r)
		if err != nil {
			return nil, "", err
		}
		out = append(out, key)
	}
	return out, page.Next, nil
}

// Any reports whether any key exists, of any tenant: whether a server has
// authentication set up.
func (k *Keys) Any(ctx context.Context) (bool, error) {
	page, err := k.store.ListRecords(ctx, KeyTenant, KindKey, core.ListQuery{Limit: 1})
	if err != nil {
		return false, err
	}
	return len(page.Records) > 0, nil
}

// Tenants returns every tenant that has a key, in no order: the tenants
// a server acts for besides the default one.
func (k *Keys) Tenants(ctx context.Context) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for cursor := ""; ; {
		page, err := k.store.ListRecords(ctx, KeyTenant, KindKey, core.ListQuery{Cursor: cursor, Limit: core.MaxPageSize})
		if err != nil {
			return nil, err
		}
		for _, r := range page.Records {
			tenant, _, _ := strings.Cut(r.ID, "/")
			if !seen[tenant] {
				seen[tenant] = true
				out = append(out, tenant)
			}
		}
		if page.Next == "" {
			return out, nil
		}
		cursor = page.Next
	}
}

// Revoke ends tenant's key id at once on this process and within the
// cache's TTL on every other. Revoking a revoked key keeps its first
// revocation time.
func (k *Keys) Revoke(ctx context.Context, tenant, id string) (*Key, error) {
	return k.update(ctx, tenant, id, func(key *Key, now time.Time) error {
		if key.RevokedAt == nil {
			key.RevokedAt = &now
		}
		return nil
	})
}

// Rotate gives tenant's key id a new secret, returned once; the old
// secret stops working as Revoke's does.
func (k *Keys) Rotate(ctx context.Context, tenant, id string) (*Key, string, error) {
	var secret string
	key, err := k.update(ctx, tenant, id, func(key *Key, _ time.Time) error {
		if key.RevokedAt != nil {
			return core.Errorf(core.ECONFLICT, "key %q is revoked", id)
		}
		s, err := newSecret()
		if err != nil {
			return err
		}
		secret, key.hash, key.Prefix = s, hashOf(s), prefixOf(s)
		return nil
	})
	return key, secret, err
}

// update changes a key with change, retrying while another write moves
// its version, and drops every cached lookup so this process sees the
// change at once.
func (k *Keys) update(ctx context.Context, tenant, id string, change func(*Key, time.Time) error) (*Key, error) {
	for attempt := 0; ; attempt++ {
		key, err := k.Get(ctx, tenant, id)
		if err != nil {
			return nil, err
		}
		now := k.now().UTC()
		if err := change(key, now); err != nil {
			return nil, err
		}
		key.UpdatedAt = now
		r, err := key.record()
		if err != nil {
			return nil, err
		}
		r.Version = key.version
		err = k.store.UpdateRecord(ctx, KeyTenant, r)
		if core.ErrorCode(err) == core.ECONFLICT && attempt < 5 {
			continue
		}
		if err != nil {
			return nil, err
		}
		k.mu.Lock()
		clear(k.cache)
		k.mu.Unlock()
		key.version = r.Version
		return key, nil
	}
}

// Authenticate returns the key whose secret this is. A secret that is no
// key's, or a key revoked or expired, is EUNAUTHORIZED with a message
// that says which without repeating the secret.
func (k *Keys) Authenticate(ctx context.Context, secret string) (*Key, error) {
	if !strings.HasPrefix(secret, SecretPrefix) {
		return nil, core.Errorf(core.EUNAUTHORIZED, "invalid API key: stepwise keys begin with %s", SecretPrefix)
	}
	hash := hashOf(secret)
	now := k.now()
	k.mu.Lock()
	c, ok := k.cache[hash]
	k.mu.Unlock()
	if !ok || now.Sub(c.fetched) >= c.trust(k.ttl) {
		r, err := k.store.FindRecord(ctx, KeyTenant, KindKey, "hash="+hash)
		switch {
		case core.ErrorCode(err) == core.ENOTFOUND:
			c = cached{fetched: now}
		case err != nil:
			return nil, err
		default:
			key, err := decode(r)
			if err != nil {
				return nil, err
			}
			c = cached{key: key, fetched: now}
		}
		if k.ttl > 0 {
			k.mu.Lock()
			if len(k.cache) >= maxCached {
				// Callers sending made-up secrets must not grow the cache
				// without end; dropping it costs one read per key.
				clear(k.cache)
			}
			k.cache[hash] = c
			k.mu.Unlock()
		}
	}
	switch key := c.key; {
	case key == nil:
		return nil, core.Errorf(core.EUNAUTHORIZED, "invalid API key %s…", secret[:min(len(secret), len(SecretPrefix)+6)])
	case key.RevokedAt != nil:
		return nil, core.Errorf(core.EUNAUTHORIZED, "API key %s (%s) was revoked", key.ID, key.Prefix)
	case key.ExpiresAt != nil && !now.Before(*key.ExpiresAt):
		return nil, core.Errorf(core.EUNAUTHORIZED, "API key %s (%s) expired at %s", key.ID, key.Prefix, key.ExpiresAt.Format(time.RFC3339))
	default:
		return key, nil
	}
}

// stored is a key's record body: the key and its secret's hash.
type stored struct {
	Key
	Hash string `json:"hash"`
}

func (key *Key) record() (*core.Record, error) {
	body, err := json.Marshal(stored{Key: *key, Hash: key.hash})
	if err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "encode key %s", key.ID)
	}
	return &core.Record{Kind: KindKey, ID: recordID(key.Tenant, key.ID), Keys: []string{"hash=" + key.hash},
		Body: body, CreatedAt: key.CreatedAt, UpdatedAt: key.UpdatedAt}, nil
}

func decode(r *core.Record) (*Key, error) {
	var s stored
	if err := json.Unmarshal(r.Body, &s); err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "decode key record %s", r.ID)
	}
	key := s.Key
	key.hash, key.version = s.Hash, r.Version
	return &key, nil
}

func recordID(tenant, id string) string { return tenant + "/" + id }

// newSecret returns a new secret.
func newSecret() (string, error) {
	r, err := randomText(24)
	if err != nil {
		return "", err
	}
	return SecretPrefix + r, nil
}

// prefixOf is the part of a secret a key shows: enough to tell keys
// apart, far too little to guess the rest.
func prefixOf(secret string) string { return secret[:len(SecretPrefix)+6] }

func hashOf(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// randomText is n random bytes as unpadded URL-safe base64.
func randomText(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", core.WrapError(core.EINTERNAL, err, "read randomness")
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
