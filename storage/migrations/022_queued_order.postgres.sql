-- The claim-order index covers only the queue (see the SQLite variant of this migration).
-- On PostgreSQL it matters more: an UPDATE that changes an indexed column writes a new entry
-- into every index and leaves the old one until VACUUM, so each job claimed and finished left
-- a dead entry at the head of the claim order, which every later claim stepped over
-- ("Partial Indexes", postgresql.org/docs/15/indexes-partial.html). Jobs that leave the queue
-- are not inserted into a partial index at all.
CREATE INDEX jobs_queued_order ON jobs (claim_rank, enqueued_at, job_key) WHERE state = 'queued';

DROP INDEX jobs_claim_order;

-- The dead entries a drain still leaves (the queued versions of claimed jobs) are cleaned
-- after a fixed number of changes, not after a fifth of the table: the jobs table keeps
-- every finished job, so the default scale factor (0.2) would let hundreds of thousands of
-- dead entries pile up ahead of the queue on a large ledger
-- (postgresql.org/docs/15/routine-vacuuming.html#AUTOVACUUM, storage parameters
-- autovacuum_vacuum_scale_factor and autovacuum_vacuum_threshold).
ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 5000);
