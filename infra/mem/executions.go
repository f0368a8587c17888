package mem

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// matches reports whether rec passes the query's filters.
func (rec *record) matches(q core.ExecutionQuery) bool {
	if len(q.Statuses) > 0 && !slices.Contains(q.Statuses, rec.status) {
		return false
	}
	if q.ChainID != "" && rec.chainID != q.ChainID {
		return false
	}
	return q.UpdatedBefore.IsZero() || rec.updatedAt.Before(q.UpdatedBefore)
}

// ListExecutions implements core.ExecutionStore. Like ListRecords it scans
// and sorts the tenant's executions on every call, which is fine for the
// sizes a test or a local run holds; it decodes only the page it returns.
func (s *Store) ListExecutions(_ context.Context, tenant string, q core.ExecutionQuery) (core.ExecutionPage, error) {
	limit, pos, hasPos, err := core.ListQuery{Cursor: q.Cursor, Limit: q.Limit}.Bounds()
	if err != nil {
		return core.ExecutionPage{}, err
	}
	// match copies what the page needs under the lock: a commit replaces
	// a record's JSON slice rather than changing it, so the copy may be
	// decoded unlocked.
	type match struct {
		id, chainID string
		createdAt   time.Time
		execution   []byte
		version     int64
	}
	s.mu.Lock()
	var matches []match
	for k, rec := range s.executions {
		if k.tenant == tenant && rec.matches(q) && (!hasPos || pos.After(rec.createdAt, k.id)) {
			matches = append(matches, match{k.id, rec.chainID, rec.createdAt, rec.execution, rec.version})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(matches, func(a, b match) int {
		if c := b.createdAt.Compare(a.createdAt); c != 0 {
			return c
		}
		return strings.Compare(b.id, a.id)
	})
	var page core.ExecutionPage
	if len(matches) > limit {
		matches = matches[:limit]
		last := matches[limit-1]
		page.Next = core.EncodeCursor(last.createdAt, last.id)
	}
	page.Executions = make([]*core.Execution, 0, len(matches))
	for _, m := range matches {
		var e core.Execution
		if err := json.Unmarshal(m.execution, &e); err != nil {
			return core.ExecutionPage{}, core.WrapError(core.EINTERNAL, err, "decode execution %q", m.id)
		}
		e.Chain, e.Version = &core.Chain{ID: m.chainID}, m.version
		page.Executions = append(page.Executions, &e)
	}
	return page, nil
}
