-- Version 2: API keys, account bearer tokens, and the position of `last_cursor`.

CREATE TABLE api_keys (
    id             INTEGER PRIMARY KEY,
    application_id INTEGER NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    digest         BLOB NOT NULL UNIQUE,
    hint           TEXT NOT NULL,
    created        INTEGER NOT NULL
);
CREATE INDEX api_keys_by_application ON api_keys(application_id, id);

CREATE TABLE account_tokens (
    digest     BLOB PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX account_tokens_by_account ON account_tokens(account_id);

ALTER TABLE subscriptions ADD COLUMN last_cursor_position INTEGER NOT NULL DEFAULT 0;
