-- Measure reviews: every test of a developer's deployed measure on the test set, and who
-- approved which version for production, when. Rows are never deleted.
CREATE TABLE measure_reviews (
    measure      TEXT NOT NULL,
    version      TEXT NOT NULL,
    code_sha256  TEXT NOT NULL,
    code_digest  TEXT NOT NULL DEFAULT '',
    state        TEXT NOT NULL,
    source       TEXT NOT NULL,
    summary      TEXT NOT NULL DEFAULT '{}',
    tested_at    DOUBLE PRECISION NOT NULL,
    approved_by  TEXT,
    approved_at  DOUBLE PRECISION,
    PRIMARY KEY (measure, version, code_sha256)
);

CREATE INDEX measure_reviews_by_time ON measure_reviews (tested_at);
