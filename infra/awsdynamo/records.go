package awsdynamo

import (
	"context"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/stepwise-run/stepwise/core"
)

// maxTransactItems is DynamoDB's limit on the items of one transaction.
const maxTransactItems = 100

// deleteRetries is how many times DeleteRecord reads again after an update
// moved the record between its read and its delete.
const deleteRetries = 5

// recordItem encodes r as the item of tenant's record created at created.
func (s *Store) recordItem(tenant string, r *core.Record, created int64) (item, error) {
	updated, err := toNanos(r.UpdatedAt, "updatedAt")
	if err != nil {
		return nil, err
	}
	keys := r.Keys
	if keys == nil {
		keys = []string{}
	}
	pk := recordPK(tenant, r.Kind)
	it := item{
		attrPK: attrS(pk), attrSK: attrS(recordSK(r.ID)),
		attrGSI1PK: attrS(pk), attrGSI1SK: attrS(listSK(created, r.ID)),
		attrID: attrS(r.ID), attrKeys: attrList(keys),
		attrCreated: attrN(created), attrUpdated: attrN(updated),
	}
	if len(r.Body) > 0 {
		body, err := s.pack(r.Body)
		if err != nil {
			return nil, err
		}
		it[attrBody] = attrB(body)
	}
	return it, checkSize(it, r.Kind+" "+r.ID)
}

// decodeRecord is the inverse of recordItem.
func decodeRecord(it item, kind string) (*core.Record, error) {
	r := &core.Record{Kind: kind, ID: getS(it, attrID), Keys: getList(it, attrKeys)}
	var err error
	if r.Body, err = getBody(it); err != nil {
		return nil, err
	}
	if r.Version, err = getN(it, attrVersion); err != nil {
		return nil, err
	}
	created, err := getN(it, attrCreated)
	if err != nil {
		return nil, err
	}
	updated, err := getN(it, attrUpdated)
	if err != nil {
		return nil, err
	}
	r.CreatedAt, r.UpdatedAt = fromNanos(created), fromNanos(updated)
	return r, nil
}

// uniqueKeys returns keys without repeats, in order.
func uniqueKeys(keys []string) []string {
	var out []string
	for _, k := range keys {
		if !slices.Contains(out, k) {
			out = append(out, k) // a record has few keys: a scan beats a map
		}
	}
	return out
}

// claimKey is the transaction item that gives key to the record id, which
// fails if another record holds it.
func (s *Store) claimKey(tenant, kind, id, key string) txOp {
	var e expr
	cond := "attribute_not_exists(" + e.n(attrPK) + ")"
	return txOp{
		op: types.TransactWriteItem{Put: &types.Put{
			TableName:           aws.String(s.table),
			Item:                item{attrPK: attrS(recordPK(tenant, kind)), attrSK: attrS(keySK(key)), attrID: attrS(id)},
			ConditionExpression: aws.String(cond), ExpressionAttributeNames: e.names,
		}},
		onCondition: func(context.Context) error {
			return core.Errorf(core.ECONFLICT, "%s key %q is taken by another record", kind, key)
		},
	}
}

// releaseKey is the transaction item that deletes id's claim on key.
func (s *Store) releaseKey(tenant, kind, id, key string, moved func(context.Context) error) txOp {
	var e expr
	cond := e.n(attrID) + " = " + e.v(attrS(id))
	return txOp{
		op: types.TransactWriteItem{Delete: &types.Delete{
			TableName:           aws.String(s.table),
			Key:                 item{attrPK: attrS(recordPK(tenant, kind)), attrSK: attrS(keySK(key))},
			ConditionExpression: aws.String(cond), ExpressionAttributeNames: e.names, ExpressionAttributeValues: e.values,
		}},
		onCondition: moved,
	}
}

// checkKeyCount is EINVALID when a write of r needs n transaction items,
// more than one transaction holds.
func checkKeyCount(r *core.Record, n int) error {
	if n > maxTransactItems {
		return core.Errorf(core.EINVALID, "keys: %s %q changes %d keys at once; at most %d fit one DynamoDB transaction", r.Kind, r.ID, n-1, maxTransactItems-1)
	}
	return nil
}

