package catalog

import (
	"context"
	"net/url"

	"github.com/stepwise-run/stepwise/core"
)

// assignment is the body of a group_backend or group_model record. The
// record id is groupPrefix(group)+url.PathEscape(member), so a group's
// members are one prefix listing away; the body keeps both ids unescaped.
type assignment struct {
	Group  string `json:"groupId"`
	Member string `json:"memberId"`
}

// groupPrefix starts the ids of a group's assignments. Escaping keeps a
// '/' in an id (model names have them) from being read as the separator.
func groupPrefix(group string) string { return url.PathEscape(group) + "/" }

// assignmentID is the record id of the assignment of member to group.
func assignmentID(group, member string) string { return groupPrefix(group) + url.PathEscape(member) }

// memberKind is the record kind of the members an assignment kind holds.
func memberKind(kind string) string {
	if kind == KindBackendInGroup {
		return KindBackend
	}
	return KindModel
}

// assign records that member belongs to group; both must exist
// (ENOTFOUND naming which). Assigning twice is not an error.
func (c *Catalog) assign(ctx context.Context, tenant, kind, groupID, memberID string) error {
	if _, err := c.get(ctx, tenant, KindGroup, groupID); err != nil {
		return err
	}
	if _, err := c.get(ctx, tenant, memberKind(kind), memberID); err != nil {
		return err
	}
	id := assignmentID(groupID, memberID)
	// Already assigned (the usual case at every start): a read, not a
	// write that the store refuses — cheaper, and on DynamoDB a refused
	// conditional write is still billed.
	if _, err := c.store.GetRecord(ctx, tenant, kind, id); err == nil {
		return nil
	} else if core.ErrorCode(err) != core.ENOTFOUND {
		return err
	}
	body, err := encode(assignment{Group: groupID, Member: memberID})
	if err != nil {
		return err
	}
	now := c.stamp()
	r := &core.Record{Kind: kind, ID: id, Body: body, CreatedAt: now, UpdatedAt: now}
	if err := c.store.CreateRecord(ctx, tenant, r); err != nil && core.ErrorCode(err) != core.ECONFLICT {
		return err
	}
	return nil
}

// unassign removes one assignment; ENOTFOUND if there is none.
func (c *Catalog) unassign(ctx context.Context, tenant, kind, groupID, memberID string) error {
	err := c.store.DeleteRecord(ctx, tenant, kind, assignmentID(groupID, memberID))
	if core.ErrorCode(err) == core.ENOTFOUND {
		return core.Errorf(core.ENOTFOUND, "%s %q is not assigned to group %q", memberKind(kind), memberID, groupID)
	}
	return err
}

// assignments lists the assignments of kind whose id starts with prefix.
func (c *Catalog) assignments(ctx context.Context, tenant, kind, prefix string) ([]assignment, error) {
	rs, err := c.listAll(ctx, tenant, kind, prefix)
	if err != nil {
		return nil, err
	}
	return decodeAll[assignment](rs)
}

// memberAssignments lists the assignments of kind of one member. Members
// are not a prefix of the id, so this reads every assignment of the kind,
// which is fine at catalog sizes.
func (c *Catalog) memberAssignments(ctx context.Context, tenant, kind, memberID string) ([]assignment, error) {
	all, err := c.assignments(ctx, tenant, kind, "")
	if err != nil {
		return nil, err
	}
	var out []assignment
	for _, a := range all {
		if a.Member == memberID {
			out = append(out, a)
		}
	}
	return out, nil
}

// unassignGroup removes every assignment of kind of a group. It stops at
// the first failure, so that the group is not deleted with assignments
// left behind; the call can be repeated.
func (c *Catalog) unassignGroup(ctx context.Context, tenant, kind, groupID string) error {
	as, err := c.assignments(ctx, tenant, kind, groupPrefix(groupID))
	if err != nil {
		return err
	}
	return c.removeAssignments(ctx, tenant, kind, as)
}

// unassignMember removes every assignment of kind of a backend or model,
// stopping at the first failure like unassignGroup.
func (c *Catalog) unassignMember(ctx context.Context, tenant, kind, memberID string) error {
	as, err := c.memberAssignments(ctx, tenant, kind, memberID)
	if err != nil {
		return err
	}
	return c.removeAssignments(ctx, tenant, kind, as)
}

// removeAssignments deletes assignments; one that is already gone (a
// concurrent unassign) is not a failure.
func (c *Catalog) removeAssignments(ctx context.Context, tenant, kind string, as []assignment) error {
	for _, a := range as {
		err := c.store.DeleteRecord(ctx, tenant, kind, assignmentID(a.Group, a.Member))
		if err != nil && core.ErrorCode(err) != core.ENOTFOUND {
			return core.WrapError(core.ErrorCode(err), err, "removing %s %q from group %q", memberKind(kind), a.Member, a.Group)
		}
	}
	return nil
}

