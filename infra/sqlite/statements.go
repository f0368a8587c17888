package sqlite

import (
	"context"
	"database/sql"
	"errors"
)

// recordColumns are the columns scanRecord reads, in its order.
const recordColumns = `r.id, r.keys, r.body, r.version, r.created_at, r.updated_at`

// statements are the store's fixed SQL statements, prepared once by Open:
// parsing SQL costs more than running these statements does, so a call
// binds and steps a compiled statement instead. database/sql compiles each
// on a pooled connection the first time it runs there and keeps it;
// transactions use them through tx.StmtContext. ListRecords and
// ListExecutions build their SQL from the query's filters and are the
// statements left unprepared.
type statements struct {
	insertRecord     *sql.Stmt
	getRecord        *sql.Stmt
	findRecord       *sql.Stmt
	updateRecord     *sql.Stmt
	recordVersion    *sql.Stmt
	deleteRecord     *sql.Stmt
	insertRecordKey  *sql.Stmt
	deleteRecordKeys *sql.Stmt

	insertExecution  *sql.Stmt
	getExecution     *sql.Stmt
	updateExecution  *sql.Stmt
	executionVersion *sql.Stmt
	insertStep       *sql.Stmt
	listSteps        *sql.Stmt

	getCounter    *sql.Stmt
	upsertCounter *sql.Stmt
}

// statementSQL pairs a statement with its SQL.
type statementSQL struct {
	stmt  **sql.Stmt
	query string
}

// all lists every statement with its SQL: the one place the store's fixed
// SQL is written.
func (st *statements) all() []statementSQL {
	return []statementSQL{
		{&st.insertRecord, `INSERT INTO records (tenant, kind, id, keys, body, version, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, 1, ?, ?)`},
		{&st.getRecord, `SELECT ` + recordColumns + ` FROM records r WHERE r.tenant = ? AND r.kind = ? AND r.id = ?`},
		{&st.findRecord, `SELECT ` + recordColumns + ` FROM record_keys k
			JOIN records r ON r.tenant = k.tenant AND r.kind = k.kind AND r.id = k.id
			WHERE k.tenant = ? AND k.kind = ? AND k.key = ?`},
		{&st.updateRecord, `UPDATE records SET keys = ?, body = ?, updated_at = ?, version = version + 1
			WHERE tenant = ? AND kind = ? AND id = ? AND version = ?`},
		{&st.recordVersion, `SELECT version FROM records WHERE tenant = ? AND kind = ? AND id = ?`},
		{&st.deleteRecord, `DELETE FROM records WHERE tenant = ? AND kind = ? AND id = ?`},
		{&st.insertRecordKey, `INSERT INTO record_keys (tenant, kind, key, id) VALUES (?, ?, ?, ?)`},
		{&st.deleteRecordKeys, `DELETE FROM record_keys WHERE tenant = ? AND kind = ? AND id = ?`},

		{&st.insertExecution, `INSERT INTO executions (tenant, id, version, status, chain_id, chain, state, created_at, updated_at)
			VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?)`},
		{&st.getExecution, `SELECT version, chain, state FROM executions WHERE tenant = ? AND id = ?`},
		{&st.updateExecution, `UPDATE executions SET state = ?, status = ?, updated_at = ?, version = version + 1
			WHERE tenant = ? AND id = ? AND version = ?`},
		{&st.executionVersion, `SELECT version FROM executions WHERE tenant = ? AND id = ?`},
		{&st.insertStep, `INSERT INTO steps (tenant, execution_id, idx, step) VALUES (?, ?, ?, ?)`},
		// The execution's row comes first so that one query both finds the
		// steps and tells a missing execution (no row) from one with no
		// steps after the index (a single row whose idx is NULL). The
		// caller stops reading at its limit: SQLite plans a bound LIMIT
		// with its value, so `LIMIT ?` would recompile the statement on
		// every call.
		{&st.listSteps, `SELECT s.idx, s.step FROM executions e
			LEFT JOIN steps s ON s.tenant = e.tenant AND s.execution_id = e.id AND s.idx > ?
			WHERE e.tenant = ? AND e.id = ?
			ORDER BY s.idx`},

		{&st.getCounter, `SELECT value FROM counters WHERE tenant = ? AND id = ?`},
		{&st.upsertCounter, `INSERT INTO counters (tenant, id, value, expires_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (tenant, id) DO UPDATE SET value = value + excluded.value, expires_at = max(expires_at, excluded.expires_at)`},
	}
}

// prepareStatements prepares every statement of all on db, whose schema
// must be up to date.
func prepareStatements(ctx context.Context, db *sql.DB) (*statements, error) {
	st := &statements{}
	for _, s := range st.all() {
		p, err := db.PrepareContext(ctx, s.query)
		if err != nil {
			return nil, errors.Join(err, st.close())
		}
		*s.stmt = p
	}
	return st, nil
}

// close closes the statements prepareStatements made.
func (st *statements) close() error {
	var errs []error
	for _, s := range st.all() {
		if *s.stmt != nil {
			errs = append(errs, (*s.stmt).Close())
		}
	}
	return errors.Join(errs...)
}
