// Package sqlite is the embedded store of `stepwise serve`: catalog records,
// executions and their steps in one SQLite file, through the pure-Go driver
// modernc.org/sqlite (no cgo). *Store implements core.RecordStore and
// core.ExecutionStore.
//
// # Schema
//
// Tables are created by the versioned migrations in migrations/ (applied in
// order by Open, each in its own transaction, and recorded in
// schema_migrations). Every key begins with the tenant:
//
//	records      (tenant, kind, id)           keys (JSON), body, version, created_at, updated_at
//	record_keys  (tenant, kind, key)          id: one row per secondary key, which makes
//	                                          keys unique per tenant and kind
//	executions   (tenant, id)                 version, status, chain_id, chain (JSON, written
//	                                          once), state (JSON without the chain), created_at,
//	                                          updated_at: status, chain_id and the times are
//	                                          copies of the JSON's, for listing
//	steps        (tenant, execution_id, idx)  step (JSON)
//	schema_migrations (version)               name, applied_at
//
// Times are integer unix nanoseconds, which keeps them exact and ordered but
// limits them to the years 1678 to 2262. A commit is one transaction: an
// UPDATE guarded by `version = ?` (the compare-and-swap) plus the step's
// INSERT, whose primary key rejects a duplicate index.
//
// # Durability
//
// The file is in WAL mode with synchronous=NORMAL: a commit is atomic and
// survives a crash of the process, and readers never wait for writers; an
// operating-system crash or power loss can lose the last commits, never
// corrupt the file. Write transactions begin IMMEDIATE, so two writers never
// deadlock upgrading a read lock. Writers of one Store queue on a semaphore
// that honours their context; busy_timeout makes a writer of another process
// wait for the lock, and a lock still held after it is EUNAVAILABLE.
// foreign_keys is on, so deleting a record deletes its key rows.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/stepwise-run/stepwise/core"
)

const (
	// busyTimeout is how long a statement waits for a lock another
	// process holds before it fails with SQLITE_BUSY.
	busyTimeout = 5 * time.Second
	// maxConns bounds the pool: readers run in parallel under WAL, and
	// goroutines beyond it wait in database/sql rather than each holding a
	// file handle.
	maxConns = 8
)

// Store is a SQLite-backed store. It is safe for concurrent use.
type Store struct {
	db   *sql.DB
	path string
	// stmt holds the prepared statements every call but the listings use.
	stmt *statements
	// writeSlot admits one write transaction of this Store at a time, so
	// that writers queue in Go, in order and cancellable, instead of in
	// SQLite's sleep-and-retry busy handler.
	writeSlot chan struct{}
}

var (
	_ core.RecordStore    = (*Store)(nil)
	_ core.ExecutionStore = (*Store)(nil)
)

// Open opens the database at path, creating it and its parent folder (mode
// 0700) if needed, and brings its schema up to date. A database written by
// a newer version of stepwise is refused rather than misread.
func Open(ctx context.Context, path string) (*Store, error) {
	return open(ctx, path, busyTimeout)
}

// open is Open with the time a statement waits for another connection's
// lock, which tests shorten.
func open(ctx context.Context, path string, busy time.Duration) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, core.WrapError(core.EINVALID, err, "database path %q", path)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "create the folder of database %q", path)
	}
	// Create the file ourselves so that it, and the -wal and -shm files
	// SQLite derives from it, are private to the user.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "create database %q", path)
	}
	if err := f.Close(); err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "create database %q", path)
	}
	db, err := sql.Open("sqlite", dsn(abs, busy))
	if err != nil {
		return nil, core.WrapError(core.EINTERNAL, err, "open database %q", path)
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	s := &Store{db: db, path: path, writeSlot: make(chan struct{}, 1)}
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, sqlError(err, "open database %q", path)
	}
	if err := s.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	if s.stmt, err = prepareStatements(ctx, db); err != nil {
		_ = db.Close()
		return nil, sqlError(err, "prepare the statements of database %q", path)
	}
	return s, nil
}

// dsn is the driver's connection string for the file at abs: a SQLite URI
// (so that any character of the path survives) carrying the pragmas every
// pooled connection runs when it opens.
func dsn(abs string, busy time.Duration) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	return u.String()
}

// Close closes the statements and the database. Calls after Close fail.
func (s *Store) Close() error {
	if err := errors.Join(s.stmt.close(), s.db.Close()); err != nil {
		return core.WrapError(core.EINTERNAL, err, "close database %q", s.path)
	}
	return nil
}

// write runs fn in one IMMEDIATE transaction and commits it; if fn or the
// commit fails, nothing fn did is kept. op names the operation in errors.
func (s *Store) write(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	select {
	case s.writeSlot <- struct{}{}:
	case <-ctx.Done():
		return core.WrapError(core.ETIMEOUT, ctx.Err(), "%s", op)
	}
	defer func() { <-s.writeSlot }()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return sqlError(err, "%s", op)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return sqlError(err, "%s", op)
	}
	if err := tx.Commit(); err != nil {
		return sqlError(err, "%s", op)
	}
	return nil
}

// sqlError translates err into core's codes: a *core.Error passes through,
// a unique-key violation is ECONFLICT, a lock still held after busyTimeout
// is EUNAVAILABLE, a done context ETIMEOUT (as elsewhere in stepwise, for a
// deadline and a cancellation alike), anything else EINTERNAL. The message
// names the operation.
func sqlError(err error, format string, args ...any) error {
	var ce *core.Error
	if errors.As(err, &ce) {
		return err
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return core.WrapError(core.ECONFLICT, err, format, args...)
		}
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return core.WrapError(core.EUNAVAILABLE, err, format, args...)
		case sqlite3.SQLITE_INTERRUPT:
			// The driver interrupts a statement whose context ends.
			return core.WrapError(core.ETIMEOUT, err, format, args...)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return core.WrapError(core.ETIMEOUT, err, format, args...)
	}
	return core.WrapError(core.EINTERNAL, err, format, args...)
}

// isUnique reports whether err is a violation of a primary key or unique
// index.
func isUnique(err error) bool {
	if err == nil {
		return false // the usual case, without errors.As's allocation
	}
	var se *sqlite.Error
	return errors.As(err, &se) &&
		(se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}

// minTime is the earliest instant an int64 of unix nanoseconds holds.
func minTime() time.Time { return time.Unix(0, math.MinInt64) }

// maxTime is the latest instant an int64 of unix nanoseconds holds.
func maxTime() time.Time { return time.Unix(0, math.MaxInt64) }

// toNanos returns t as unix nanoseconds, or EINVALID naming field when t
// is outside the years an int64 of nanoseconds covers (the zero time is).
func toNanos(t time.Time, field string) (int64, error) {
	if t.Before(minTime()) || t.After(maxTime()) {
		return 0, core.Errorf(core.EINVALID, "%s: %s is outside the years 1678 to 2262 the store can keep", field, t.Format(time.RFC3339Nano))
	}
	return t.UnixNano(), nil
}

// fromNanos is the inverse of toNanos, in UTC.
func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }
