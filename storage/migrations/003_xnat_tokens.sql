-- The XNAT alias token in use for each XNAT server: alias tokens expire (48 h by default), so
-- xnat-callback issues a new one while the current one still works and keeps it here.
CREATE TABLE xnat_tokens (
    xnat_url   TEXT PRIMARY KEY,
    alias      TEXT NOT NULL,
    secret     TEXT NOT NULL,
    issued_at  DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION
);
