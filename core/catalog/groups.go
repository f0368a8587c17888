package catalog

import (
	"context"
	"fmt"
	"strings"

	"github.com/stepwise-run/stepwise/core"
)

// builtin describes one built-in group and the default model that belongs
// to it.
type builtin struct {
	group Group
	// role names the default model in messages ("chat").
	role  string
	model DefaultModel
	// caps are the capabilities Bootstrap declares the default model with.
	caps Model
}

// builtins lists the built-in groups with this catalog's default models.
func (c *Catalog) builtins() []builtin {
	return []builtin{
		{Group{ID: GroupEmbed, Name: GroupEmbed, PurposeType: PurposeEmbed}, "embedding", c.defaults.Embed,
			Model{CanEmbed: true}},
		{Group{ID: GroupTasks, Name: GroupTasks, PurposeType: PurposeTasks}, "task", c.defaults.Task,
			Model{CanPrompt: true, CanChat: true}},
		{Group{ID: GroupChat, Name: GroupChat, PurposeType: PurposeChat}, "chat", c.defaults.Chat,
			Model{CanChat: true, CanPrompt: true, CanStream: true}},
	}
}

// builtinGroup returns the built-in group with id or name, if it is one.
func (c *Catalog) builtinGroup(id string) (builtin, bool) {
	for _, b := range c.builtins() {
		if b.group.ID == id {
			return b, true
		}
	}
	return builtin{}, false
}

// groupKeys are the unique keys of a checked group.
func groupKeys(g Group) []uniqueKey {
	return []uniqueKey{{"name=" + g.Name, fmt.Sprintf("name: a group named %q exists", g.Name)}}
}

// checkGroup validates g and trims its name and purpose in place.
func checkGroup(g *Group) error {
	var p problems
	g.Name = strings.TrimSpace(g.Name)
	g.PurposeType = strings.TrimSpace(g.PurposeType)
	checkName(&p, g.Name)
	return p.err()
}

// CreateGroup creates an affinity group under a new id (g.ID is ignored).
// ECONFLICT if the name is taken; the built-in groups' names are
// reserved (EFORBIDDEN) even before they exist.
func (c *Catalog) CreateGroup(ctx context.Context, tenant string, g Group) (Group, error) {
	if err := checkGroup(&g); err != nil {
		return Group{}, err
	}
	if _, ok := c.builtinGroup(g.Name); ok {
		return Group{}, core.Errorf(core.EFORBIDDEN, "name: %q is reserved for a built-in group", g.Name)
	}
	g.ID = c.newID()
	if err := c.createGroup(ctx, tenant, &g); err != nil {
		return Group{}, err
	}
	return g, nil
}

// createGroup stores a new checked group under g.ID.
func (c *Catalog) createGroup(ctx context.Context, tenant string, g *Group) error {
	g.CreatedAt = c.stamp()
	g.UpdatedAt = g.CreatedAt
	body, err := encode(g)
	if err != nil {
		return err
	}
	r := &core.Record{Kind: KindGroup, ID: g.ID, Body: body, CreatedAt: g.CreatedAt, UpdatedAt: g.UpdatedAt}
	return c.create(ctx, tenant, r, groupKeys(*g), fmt.Sprintf("id: a group with id %q exists", g.ID))
}

// GetGroup returns a group.
func (c *Catalog) GetGroup(ctx context.Context, tenant, id string) (Group, error) {
	r, err := c.get(ctx, tenant, KindGroup, id)
	if err != nil {
		return Group{}, err
	}
	return decode[Group](r)
}

// GetGroupByName returns the group with a name.
func (c *Catalog) GetGroupByName(ctx context.Context, tenant, name string) (Group, error) {
	r, err := c.store.FindRecord(ctx, tenant, KindGroup, "name="+name)
	if core.ErrorCode(err) == core.ENOTFOUND {
		return Group{}, core.Errorf(core.ENOTFOUND, "group named %q not found", name)
	}
	if err != nil {
		return Group{}, err
	}
	return decode[Group](r)
}

