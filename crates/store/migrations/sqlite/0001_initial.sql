-- Initial schema of audiomill's SQLite store.
--
-- Conventions: times are INTEGER unix milliseconds (UTC); ids are TEXT in their prefixed
-- display form (`job_01…`), so for jobs lexicographic order is creation order; JSON columns are
-- TEXT holding serde_json. Tables are STRICT so a wrongly typed value is refused, not coerced.

CREATE TABLE accounts (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id             TEXT    NOT NULL PRIMARY KEY,
    account_id     TEXT    NOT NULL REFERENCES accounts (id),
    name           TEXT    NOT NULL,
    display_prefix TEXT    NOT NULL,
    -- hex SHA-256 of the key; never the key itself
    hash           TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER
) STRICT;
CREATE UNIQUE INDEX api_keys_hash ON api_keys (hash);
CREATE INDEX api_keys_account ON api_keys (account_id);

CREATE TABLE uploads (
    id         TEXT    NOT NULL PRIMARY KEY,
    account_id TEXT    NOT NULL REFERENCES accounts (id),
    blob_key   TEXT    NOT NULL,
    filename   TEXT,
    size       INTEGER NOT NULL CHECK (size >= 0),
    sha256     TEXT    NOT NULL,
    -- MediaInfo, JSON
    media      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX uploads_account ON uploads (account_id);
CREATE INDEX uploads_expires_at ON uploads (expires_at);

-- The jobs table is the queue.
CREATE TABLE jobs (
    id               TEXT    NOT NULL PRIMARY KEY,
    account_id       TEXT    NOT NULL REFERENCES accounts (id),
    operation        TEXT    NOT NULL,
    -- validated options, InputRef, OutputSpec: JSON
    options          TEXT    NOT NULL,
    input            TEXT    NOT NULL,
    output           TEXT    NOT NULL,
    input_seconds    REAL,
    state            TEXT    NOT NULL
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    progress         REAL    NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    attempt          INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    -- the lease of the worker running the job; set exactly while running
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    -- JobError, JSON: set on failed, kept on a job queued for retry
    error            TEXT,
    -- operation result, JSON, on success
    result           TEXT,
    created_at       INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    CHECK ((state = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
) STRICT;
CREATE INDEX jobs_state_run_at ON jobs (state, run_at);
CREATE INDEX jobs_state_lease ON jobs (state, lease_expires_at);
CREATE INDEX jobs_account_id ON jobs (account_id, id);

CREATE TABLE artifacts (
    id           TEXT    NOT NULL PRIMARY KEY,
    account_id   TEXT    NOT NULL REFERENCES accounts (id),
    job_id       TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    size         INTEGER NOT NULL CHECK (size >= 0),
    blob_key     TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX artifacts_job ON artifacts (job_id);
CREATE INDEX artifacts_expires_at ON artifacts (expires_at);

CREATE TABLE idempotency_keys (
    account_id   TEXT    NOT NULL REFERENCES accounts (id),
    key          TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    job_id       TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, key)
) STRICT;
CREATE INDEX idempotency_keys_job ON idempotency_keys (job_id);
