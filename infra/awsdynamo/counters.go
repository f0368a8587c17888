package awsdynamo

import (
	"context"
	"errors"

	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/stepwise-run/stepwise/core"
)

var _ core.Counters = (*Store)(nil)

// Attributes of a counter's item.
const (
	attrValue   = "value"
	attrExpires = "expiresAt" // unix seconds, the table's TTL attribute
)

func counterKey(tenant, id string) item {
	return item{attrPK: attrS("T#" + esc(tenant) + "#C"), attrSK: attrS("C#" + id)}
}

// addCounter makes one add with one UpdateItem: ADD to the
// value, guarded (for a positive delta) by the condition that the stored
// value is at most limit-delta, so concurrent reservations are decided by
// DynamoDB one at a time and none passes the limit. The write's token is
// kept in the item: when the SDK retries a request whose answer was lost
// and the retry finds its own token (the condition refuses it), the add
// was applied once and the stored value is its answer.
func (s *Store) addCounter(ctx context.Context, tenant, id string, delta, limit int64, expires time.Time) (int64, error) {
	what := "add to counter " + id
	if delta > 0 && delta > limit {
		return 0, core.Errorf(core.ELIMIT, "counter %s: %d would pass its limit of %d", id, delta, limit)
	}
	token, err := writeToken()
	if err != nil {
		return 0, err
	}
	var x expr
	update := "ADD " + x.n(attrValue) + " " + x.v(attrN(delta)) +
		" SET " + x.n(attrWrite) + " = " + x.v(attrS(token)) +
		", " + x.n(attrExpires) + " = " + x.v(attrN(expires.Unix()))
	cond := "(attribute_not_exists(" + x.n(attrWrite) + ") OR " + x.n(attrWrite) + " <> " + x.v(attrS(token)) + ")"
	if delta > 0 {
		cond += " AND (attribute_not_exists(" + x.n(attrValue) + ") OR " + x.n(attrValue) + " <= " + x.v(attrN(limit-delta)) + ")"
	}
	wctx, cancel, err := writeContext(ctx, what)
	if err != nil {
		return 0, err
	}
	defer cancel()
	out, err := s.client.UpdateItem(wctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(s.table), Key: counterKey(tenant, id),
		UpdateExpression: aws.String(update), ConditionExpression: aws.String(cond),
		ExpressionAttributeNames: x.names, ExpressionAttributeValues: x.values,
		ReturnValues:                        types.ReturnValueAllNew,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var failed *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &failed):
		v, _ := getN(failed.Item, attrValue)
		if getS(failed.Item, attrWrite) == token {
			return v, nil // this add, applied by an attempt whose answer was lost
		}
		return v, core.Errorf(core.ELIMIT, "counter %s is at %d: %d more would pass its limit of %d", id, v, delta, limit)
	case err != nil:
		return 0, s.fail(err, "%s", what)
	}
	return getN(out.Attributes, attrValue)
}

// GetCounter implements core.Counters.
func (s *Store) GetCounter(ctx context.Context, tenant, id string) (int64, error) {
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.table), Key: counterKey(tenant, id), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return 0, s.fail(err, "read counter %s", id)
	}
	if out.Item == nil {
		return 0, nil
	}
	return getN(out.Item, attrValue)
}

// AddCounters implements core.Counters with addCounter's conditional
// UpdateItem for each add in turn, undoing the earlier ones when one is
// refused. A transaction would make them one write, but DynamoDB cancels
// transactions that race for an item, and a budget's counter is exactly
// such an item: single updates on it are decided one after the other
// instead. A process that dies between two adds leaves the earlier ones
// reserved until their window ends, which errs on the side of the budget.
func (s *Store) AddCounters(ctx context.Context, tenant string, adds []core.CounterAdd) error {
	for i, a := range adds {
		_, err := s.addCounter(ctx, tenant, a.ID, a.Delta, a.Limit, a.Expires)
		if err == nil {
			continue
		}
		undo := context.WithoutCancel(ctx)
		for _, done := range adds[:i] {
			_, _ = s.addCounter(undo, tenant, done.ID, -done.Delta, 0, done.Expires)
		}
		if core.ErrorCode(err) == core.ELIMIT {
			return core.LimitErr(adds, i)
		}
		return err
	}
	return nil
}