// UpdateGroup renames a group or changes its purpose; g.ID must be empty
// or id. A built-in group keeps its name and purpose (EFORBIDDEN): the
// server finds its default models through them.
func (c *Catalog) UpdateGroup(ctx context.Context, tenant, id string, g Group) (Group, error) {
	if err := checkPathID(g.ID, id); err != nil {
		return Group{}, err
	}
	if err := checkGroup(&g); err != nil {
		return Group{}, err
	}
	if b, ok := c.builtinGroup(id); ok {
		if g.Name != id {
			return Group{}, core.Errorf(core.EFORBIDDEN, "group %q is built in and cannot be renamed", id)
		}
		if g.PurposeType == "" {
			g.PurposeType = b.group.PurposeType
		}
		if g.PurposeType != b.group.PurposeType {
			return Group{}, core.Errorf(core.EFORBIDDEN, "purposeType: group %q is built in; its purpose stays %q", id, b.group.PurposeType)
		}
	} else if _, ok := c.builtinGroup(g.Name); ok {
		return Group{}, core.Errorf(core.EFORBIDDEN, "name: %q is reserved for a built-in group", g.Name)
	}
	g.ID = id
	_, err := c.update(ctx, tenant, KindGroup, id, func(r *core.Record) ([]uniqueKey, error) {
		g.CreatedAt = r.CreatedAt
		g.UpdatedAt = c.stamp()
		body, err := encode(g)
		if err != nil {
			return nil, err
		}
		r.Body, r.UpdatedAt = body, g.UpdatedAt
		return groupKeys(g), nil
	})
	if err != nil {
		return Group{}, err
	}
	return g, nil
}

// DeleteGroup removes a group and, first, its assignments. Built-in groups
// cannot be deleted (EFORBIDDEN).
func (c *Catalog) DeleteGroup(ctx context.Context, tenant, id string) error {
	if _, ok := c.builtinGroup(id); ok {
		return core.Errorf(core.EFORBIDDEN, "group %q is built in and cannot be deleted", id)
	}
	if _, err := c.get(ctx, tenant, KindGroup, id); err != nil {
		return err
	}
	for _, kind := range []string{KindBackendInGroup, KindModelInGroup} {
		if err := c.unassignGroup(ctx, tenant, kind, id); err != nil {
			return err
		}
	}
	return c.remove(ctx, tenant, KindGroup, id)
}

// ListGroups returns every group, newest first.
func (c *Catalog) ListGroups(ctx context.Context, tenant string) ([]Group, error) {
	return listDecoded[Group](ctx, c, tenant, KindGroup)
}

// ListGroupsByPurpose returns one page of the groups whose purposeType is
// purpose, newest first, and the cursor of the next page ("" on the last).
func (c *Catalog) ListGroupsByPurpose(ctx context.Context, tenant, purpose string, q core.ListQuery) ([]Group, string, error) {
	rs, next, err := c.filteredPage(ctx, tenant, KindGroup, q, func(r *core.Record) (bool, error) {
		g, err := decode[Group](r)
		return err == nil && g.PurposeType == purpose, err
	})
	if err != nil {
		return nil, "", err
	}
	groups, err := decodeAll[Group](rs)
	if err != nil {
		return nil, "", err
	}
	return groups, next, nil
}

// EnsureBuiltinGroups creates the built-in groups that do not exist yet;
// existing ones are left as they are.
func (c *Catalog) EnsureBuiltinGroups(ctx context.Context, tenant string) error {
	for _, b := range c.builtins() {
		_, err := c.store.GetRecord(ctx, tenant, KindGroup, b.group.ID)
		if err == nil {
			continue
		}
		if core.ErrorCode(err) != core.ENOTFOUND {
			return err
		}
		g := b.group
		err = c.createGroup(ctx, tenant, &g)
		if err != nil && !c.exists(ctx, tenant, KindGroup, g.ID) {
			return err
		}
	}
	return nil
}

// exists reports whether a record is there: after a failed create, whether
// another writer created it meanwhile.
func (c *Catalog) exists(ctx context.Context, tenant, kind, id string) bool {
	_, err := c.store.GetRecord(ctx, tenant, kind, id)
	return err == nil
}
