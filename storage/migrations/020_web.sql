-- The web view's tables: its users, its download audit, and a search index over the catalog.
-- The index is derived data (qmroct.web.index rebuilds it from scans and results at any time):
-- one row per scan with the facets a researcher filters on and the OSCAR-IB verdict per letter,
-- one row per numeric value, one per current result. Each filter is then an indexed lookup.

CREATE TABLE web_users (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('researcher', 'measure-developer', 'admin')),
    projects      TEXT NOT NULL DEFAULT '[]',
    created_at    DOUBLE PRECISION NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE web_audit (
    audit_id    TEXT PRIMARY KEY,
    at          DOUBLE PRECISION NOT NULL,
    username    TEXT NOT NULL,
    role        TEXT NOT NULL,
    action      TEXT NOT NULL,
    what        TEXT NOT NULL,
    scan_count  INTEGER NOT NULL DEFAULT 0,
    bytes       BIGINT NOT NULL DEFAULT 0,
    remote      TEXT NOT NULL DEFAULT '',
    finished    INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX web_audit_by_time ON web_audit (at);

CREATE TABLE web_scans (
    scan_hash   TEXT PRIMARY KEY,
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

CREATE INDEX web_scans_by_project ON web_scans (project_id, stored_at);
CREATE INDEX web_scans_by_stored ON web_scans (stored_at);
CREATE INDEX web_scans_by_subject ON web_scans (subject_id, session_id);
CREATE INDEX web_scans_by_device ON web_scans (device);
CREATE INDEX web_scans_by_pattern ON web_scans (pattern);
CREATE INDEX web_scans_by_laterality ON web_scans (laterality);
CREATE INDEX web_scans_by_acquired ON web_scans (acquired_on);
CREATE INDEX web_scans_by_overall ON web_scans (overall);
CREATE INDEX web_scans_by_o ON web_scans (v_o);
CREATE INDEX web_scans_by_s ON web_scans (v_s);
CREATE INDEX web_scans_by_c ON web_scans (v_c);
CREATE INDEX web_scans_by_a ON web_scans (v_a);
CREATE INDEX web_scans_by_r ON web_scans (v_r);
CREATE INDEX web_scans_by_i ON web_scans (v_i);
CREATE INDEX web_scans_by_b ON web_scans (v_b);
CREATE INDEX web_scans_unread ON web_scans (header_read);

CREATE TABLE web_values (
    scan_hash TEXT NOT NULL,
    measure   TEXT NOT NULL,
    name      TEXT NOT NULL,
    num       DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (scan_hash, measure, name)
);

CREATE INDEX web_values_by_value ON web_values (measure, name, num);

CREATE TABLE web_results (
    scan_hash TEXT NOT NULL,
    measure   TEXT NOT NULL,
    version   TEXT NOT NULL,
    status    TEXT NOT NULL,
    PRIMARY KEY (scan_hash, measure)
);

CREATE INDEX web_results_by_version ON web_results (measure, version);

CREATE TABLE web_state (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
)
