-- Catalog of scans, the measure registry, derived products, and the job ledger.
-- Times are epoch seconds (UTC) as DOUBLE PRECISION; JSON is stored as TEXT.

CREATE TABLE scans (
    scan_hash   TEXT PRIMARY KEY,
    bucket      TEXT NOT NULL,
    object_key  TEXT NOT NULL,
    version_id  TEXT,
    size        BIGINT NOT NULL,
    format      TEXT NOT NULL DEFAULT '',
    pattern     TEXT NOT NULL DEFAULT '',
    project_id  TEXT NOT NULL DEFAULT '',
    subject_id  TEXT NOT NULL DEFAULT '',
    session_id  TEXT NOT NULL DEFAULT '',
    scan_id     TEXT NOT NULL DEFAULT '',
    stored_at   DOUBLE PRECISION NOT NULL
);

CREATE INDEX scans_by_object ON scans (bucket, object_key);

CREATE TABLE measures (
    name          TEXT NOT NULL,
    version       TEXT NOT NULL,
    action        TEXT NOT NULL,
    code_digest   TEXT NOT NULL DEFAULT '',
    params_schema TEXT NOT NULL DEFAULT '{}',
    params        TEXT NOT NULL DEFAULT '{}',
    requires      TEXT NOT NULL DEFAULT '[]',
    state         TEXT NOT NULL CHECK (state IN ('draft', 'published', 'retired')),
    registered_at DOUBLE PRECISION NOT NULL,
    published_at  DOUBLE PRECISION,
    retired_at    DOUBLE PRECISION,
    PRIMARY KEY (name, version)
);

CREATE TABLE derived (
    name        TEXT NOT NULL,
    scan_hash   TEXT NOT NULL,
    bucket      TEXT NOT NULL,
    object_key  TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    job_key     TEXT,
    PRIMARY KEY (name, scan_hash)
);

CREATE TABLE jobs (
    job_key       TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('measure', 'derive', 'xnat')),
    scan_hash     TEXT NOT NULL,
    measure       TEXT NOT NULL,
    version       TEXT NOT NULL,
    action        TEXT NOT NULL DEFAULT '',
    params        TEXT NOT NULL DEFAULT '{}',
    priority      INTEGER NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'leased', 'done', 'failed', 'dead')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    lease_token   TEXT,
    leased_at     DOUBLE PRECISION,
    lease_expires DOUBLE PRECISION,
    activation_id TEXT,
    not_before    DOUBLE PRECISION NOT NULL,
    last_error    TEXT,
    enqueued_at   DOUBLE PRECISION NOT NULL,
    updated_at    DOUBLE PRECISION NOT NULL
);

CREATE INDEX jobs_by_state ON jobs (state, kind, priority, enqueued_at);

CREATE INDEX jobs_by_scan ON jobs (scan_hash, measure);

-- A job waits until every product it needs exists for its scan.
CREATE TABLE job_needs (
    job_key  TEXT NOT NULL REFERENCES jobs (job_key),
    product  TEXT NOT NULL,
    PRIMARY KEY (job_key, product)
)