// AssignBackend puts a backend in a group: it then serves only the models
// of its groups. ENOTFOUND names the group or backend that is missing.
func (c *Catalog) AssignBackend(ctx context.Context, tenant, groupID, backendID string) error {
	return c.assign(ctx, tenant, KindBackendInGroup, groupID, backendID)
}

// UnassignBackend takes a backend out of a group; ENOTFOUND if it is not
// in it.
func (c *Catalog) UnassignBackend(ctx context.Context, tenant, groupID, backendID string) error {
	return c.unassign(ctx, tenant, KindBackendInGroup, groupID, backendID)
}

// ListGroupBackends returns the backends of a group, oldest first.
func (c *Catalog) ListGroupBackends(ctx context.Context, tenant, groupID string) ([]Backend, error) {
	if _, err := c.get(ctx, tenant, KindGroup, groupID); err != nil {
		return nil, err
	}
	as, err := c.assignments(ctx, tenant, KindBackendInGroup, groupPrefix(groupID))
	if err != nil {
		return nil, err
	}
	bs, err := members[Backend](ctx, c, tenant, KindBackend, as, func(a assignment) string { return a.Member })
	if err != nil {
		return nil, err
	}
	sortOldestFirst(bs)
	return bs, nil
}

// ListBackendGroups returns the groups a backend is in.
func (c *Catalog) ListBackendGroups(ctx context.Context, tenant, backendID string) ([]Group, error) {
	if _, err := c.get(ctx, tenant, KindBackend, backendID); err != nil {
		return nil, err
	}
	as, err := c.memberAssignments(ctx, tenant, KindBackendInGroup, backendID)
	if err != nil {
		return nil, err
	}
	return members[Group](ctx, c, tenant, KindGroup, as, func(a assignment) string { return a.Group })
}

// AssignModel puts a model in a group: the group's backends serve it.
// ENOTFOUND names the group or model that is missing.
func (c *Catalog) AssignModel(ctx context.Context, tenant, groupID, modelID string) error {
	return c.assign(ctx, tenant, KindModelInGroup, groupID, modelID)
}

// UnassignModel takes a model out of a group; ENOTFOUND if it is not in
// it. A configured default model stays in its built-in group
// (EFORBIDDEN).
func (c *Catalog) UnassignModel(ctx context.Context, tenant, groupID, modelID string) error {
	if b, ok := c.builtinGroup(groupID); ok && b.model.Name != "" && b.model.Name == modelID {
		return core.Errorf(core.EFORBIDDEN, "model %q is the configured default %s model and stays in built-in group %q", modelID, b.role, groupID)
	}
	return c.unassign(ctx, tenant, KindModelInGroup, groupID, modelID)
}

// ListGroupModels returns the models of a group.
func (c *Catalog) ListGroupModels(ctx context.Context, tenant, groupID string) ([]Model, error) {
	if _, err := c.get(ctx, tenant, KindGroup, groupID); err != nil {
		return nil, err
	}
	as, err := c.assignments(ctx, tenant, KindModelInGroup, groupPrefix(groupID))
	if err != nil {
		return nil, err
	}
	return members[Model](ctx, c, tenant, KindModel, as, func(a assignment) string { return a.Member })
}

// ListModelGroups returns the groups a model is in.
func (c *Catalog) ListModelGroups(ctx context.Context, tenant, modelID string) ([]Group, error) {
	if _, err := c.get(ctx, tenant, KindModel, modelID); err != nil {
		return nil, err
	}
	as, err := c.memberAssignments(ctx, tenant, KindModelInGroup, modelID)
	if err != nil {
		return nil, err
	}
	return members[Group](ctx, c, tenant, KindGroup, as, func(a assignment) string { return a.Group })
}

// members reads the record of kind that each assignment points to (by
// the id pick returns). An assignment whose record is gone — left by a
// delete racing an assign — is skipped rather than failing the listing.
func members[T any](ctx context.Context, c *Catalog, tenant, kind string, as []assignment, pick func(assignment) string) ([]T, error) {
	out := make([]T, 0, len(as))
	for _, a := range as {
		r, err := c.store.GetRecord(ctx, tenant, kind, pick(a))
		if core.ErrorCode(err) == core.ENOTFOUND {
			continue
		}
		if err != nil {
			return nil, core.WrapError(core.ErrorCode(err), err, "reading %s %q", kind, pick(a))
		}
		v, err := decode[T](r)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
