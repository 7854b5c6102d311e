-- Version 7: broker destinations (NATS JetStream, RabbitMQ, Redis Streams).
--
-- A destination keeps its own position in each subscription's stream: `published_sequence` is
-- moved only after the broker acknowledged everything up to it, so a crash re-publishes at
-- most the unacknowledged batch and never skips. At most one claim per (destination,
-- subscription) is in flight, so a subscription's next batch is never published before the
-- previous one is acknowledged.
CREATE TABLE destinations (
    id             INTEGER PRIMARY KEY,
    application_id INTEGER NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    kind           TEXT NOT NULL,
    target         TEXT NOT NULL,
    filter         TEXT,
    payload        TEXT NOT NULL,
    batch_size     INTEGER NOT NULL,
    enabled        INTEGER NOT NULL DEFAULT 1,
    created        INTEGER NOT NULL,
    modified       INTEGER NOT NULL
);
CREATE INDEX destinations_by_application ON destinations(application_id, id);

CREATE TABLE destination_positions (
    destination_id     INTEGER NOT NULL REFERENCES destinations(id) ON DELETE CASCADE,
    subscription_id    INTEGER NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
    published_sequence INTEGER NOT NULL DEFAULT 0,
    claimed_until      INTEGER,
    claim_token        INTEGER NOT NULL DEFAULT 0,
    attempts           INTEGER NOT NULL DEFAULT 0,
    failing_since      INTEGER,
    next_attempt_at    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (destination_id, subscription_id)
) WITHOUT ROWID;

CREATE TABLE destination_attempts (
    id              INTEGER PRIMARY KEY,
    destination_id  INTEGER NOT NULL REFERENCES destinations(id) ON DELETE CASCADE,
    subscription_id INTEGER NOT NULL,
    account_id      INTEGER NOT NULL,
    first_sequence  INTEGER NOT NULL,
    last_sequence   INTEGER NOT NULL,
    published       INTEGER NOT NULL,
    started_at      INTEGER NOT NULL,
    latency_us      INTEGER NOT NULL,
    success         INTEGER NOT NULL,
    error           TEXT
);
CREATE INDEX destination_attempts_by_destination ON destination_attempts(destination_id, id);
