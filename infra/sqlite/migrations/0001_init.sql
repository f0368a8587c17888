-- 0001: catalog records, executions and their steps. Every table is keyed
-- by tenant first, so one tenant's rows are contiguous and no statement can
-- reach another tenant's without naming it. Times are unix nanoseconds.

CREATE TABLE records (
	tenant     TEXT    NOT NULL,
	kind       TEXT    NOT NULL,
	id         TEXT    NOT NULL,
	keys       TEXT    NOT NULL, -- JSON array of the secondary keys, in the caller's order
	body       TEXT,             -- the record's JSON document, byte for byte
	version    INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (tenant, kind, id)
) WITHOUT ROWID;

-- Newest-first listing walks this index instead of sorting.
CREATE INDEX records_newest ON records (tenant, kind, created_at DESC, id DESC);

-- One row per secondary key: the primary key makes a key unique within a
-- tenant and kind, and deleting a record releases its keys.
CREATE TABLE record_keys (
	tenant TEXT NOT NULL,
	kind   TEXT NOT NULL,
	key    TEXT NOT NULL,
	id     TEXT NOT NULL,
	PRIMARY KEY (tenant, kind, key),
	FOREIGN KEY (tenant, kind, id) REFERENCES records (tenant, kind, id) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE INDEX record_keys_by_record ON record_keys (tenant, kind, id);

CREATE TABLE executions (
	tenant     TEXT    NOT NULL,
	id         TEXT    NOT NULL,
	version    INTEGER NOT NULL,
	status     TEXT    NOT NULL,
	chain      TEXT    NOT NULL, -- JSON snapshot of the chain, written once at creation
	state      TEXT    NOT NULL, -- JSON of the execution without its chain, rewritten by every commit
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (tenant, id)
) WITHOUT ROWID;

CREATE TABLE steps (
	tenant       TEXT    NOT NULL,
	execution_id TEXT    NOT NULL,
	idx          INTEGER NOT NULL,
	step         TEXT    NOT NULL, -- JSON of the step record
	PRIMARY KEY (tenant, execution_id, idx),
	FOREIGN KEY (tenant, execution_id) REFERENCES executions (tenant, id) ON DELETE CASCADE
) WITHOUT ROWID;
