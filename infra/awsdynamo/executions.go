package awsdynamo

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/stepwise-run/stepwise/core"
)

// lastStepSK is above the sort key of every step.
const lastStepSK = "S#999999999999"

// encodeState returns the packed JSON of e without its chain, at version,
// which is what the execution item's body holds (or a reference to it in
// the blob store).
func (s *Store) encodeState(ctx context.Context, e *core.Execution, version int64) ([]byte, error) {
	state := *e
	state.Chain, state.Version = nil, version
	b, err := json.Marshal(&state)
	if err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "encode execution %q", e.ID)
	}
	return s.encodeBody(ctx, e.Tenant, "execution "+e.ID, b)
}

// decodeState reads tenant's execution item: its body, at the item's
// version, without the chain.
func (s *Store) decodeState(ctx context.Context, tenant string, it item) (*core.Execution, error) {
	id := getS(it, attrID)
	b, err := s.decodeBody(ctx, tenant, "execution "+id, it)
	if err != nil {
		// It names the execution and keeps the blob store's code: an
		// unavailable S3 is worth retrying, a damaged item is not.
		return nil, err
	}
	var e core.Execution
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "decode execution %q", id)
	}
	if e.Version, err = getN(it, attrVersion); err != nil {
		return nil, err
	}
	return &e, nil
}

// stateKey is the key of an execution's item.
func stateKey(tenant, id string) item {
	return item{attrPK: attrS(execPK(tenant, id)), attrSK: attrS(skState)}
}

// CreateExecution implements core.ExecutionStore: the execution item and
// its chain snapshot in one transaction.
func (s *Store) CreateExecution(ctx context.Context, e *core.Execution) error {
	created, err := toNanos(e.CreatedAt, "createdAt")
	if err != nil {
		return err
	}
	updated, err := toNanos(e.UpdatedAt, "updatedAt")
	if err != nil {
		return err
	}
	chainJSON, err := json.Marshal(e.Chain)
	if err != nil {
		return core.WrapError(core.EINTERNAL, err, "encode the chain of execution %q", e.ID)
	}
	chain, err := s.pack(chainJSON)
	if err != nil {
		return err
	}
	state, err := s.encodeState(ctx, e, 1)
	if err != nil {
		return err
	}
	token, err := writeToken()
	if err != nil {
		return err
	}
	pk := execPK(e.Tenant, e.ID)
	stateItem := item{
		attrPK: attrS(pk), attrSK: attrS(skState),
		attrGSI1PK: attrS(execListPK(e.Tenant)), attrGSI1SK: attrS(listSK(created, e.ID)),
		attrID: attrS(e.ID), attrVersion: attrN(1), attrStatus: attrS(string(e.Status)),
		attrCreated: attrN(created), attrUpdated: attrN(updated), attrBody: attrB(state),
		attrWrite: attrS(token),
	}
	if e.Chain != nil && e.Chain.ID != "" {
		stateItem[attrChainID] = attrS(e.Chain.ID)
	}
	chainItem := item{attrPK: attrS(pk), attrSK: attrS(skChain), attrBody: attrB(chain)}
	if err := checkSize(stateItem, "execution "+e.ID); err != nil {
		return err
	}
	if err := checkSize(chainItem, "the chain of execution "+e.ID); err != nil {
		return err
	}
	exists := func(ctx context.Context) error {
		if ok, err := s.wrote(ctx, stateKey(e.Tenant, e.ID), 1, token, "create execution "+e.ID); ok || err != nil {
			return err
		}
		return core.Errorf(core.ECONFLICT, "execution %q already exists", e.ID)
	}
	var ops []txOp
	for _, it := range []item{stateItem, chainItem} {
		var x expr
		cond := "attribute_not_exists(" + x.n(attrPK) + ")"
		ops = append(ops, txOp{
			op: types.TransactWriteItem{Put: &types.Put{
				TableName: aws.String(s.table), Item: it,
				ConditionExpression: aws.String(cond), ExpressionAttributeNames: x.names,
			}},
			onCondition: exists,
		})
	}
	if err := s.transact(ctx, "create execution "+e.ID, ops); err != nil {
		return err
	}
	e.Version = 1
	return nil
}

// GetExecution implements core.ExecutionStore: one strongly consistent
// query reads the execution item and its chain, whose sort keys are the
// only ones of the partition that begin with "#".
func (s *Store) GetExecution(ctx context.Context, tenant, id string) (*core.Execution, error) {
	var x expr
	key := x.n(attrPK) + " = " + x.v(attrS(execPK(tenant, id))) + " AND begins_with(" + x.n(attrSK) + ", " + x.v(attrS("#")) + ")"
	out, err := s.client.Query(ctx, &dynamodb.QueryInput{
		TableName:                 aws.String(s.table),
		KeyConditionExpression:    aws.String(key),
		ExpressionAttributeNames:  x.names,
		ExpressionAttributeValues: x.values,
		ConsistentRead:            aws.Bool(true),
	})
	if err != nil {
		return nil, s.fail(err, "get execution %q", id)
	}
	var state, chain item
	for _, it := range out.Items {
		switch getS(it, attrSK) {
		case skState:
			state = it
		case skChain:
			chain = it
		}
	}
	if state == nil {
		return nil, core.Errorf(core.ENOTFOUND, "execution %q not found", id)
	}
	e, err := s.decodeState(ctx, tenant, state)
	if err != nil {
		return nil, err
	}
	if chain != nil {
		b, err := getBody(chain)
		if err == nil {
			err = json.Unmarshal(b, &e.Chain)
		}
		if err != nil {
			return nil, core.WrapError(core.EINTERNAL, err, "decode the chain of execution %q", id)
		}
	}
	return e, nil
}

// writeToken returns a token that tells one write of an execution item
// from every other (see the package doc, Writes).
func writeToken() (string, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", core.WrapError(core.EINTERNAL, err, "make a write token")
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// readBack reads the version and write token of the item at key,
// strongly consistent; a nil item if there is none. It reads on a context
// of its own, as the write it checks was sent (see writeContext): a caller
// out of time must still learn whether its write was applied. An error
// means the outcome of that write is unknown: EUNAVAILABLE, not a
// conflict.
func (s *Store) readBack(ctx context.Context, key item, what string) (item, error) {
	rctx, cancel, err := writeContext(context.WithoutCancel(ctx), what)
	if err != nil {
		return nil, err
	}
	defer cancel()
	out, err := s.client.GetItem(rctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.table), Key: key, ConsistentRead: aws.Bool(true),
		ProjectionExpression:     aws.String("#v, #w"),
		ExpressionAttributeNames: map[string]string{"#v": attrVersion, "#w": attrWrite},
	})
	if err != nil {
		return nil, core.WrapError(core.EUNAVAILABLE, s.fail(err, "read it back"),
			"%s failed its condition, and whether it had been applied could not be read", what)
	}
	return out.Item, nil
}

// wrote reports whether the item at key is at version with the token: the
// write that failed its condition had been applied already.
func (s *Store) wrote(ctx context.Context, key item, version int64, token, what string) (bool, error) {
	it, err := s.readBack(ctx, key, what)
	return err == nil && holds(it, version, token), err
}

// holds reports whether it (nil: no item) is at version with the token.
func holds(it item, version int64, token string) bool {
	if it == nil || token == "" {
		return false
	}
	v, err := getN(it, attrVersion)
	return err == nil && v == version && getS(it, attrWrite) == token
}

// missingOrMoved explains a failed version condition on the commit of e
// that carried token: nil if that very commit had been applied (see the
// package doc, Writes), ENOTFOUND if the execution does not exist, else
// ECONFLICT.
func (s *Store) missingOrMoved(ctx context.Context, e *core.Execution, token string) error {
	it, err := s.readBack(ctx, stateKey(e.Tenant, e.ID), "commit execution "+e.ID)
	if err != nil {
		return err
	}
	if it == nil {
		return core.Errorf(core.ENOTFOUND, "execution %s not found", e.ID)
	}
	if holds(it, e.Version+1, token) {
		return nil
	}
	stored, _ := getN(it, attrVersion)
	return core.Errorf(core.ECONFLICT, "execution %s is at version %d, not %d", e.ID, stored, e.Version)
}

