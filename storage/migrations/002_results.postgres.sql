-- Results, current and archived. Only the identity column differs between dialects.
CREATE TABLE results (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_key           TEXT NOT NULL,
    scan_hash         TEXT NOT NULL,
    measure           TEXT NOT NULL,
    version           TEXT NOT NULL,
    status            TEXT NOT NULL,
    result_values     TEXT NOT NULL DEFAULT '{}',
    verdicts          TEXT NOT NULL DEFAULT '[]',
    notes             TEXT NOT NULL DEFAULT '[]',
    error             TEXT,
    picture_stored    INTEGER NOT NULL DEFAULT 0,
    dicom_stored      INTEGER NOT NULL DEFAULT 0,
    started_at        DOUBLE PRECISION NOT NULL,
    ended_at          DOUBLE PRECISION NOT NULL,
    cpu_s             DOUBLE PRECISION NOT NULL DEFAULT 0,
    max_rss_mb        DOUBLE PRECISION NOT NULL DEFAULT 0,
    params            TEXT NOT NULL DEFAULT '{}',
    code_digest       TEXT NOT NULL DEFAULT '',
    lease_token       TEXT NOT NULL,
    activation_id     TEXT,
    is_current        INTEGER NOT NULL,
    recorded_at       DOUBLE PRECISION NOT NULL,
    superseded_at     DOUBLE PRECISION,
    superseded_by     TEXT,
    superseded_reason TEXT
);

-- At most one current value per scan and measure; archived rows are never deleted.
CREATE UNIQUE INDEX results_one_current ON results (scan_hash, measure) WHERE is_current = 1;

CREATE INDEX results_by_scan ON results (scan_hash, measure, recorded_at)
