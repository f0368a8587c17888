package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/stepwise-run/stepwise/core"
)

var _ core.Counters = (*Store)(nil)

// AddCounters implements core.Counters: the reads, the checks against
// the limits and the writes are one transaction, and writers take turns,
// so racing reservations see each other's.
func (s *Store) AddCounters(ctx context.Context, tenant string, adds []core.CounterAdd) error {
	return s.write(ctx, "add to counters", func(tx *sql.Tx) error {
		get, upsert := tx.StmtContext(ctx, s.stmt.getCounter), tx.StmtContext(ctx, s.stmt.upsertCounter)
		for i, a := range adds {
			if a.Delta > 0 {
				var v int64
				if err := get.QueryRowContext(ctx, tenant, a.ID).Scan(&v); err != nil && !errors.Is(err, sql.ErrNoRows) {
					return err
				}
				if v+a.Delta > a.Limit {
					return core.LimitErr(adds, i)
				}
			}
			if _, err := upsert.ExecContext(ctx, tenant, a.ID, a.Delta, a.Expires.UnixNano()); err != nil {
				return err
			}
		}
		return nil
	})
}

// GetCounter implements core.Counters.
func (s *Store) GetCounter(ctx context.Context, tenant, id string) (int64, error) {
	var v int64
	err := s.stmt.getCounter.QueryRowContext(ctx, tenant, id).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, sqlError(err, "read counter %s", id)
	}
	return v, nil
}