// CommitExecution implements core.ExecutionStore. Without a step it is
// one UpdateItem guarded by the version; with one, a transaction of that
// update and the step's Put, guarded by the step's absence, so that a
// stale version or a duplicate index writes neither. The update leaves the
// creation time, the chain id and the chain alone.
func (s *Store) CommitExecution(ctx context.Context, e *core.Execution, step *core.Step) error {
	updated, err := toNanos(e.UpdatedAt, "updatedAt")
	if err != nil {
		return err
	}
	state, err := s.encodeState(ctx, e, e.Version+1)
	if err != nil {
		return err
	}
	token, err := writeToken()
	if err != nil {
		return err
	}
	// The size DynamoDB will see: the stored item's other attributes are
	// small and fixed, so they are estimated with a full item.
	full := item{
		attrPK: attrS(execPK(e.Tenant, e.ID)), attrSK: attrS(skState),
		attrGSI1PK: attrS(execListPK(e.Tenant)), attrGSI1SK: attrS(listSK(0, e.ID)),
		attrID: attrS(e.ID), attrVersion: attrN(0), attrStatus: attrS(string(e.Status)),
		attrCreated: attrN(0), attrUpdated: attrN(0), attrBody: attrB(state), attrWrite: attrS(token),
	}
	if e.Chain != nil {
		full[attrChainID] = attrS(e.Chain.ID)
	}
	if err := checkSize(full, "execution "+e.ID); err != nil {
		return err
	}
	var x expr
	update := "SET " + x.n(attrBody) + " = " + x.v(attrB(state)) +
		", " + x.n(attrStatus) + " = " + x.v(attrS(string(e.Status))) +
		", " + x.n(attrUpdated) + " = " + x.v(attrN(updated)) +
		", " + x.n(attrVersion) + " = " + x.v(attrN(e.Version+1)) +
		", " + x.n(attrWrite) + " = " + x.v(attrS(token))
	cond := x.n(attrVersion) + " = " + x.v(attrN(e.Version))
	what := "commit execution " + e.ID
	if step == nil {
		wctx, cancel, err := writeContext(ctx, what)
		if err != nil {
			return err
		}
		defer cancel()
		_, err = s.client.UpdateItem(wctx, &dynamodb.UpdateItemInput{
			TableName: aws.String(s.table), Key: stateKey(e.Tenant, e.ID),
			UpdateExpression: aws.String(update), ConditionExpression: aws.String(cond),
			ExpressionAttributeNames: x.names, ExpressionAttributeValues: x.values,
		})
		var failed *types.ConditionalCheckFailedException
		switch {
		case errors.As(err, &failed):
			if err := s.missingOrMoved(ctx, e, token); err != nil {
				return err
			}
		case err != nil:
			return s.fail(err, "%s", what)
		}
		e.Version++
		return nil
	}
	stepItem, err := s.stepItem(ctx, e, step)
	if err != nil {
		return err
	}
	var y expr
	absent := "attribute_not_exists(" + y.n(attrPK) + ")"
	err = s.transact(ctx, what, []txOp{
		{
			op: types.TransactWriteItem{Update: &types.Update{
				TableName: aws.String(s.table), Key: stateKey(e.Tenant, e.ID),
				UpdateExpression: aws.String(update), ConditionExpression: aws.String(cond),
				ExpressionAttributeNames: x.names, ExpressionAttributeValues: x.values,
			}},
			onCondition: func(ctx context.Context) error { return s.missingOrMoved(ctx, e, token) },
		},
		{
			op: types.TransactWriteItem{Put: &types.Put{
				TableName: aws.String(s.table), Item: stepItem,
				ConditionExpression: aws.String(absent), ExpressionAttributeNames: y.names,
			}},
			onCondition: func(context.Context) error {
				return core.Errorf(core.ECONFLICT, "step %d of execution %q is already committed", step.Index, e.ID)
			},
		},
	})
	if err != nil {
		return err
	}
	e.Version++
	return nil
}

// stepItem encodes the item of e's step.
func (s *Store) stepItem(ctx context.Context, e *core.Execution, step *core.Step) (item, error) {
	if step.Index < 1 || stepSK(step.Index) > lastStepSK {
		return nil, core.Errorf(core.EINVALID, "index: step %d of execution %q is out of range", step.Index, e.ID)
	}
	b, err := json.Marshal(step)
	if err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "encode step %d of %q", step.Index, e.ID)
	}
	body, err := s.encodeBody(ctx, e.Tenant, fmt.Sprintf("step %d of execution %s", step.Index, e.ID), b)
	if err != nil {
		return nil, err
	}
	it := item{attrPK: attrS(execPK(e.Tenant, e.ID)), attrSK: attrS(stepSK(step.Index)), attrBody: attrB(body)}
	return it, checkSize(it, fmt.Sprintf("step %d of execution %s", step.Index, e.ID))
}

// ListSteps implements core.ExecutionStore: a strongly consistent query
// of the execution's partition between the first step after after and the
// last possible one; an empty answer costs one more read, which tells a
// missing execution from one without further steps.
func (s *Store) ListSteps(ctx context.Context, tenant, executionID string, after, limit int) ([]*core.Step, error) {
	after = max(after, 0)
	var x expr
	key := x.n(attrPK) + " = " + x.v(attrS(execPK(tenant, executionID))) +
		" AND " + x.n(attrSK) + " BETWEEN " + x.v(attrS(stepSK(after+1))) + " AND " + x.v(attrS(lastStepSK))
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(s.table),
		KeyConditionExpression:    aws.String(key),
		ExpressionAttributeNames:  x.names,
		ExpressionAttributeValues: x.values,
		ConsistentRead:            aws.Bool(true),
	}
	out := []*core.Step{}
	for {
		if limit > 0 {
			in.Limit = aws.Int32(int32(min(limit-len(out), 1<<30)))
		}
		page, err := s.client.Query(ctx, in)
		if err != nil {
			return nil, s.fail(err, "list the steps of %q", executionID)
		}
		for _, it := range page.Items {
			b, err := s.decodeBody(ctx, tenant, "a step of execution "+executionID, it)
			if err != nil {
				return nil, err
			}
			var st core.Step
			if err := json.Unmarshal(b, &st); err != nil {
				return nil, core.WrapError(core.EINTERNAL, err, "decode a step of %q", executionID)
			}
			out = append(out, &st)
		}
		if (limit > 0 && len(out) >= limit) || len(page.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
	if len(out) > 0 {
		return out, nil
	}
	found, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.table), Key: stateKey(tenant, executionID), ConsistentRead: aws.Bool(true),
		ProjectionExpression: aws.String("#k"), ExpressionAttributeNames: map[string]string{"#k": attrPK},
	})
	if err != nil {
		return nil, s.fail(err, "list the steps of %q", executionID)
	}
	if found.Item == nil {
		return nil, core.Errorf(core.ENOTFOUND, "execution %q not found", executionID)
	}
	return out, nil
}
