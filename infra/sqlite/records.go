package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"

	"github.com/stepwise-run/stepwise/core"
)

// rowScanner is what *sql.Row and *sql.Rows share.
type rowScanner interface{ Scan(dest ...any) error }

// scanRecord reads one row of recordColumns into a record of kind.
func scanRecord(row rowScanner, kind string) (*core.Record, error) {
	r := &core.Record{Kind: kind}
	var keys string
	var created, updated int64
	// Scanning into a []byte copies, so the record owns its body.
	if err := row.Scan(&r.ID, &keys, (*[]byte)(&r.Body), &r.Version, &created, &updated); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(keys), &r.Keys); err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "decode the keys of %s %q", kind, r.ID)
	}
	r.CreatedAt, r.UpdatedAt = fromNanos(created), fromNanos(updated)
	return r, nil
}

// recordRow is a record's column values, checked and encoded.
type recordRow struct {
	keys             string
	body             any
	created, updated int64
}

func encodeRecord(r *core.Record) (recordRow, error) {
	var row recordRow
	var err error
	if row.created, err = toNanos(r.CreatedAt, "createdAt"); err != nil {
		return row, err
	}
	if row.updated, err = toNanos(r.UpdatedAt, "updatedAt"); err != nil {
		return row, err
	}
	keys := r.Keys
	if keys == nil {
		keys = []string{}
	}
	b, err := json.Marshal(keys)
	if err != nil {
		return row, core.WrapError(core.EINTERNAL, err, "encode the keys of %s %q", r.Kind, r.ID)
	}
	row.keys = string(b)
	if r.Body != nil {
		row.body = string(r.Body)
	}
	return row, nil
}

// insertKeys adds the key rows of a record; a key another record holds is
// ECONFLICT.
func (s *Store) insertKeys(ctx context.Context, tx *sql.Tx, tenant string, r *core.Record) error {
	if len(r.Keys) == 0 {
		return nil
	}
	insert := tx.StmtContext(ctx, s.stmt.insertRecordKey)
	for i, k := range r.Keys {
		if slices.Contains(r.Keys[:i], k) {
			continue // a record has few keys: a scan beats a map
		}
		_, err := insert.ExecContext(ctx, tenant, r.Kind, k, r.ID)
		if isUnique(err) {
			return core.Errorf(core.ECONFLICT, "%s key %q is taken by another record", r.Kind, k)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// CreateRecord implements core.RecordStore.
func (s *Store) CreateRecord(ctx context.Context, tenant string, r *core.Record) error {
	row, err := encodeRecord(r)
	if err != nil {
		return err
	}
	err = s.write(ctx, "create "+r.Kind+" "+r.ID, func(tx *sql.Tx) error {
		_, err := tx.StmtContext(ctx, s.stmt.insertRecord).ExecContext(ctx,
			tenant, r.Kind, r.ID, row.keys, row.body, row.created, row.updated)
		if isUnique(err) {
			return core.Errorf(core.ECONFLICT, "%s %q already exists", r.Kind, r.ID)
		}
		if err != nil {
			return err
		}
		return s.insertKeys(ctx, tx, tenant, r)
	})
	if err != nil {
		return err
	}
	r.Version = 1
	return nil
}

// GetRecord implements core.RecordStore.
func (s *Store) GetRecord(ctx context.Context, tenant, kind, id string) (*core.Record, error) {
	row := s.stmt.getRecord.QueryRowContext(ctx, tenant, kind, id)
	r, err := scanRecord(row, kind)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, core.Errorf(core.ENOTFOUND, "%s %q not found", kind, id)
	}
	if err != nil {
		return nil, sqlError(err, "get %s %q", kind, id)
	}
	return r, nil
}

// FindRecord implements core.RecordStore.
func (s *Store) FindRecord(ctx context.Context, tenant, kind, key string) (*core.Record, error) {
	row := s.stmt.findRecord.QueryRowContext(ctx, tenant, kind, key)
	r, err := scanRecord(row, kind)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, core.Errorf(core.ENOTFOUND, "%s with key %q not found", kind, key)
	}
	if err != nil {
		return nil, sqlError(err, "find %s with key %q", kind, key)
	}
	return r, nil
}

// UpdateRecord implements core.RecordStore.
func (s *Store) UpdateRecord(ctx context.Context, tenant string, r *core.Record) error {
	row, err := encodeRecord(r)
	if err != nil {
		return err
	}
	err = s.write(ctx, "update "+r.Kind+" "+r.ID, func(tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, s.stmt.updateRecord).ExecContext(ctx,
			row.keys, row.body, row.updated, tenant, r.Kind, r.ID, r.Version)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return missingOrMoved(ctx, tx, s.stmt.recordVersion, r.Kind+" "+r.ID, r.Version, tenant, r.Kind, r.ID)
		}
		if _, err := tx.StmtContext(ctx, s.stmt.deleteRecordKeys).ExecContext(ctx, tenant, r.Kind, r.ID); err != nil {
			return err
		}
		return s.insertKeys(ctx, tx, tenant, r)
	})
	if err != nil {
		return err
	}
	r.Version++
	return nil
}

