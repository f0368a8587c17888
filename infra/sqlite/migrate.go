package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/stepwise-run/stepwise/core"
)

// migrationFiles holds the schema migrations, named NNNN_what.sql; NNNN is
// the schema version the file brings the database to.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one schema step.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order, checking
// that the versions run 1, 2, 3... without gaps or repeats.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "list migrations")
	}
	var out []migration
	for i, name := range names { // fs.Glob returns names sorted
		base := path.Base(name)
		prefix, _, _ := strings.Cut(base, "_")
		v, err := strconv.Atoi(prefix)
		if err != nil || v != i+1 {
			return nil, core.Errorf(core.EINTERNAL, "migration %s: want version %04d", base, i+1)
		}
		b, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, core.WrapError(core.EINTERNAL, err, "read migration %s", base)
		}
		out = append(out, migration{version: v, name: base, sql: string(b)})
	}
	return out, nil
}

// migrate applies, in order, every migration the database lacks, each in
// its own transaction together with its row in schema_migrations, so that
// a crash leaves the database at some version, never between two. Several
// processes may migrate one file at once: each transaction checks, under
// the write lock, whether another already applied its migration.
func (s *Store) migrate(ctx context.Context) error {
	all, err := migrations()
	if err != nil {
		return err
	}
	latest := len(all)
	const ledger = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	)`
	if err := s.write(ctx, "create the migration ledger of "+s.path, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, ledger)
		return err
	}); err != nil {
		return err
	}
	var current int
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return sqlError(err, "read the schema version of database %q", s.path)
	}
	if current > latest {
		return core.Errorf(core.EINVALID, "database %q is at schema version %d, newer than the %d this stepwise knows: upgrade stepwise", s.path, current, latest)
	}
	for _, m := range all[current:] {
		op := fmt.Sprintf("migrate database %q to version %d (%s)", s.path, m.version, m.name)
		err := s.write(ctx, op, func(tx *sql.Tx) error {
			var applied int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, m.version).Scan(&applied); err != nil || applied > 0 {
				return err
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.version, m.name, time.Now().UnixNano())
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}
