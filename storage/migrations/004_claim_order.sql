-- An indexable claim order. The effective priority ``priority - (now - enqueued_at) / aging_s``
-- orders jobs exactly as ``enqueued_at + priority * aging_s`` does (``now / aging_s`` is the
-- same for every row), so the ledger stores that sum, ``claim_rank``, when it enqueues, and an
-- index by state then claim order serves the claim's WHERE state = 'queued' ORDER BY ... LIMIT
-- without sorting the queue. Existing rows get the default ageing of 6 s a priority level.
ALTER TABLE jobs ADD COLUMN claim_rank DOUBLE PRECISION NOT NULL DEFAULT 0;

UPDATE jobs SET claim_rank = enqueued_at + priority * 6.0;

CREATE INDEX jobs_claim_order ON jobs (state, claim_rank, enqueued_at, job_key);