// missingOrMoved explains why a compare-and-swap UPDATE matched no row:
// version reads the stored version of what, ENOTFOUND if there is none,
// ECONFLICT if it is not want.
func missingOrMoved(ctx context.Context, tx *sql.Tx, version *sql.Stmt, what string, want int64, args ...any) error {
	var stored int64
	err := tx.StmtContext(ctx, version).QueryRowContext(ctx, args...).Scan(&stored)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return core.Errorf(core.ENOTFOUND, "%s not found", what)
	case err != nil:
		return err
	default:
		return core.Errorf(core.ECONFLICT, "%s is at version %d, not %d", what, stored, want)
	}
}

// DeleteRecord implements core.RecordStore. The record's key rows go with
// it (ON DELETE CASCADE).
func (s *Store) DeleteRecord(ctx context.Context, tenant, kind, id string) error {
	return s.write(ctx, "delete "+kind+" "+id, func(tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, s.stmt.deleteRecord).ExecContext(ctx, tenant, kind, id)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err == nil && n == 0 {
			return core.Errorf(core.ENOTFOUND, "%s %q not found", kind, id)
		}
		return err
	})
}

// afterPosition returns the condition (" AND ...", or "" for none) that
// keeps the rows of table alias after pos in a newest-first listing by
// created_at and id, with its arguments; none is set when no stored row can
// be after pos.
func afterPosition(pos core.Position, alias string) (cond string, args []any, none bool) {
	switch {
	case pos.CreatedAt.Before(minTime()):
		return "", nil, true // nothing stored is that old
	case pos.CreatedAt.After(maxTime()):
		return "", nil, false // everything stored is older
	case pos.ID == "":
		return ` AND ` + alias + `.created_at < ?`, []any{pos.CreatedAt.UnixNano()}, false
	default:
		// The same as "created_at < t OR (created_at = t AND id < ID)",
		// written with a bound on created_at that lets SQLite start the
		// index walk at the position instead of filtering from the newest.
		n := pos.CreatedAt.UnixNano()
		return ` AND ` + alias + `.created_at <= ? AND (` + alias + `.created_at < ? OR ` + alias + `.id < ?)`,
			[]any{n, n, pos.ID}, false
	}
}

// ListRecords implements core.RecordStore.
func (s *Store) ListRecords(ctx context.Context, tenant, kind string, q core.ListQuery) (core.RecordPage, error) {
	limit, pos, hasPos, err := q.Bounds()
	if err != nil {
		return core.RecordPage{}, err
	}
	query := `SELECT ` + recordColumns + ` FROM records r WHERE r.tenant = ? AND r.kind = ?`
	args := []any{tenant, kind}
	if q.Prefix != "" {
		// substr rather than LIKE, whose % and _ a prefix may contain.
		query += ` AND substr(r.id, 1, length(?)) = ?`
		args = append(args, q.Prefix, q.Prefix)
	}
	if hasPos {
		cond, condArgs, none := afterPosition(pos, "r")
		if none {
			return core.RecordPage{}, nil
		}
		query += cond
		args = append(args, condArgs...)
	}
	query += ` ORDER BY r.created_at DESC, r.id DESC LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return core.RecordPage{}, sqlError(err, "list %s records", kind)
	}
	defer rows.Close()
	var page core.RecordPage
	for rows.Next() {
		r, err := scanRecord(rows, kind)
		if err != nil {
			return core.RecordPage{}, sqlError(err, "list %s records", kind)
		}
		page.Records = append(page.Records, r)
	}
	if err := rows.Err(); err != nil {
		return core.RecordPage{}, sqlError(err, "list %s records", kind)
	}
	if len(page.Records) > limit {
		page.Records = page.Records[:limit:limit]
		last := page.Records[limit-1]
		page.Next = core.EncodeCursor(last.CreatedAt, last.ID)
	}
	return page, nil
}