// CreateRecord implements core.RecordStore: the record and its key claims
// in one transaction.
func (s *Store) CreateRecord(ctx context.Context, tenant string, r *core.Record) error {
	created, err := toNanos(r.CreatedAt, "createdAt")
	if err != nil {
		return err
	}
	it, err := s.recordItem(tenant, r, created)
	if err != nil {
		return err
	}
	token, err := writeToken()
	if err != nil {
		return err
	}
	it[attrVersion], it[attrWrite] = attrN(1), attrS(token)
	keys := uniqueKeys(r.Keys)
	if err := checkKeyCount(r, len(keys)+1); err != nil {
		return err
	}
	var e expr
	cond := "attribute_not_exists(" + e.n(attrPK) + ")"
	ops := []txOp{{
		op: types.TransactWriteItem{Put: &types.Put{
			TableName: aws.String(s.table), Item: it,
			ConditionExpression: aws.String(cond), ExpressionAttributeNames: e.names,
		}},
		onCondition: func(ctx context.Context) error {
			if ok, err := s.wrote(ctx, recordKey(tenant, r.Kind, r.ID), 1, token, "create "+r.Kind+" "+r.ID); ok || err != nil {
				return err
			}
			return core.Errorf(core.ECONFLICT, "%s %q already exists", r.Kind, r.ID)
		},
	}}
	for _, k := range keys {
		ops = append(ops, s.claimKey(tenant, r.Kind, r.ID, k))
	}
	if err := s.transact(ctx, "create "+r.Kind+" "+r.ID, ops); err != nil {
		return err
	}
	r.Version = 1
	return nil
}

// getRecordItem reads the item of a record, nil if there is none.
func (s *Store) getRecordItem(ctx context.Context, tenant, kind, id string) (item, error) {
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            recordKey(tenant, kind, id),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, s.fail(err, "get %s %q", kind, id)
	}
	return out.Item, nil
}

// GetRecord implements core.RecordStore.
func (s *Store) GetRecord(ctx context.Context, tenant, kind, id string) (*core.Record, error) {
	it, err := s.getRecordItem(ctx, tenant, kind, id)
	if err != nil {
		return nil, err
	}
	if it == nil {
		return nil, core.Errorf(core.ENOTFOUND, "%s %q not found", kind, id)
	}
	return decodeRecord(it, kind)
}

// FindRecord implements core.RecordStore: the key's claim names the
// record, which a second read returns.
func (s *Store) FindRecord(ctx context.Context, tenant, kind, key string) (*core.Record, error) {
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            item{attrPK: attrS(recordPK(tenant, kind)), attrSK: attrS(keySK(key))},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, s.fail(err, "find %s with key %q", kind, key)
	}
	if out.Item == nil {
		return nil, core.Errorf(core.ENOTFOUND, "%s with key %q not found", kind, key)
	}
	r, err := s.GetRecord(ctx, tenant, kind, getS(out.Item, attrID))
	if core.ErrorCode(err) == core.ENOTFOUND {
		// Deleted between the two reads.
		return nil, core.Errorf(core.ENOTFOUND, "%s with key %q not found", kind, key)
	}
	return r, err
}

// versionGuard is the transaction item's condition that the record is
// still at version, and the error when it is not: none if the write that
// carried token ("" for a delete, which leaves nothing to recognise) had
// been applied (see the package doc, Writes).
func (s *Store) versionGuard(tenant, kind, id string, version int64, token string) (e expr, cond string, moved func(context.Context) error) {
	cond = e.n(attrVersion) + " = " + e.v(attrN(version))
	moved = func(ctx context.Context) error {
		it, err := s.readBack(ctx, recordKey(tenant, kind, id), "write "+kind+" "+id)
		if err != nil {
			return err
		}
		if it == nil {
			return core.Errorf(core.ENOTFOUND, "%s %s not found", kind, id)
		}
		if holds(it, version+1, token) {
			return nil
		}
		stored, _ := getN(it, attrVersion)
		return core.Errorf(core.ECONFLICT, "%s %s is at version %d, not %d", kind, id, stored, version)
	}
	return e, cond, moved
}

