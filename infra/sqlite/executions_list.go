package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"

	"github.com/stepwise-run/stepwise/core"
)

// executionListSQL builds the query of one page of ListExecutions: it
// selects the page's rows plus one, which tells whether another page
// follows. none is set when no stored execution can match, so that there is
// nothing to run.
func executionListSQL(tenant string, q core.ExecutionQuery) (query string, args []any, limit int, none bool, err error) {
	limit, pos, hasPos, err := core.ListQuery{Cursor: q.Cursor, Limit: q.Limit}.Bounds()
	if err != nil {
		return "", nil, 0, false, err
	}
	query = `SELECT e.id, e.version, e.chain_id, e.state, e.created_at FROM executions e WHERE e.tenant = ?`
	args = []any{tenant}
	if len(q.Statuses) > 0 {
		query += ` AND e.status IN (?` + strings.Repeat(`, ?`, len(q.Statuses)-1) + `)`
		for _, st := range q.Statuses {
			args = append(args, string(st))
		}
	}
	if q.ChainID != "" {
		query += ` AND e.chain_id = ?`
		args = append(args, q.ChainID)
	}
	if !q.UpdatedBefore.IsZero() {
		switch {
		case !q.UpdatedBefore.After(minTime()):
			return "", nil, limit, true, nil // nothing stored is older
		case q.UpdatedBefore.After(maxTime()):
			// Everything stored is older: no condition.
		default:
			query += ` AND e.updated_at < ?`
			args = append(args, q.UpdatedBefore.UnixNano())
		}
	}
	if hasPos {
		cond, condArgs, none := afterPosition(pos, "e")
		if none {
			return "", nil, limit, true, nil
		}
		query += cond
		args = append(args, condArgs...)
	}
	query += ` ORDER BY e.created_at DESC, e.id DESC LIMIT ?`
	args = append(args, limit+1)
	return query, args, limit, false, nil
}

// ListExecutions implements core.ExecutionStore. The listing walks the
// executions_newest index, or executions_by_status when the query names
// statuses; the other filters are checked on the rows it walks.
func (s *Store) ListExecutions(ctx context.Context, tenant string, q core.ExecutionQuery) (core.ExecutionPage, error) {
	query, args, limit, none, err := executionListSQL(tenant, q)
	if err != nil || none {
		return core.ExecutionPage{}, err
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return core.ExecutionPage{}, sqlError(err, "list executions")
	}
	defer rows.Close()
	var page core.ExecutionPage
	// last is the position of the page's last execution, from the columns
	// the listing is ordered by.
	var last core.Position
	// RawBytes reuses one buffer for every row: the JSON is decoded
	// before the next row overwrites it.
	var state sql.RawBytes
	for rows.Next() {
		if len(page.Executions) == limit {
			// The extra row only says that another page follows.
			page.Next = core.EncodeCursor(last.CreatedAt, last.ID)
			break
		}
		var e core.Execution
		var chainID string
		var version, created int64
		if err := rows.Scan(&last.ID, &version, &chainID, &state, &created); err != nil {
			return core.ExecutionPage{}, sqlError(err, "list executions")
		}
		if err := json.Unmarshal(state, &e); err != nil {
			return core.ExecutionPage{}, core.WrapError(core.EINTERNAL, err, "decode execution %q", last.ID)
		}
		e.Chain, e.Version = &core.Chain{ID: chainID}, version
		last.CreatedAt = fromNanos(created)
		page.Executions = append(page.Executions, &e)
	}
	if err := rows.Err(); err != nil {
		return core.ExecutionPage{}, sqlError(err, "list executions")
	}
	return page, nil
}
