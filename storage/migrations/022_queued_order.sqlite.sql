-- The claim-order index covers only the queue. Migration 004 indexed every job by
-- (state, claim_rank, ...), so each finished job stayed in it for good, and every claim and
-- completion rewrote entries of jobs the claim never reads. A partial index holds the queued
-- jobs only: a claim's WHERE state = 'queued' implies its predicate, so the planner reads it
-- in claim order, and it is as large as the queue, not as the history
-- (sqlite.org/partialindex.html, "Queries Using Partial Indexes").
CREATE INDEX jobs_queued_order ON jobs (claim_rank, enqueued_at, job_key) WHERE state = 'queued';

DROP INDEX jobs_claim_order;
