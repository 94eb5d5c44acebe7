-- The first tables. Timestamps are RFC 3339 text in UTC (what sqlx writes for chrono values);
-- ids of GitHub objects are GitHub's own integers; kodiai's own ids are UUID v7 text.

CREATE TABLE installations (
    id              INTEGER PRIMARY KEY,            -- GitHub installation id
    account_login   TEXT    NOT NULL,
    account_type    TEXT    NOT NULL DEFAULT 'User', -- User | Organization
    app_slug        TEXT,
    suspended_at    TEXT,
    deleted_at      TEXT,
    created_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE repositories (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    github_id       INTEGER UNIQUE,                 -- null until GitHub has been asked
    installation_id INTEGER REFERENCES installations (id) ON DELETE SET NULL,
    full_name       TEXT    NOT NULL UNIQUE,        -- owner/name
    name            TEXT    NOT NULL,
    description     TEXT,
    url             TEXT,
    default_branch  TEXT,
    private         INTEGER NOT NULL DEFAULT 0 CHECK (private IN (0, 1)),
    priority        INTEGER NOT NULL DEFAULT 5,
    active          INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    last_synced_at  TEXT,
    created_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX repositories_installation ON repositories (installation_id);

CREATE TABLE webhook_deliveries (
    delivery_id     TEXT    PRIMARY KEY,            -- X-GitHub-Delivery
    event           TEXT    NOT NULL,               -- X-GitHub-Event
    action          TEXT,
    installation_id INTEGER,                        -- no foreign key: deliveries may precede the installation row
    repository      TEXT,                           -- owner/name
    sender          TEXT,
    payload         TEXT    NOT NULL,               -- the verified raw JSON body
    received_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    processed_at    TEXT,
    outcome         TEXT                            -- routed | ignored | error: ...
);
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at);

CREATE TABLE jobs (
    id               TEXT    PRIMARY KEY,           -- UUID v7
    kind             TEXT    NOT NULL,
    payload          TEXT    NOT NULL DEFAULT '{}',
    priority         INTEGER NOT NULL DEFAULT 0,    -- lower runs first
    state            TEXT    NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 3,
    run_at           TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    lease_owner      TEXT,
    lease_expires_at TEXT,
    concurrency_key  TEXT,                          -- installation:<id> or user:<id>
    dedupe_key       TEXT    UNIQUE,
    installation_id  INTEGER,
    delivery_id      TEXT    REFERENCES webhook_deliveries (delivery_id) ON DELETE SET NULL,
    result           TEXT,
    error            TEXT,
    created_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started_at       TEXT,
    finished_at      TEXT
);
CREATE INDEX jobs_claimable ON jobs (state, run_at, priority);
CREATE INDEX jobs_concurrency_key ON jobs (concurrency_key, state);

CREATE TABLE job_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,                    -- per job, from 1, in order
    kind       TEXT    NOT NULL,
    data       TEXT    NOT NULL DEFAULT '{}',
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (job_id, seq)
);

CREATE TABLE llm_calls (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id             TEXT    REFERENCES jobs (id) ON DELETE SET NULL,
    session_id         TEXT,
    provider           TEXT    NOT NULL,
    model              TEXT    NOT NULL,
    input_tokens       INTEGER NOT NULL DEFAULT 0,
    output_tokens      INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd           REAL    NOT NULL DEFAULT 0,
    duration_ms        INTEGER NOT NULL DEFAULT 0,
    outcome            TEXT    NOT NULL,            -- ok | error | cancelled
    error              TEXT,
    created_at         TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX llm_calls_job ON llm_calls (job_id);
CREATE INDEX llm_calls_created ON llm_calls (created_at);

CREATE TABLE errors (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    repository_id INTEGER REFERENCES repositories (id) ON DELETE SET NULL,
    job_id        TEXT    REFERENCES jobs (id) ON DELETE SET NULL,
    error_type    TEXT    NOT NULL,
    message       TEXT    NOT NULL,
    stack_trace   TEXT,
    severity      TEXT    NOT NULL DEFAULT 'medium'
                  CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    resolved      INTEGER NOT NULL DEFAULT 0 CHECK (resolved IN (0, 1)),
    resolved_at   TEXT,
    created_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX errors_unresolved ON errors (resolved, created_at);
