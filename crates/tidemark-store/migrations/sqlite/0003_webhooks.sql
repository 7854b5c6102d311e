-- Version 3: webhook endpoints, per-(endpoint, subscription) delivery state, the attempts log,
-- and the signing copy of API keys (X-Kloudless-Signature is an HMAC with the key itself).

CREATE TABLE webhook_endpoints (
    id             INTEGER PRIMARY KEY,
    application_id INTEGER NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    url            TEXT NOT NULL,
    filter         TEXT,
    enabled        INTEGER NOT NULL DEFAULT 1,
    secret         TEXT NOT NULL,
    created        INTEGER NOT NULL,
    modified       INTEGER NOT NULL
);
CREATE INDEX webhook_endpoints_by_application ON webhook_endpoints(application_id, id);

-- What each endpoint has been told about each subscription. A notification is due while the
-- subscription's last_sequence is above both notified_sequence and given_up_sequence; it is
-- derived from committed activity, so no notification can be lost between commit and send.
CREATE TABLE webhook_deliveries (
    endpoint_id       INTEGER NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    subscription_id   INTEGER NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
    notified_sequence INTEGER NOT NULL DEFAULT 0,
    given_up_sequence INTEGER NOT NULL DEFAULT 0,
    attempt_sequence  INTEGER,
    claimed_until     INTEGER,
    claim_token       INTEGER NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 0,
    failing_since     INTEGER,
    next_attempt_at   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (endpoint_id, subscription_id)
) WITHOUT ROWID;

CREATE TABLE webhook_attempts (
    id              INTEGER PRIMARY KEY,
    endpoint_id     INTEGER NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    subscription_id INTEGER NOT NULL,
    account_id      INTEGER NOT NULL,
    sequence        INTEGER NOT NULL,
    started_at      INTEGER NOT NULL,
    latency_us      INTEGER NOT NULL,
    status_code     INTEGER,
    success         INTEGER NOT NULL,
    error           TEXT
);
CREATE INDEX webhook_attempts_by_endpoint ON webhook_attempts(endpoint_id, id);

ALTER TABLE api_keys ADD COLUMN signing_key TEXT;
