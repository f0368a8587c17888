-- 0002: listing executions. status and updated_at have been columns kept in
-- step with the state JSON by every create and commit since 0001, so they
-- need no backfill; the chain's id was only inside the chain JSON, so it
-- gets a column of its own, filled from that JSON for the rows that exist.
-- The chain is written once, at creation, so the column never changes after.

ALTER TABLE executions ADD COLUMN chain_id TEXT NOT NULL DEFAULT '';

UPDATE executions SET chain_id = COALESCE(json_extract(chain, '$.id'), '');

-- Newest-first listing of a tenant's executions walks this index instead
-- of sorting; so does a listing by status (the sweeper's and the API's most
-- common filter), one index range per status.
CREATE INDEX executions_newest ON executions (tenant, created_at DESC, id DESC);
CREATE INDEX executions_by_status ON executions (tenant, status, created_at DESC, id DESC);
