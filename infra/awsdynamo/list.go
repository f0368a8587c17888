package awsdynamo

import (
	"context"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/stepwise-run/stepwise/core"
)

// listQuery is one newest-first listing of a GSI1 partition.
type listQuery struct {
	// what names the listing in errors.
	what string
	// pk is the GSI1 partition.
	pk string
	// pos is where the listing starts, if hasPos.
	pos    core.Position
	hasPos bool
	// filter holds the placeholders of cond, the FilterExpression ("" for
	// none).
	filter expr
	cond   string
	// need is how many items to return at most.
	need int
}

// listIndex queries GSI1 newest first and calls each with every item that
// passes the filter, until it has had q.need of them or the partition ends.
// DynamoDB applies Limit before the filter, so a filtered listing reads on
// page after page.
func (s *Store) listIndex(ctx context.Context, q listQuery, each func(item) error) error {
	e := q.filter
	key := e.n(attrGSI1PK) + " = " + e.v(attrS(q.pk))
	if q.hasPos {
		bound, bounded, none := before(q.pos)
		if none {
			return nil
		}
		if bounded {
			key += " AND " + e.n(attrGSI1SK) + " < " + e.v(attrS(bound))
		}
	}
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(s.table),
		IndexName:                 aws.String(indexGSI1),
		KeyConditionExpression:    aws.String(key),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
		ScanIndexForward:          aws.Bool(false),
	}
	if q.cond != "" {
		in.FilterExpression = aws.String(q.cond)
	}
	got := 0
	for {
		if q.cond == "" {
			in.Limit = aws.Int32(int32(q.need - got))
		}
		out, err := s.client.Query(ctx, in)
		if err != nil {
			return s.fail(err, "%s", q.what)
		}
		for _, it := range out.Items {
			if err := each(it); err != nil {
				return err
			}
			if got++; got == q.need {
				return nil
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// executionFilter returns the FilterExpression of q's filters, with its
// placeholders in e; none is set when no stored execution can match.
func executionFilter(q core.ExecutionQuery, e *expr) (cond string, none bool) {
	var conds []string
	if len(q.Statuses) > 0 {
		vals := make([]string, len(q.Statuses))
		for i, st := range q.Statuses {
			vals[i] = e.v(attrS(string(st)))
		}
		conds = append(conds, e.n(attrStatus)+" IN ("+strings.Join(vals, ", ")+")")
	}
	if q.ChainID != "" {
		conds = append(conds, e.n(attrChainID)+" = "+e.v(attrS(q.ChainID)))
	}
	if !q.UpdatedBefore.IsZero() {
		switch {
		case !q.UpdatedBefore.After(minTime()):
			return "", true // nothing stored is older
		case q.UpdatedBefore.After(maxTime()):
			// Everything stored is older: no condition.
		default:
			conds = append(conds, e.n(attrUpdated)+" < "+e.v(attrN(q.UpdatedBefore.UnixNano())))
		}
	}
	return strings.Join(conds, " AND "), false
}

// ListExecutions implements core.ExecutionStore, through GSI1 with the
// query's filters as a FilterExpression.
func (s *Store) ListExecutions(ctx context.Context, tenant string, q core.ExecutionQuery) (core.ExecutionPage, error) {
	limit, pos, hasPos, err := core.ListQuery{Cursor: q.Cursor, Limit: q.Limit}.Bounds()
	if err != nil {
		return core.ExecutionPage{}, err
	}
	var filter expr
	cond, none := executionFilter(q, &filter)
	if none {
		return core.ExecutionPage{}, nil
	}
	var page core.ExecutionPage
	// last is the position of the page's last execution, from its item.
	var last core.Position
	err = s.listIndex(ctx, listQuery{
		what: "list executions", pk: execListPK(tenant),
		pos: pos, hasPos: hasPos, filter: filter, cond: cond, need: limit + 1,
	}, func(it item) error {
		if len(page.Executions) == limit {
			// The extra item only says that another page follows.
			page.Next = core.EncodeCursor(last.CreatedAt, last.ID)
			return nil
		}
		e, err := s.decodeState(ctx, tenant, it)
		if err != nil {
			return err
		}
		e.Chain = &core.Chain{ID: getS(it, attrChainID)}
		created, err := getN(it, attrCreated)
		if err != nil {
			return err
		}
		last = core.Position{CreatedAt: fromNanos(created), ID: getS(it, attrID)}
		page.Executions = append(page.Executions, e)
		return nil
	})
	if err != nil {
		return core.ExecutionPage{}, err
	}
	return page, nil
}
