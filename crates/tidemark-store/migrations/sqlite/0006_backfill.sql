-- Version 6: backfill jobs. A job fetches a time range of upstream history into its
-- subscription's stream (de-duplicated by activity id like any commit). Its own checkpoint is
-- committed in the same transaction as the activity it produced, so a crash repeats nothing
-- and loses nothing; a claim (fenced by claim_token, expiring) keeps two nodes from running
-- one job at once.
CREATE TABLE backfill_jobs (
    id              INTEGER PRIMARY KEY,
    subscription_id INTEGER NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
    from_at         INTEGER NOT NULL,
    until_at        INTEGER NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    checkpoint      TEXT,
    fetched         INTEGER NOT NULL DEFAULT 0,
    appended        INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    claimed_until   INTEGER,
    claim_token     INTEGER NOT NULL DEFAULT 0,
    retry_at        INTEGER NOT NULL DEFAULT 0,
    created         INTEGER NOT NULL,
    modified        INTEGER NOT NULL
);
CREATE INDEX backfill_jobs_by_state ON backfill_jobs(state, retry_at, id);
CREATE INDEX backfill_jobs_by_subscription ON backfill_jobs(subscription_id, id);