// UpdateRecord implements core.RecordStore: it reads the stored record for
// its keys and creation time, then replaces it in one transaction guarded
// by its version, releasing the keys it drops and claiming the new ones.
func (s *Store) UpdateRecord(ctx context.Context, tenant string, r *core.Record) error {
	old, err := s.getRecordItem(ctx, tenant, r.Kind, r.ID)
	if err != nil {
		return err
	}
	if old == nil {
		return core.Errorf(core.ENOTFOUND, "%s %s not found", r.Kind, r.ID)
	}
	stored, err := getN(old, attrVersion)
	if err != nil {
		return err
	}
	if stored != r.Version {
		return core.Errorf(core.ECONFLICT, "%s %s is at version %d, not %d", r.Kind, r.ID, stored, r.Version)
	}
	created, err := getN(old, attrCreated)
	if err != nil {
		return err
	}
	it, err := s.recordItem(tenant, r, created)
	if err != nil {
		return err
	}
	token, err := writeToken()
	if err != nil {
		return err
	}
	it[attrVersion], it[attrWrite] = attrN(r.Version+1), attrS(token)
	e, cond, moved := s.versionGuard(tenant, r.Kind, r.ID, r.Version, token)
	ops := []txOp{{
		op: types.TransactWriteItem{Put: &types.Put{
			TableName: aws.String(s.table), Item: it,
			ConditionExpression: aws.String(cond), ExpressionAttributeNames: e.names, ExpressionAttributeValues: e.values,
		}},
		onCondition: moved,
	}}
	oldKeys, newKeys := uniqueKeys(getList(old, attrKeys)), uniqueKeys(r.Keys)
	for _, k := range oldKeys {
		if !slices.Contains(newKeys, k) {
			ops = append(ops, s.releaseKey(tenant, r.Kind, r.ID, k, moved))
		}
	}
	for _, k := range newKeys {
		if !slices.Contains(oldKeys, k) {
			ops = append(ops, s.claimKey(tenant, r.Kind, r.ID, k))
		}
	}
	if err := checkKeyCount(r, len(ops)); err != nil {
		return err
	}
	if err := s.transact(ctx, "update "+r.Kind+" "+r.ID, ops); err != nil {
		return err
	}
	r.Version++
	return nil
}

// DeleteRecord implements core.RecordStore: the record and its key claims
// go in one transaction guarded by the version read, read again if an
// update slipped in between.
func (s *Store) DeleteRecord(ctx context.Context, tenant, kind, id string) error {
	for attempt := 0; ; attempt++ {
		old, err := s.getRecordItem(ctx, tenant, kind, id)
		if err != nil {
			return err
		}
		if old == nil {
			return core.Errorf(core.ENOTFOUND, "%s %q not found", kind, id)
		}
		version, err := getN(old, attrVersion)
		if err != nil {
			return err
		}
		e, cond, moved := s.versionGuard(tenant, kind, id, version, "")
		ops := []txOp{{
			op: types.TransactWriteItem{Delete: &types.Delete{
				TableName:           aws.String(s.table),
				Key:                 recordKey(tenant, kind, id),
				ConditionExpression: aws.String(cond), ExpressionAttributeNames: e.names, ExpressionAttributeValues: e.values,
			}},
			onCondition: moved,
		}}
		for _, k := range uniqueKeys(getList(old, attrKeys)) {
			ops = append(ops, s.releaseKey(tenant, kind, id, k, moved))
		}
		err = s.transact(ctx, "delete "+kind+" "+id, ops)
		if core.ErrorCode(err) != core.ECONFLICT || attempt == deleteRetries {
			return err
		}
	}
}

// ListRecords implements core.RecordStore, through GSI1.
func (s *Store) ListRecords(ctx context.Context, tenant, kind string, q core.ListQuery) (core.RecordPage, error) {
	limit, pos, hasPos, err := q.Bounds()
	if err != nil {
		return core.RecordPage{}, err
	}
	var filter expr
	var cond string
	if q.Prefix != "" {
		cond = "begins_with(" + filter.n(attrID) + ", " + filter.v(attrS(q.Prefix)) + ")"
	}
	var page core.RecordPage
	err = s.listIndex(ctx, listQuery{
		what: "list " + kind + " records", pk: recordPK(tenant, kind),
		pos: pos, hasPos: hasPos, filter: filter, cond: cond, need: limit + 1,
	}, func(it item) error {
		r, err := decodeRecord(it, kind)
		if err == nil {
			page.Records = append(page.Records, r)
		}
		return err
	})
	if err != nil {
		return core.RecordPage{}, err
	}
	if len(page.Records) > limit {
		page.Records = page.Records[:limit:limit]
		last := page.Records[limit-1]
		page.Next = core.EncodeCursor(last.CreatedAt, last.ID)
	}
	return page, nil
}
