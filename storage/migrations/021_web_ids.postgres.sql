-- The search index keyed by a small integer per scan (sid, in catalog order): value and version
-- filters then yield integers from covering indexes, every facet index is ordered by sid, and a
-- page "newest first" walks an index backwards instead of sorting. The tables are derived data:
-- dropped and rebuilt by the indexer (qmroct.web.index) from scans and results.
DROP TABLE web_values;
DROP TABLE web_results;
DROP TABLE web_scans;
DELETE FROM web_state WHERE name = 'results_watermark';

CREATE TABLE web_scans (
    sid         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scan_hash   TEXT NOT NULL UNIQUE,
    project_id  TEXT NOT NULL DEFAULT '',
    subject_id  TEXT NOT NULL DEFAULT '',
    session_id  TEXT NOT NULL DEFAULT '',
    scan_id     TEXT NOT NULL DEFAULT '',
    object_key  TEXT NOT NULL DEFAULT '',
    pattern     TEXT NOT NULL DEFAULT '',
    device      TEXT NOT NULL DEFAULT '',
    laterality  TEXT NOT NULL DEFAULT '',
    acquired_on TEXT NOT NULL DEFAULT '',
    stored_at   DOUBLE PRECISION NOT NULL,
    v_o TEXT NOT NULL DEFAULT '',
    v_s TEXT NOT NULL DEFAULT '',
    v_c TEXT NOT NULL DEFAULT '',
    v_a TEXT NOT NULL DEFAULT '',
    v_r TEXT NOT NULL DEFAULT '',
    v_i TEXT NOT NULL DEFAULT '',
    v_b TEXT NOT NULL DEFAULT '',
    overall     TEXT NOT NULL DEFAULT '',
    header_read INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX web_scans_by_project ON web_scans (project_id, sid);
CREATE INDEX web_scans_by_subject ON web_scans (subject_id, session_id);
CREATE INDEX web_scans_by_session ON web_scans (session_id);
CREATE INDEX web_scans_by_scan ON web_scans (scan_id);
CREATE INDEX web_scans_by_device ON web_scans (device, sid);
CREATE INDEX web_scans_by_pattern ON web_scans (pattern, sid);
CREATE INDEX web_scans_by_laterality ON web_scans (laterality, sid);
CREATE INDEX web_scans_by_acquired ON web_scans (acquired_on);
CREATE INDEX web_scans_by_overall ON web_scans (overall, sid);
CREATE INDEX web_scans_by_o ON web_scans (v_o, sid);
CREATE INDEX web_scans_by_s ON web_scans (v_s, sid);
CREATE INDEX web_scans_by_c ON web_scans (v_c, sid);
CREATE INDEX web_scans_by_a ON web_scans (v_a, sid);
CREATE INDEX web_scans_by_r ON web_scans (v_r, sid);
CREATE INDEX web_scans_by_i ON web_scans (v_i, sid);
CREATE INDEX web_scans_by_b ON web_scans (v_b, sid);
CREATE INDEX web_scans_unread ON web_scans (header_read);

CREATE TABLE web_values (
    sid     BIGINT NOT NULL,
    measure TEXT NOT NULL,
    name    TEXT NOT NULL,
    num     DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (sid, measure, name)
);

-- Covering: a value range yields scan ids without touching the table.
CREATE INDEX web_values_by_value ON web_values (measure, name, num, sid);

CREATE TABLE web_results (
    sid     BIGINT NOT NULL,
    measure TEXT NOT NULL,
    version TEXT NOT NULL,
    status  TEXT NOT NULL,
    PRIMARY KEY (sid, measure)
);

CREATE INDEX web_results_by_version ON web_results (measure, version, sid)
