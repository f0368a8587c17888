package catalog

import (
	"context"
	"fmt"

	"github.com/stepwise-run/stepwise/core"
)

// CreateChain validates and stores a new chain. An invalid chain is
// EINVALID wrapping a *core.ValidationError with every problem; ECONFLICT
// if a chain with its id exists.
func (c *Catalog) CreateChain(ctx context.Context, tenant string, ch *core.Chain) error {
	if err := core.Validate(ch); err != nil {
		return err
	}
	body, err := encode(ch)
	if err != nil {
		return err
	}
	now := c.stamp()
	r := &core.Record{Kind: KindChain, ID: ch.ID, Body: body, CreatedAt: now, UpdatedAt: now}
	return c.create(ctx, tenant, r, nil, fmt.Sprintf("id: a chain with id %q exists", ch.ID))
}

// PutChain replaces the stored chain id with ch, validated. ch.ID may be
// empty (it takes id) but not another id; ENOTFOUND if there is no chain
// id. ch itself is not modified.
func (c *Catalog) PutChain(ctx context.Context, tenant, id string, ch *core.Chain) error {
	if ch == nil {
		return core.Validate(ch)
	}
	if err := checkPathID(ch.ID, id); err != nil {
		return err
	}
	next := *ch
	next.ID = id
	if err := core.Validate(&next); err != nil {
		return err
	}
	body, err := encode(&next)
	if err != nil {
		return err
	}
	_, err = c.update(ctx, tenant, KindChain, id, func(r *core.Record) ([]uniqueKey, error) {
		r.Body = body
		r.UpdatedAt = c.stamp()
		return nil, nil
	})
	return err
}

// GetChain returns a stored chain.
func (c *Catalog) GetChain(ctx context.Context, tenant, id string) (*core.Chain, error) {
	r, err := c.get(ctx, tenant, KindChain, id)
	if err != nil {
		return nil, err
	}
	return decode[*core.Chain](r)
}

// DeleteChain removes a stored chain. Executions keep their own snapshot
// of the chain they run, so none is affected.
func (c *Catalog) DeleteChain(ctx context.Context, tenant, id string) error {
	return c.remove(ctx, tenant, KindChain, id)
}

// ListChains returns one page of chains, newest first, and the cursor of
// the next page ("" on the last).
func (c *Catalog) ListChains(ctx context.Context, tenant string, q core.ListQuery) ([]*core.Chain, string, error) {
	page, err := c.store.ListRecords(ctx, tenant, KindChain, q)
	if err != nil {
		return nil, "", err
	}
	chains, err := decodeAll[*core.Chain](page.Records)
	if err != nil {
		return nil, "", err
	}
	return chains, page.Next, nil
}
