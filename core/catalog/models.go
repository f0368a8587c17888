package catalog

import (
	"context"
	"fmt"
	"strings"

	"github.com/stepwise-run/stepwise/core"
)

// checkModel validates a model declaration and trims its name in place.
func checkModel(m *Model) error {
	var p problems
	m.Model = strings.TrimSpace(m.Model)
	if m.Model == "" {
		p.addf("model: required")
	}
	if m.ContextLength <= 0 {
		p.addf("contextLength: must be greater than 0 (got %d)", m.ContextLength)
	}
	if !m.CanChat && !m.CanEmbed && !m.CanPrompt {
		p.addf("canChat, canEmbed, canPrompt: at least one must be true, or the model serves nothing")
	}
	return p.err()
}

// CreateModel declares a model. Its id is its name (m.ID is ignored);
// ECONFLICT if it is declared already.
func (c *Catalog) CreateModel(ctx context.Context, tenant string, m Model) (Model, error) {
	if err := checkModel(&m); err != nil {
		return Model{}, err
	}
	if m.ID != "" && m.ID != m.Model {
		return Model{}, core.Errorf(core.EINVALID, "id: %q differs from model %q: a model's id is its name", m.ID, m.Model)
	}
	m.ID = m.Model
	m.CreatedAt = c.stamp()
	m.UpdatedAt = m.CreatedAt
	body, err := encode(m)
	if err != nil {
		return Model{}, err
	}
	r := &core.Record{Kind: KindModel, ID: m.ID, Body: body, CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt}
	if err := c.create(ctx, tenant, r, nil, fmt.Sprintf("model: a model named %q exists", m.Model)); err != nil {
		return Model{}, err
	}
	return m, nil
}

// GetModel returns a declared model.
func (c *Catalog) GetModel(ctx context.Context, tenant, id string) (Model, error) {
	r, err := c.get(ctx, tenant, KindModel, id)
	if err != nil {
		return Model{}, err
	}
	return decode[Model](r)
}

// UpdateModel replaces the context length and capabilities of model id.
// m.Model may be empty or id: a model's name is its id, and renaming it
// would orphan every chain and assignment that names it.
func (c *Catalog) UpdateModel(ctx context.Context, tenant, id string, m Model) (Model, error) {
	if err := checkPathID(m.ID, id); err != nil {
		return Model{}, err
	}
	if name := strings.TrimSpace(m.Model); name != "" && name != id {
		return Model{}, core.Errorf(core.EINVALID, "model: %q cannot be renamed to %q; declare the new name and delete the old one", id, name)
	}
	m.Model = id
	if err := checkModel(&m); err != nil {
		return Model{}, err
	}
	m.ID = id
	_, err := c.update(ctx, tenant, KindModel, id, func(r *core.Record) ([]uniqueKey, error) {
		m.CreatedAt = r.CreatedAt
		m.UpdatedAt = c.stamp()
		body, err := encode(m)
		if err != nil {
			return nil, err
		}
		r.Body, r.UpdatedAt = body, m.UpdatedAt
		return nil, nil
	})
	if err != nil {
		return Model{}, err
	}
	return m, nil
}

// DeleteModel removes a model declaration and, first, its group
// assignments. A configured default model is EFORBIDDEN: the server
// declared it at start and relies on it.
func (c *Catalog) DeleteModel(ctx context.Context, tenant, id string) error {
	if role := c.defaultRole(id); role != "" {
		return core.Errorf(core.EFORBIDDEN, "model %q is the configured default %s model and cannot be deleted", id, role)
	}
	if _, err := c.get(ctx, tenant, KindModel, id); err != nil {
		return err
	}
	if err := c.unassignMember(ctx, tenant, KindModelInGroup, id); err != nil {
		return err
	}
	return c.remove(ctx, tenant, KindModel, id)
}

// ListModels returns one page of models, newest first, and the cursor of
// the next page ("" on the last).
func (c *Catalog) ListModels(ctx context.Context, tenant string, q core.ListQuery) ([]Model, string, error) {
	page, err := c.store.ListRecords(ctx, tenant, KindModel, q)
	if err != nil {
		return nil, "", err
	}
	ms, err := decodeAll[Model](page.Records)
	if err != nil {
		return nil, "", err
	}
	return ms, page.Next, nil
}

// defaultRole names what model is the configured default for ("embedding",
// "task" or "chat"), or "" when it is none.
func (c *Catalog) defaultRole(model string) string {
	for _, d := range c.builtins() {
		if d.model.Name != "" && d.model.Name == model {
			return d.role
		}
	}
	return ""
}
