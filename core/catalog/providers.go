package catalog

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/stepwise-run/stepwise/core"
)

// Base URLs of the cloud providers' OpenAI-compatible APIs.
const (
	OpenAIBaseURL = "https://api.openai.com/v1"
	GeminiBaseURL = "https://generativelanguage.googleapis.com/v1beta/openai"
)

// providerRecord is the body of a provider record. The key itself is only
// ever stored sealed; the masked form is kept beside it so that showing
// the configuration never needs to decrypt the key.
type providerRecord struct {
	Type string `json:"type"`
	// BaseURL is the URL the provider's backend was given with this key;
	// the key goes to that backend only while it still has this URL.
	BaseURL string `json:"baseUrl"`
	// SealedKey is the base64 of the sealed API key.
	SealedKey string `json:"sealedKey"`
	MaskedKey string `json:"maskedKey"`
}

// providerURL returns the base URL of a provider type; ENOTFOUND for a
// type that takes no key.
func providerURL(typ string) (string, error) {
	switch typ {
	case ProviderOpenAI:
		return OpenAIBaseURL, nil
	case ProviderGemini:
		return GeminiBaseURL, nil
	}
	return "", core.Errorf(core.ENOTFOUND, "unknown provider %q (want %s or %s)", typ, ProviderOpenAI, ProviderGemini)
}

// providerBaseURL is the base URL the backend of provider typ gets: the
// one Config.ProviderURLs gives, else the provider's own.
func (c *Catalog) providerBaseURL(typ string) (string, error) {
	u, err := providerURL(typ)
	if err != nil {
		return "", err
	}
	if o := c.providerURLs[typ]; o != "" {
		return o, nil
	}
	return u, nil
}

// maskKey shows only the last four characters of a key, and nothing of a
// key shorter than 12 characters, where four would be too much of it.
func maskKey(key string) string {
	n := utf8.RuneCountInString(key)
	if n < 12 {
		return "…"
	}
	return "…" + string([]rune(key)[n-4:])
}

// ConfigureProvider stores the API key of a cloud provider, sealed, and
// creates or updates the provider's backend, whose id and name are the
// provider type. ENOTFOUND for an unknown type; ECONFLICT when the
// provider is configured already and upsert is false. The key never
// appears in a returned value or error.
func (c *Catalog) ConfigureProvider(ctx context.Context, tenant, typ, apiKey string, upsert bool) (ProviderStatus, error) {
	baseURL, err := c.providerBaseURL(typ)
	if err != nil {
		return ProviderStatus{}, err
	}
	// Keys never contain spaces; a pasted one often ends in a newline.
	apiKey = strings.TrimSpace(apiKey)
	if apiKey == "" {
		return ProviderStatus{}, core.Errorf(core.EINVALID, "apiKey: required")
	}
	if c.sealer == nil {
		return ProviderStatus{}, core.Errorf(core.EINTERNAL, "provider keys cannot be stored: the catalog has no sealer")
	}
	_, err = c.store.GetRecord(ctx, tenant, KindProvider, typ)
	if err != nil && core.ErrorCode(err) != core.ENOTFOUND {
		return ProviderStatus{}, err
	}
	exists := err == nil
	if exists && !upsert {
		return ProviderStatus{}, alreadyConfigured(typ)
	}
	sealed, err := c.sealer.Seal([]byte(apiKey), sealContext(tenant, typ))
	if err != nil {
		return ProviderStatus{}, core.WrapError(core.EINTERNAL, err, "sealing the apiKey of provider %q", typ)
	}
	body, err := encode(providerRecord{Type: typ, BaseURL: baseURL, SealedKey: base64.StdEncoding.EncodeToString(sealed), MaskedKey: maskKey(apiKey)})
	if err != nil {
		return ProviderStatus{}, err
	}
	if err := c.ensureProviderBackend(ctx, tenant, typ, baseURL); err != nil {
		return ProviderStatus{}, err
	}
	now := c.stamp()
	if !exists {
		r := &core.Record{Kind: KindProvider, ID: typ, Body: body, CreatedAt: now, UpdatedAt: now}
		err := c.store.CreateRecord(ctx, tenant, r)
		switch {
		case err == nil:
			return ProviderStatus{Configured: true, UpdatedAt: now, Provider: typ}, nil
		case core.ErrorCode(err) != core.ECONFLICT:
			return ProviderStatus{}, err
		case !upsert:
			return ProviderStatus{}, alreadyConfigured(typ)
		}
	}
	r, err := c.update(ctx, tenant, KindProvider, typ, func(r *core.Record) ([]uniqueKey, error) {
		r.Body, r.UpdatedAt = body, now
		return nil, nil
	})
	if err != nil {
		return ProviderStatus{}, err
	}
	return ProviderStatus{Configured: true, UpdatedAt: r.UpdatedAt, Provider: typ}, nil
}

// alreadyConfigured is the conflict of configuring a provider twice
// without upsert.
func alreadyConfigured(typ string) error {
	// 422 as the reference answers it: the request, not the state, is
	// what to change.
	return core.Errorf(core.EINVALID, "upsert: provider %q is already configured; set upsert to replace its key", typ)
}

// ensureProviderBackend creates or updates the backend of provider typ.
func (c *Catalog) ensureProviderBackend(ctx context.Context, tenant, typ, baseURL string) error {
	b := Backend{ID: typ, Name: typ, BaseURL: baseURL, Type: typ}
	r, err := c.store.GetRecord(ctx, tenant, KindBackend, typ)
	switch core.ErrorCode(err) {
	case core.ENOTFOUND:
		_, err = c.createBackend(ctx, tenant, b)
	case "":
		// A name the user gave it stays.
		old, derr := decode[Backend](r)
		if derr != nil {
			return derr
		}
		b.Name = old.Name
		_, err = c.updateBackend(ctx, tenant, typ, b, false)
	}
	return err
}

// ProviderStatus says whether provider typ has a key; an unconfigured
// provider is Configured false, not an error. ENOTFOUND for an unknown
// type.
func (c *Catalog) ProviderStatus(ctx context.Context, tenant, typ string) (ProviderStatus, error) {
	if _, err := providerURL(typ); err != nil {
		return ProviderStatus{}, err
	}
	r, err := c.store.GetRecord(ctx, tenant, KindProvider, typ)
	switch core.ErrorCode(err) {
	case "":
		return ProviderStatus{Configured: true, UpdatedAt: r.UpdatedAt, Provider: typ}, nil
	case core.ENOTFOUND:
		return ProviderStatus{Provider: typ}, nil
	}
	return ProviderStatus{}, err
}

// GetProviderConfig returns the configuration of provider typ with its
// key masked; ENOTFOUND when it has none.
func (c *Catalog) GetProviderConfig(ctx context.Context, tenant, typ string) (ProviderConfig, error) {
	r, err := c.providerRecord(ctx, tenant, typ)
	if err != nil {
		return ProviderConfig{}, err
	}
	return providerConfig(r)
}

// providerRecord reads the record of provider typ.
func (c *Catalog) providerRecord(ctx context.Context, tenant, typ string) (*core.Record, error) {
	if _, err := providerURL(typ); err != nil {
		return nil, err
	}
	r, err := c.store.GetRecord(ctx, tenant, KindProvider, typ)
	if core.ErrorCode(err) == core.ENOTFOUND {
		return nil, core.Errorf(core.ENOTFOUND, "provider %q is not configured", typ)
	}
	return r, err
}

// providerConfig is the masked view of a provider record.
func providerConfig(r *core.Record) (ProviderConfig, error) {
	p, err := decode[providerRecord](r)
	if err != nil {
		return ProviderConfig{}, err
	}
	return ProviderConfig{APIKey: p.MaskedKey, Type: r.ID}, nil
}

