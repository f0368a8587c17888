package catalog

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/stepwise-run/stepwise/core"
)

// MaxNameLength bounds the names of backends and groups, in characters.
const MaxNameLength = 128

// checkName validates a backend's or group's name (already trimmed).
func checkName(p *problems, name string) {
	switch {
	case name == "":
		p.addf("name: required")
	case utf8.RuneCountInString(name) > MaxNameLength:
		p.addf("name: longer than %d characters", MaxNameLength)
	}
}

// normaliseURL checks that raw is an absolute http(s) URL with a host and
// returns it without surrounding spaces and trailing slashes, the form the
// catalog stores and compares: "http://h:11434/" and "http://h:11434" are
// the same backend.
func normaliseURL(p *problems, raw string) string {
	s := strings.TrimSpace(raw)
	if s == "" {
		p.addf("baseUrl: required")
		return s
	}
	u, err := url.Parse(s)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https"):
		p.addf("baseUrl: %q is not an http(s) URL", raw)
	case u.Hostname() == "":
		p.addf("baseUrl: %q has no host", raw)
	}
	return strings.TrimRight(s, "/")
}

// checkBackend validates b and normalises its name, URL and type in place.
func checkBackend(b *Backend) error {
	var p problems
	b.Name = strings.TrimSpace(b.Name)
	checkName(&p, b.Name)
	b.BaseURL = normaliseURL(&p, b.BaseURL)
	b.Type = strings.ToLower(strings.TrimSpace(b.Type))
	switch {
	case b.Type == "":
		p.addf("type: required")
	case !slices.Contains(BackendTypes(), b.Type):
		p.addf("type: %q is not one of %s", b.Type, strings.Join(BackendTypes(), ", "))
	}
	return p.err()
}

// backendKeys are the unique keys of a checked backend.
func backendKeys(b Backend) []uniqueKey {
	return []uniqueKey{
		{"name=" + b.Name, fmt.Sprintf("name: a backend named %q exists", b.Name)},
		{"url=" + b.BaseURL, fmt.Sprintf("baseUrl: a backend with URL %q exists", b.BaseURL)},
	}
}

// CreateBackend registers a backend under a new id (b.ID is ignored).
// EINVALID names the field at fault; ECONFLICT if another backend has the
// name or the URL.
func (c *Catalog) CreateBackend(ctx context.Context, tenant string, b Backend) (Backend, error) {
	b.ID = c.newID()
	return c.createBackend(ctx, tenant, b)
}

// createBackend registers b under b.ID.
func (c *Catalog) createBackend(ctx context.Context, tenant string, b Backend) (Backend, error) {
	if err := checkBackend(&b); err != nil {
		return Backend{}, err
	}
	b.CreatedAt = c.stamp()
	b.UpdatedAt = b.CreatedAt
	body, err := encode(b)
	if err != nil {
		return Backend{}, err
	}
	r := &core.Record{Kind: KindBackend, ID: b.ID, Body: body, CreatedAt: b.CreatedAt, UpdatedAt: b.UpdatedAt}
	if err := c.create(ctx, tenant, r, backendKeys(b), fmt.Sprintf("id: a backend with id %q exists", b.ID)); err != nil {
		return Backend{}, err
	}
	return b, nil
}

// GetBackend returns a backend.
func (c *Catalog) GetBackend(ctx context.Context, tenant, id string) (Backend, error) {
	r, err := c.get(ctx, tenant, KindBackend, id)
	if err != nil {
		return Backend{}, err
	}
	return decode[Backend](r)
}

// UpdateBackend replaces backend id's name, URL and type; b.ID must be
// empty or id. The creation time is kept.
func (c *Catalog) UpdateBackend(ctx context.Context, tenant, id string, b Backend) (Backend, error) {
	managed, err := c.isProviderBackend(ctx, tenant, id)
	if err != nil {
		return Backend{}, err
	}
	return c.updateBackend(ctx, tenant, id, b, managed)
}

// updateBackend replaces a backend. A managed backend (a provider's) may
// be renamed but keeps its baseUrl and type.
func (c *Catalog) updateBackend(ctx context.Context, tenant, id string, b Backend, managed bool) (Backend, error) {
	if err := checkPathID(b.ID, id); err != nil {
		return Backend{}, err
	}
	if err := checkBackend(&b); err != nil {
		return Backend{}, err
	}
	b.ID = id
	_, err := c.update(ctx, tenant, KindBackend, id, func(r *core.Record) ([]uniqueKey, error) {
		if managed {
			old, err := decode[Backend](r)
			if err != nil {
				return nil, err
			}
			if old.BaseURL != b.BaseURL || old.Type != b.Type {
				return nil, core.Errorf(core.EFORBIDDEN, "backend %q holds the %s API key and is managed by /providers/%s: its baseUrl and type cannot change", id, id, id)
			}
		}
		b.CreatedAt = r.CreatedAt
		b.UpdatedAt = c.stamp()
		body, err := encode(b)
		if err != nil {
			return nil, err
		}
		r.Body, r.UpdatedAt = body, b.UpdatedAt
		return backendKeys(b), nil
	})
	if err != nil {
		return Backend{}, err
	}
	return b, nil
}

// DeleteBackend removes a backend and, first, its group assignments, so
// that no assignment outlives it.
// The backend of a configured cloud provider is removed with the
// provider's key (DeleteProviderConfig), not here: EFORBIDDEN.
func (c *Catalog) DeleteBackend(ctx context.Context, tenant, id string) error {
	managed, err := c.isProviderBackend(ctx, tenant, id)
	if err != nil {
		return err
	}
	if managed {
		return core.Errorf(core.EFORBIDDEN, "backend %q is managed by /providers/%s: DELETE /providers/%s/config removes it with its key", id, id, id)
	}
	return c.deleteBackend(ctx, tenant, id)
}

// deleteBackend removes a backend after its group assignments.
func (c *Catalog) deleteBackend(ctx context.Context, tenant, id string) error {
	if _, err := c.get(ctx, tenant, KindBackend, id); err != nil {
		return err
	}
	if err := c.unassignMember(ctx, tenant, KindBackendInGroup, id); err != nil {
		return err
	}
	return c.remove(ctx, tenant, KindBackend, id)
}

// ListBackends returns one page of backends, newest first, and the cursor
// of the next page ("" on the last).
func (c *Catalog) ListBackends(ctx context.Context, tenant string, q core.ListQuery) ([]Backend, string, error) {
	page, err := c.store.ListRecords(ctx, tenant, KindBackend, q)
	if err != nil {
		return nil, "", err
	}
	bs, err := decodeAll[Backend](page.Records)
	if err != nil {
		return nil, "", err
	}
	return bs, page.Next, nil
}

// sortOldestFirst orders backends by registration, the order the
// "ordered" routing policy tries them in.
func sortOldestFirst(bs []Backend) {
	slices.SortFunc(bs, func(a, b Backend) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}
