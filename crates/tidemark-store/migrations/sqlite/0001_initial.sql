-- Tidemark SQLite schema, version 1. Times are INTEGER microseconds since the Unix epoch.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE applications (
    id                            INTEGER PRIMARY KEY,
    name                          TEXT NOT NULL,
    track_activity                INTEGER NOT NULL DEFAULT 0,
    retention_days                INTEGER,
    max_subscriptions_per_account INTEGER NOT NULL DEFAULT 1,
    created                       INTEGER NOT NULL
);

CREATE TABLE accounts (
    id             INTEGER PRIMARY KEY,
    application_id INTEGER NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    service        TEXT NOT NULL,
    admin          INTEGER NOT NULL,
    config         TEXT NOT NULL,
    created        INTEGER NOT NULL,
    modified       INTEGER NOT NULL
);
CREATE INDEX accounts_by_application ON accounts(application_id, id);

CREATE TABLE subscriptions (
    id                             INTEGER PRIMARY KEY,
    account_id                     INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    subscription_type              TEXT NOT NULL,
    active                         INTEGER NOT NULL,
    disable_reason                 TEXT NOT NULL DEFAULT '',
    is_default                     INTEGER NOT NULL,
    expiry                         INTEGER,
    monitored_resources            TEXT NOT NULL,
    monitored_resource_api         TEXT,
    monitored_resource_object_type TEXT,
    last_cursor                    TEXT,
    last_cursor_updated_at         INTEGER,
    created                        INTEGER NOT NULL,
    modified                       INTEGER NOT NULL,
    -- the stream
    last_sequence                  INTEGER NOT NULL DEFAULT 0,
    last_committed_at              INTEGER NOT NULL DEFAULT 0,
    retained_count                 INTEGER NOT NULL DEFAULT 0,
    pruned_through                 INTEGER NOT NULL DEFAULT 0,
    -- scheduling and leases
    next_poll_at                   INTEGER NOT NULL,
    wake_counter                   INTEGER NOT NULL DEFAULT 0,
    lease_holder                   TEXT,
    lease_token                    INTEGER NOT NULL DEFAULT 0,
    lease_expires_at               INTEGER,
    consecutive_failures           INTEGER NOT NULL DEFAULT 0,
    last_error                     TEXT
);
CREATE INDEX subscriptions_by_account ON subscriptions(account_id, id);
CREATE INDEX subscriptions_due ON subscriptions(next_poll_at) WHERE active = 1;

CREATE TABLE checkpoints (
    subscription_id INTEGER PRIMARY KEY REFERENCES subscriptions(id) ON DELETE CASCADE,
    state           TEXT NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- One row per activity. The sequence is per subscription; (subscription_id, activity_id) is the
-- de-duplication key (DESIGN 2.2).
CREATE TABLE activity (
    subscription_id INTEGER NOT NULL,
    sequence        INTEGER NOT NULL,
    activity_id     TEXT NOT NULL,
    occurred_at     INTEGER,
    committed_at    INTEGER NOT NULL,
    body            TEXT NOT NULL
);
CREATE UNIQUE INDEX activity_by_sequence ON activity(subscription_id, sequence);
CREATE UNIQUE INDEX activity_by_id ON activity(subscription_id, activity_id);