// DeleteProviderConfig removes the key of provider typ and the backend
// ConfigureProvider made for it (with its group assignments). ENOTFOUND
// when the provider is not configured.
func (c *Catalog) DeleteProviderConfig(ctx context.Context, tenant, typ string) error {
	if _, err := c.providerRecord(ctx, tenant, typ); err != nil {
		return err
	}
	// The backend goes first: should the key's removal then fail, a retry
	// still finds the provider configured and finishes the job.
	// Its assignments go even when the backend itself is already gone.
	if err := c.unassignMember(ctx, tenant, KindBackendInGroup, typ); err != nil {
		return err
	}
	if err := c.remove(ctx, tenant, KindBackend, typ); err != nil && core.ErrorCode(err) != core.ENOTFOUND {
		return err
	}
	return c.remove(ctx, tenant, KindProvider, typ)
}

// ListProviderConfigs returns one page of the configured providers, keys
// masked, newest first, and the cursor of the next page ("" on the last).
func (c *Catalog) ListProviderConfigs(ctx context.Context, tenant string, q core.ListQuery) ([]ProviderConfig, string, error) {
	page, err := c.store.ListRecords(ctx, tenant, KindProvider, q)
	if err != nil {
		return nil, "", err
	}
	out := make([]ProviderConfig, 0, len(page.Records))
	for _, r := range page.Records {
		pc, err := providerConfig(r)
		if err != nil {
			return nil, "", err
		}
		out = append(out, pc)
	}
	return out, page.Next, nil
}

// sealContext binds a provider's sealed key to its tenant and type, so
// that the value copied into another record does not open.
func sealContext(tenant, typ string) []byte { return []byte(tenant + "/provider/" + typ) }

// isProviderBackend reports whether backend id is the one ConfigureProvider
// made, which holds the provider's key: its id is the provider type.
func (c *Catalog) isProviderBackend(ctx context.Context, tenant, id string) (bool, error) {
	if _, err := providerURL(id); err != nil {
		return false, nil
	}
	_, err := c.store.GetRecord(ctx, tenant, KindProvider, id)
	switch core.ErrorCode(err) {
	case "":
		return true, nil
	case core.ENOTFOUND:
		return false, nil
	}
	return false, err
}

// openKeys decrypts every configured provider key, by the id of the
// backend that uses it. A key goes only to the provider's own backend (id
// = the provider type), and only while that backend still has the
// provider's type and the URL the key was configured for: a backend moved
// elsewhere, by a racing update or by hand in the database, gets no key.
// A key that does not open (the secret key changed, the record was altered
// or copied) is left out too. Either way the reason is in failed, rather
// than failing: that backend's calls then go without a key and its state
// says why, while the other backends keep working.
func (c *Catalog) openKeys(ctx context.Context, tenant string, backends []Backend) (keys, failed map[string]string, err error) {
	keys, failed = map[string]string{}, map[string]string{}
	rs, err := c.listAll(ctx, tenant, KindProvider, "")
	if err != nil {
		return nil, nil, err
	}
	byID := make(map[string]Backend, len(backends))
	for _, b := range backends {
		byID[b.ID] = b
	}
	for _, r := range rs {
		b, ok := byID[r.ID]
		if !ok {
			continue // no backend to give it to
		}
		p, err := decode[providerRecord](r)
		if err != nil {
			failed[r.ID] = "the stored API key record is damaged"
			continue
		}
		want := p.BaseURL
		if b.Type != r.ID || b.BaseURL != want {
			failed[r.ID] = fmt.Sprintf("API key withheld: the backend is no longer the %s backend at %s the key was configured for; configure the provider again", r.ID, want)
			continue
		}
		if c.sealer == nil {
			failed[r.ID] = "the stored API key cannot be read: this server has no secret key"
			continue
		}
		sealed, err := base64.StdEncoding.DecodeString(p.SealedKey)
		if err == nil {
			var key []byte
			if key, err = c.sealer.Open(sealed, sealContext(tenant, r.ID)); err == nil {
				keys[r.ID] = string(key)
				continue
			}
		}
		failed[r.ID] = "the stored API key does not open with this server's secret key (STEPWISE_SECRET_KEY or the key file); configure the provider again or restore that key"
	}
	return keys, failed, nil
}
