-- 0003: counters for budgets and rate limits (core.Counters). A counter's
-- id names its window, so rows only grow; expires_at (unix nanoseconds) is
-- when the window is over, for a later clean-up to go by.

CREATE TABLE counters (
	tenant     TEXT    NOT NULL,
	id         TEXT    NOT NULL,
	value      INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
