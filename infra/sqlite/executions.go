package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"

	"github.com/stepwise-run/stepwise/core"
)

// encodeState returns the JSON of e without its chain, at version, which
// is what the state column holds.
func encodeState(e *core.Execution, version int64) ([]byte, error) {
	state := *e
	state.Chain, state.Version = nil, version
	b, err := json.Marshal(&state)
	if err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "encode execution %q", e.ID)
	}
	return b, nil
}

// CreateExecution implements core.ExecutionStore.
func (s *Store) CreateExecution(ctx context.Context, e *core.Execution) error {
	created, err := toNanos(e.CreatedAt, "createdAt")
	if err != nil {
		return err
	}
	updated, err := toNanos(e.UpdatedAt, "updatedAt")
	if err != nil {
		return err
	}
	chain, err := json.Marshal(e.Chain)
	if err != nil {
		return core.WrapError(core.EINTERNAL, err, "encode the chain of execution %q", e.ID)
	}
	state, err := encodeState(e, 1)
	if err != nil {
		return err
	}
	var chainID string
	if e.Chain != nil {
		chainID = e.Chain.ID
	}
	err = s.write(ctx, "create execution "+e.ID, func(tx *sql.Tx) error {
		_, err := tx.StmtContext(ctx, s.stmt.insertExecution).ExecContext(ctx,
			e.Tenant, e.ID, string(e.Status), chainID, string(chain), string(state), created, updated)
		if isUnique(err) {
			return core.Errorf(core.ECONFLICT, "execution %q already exists", e.ID)
		}
		return err
	})
	if err != nil {
		return err
	}
	e.Version = 1
	return nil
}

// GetExecution implements core.ExecutionStore.
func (s *Store) GetExecution(ctx context.Context, tenant, id string) (*core.Execution, error) {
	var chain, state []byte
	var version int64
	err := s.stmt.getExecution.QueryRowContext(ctx, tenant, id).Scan(&version, &chain, &state)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, core.Errorf(core.ENOTFOUND, "execution %q not found", id)
	}
	if err != nil {
		return nil, sqlError(err, "get execution %q", id)
	}
	var e core.Execution
	if err := json.Unmarshal(state, &e); err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "decode execution %q", id)
	}
	if err := json.Unmarshal(chain, &e.Chain); err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "decode the chain of execution %q", id)
	}
	e.Version = version
	return &e, nil
}

// CommitExecution implements core.ExecutionStore: the guarded UPDATE and
// the step's INSERT share one transaction, so a stale version or a
// duplicate step index leaves both tables as they were.
func (s *Store) CommitExecution(ctx context.Context, e *core.Execution, step *core.Step) error {
	updated, err := toNanos(e.UpdatedAt, "updatedAt")
	if err != nil {
		return err
	}
	state, err := encodeState(e, e.Version+1)
	if err != nil {
		return err
	}
	var stepJSON []byte
	if step != nil {
		if stepJSON, err = json.Marshal(step); err != nil {
			return core.WrapError(core.EINTERNAL, err, "encode step %d of %q", step.Index, e.ID)
		}
	}
	err = s.write(ctx, "commit execution "+e.ID, func(tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, s.stmt.updateExecution).ExecContext(ctx,
			string(state), string(e.Status), updated, e.Tenant, e.ID, e.Version)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return missingOrMoved(ctx, tx, s.stmt.executionVersion, "execution "+e.ID, e.Version, e.Tenant, e.ID)
		}
		if step == nil {
			return nil
		}
		_, err = tx.StmtContext(ctx, s.stmt.insertStep).ExecContext(ctx, e.Tenant, e.ID, step.Index, string(stepJSON))
		if isUnique(err) {
			return core.Errorf(core.ECONFLICT, "step %d of execution %q is already committed", step.Index, e.ID)
		}
		return err
	})
	if err != nil {
		return err
	}
	e.Version++
	return nil
}

// ListSteps implements core.ExecutionStore. One query reads the steps and
// tells whether the execution exists (see statements.listSteps).
func (s *Store) ListSteps(ctx context.Context, tenant, executionID string, after, limit int) ([]*core.Step, error) {
	rows, err := s.stmt.listSteps.QueryContext(ctx, after, tenant, executionID)
	if err != nil {
		return nil, sqlError(err, "list the steps of %q", executionID)
	}
	defer rows.Close()
	var out []*core.Step
	var idx sql.NullInt64
	// RawBytes reuses one buffer for every row: the JSON is decoded
	// before the next row overwrites it.
	var b sql.RawBytes
	for (limit <= 0 || len(out) < limit) && rows.Next() {
		if err := rows.Scan(&idx, &b); err != nil {
			return nil, sqlError(err, "list the steps of %q", executionID)
		}
		if out == nil {
			out = []*core.Step{}
		}
		if !idx.Valid {
			continue // the execution has no steps after the index
		}
		var st core.Step
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, core.WrapError(core.EINTERNAL, err, "decode a step of %q", executionID)
		}
		out = append(out, &st)
	}
	if err := rows.Err(); err != nil {
		return nil, sqlError(err, "list the steps of %q", executionID)
	}
	if out == nil {
		return nil, core.Errorf(core.ENOTFOUND, "execution %q not found", executionID)
	}
	return out, nil
}
