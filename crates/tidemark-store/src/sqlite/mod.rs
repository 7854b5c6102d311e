//! [`SqliteStore`]: the embedded default store.
//!
//! One SQLite database file in WAL mode. All writes go through one connection owned by a writer
//! thread, inside `BEGIN IMMEDIATE` transactions: that write lock is the "subscription's lock"
//! of DESIGN 2.1 (it covers every subscription at once, which SQLite's single writer makes
//! free). Writes waiting together are group-committed: one transaction, each write in its own
//! savepoint (a failing write is rolled back alone), each caller answered once the transaction
//! has committed. Reads use a small pool of read-only connections, on tokio's blocking pool,
//! and never block the writer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};
use serde_json::Value;
use tidemark_model::{
    Account, AccountId, Application, ApplicationId, CursorKey, MonitoredResource, Subscription,
    SubscriptionId, SubscriptionType,
};

use crate::first_claim_token;
use crate::{
    AccountPatch, ActivityPage, ApiKey, AttemptQuery, BackfillClaim, BackfillJob, BackfillState,
    BackfillStep, CommitBatch, CommitOutcome, Destination, DestinationAttempt, DestinationPatch,
    DueNotification, DuePublication, JsonPage, Lease, NewAccount, NewDestination, NewSubscription,
    NewWebhookEndpoint, NotificationOutcome, PollResult, PollState, PublicationAdvance,
    PublicationOutcome, RangePage, RangePosition, SecretDigest, Store, StoreError, StoreResult,
    StoredActivity, StoredV1Event, TimeRange, WebhookAttempt, WebhookEndpoint, WebhookPatch,
};

mod migrations;

pub(crate) use migrations::SCHEMA_VERSION;

/// Read connections kept open.
const READ_POOL_SIZE: u32 = 8;
/// How much of the database file read connections map into memory (SQLite caps it at its
/// compile-time maximum).
const READ_MMAP_BYTES: i64 = 1 << 40;
/// Prepared statements kept per connection.
const STATEMENT_CACHE_CAPACITY: usize = 256;
/// How long a statement waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the checkpointer gathers commits before copying them from the write-ahead log into
/// the database file (see [`run_checkpointer`]).
const CHECKPOINT_GAP: Duration = Duration::from_millis(100);
/// The page size of a database this store creates (SQLite's default is 4 KiB). Activity rows
/// are large (a v2 text of about 1 KiB, its v1 event's fields, the keys), so a 4 KiB page
/// holds two or three and wastes up to a row's worth; 16 KiB pages hold a dozen and waste
/// proportionally less. Measured: ingest 0.75-0.83 of the bare insert at 4 KiB, 1.14-1.29 at
/// 16 KiB (BENCHMARKS.md); broker publishing unchanged.
const PAGE_BYTES: i64 = 16_384;
/// The writer connection's own automatic checkpoint, in WAL pages (128 MiB; SQLite's default
/// is 1,000 pages): only a fallback for when the checkpointer cannot keep up, so that the log
/// stays bounded. Lower, it runs during bursts: at 2,048 pages (32 MiB) ingest fell from about
/// 120,000 to 90,000 activities/s, the commits waiting on checkpoints the checkpointer would
/// have done beside them.
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 8_192;

/// The embedded SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Jobs for the writer thread, which owns the one writing connection.
    writer: std::sync::mpsc::Sender<WriteJob>,
    readers: r2d2::Pool<SqliteConnectionManager>,
    /// One per reader connection: a read waits here (as a task), not on a blocking thread,
    /// so a thousand concurrent reads do not start a thousand threads.
    read_slots: tokio::sync::Semaphore,
    cursor_key: CursorKey,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Backend(error.to_string())
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(error: r2d2::Error) -> Self {
        StoreError::Backend(format!("read pool: {error}"))
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // Every statement of the store stays prepared (rusqlite keeps 16 by default, fewer than
    // the store uses, and evicted statements were being parsed again and again).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -65_536)?; // 64 MiB
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// # Errors
    /// [`StoreError::Backend`] if the file cannot be opened or migrated.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        let mut writer = Connection::open(&path)?;
        // Only a database not yet written takes a page size; an existing one keeps its own.
        writer.pragma_update(None, "page_size", PAGE_BYTES)?;
        let mode: String =
            writer.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "could not enable WAL mode (got {mode})"
            )));
        }
        configure(&writer)?;
        migrations::migrate(&mut writer)?;
        let cursor_key = load_or_create_cursor_key(&mut writer)?;
        writer.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
        let checkpointer = Connection::open(&path)?;
        configure(&checkpointer)?;
        let manager = SqliteConnectionManager::file(&path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(|c| {
                configure(c)?;
                // Reads map the file instead of copying every page through read(2).
                c.pragma_update(None, "mmap_size", READ_MMAP_BYTES)
            });
        let readers = r2d2::Pool::builder()
            .max_size(READ_POOL_SIZE)
            .test_on_check_out(false)
            .min_idle(Some(1))
            .build(manager)?;
        tracing::debug!(path = %path.display(), "sqlite store open");
        let (jobs, queue) = std::sync::mpsc::channel::<WriteJob>();
        let (committed, commits) = std::sync::mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("tidemark-sqlite-checkpointer".into())
            .spawn(move || run_checkpointer(&checkpointer, &commits))
            .map_err(|e| StoreError::Backend(format!("cannot start the checkpointer: {e}")))?;
        std::thread::Builder::new()
            .name("tidemark-sqlite-writer".into())
            .spawn(move || run_writer(&writer, &queue, &committed))
            .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                writer: jobs,
                readers,
                read_slots: tokio::sync::Semaphore::new(READ_POOL_SIZE as usize),
                cursor_key,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `work` atomically on the writer connection: all of it or none of it is committed,
    /// and the result is returned only once it is durable (committed).
    ///
    /// Writes are group-committed: the writer thread runs every job waiting in its queue in
    /// one `BEGIN IMMEDIATE` transaction, each inside its own savepoint, so a job that fails is
    /// rolled back alone and the others commit. Concurrent small writes (commits of many
    /// pollers, webhook claims and outcomes) then share one commit instead of queueing for
    /// one each. A job sees the effects of the jobs before it, exactly as if they had
    /// committed one by one in that order.
    async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, result) = tokio::sync::oneshot::channel::<StoreResult<T>>();
        let job: WriteJob = Box::new(move |conn: &Connection| {
            let outcome = work(conn);
            let succeeded = outcome.is_ok();
            let finish: WriteReply = Box::new(move |failed: Option<&StoreError>| {
                let _ = reply.send(match (outcome, failed) {
                    (Ok(value), None) => Ok(value),
                    (Ok(_), Some(error)) => {
                        Err(StoreError::Backend(format!("commit failed: {error}")))
                    }
                    (Err(error), _) => Err(error),
                });
            });
            (succeeded, finish)
        });
        self.inner
            .writer
            .send(job)
            .map_err(|_| StoreError::Backend("the writer thread has stopped".into()))?;
        result
            .await
            .map_err(|_| StoreError::Backend("the writer thread dropped a write".into()))?
    }

    /// Runs `work` on a pooled read-only connection.
    async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let _slot = self
            .inner
            .read_slots
            .acquire()
            .await
            .map_err(|e| StoreError::Backend(format!("store closed: {e}")))?;
        let inner = Arc::clone(&self.inner);
        run_blocking(move || {
            let conn = inner.readers.get()?;
            work(&conn)
        })
        .await
    }
}

async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> StoreResult<T> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
}

fn load_or_create_cursor_key(conn: &mut Connection) -> StoreResult<CursorKey> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let existing: Option<Vec<u8>> = cached_row(
        &tx,
        "SELECT value FROM meta WHERE key = 'cursor_key'",
        [],
        |r| r.get(0),
    )
    .optional()?;
    let bytes: [u8; 32] = match existing {
        Some(bytes) => bytes
            .try_into()
            .map_err(|_| StoreError::Corrupt("cursor key is not 32 bytes".into()))?,
        None => {
            let bytes: [u8; 32] = rand::random();
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('cursor_key', ?1)",
                [&bytes[..]],
            )?;
            bytes
        }
    };
    tx.commit()?;
    Ok(CursorKey::new(bytes))
}

// ---- time and row mapping ------------------------------------------------------------------

/// `query_row` through the connection's statement cache: the read path runs the same few
/// statements on every request, and parsing SQL each time showed up in profiles.
fn cached_row<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, map)
}

/// Runs `work` between `begin` and `COMMIT` (`ROLLBACK` if it fails), with the transaction
/// statements taken from the statement cache: parsing `BEGIN` and `COMMIT` anew for every
/// transaction (as `rusqlite::Transaction` does) was a sixth of the write path in profiles.
fn create_application_tx(tx: &Connection, name: &str) -> StoreResult<Application> {
    tx.execute(
        "INSERT INTO applications (name, created) VALUES (?1, ?2)",
        params![name, micros(Utc::now())],
    )?;
    get_application_tx(tx, tx.last_insert_rowid())
}

fn create_api_key_tx(
    tx: &Connection,
    application_id: ApplicationId,
    digest: &SecretDigest,
    hint: &str,
    signing_key: &str,
) -> StoreResult<ApiKey> {
    get_application_tx(tx, application_id)?;
    let created = Utc::now();
    tx.execute(
        "INSERT INTO api_keys (application_id, digest, hint, created, signing_key) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![application_id, &digest[..], hint, micros(created), signing_key],
    )?;
    Ok(ApiKey {
        id: tx.last_insert_rowid(),
        application_id,
        hint: hint.to_owned(),
        created: from_micros(micros(created))?,
    })
}

fn get_backfill_tx(conn: &Connection, id: i64) -> StoreResult<BackfillJob> {
    let row = cached_row(
        conn,
        "SELECT id, subscription_id, from_at, until_at, state, checkpoint, fetched, appended, error, \
         created, modified FROM backfill_jobs WHERE id = ?1",
        [id],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, Option<String>>(8)?,
                r.get::<_, i64>(9)?,
                r.get::<_, i64>(10)?,
            ))
        },
    )
    .optional()?
    .ok_or(StoreError::NotFound("backfill job"))?;
    Ok(BackfillJob {
        id: row.0,
        subscription_id: row.1,
        from: from_micros(row.2)?,
        until: from_micros(row.3)?,
        state: BackfillState::parse(&row.4)?,
        checkpoint: row.5,
        fetched: row.6.unsigned_abs(),
        appended: row.7.unsigned_abs(),
        error: row.8,
        created: from_micros(row.9)?,
        modified: from_micros(row.10)?,
    })
}

/// Appends a batch (see [`Store::commit`]) inside the caller's transaction.
fn commit_tx(tx: &Connection, batch: CommitBatch) -> StoreResult<CommitOutcome> {
    let subscription_id = batch.subscription_id;
    let lease_token = batch.lease.as_ref().map(|lease| lease.token);
    let CommitBatch {
        activities: rows,
        checkpoint,
        watermark,
        ..
    } = batch;
    let (mut last_sequence, last_committed_at, current_token): (i64, i64, i64) = cached_row(
        tx,
        "SELECT last_sequence, last_committed_at, lease_token FROM subscriptions WHERE id = ?1",
        [subscription_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()?
    .ok_or(StoreError::NotFound("subscription"))?;
    if lease_token.is_some_and(|token| token != current_token) {
        return Err(StoreError::LeaseLost(subscription_id));
    }
    // Commit times never run backwards within a subscription, even if the clock does:
    // retention relies on it.
    let committed_at = micros(Utc::now()).max(last_committed_at);
    let mut outcome = CommitOutcome::default();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO activity (subscription_id, sequence, activity_id, occurred_at, \
                 committed_at, body, v1_type, v1, v1_target_at, v1_target_len) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT (subscription_id, activity_id) DO NOTHING",
        )?;
        for row in &rows {
            let v1 = row.v1_columns();
            let inserted = insert.execute(params![
                subscription_id,
                last_sequence + 1,
                row.id,
                row.timestamp_micros,
                committed_at,
                row.json,
                v1.kind,
                v1.json,
                v1.target_at,
                v1.target_len
            ])?;
            if inserted == 1 {
                last_sequence += 1;
                outcome.appended += 1;
            } else {
                outcome.duplicates += 1;
            }
        }
    }
    tx.execute(
        "UPDATE subscriptions SET last_sequence = ?2, last_committed_at = ?3, \
             retained_count = retained_count + ?4 WHERE id = ?1",
        params![
            subscription_id,
            last_sequence,
            committed_at,
            outcome.appended as i64
        ],
    )?;
    if let Some(watermark) = watermark {
        tx.prepare_cached(
            "UPDATE subscriptions SET watermark = MAX(COALESCE(watermark, ?2), ?2) WHERE id = ?1",
        )?
        .execute(params![subscription_id, micros(watermark)])?;
    }
    if let Some(state) = checkpoint {
        tx.execute(
            "INSERT INTO checkpoints (subscription_id, state, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (subscription_id) DO UPDATE SET state = excluded.state, \
                 updated_at = excluded.updated_at",
            params![subscription_id, state, committed_at],
        )?;
    }
    outcome.last_sequence = u64::try_from(last_sequence)
        .map_err(|_| StoreError::Corrupt("negative sequence".into()))?;
    Ok(outcome)
}

/// Delivers a write job's result once its transaction has committed (`None`) or failed to
/// commit (the error).
type WriteReply = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// One write: runs on the writer connection inside a savepoint, says whether it succeeded, and
/// hands back how to reply. A job dropped without running answers its caller with an error.
type WriteJob = Box<dyn FnOnce(&Connection) -> (bool, WriteReply) + Send>;

/// Most jobs one group commit takes.
const MAX_GROUP_COMMIT: usize = 256;

fn run_statement(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// The writer thread: takes every job waiting (at least one), runs them in one transaction,
/// each in its own savepoint, commits, then replies to each (and tells the checkpointer).
/// Ends when the store is dropped.
fn run_writer(
    conn: &Connection,
    queue: &std::sync::mpsc::Receiver<WriteJob>,
    committed: &std::sync::mpsc::SyncSender<()>,
) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP_COMMIT {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if let Err(error) = run_statement(conn, "BEGIN IMMEDIATE") {
            // Dropped unrun, each job answers its caller with an error.
            tracing::error!(%error, jobs = jobs.len(), "could not begin a write transaction");
            continue;
        }
        let mut replies: Vec<WriteReply> = Vec::with_capacity(jobs.len());
        let mut jobs = jobs.into_iter();
        for job in jobs.by_ref() {
            if let Err(error) = run_statement(conn, "SAVEPOINT job") {
                tracing::error!(%error, "could not open a savepoint; the write is refused");
                continue;
            }
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(conn)));
            let (succeeded, reply) = match ran {
                Ok(ran) => (ran.0, Some(ran.1)),
                Err(_) => {
                    tracing::error!("a store write panicked; it is rolled back");
                    (false, None)
                }
            };
            let ended = if succeeded {
                run_statement(conn, "RELEASE job")
            } else {
                run_statement(conn, "ROLLBACK TO job")
                    .and_then(|()| run_statement(conn, "RELEASE job"))
            };
            if let Err(error) = ended {
                tracing::error!(%error, "could not end a write's savepoint");
            }
            replies.extend(reply);
            if conn.is_autocommit() {
                // SQLite rolled the whole transaction back (a full disk, an I/O error): what
                // ran is undone, and nothing more may run outside a transaction.
                break;
            }
        }
        let failed = if conn.is_autocommit() {
            // Jobs not run yet are dropped: their callers get an error and try again.
            drop(jobs);
            Some(StoreError::Backend(
                "the write transaction was rolled back by SQLite".into(),
            ))
        } else {
            run_statement(conn, "COMMIT").err().map(StoreError::from)
        };
        if failed.is_some() && !conn.is_autocommit() {
            if let Err(error) = run_statement(conn, "ROLLBACK") {
                tracing::error!(%error, "rollback failed");
            }
        }
        for reply in replies {
            reply(failed.as_ref());
        }
        if failed.is_none() {
            // A wake already waiting covers this commit too.
            let _ = committed.try_send(());
        }
    }
}

/// The checkpointer thread: copies committed pages from the write-ahead log into the database
/// file ([`CHECKPOINT_GAP`] after a commit, gathering the commits in between), on its own
/// connection. A checkpoint syncs the log and then the database file, which on a slow disk
/// takes tens of milliseconds, and SQLite's automatic checkpoint would run it on the committing
/// connection, stalling every write queued behind it; here the writer goes on committing
/// meanwhile. A passive checkpoint never waits for the writer or for readers; what it could not
/// copy is copied by the next one. Ends with the writer thread.
fn run_checkpointer(conn: &Connection, commits: &std::sync::mpsc::Receiver<()>) {
    while commits.recv().is_ok() {
        std::thread::sleep(CHECKPOINT_GAP);
        let _ = commits.try_recv();
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match done {
            Ok((log, copied)) => tracing::trace!(log, copied, "checkpoint"),
            Err(error) => tracing::warn!(%error, "checkpoint failed; the next commit retries it"),
        }
    }
}

fn in_transaction<T>(
    conn: &Connection,
    begin: &str,
    work: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    conn.prepare_cached(begin)?.execute([])?;
    let result = work(conn).and_then(|value| {
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(value)
    });
    if result.is_err() && !conn.is_autocommit() {
        if let Err(error) = conn
            .prepare_cached("ROLLBACK")
            .and_then(|mut s| s.execute([]))
        {
            tracing::error!(%error, "rollback failed");
        }
    }
    result
}

fn micros(ts: DateTime<Utc>) -> i64 {
    ts.timestamp_micros()
}

fn from_micros(value: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(value)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {value} out of range")))
}

fn column_time(row: &Row<'_>, index: usize) -> rusqlite::Result<DateTime<Utc>> {
    let value: i64 = row.get(index)?;
    DateTime::from_timestamp_micros(value)
        .ok_or(rusqlite::Error::IntegralValueOutOfRange(index, value))
}

fn column_time_opt(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    match row.get::<_, Option<i64>>(index)? {
        Some(value) => DateTime::from_timestamp_micros(value)
            .map(Some)
            .ok_or(rusqlite::Error::IntegralValueOutOfRange(index, value)),
        None => Ok(None),
    }
}

fn column_json<T: serde::de::DeserializeOwned>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

const APPLICATION_COLUMNS: &str = "id, name, track_activity, retention_days, \
    max_subscriptions_per_account, created, allow_private_webhook_targets";

fn application_from_row(row: &Row<'_>) -> rusqlite::Result<Application> {
    Ok(Application {
        id: row.get(0)?,
        name: row.get(1)?,
        track_activity: row.get(2)?,
        retention_days: row.get(3)?,
        max_subscriptions_per_account: row.get(4)?,
        created: column_time(row, 5)?,
        allow_private_webhook_targets: row.get(6)?,
    })
}

const WEBHOOK_COLUMNS: &str = "id, application_id, url, filter, enabled, secret, created, modified";

fn webhook_from_row(row: &Row<'_>) -> rusqlite::Result<WebhookEndpoint> {
    let filter: Option<String> = row.get(3)?;
    let filter = filter
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
        })?;
    Ok(WebhookEndpoint {
        id: row.get(0)?,
        application_id: row.get(1)?,
        url: row.get(2)?,
        filter,
        enabled: row.get(4)?,
        secret: row.get(5)?,
        created: column_time(row, 6)?,
        modified: column_time(row, 7)?,
    })
}

fn get_webhook_tx(conn: &Connection, id: i64) -> StoreResult<WebhookEndpoint> {
    cached_row(
        conn,
        &format!("SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoints WHERE id = ?1"),
        [id],
        webhook_from_row,
    )
    .optional()?
    .ok_or(StoreError::NotFound("webhook"))
}

const DESTINATION_COLUMNS: &str =
    "id, application_id, kind, target, filter, payload, batch_size, enabled, created, modified";

fn destination_from_row(row: &Row<'_>) -> rusqlite::Result<Destination> {
    let filter: Option<String> = row.get(4)?;
    let filter = filter
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
        })?;
    Ok(Destination {
        id: row.get(0)?,
        application_id: row.get(1)?,
        kind: row.get(2)?,
        target: column_json(row, 3)?,
        filter,
        payload: row.get(5)?,
        batch_size: row.get(6)?,
        enabled: row.get(7)?,
        created: column_time(row, 8)?,
        modified: column_time(row, 9)?,
    })
}

fn get_destination_tx(conn: &Connection, id: i64) -> StoreResult<Destination> {
    cached_row(
        conn,
        &format!("SELECT {DESTINATION_COLUMNS} FROM destinations WHERE id = ?1"),
        [id],
        destination_from_row,
    )
    .optional()?
    .ok_or(StoreError::NotFound("destination"))
}

fn json_text(value: &Value) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Records how one claimed publication ended (see [`Store::finish_publication`]).
fn insert_destination_attempt_tx(tx: &Connection, attempt: &DestinationAttempt) -> StoreResult<()> {
    tx.prepare_cached(
        "INSERT INTO destination_attempts (destination_id, subscription_id, account_id, \
             first_sequence, last_sequence, published, started_at, latency_us, success, error) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        attempt.destination_id,
        attempt.subscription_id,
        attempt.account_id,
        i64::try_from(attempt.first_sequence).unwrap_or(i64::MAX),
        i64::try_from(attempt.last_sequence).unwrap_or(i64::MAX),
        attempt.published,
        micros(attempt.started_at),
        i64::try_from(attempt.latency.as_micros()).unwrap_or(i64::MAX),
        attempt.success,
        attempt.error,
    ])?;
    Ok(())
}

fn finish_publication_tx(
    tx: &Connection,
    due: &DuePublication,
    outcome: PublicationOutcome,
    attempt: Option<&DestinationAttempt>,
) -> StoreResult<()> {
    if let Some(attempt) = attempt {
        insert_destination_attempt_tx(tx, attempt)?;
    }
    let (destination_id, subscription_id, token) =
        (due.destination.id, due.subscription_id, due.claim_token);
    match outcome {
        // SET expressions see the row as it was: the failure count is cleared only when the
        // position moves, and a pending message only once the position reaches it.
        PublicationOutcome::Published { through } => tx
            .prepare_cached(
                "UPDATE destination_positions SET published_sequence = MAX(published_sequence, ?4), \
                 attempts = CASE WHEN ?4 > published_sequence THEN 0 ELSE attempts END, \
                 failing_since = CASE WHEN ?4 > published_sequence THEN NULL ELSE failing_since END, \
                 pending_through = CASE WHEN pending_through <= ?4 THEN NULL ELSE pending_through END, \
                 next_attempt_at = 0, claimed_until = NULL \
                 WHERE destination_id = ?1 AND subscription_id = ?2 AND claim_token = ?3",
            )?
            .execute(params![
                destination_id,
                subscription_id,
                token,
                i64::try_from(through).unwrap_or(i64::MAX)
            ])?,
        PublicationOutcome::Failed { retry_at } => tx
            .prepare_cached(
                "UPDATE destination_positions SET attempts = attempts + 1, \
                 failing_since = COALESCE(failing_since, ?4), next_attempt_at = ?5, \
                 claimed_until = NULL \
                 WHERE destination_id = ?1 AND subscription_id = ?2 AND claim_token = ?3",
            )?
            .execute(params![
                destination_id,
                subscription_id,
                token,
                attempt.map_or_else(|| micros(Utc::now()), |a| micros(a.started_at)),
                micros(retry_at)
            ])?,
    };
    Ok(())
}

const API_KEY_COLUMNS: &str = "id, application_id, hint, created";

fn api_key_from_row(row: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: row.get(0)?,
        application_id: row.get(1)?,
        hint: row.get(2)?,
        created: column_time(row, 3)?,
    })
}

const ACCOUNT_COLUMNS: &str = "id, application_id, service, admin, config, created, modified";

fn account_from_row(row: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        application_id: row.get(1)?,
        service: row.get(2)?,
        admin: row.get(3)?,
        config: column_json(row, 4)?,
        created: column_time(row, 5)?,
        modified: column_time(row, 6)?,
    })
}

const SUBSCRIPTION_COLUMNS: &str = "id, account_id, subscription_type, active, disable_reason, \
    is_default, expiry, monitored_resources, monitored_resource_api, \
    monitored_resource_object_type, last_cursor, last_cursor_updated_at, created, modified";

fn subscription_from_row(row: &Row<'_>) -> rusqlite::Result<Subscription> {
    let type_text: String = row.get(2)?;
    let subscription_type = SubscriptionType::parse(&type_text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
    })?;
    let monitored_resources: Vec<MonitoredResource> = column_json(row, 7)?;
    Ok(Subscription {
        id: row.get(0)?,
        literals: tidemark_model::SubscriptionLiterals,
        account: row.get(1)?,
        subscription_type,
        active: row.get(3)?,
        disable_reason: row.get(4)?,
        default: row.get(5)?,
        expiry: column_time_opt(row, 6)?,
        monitored_resources,
        monitored_resource_api: row.get(8)?,
        monitored_resource_object_type: row.get(9)?,
        last_cursor: row.get(10)?,
        last_cursor_updated_at: column_time_opt(row, 11)?,
        created: column_time(row, 12)?,
        modified: column_time(row, 13)?,
    })
}

fn get_application_tx(conn: &Connection, id: ApplicationId) -> StoreResult<Application> {
    cached_row(
        conn,
        &format!("SELECT {APPLICATION_COLUMNS} FROM applications WHERE id = ?1"),
        [id],
        application_from_row,
    )
    .optional()?
    .ok_or(StoreError::NotFound("application"))
}

fn get_account_tx(conn: &Connection, id: AccountId) -> StoreResult<Account> {
    cached_row(
        conn,
        &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"),
        [id],
        account_from_row,
    )
    .optional()?
    .ok_or(StoreError::NotFound("account"))
}

fn get_subscription_tx(conn: &Connection, id: SubscriptionId) -> StoreResult<Subscription> {
    cached_row(
        conn,
        &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ?1"),
        [id],
        subscription_from_row,
    )
    .optional()?
    .ok_or(StoreError::NotFound("subscription"))
}

fn insert_subscription_tx(
    tx: &Connection,
    new: &NewSubscription,
    now: DateTime<Utc>,
) -> StoreResult<Subscription> {
    let account = get_account_tx(tx, new.account_id)?;
    let application = get_application_tx(tx, account.application_id)?;
    let existing: u32 = cached_row(
        tx,
        "SELECT COUNT(*) FROM subscriptions WHERE account_id = ?1",
        [new.account_id],
        |r| r.get(0),
    )?;
    if existing >= application.max_subscriptions_per_account {
        return Err(StoreError::Conflict(format!(
            "account {} already has {existing} subscription(s); the application allows {} per account",
            new.account_id, application.max_subscriptions_per_account
        )));
    }
    let has_default: bool = cached_row(
        tx,
        "SELECT EXISTS(SELECT 1 FROM subscriptions WHERE account_id = ?1 AND is_default = 1)",
        [new.account_id],
        |r| r.get(0),
    )?;
    let is_default = new.default.unwrap_or(!has_default);
    if is_default {
        tx.execute(
            "UPDATE subscriptions SET is_default = 0, modified = ?2 WHERE account_id = ?1 AND is_default = 1",
            params![new.account_id, micros(now)],
        )?;
    }
    let resources = serde_json::to_string(&new.monitored_resources)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.execute(
        "INSERT INTO subscriptions (account_id, subscription_type, active, disable_reason, \
         is_default, monitored_resources, monitored_resource_api, monitored_resource_object_type, \
         created, modified, next_poll_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?9)",
        params![
            new.account_id,
            new.subscription_type.as_str(),
            new.active,
            if new.active {
                ""
            } else {
                "deactivated_by_user"
            },
            is_default,
            resources,
            new.monitored_resource_api,
            new.monitored_resource_object_type,
            micros(now),
        ],
    )?;
    get_subscription_tx(tx, tx.last_insert_rowid())
}

#[async_trait]
impl Store for SqliteStore {
    fn cursor_key(&self) -> &CursorKey {
        &self.inner.cursor_key
    }

    async fn create_application(&self, name: &str) -> StoreResult<Application> {
        let name = name.to_owned();
        self.write(move |tx| create_application_tx(tx, &name)).await
    }

    async fn create_application_with_key(
        &self,
        name: &str,
        digest: SecretDigest,
        hint: &str,
        signing_key: &str,
    ) -> StoreResult<(Application, ApiKey)> {
        let (name, hint, signing_key) = (name.to_owned(), hint.to_owned(), signing_key.to_owned());
        self.write(move |tx| {
            let application = create_application_tx(tx, &name)?;
            let key = create_api_key_tx(tx, application.id, &digest, &hint, &signing_key)?;
            Ok((application, key))
        })
        .await
    }

    async fn list_applications(&self) -> StoreResult<Vec<Application>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {APPLICATION_COLUMNS} FROM applications ORDER BY id"
            ))?;
            let rows = stmt.query_map([], application_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn get_application(&self, id: ApplicationId) -> StoreResult<Application> {
        self.read(move |conn| get_application_tx(conn, id)).await
    }

    async fn update_application(&self, application: &Application) -> StoreResult<Application> {
        let app = application.clone();
        self.write(move |tx| {
            let changed = tx.execute(
                "UPDATE applications SET name = ?2, track_activity = ?3, retention_days = ?4, \
                 max_subscriptions_per_account = ?5, allow_private_webhook_targets = ?6 WHERE id = ?1",
                params![
                    app.id,
                    app.name,
                    app.track_activity,
                    app.retention_days,
                    app.max_subscriptions_per_account,
                    app.allow_private_webhook_targets
                ],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound("application"));
            }
            get_application_tx(tx, app.id)
        })
        .await
    }

    async fn create_api_key(
        &self,
        application_id: ApplicationId,
        digest: SecretDigest,
        hint: &str,
        signing_key: &str,
    ) -> StoreResult<ApiKey> {
        let hint = hint.to_owned();
        let signing_key = signing_key.to_owned();
        self.write(move |tx| create_api_key_tx(tx, application_id, &digest, &hint, &signing_key))
            .await
    }

    async fn list_api_keys(&self, application_id: ApplicationId) -> StoreResult<Vec<ApiKey>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE application_id = ?1 ORDER BY created, id"
            ))?;
            let rows = stmt.query_map([application_id], api_key_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn delete_api_key(&self, application_id: ApplicationId, key_id: i64) -> StoreResult<()> {
        self.write(move |tx| {
            let keys: i64 = cached_row(
                tx,
                "SELECT COUNT(*) FROM api_keys WHERE application_id = ?1",
                [application_id],
                |r| r.get(0),
            )?;
            let owned: bool = cached_row(
                tx,
                "SELECT EXISTS(SELECT 1 FROM api_keys WHERE id = ?1 AND application_id = ?2)",
                params![key_id, application_id],
                |r| r.get(0),
            )?;
            if !owned {
                return Err(StoreError::NotFound("API key"));
            }
            if keys <= 1 {
                return Err(StoreError::Conflict(
                    "this is the application's last API key; create another one before deleting it"
                        .into(),
                ));
            }
            tx.execute("DELETE FROM api_keys WHERE id = ?1", [key_id])?;
            Ok(())
        })
        .await
    }

    async fn find_api_key(&self, digest: SecretDigest) -> StoreResult<Option<ApiKey>> {
        self.read(move |conn| {
            Ok(cached_row(
                conn,
                &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE digest = ?1"),
                [&digest[..]],
                api_key_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn find_account_by_token(&self, digest: SecretDigest) -> StoreResult<Option<Account>> {
        self.read(move |conn| {
            Ok(cached_row(
                conn,
                &format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = \
                         (SELECT account_id FROM account_tokens WHERE digest = ?1)"
                ),
                [&digest[..]],
                account_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn update_account(&self, id: AccountId, patch: AccountPatch) -> StoreResult<Account> {
        let config = patch
            .config
            .map(|config| {
                serde_json::to_string(&config).map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .transpose()?;
        self.write(move |tx| {
            let changed = tx.execute(
                "UPDATE accounts SET admin = COALESCE(?2, admin), config = COALESCE(?3, config), \
                 modified = ?4 WHERE id = ?1",
                params![id, patch.admin, config, micros(Utc::now())],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound("account"));
            }
            get_account_tx(tx, id)
        })
        .await
    }

    async fn signing_key(&self, application_id: ApplicationId) -> StoreResult<Option<String>> {
        self.read(move |conn| {
            Ok(cached_row(
                conn,
                "SELECT signing_key FROM api_keys WHERE application_id = ?1 AND signing_key IS NOT NULL \
                 ORDER BY created, id LIMIT 1",
                [application_id],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    async fn create_webhook(&self, endpoint: NewWebhookEndpoint) -> StoreResult<WebhookEndpoint> {
        let filter = endpoint.filter.as_ref().map(Value::to_string);
        self.write(move |tx| {
            get_application_tx(tx, endpoint.application_id)?;
            let now = micros(Utc::now());
            tx.execute(
                "INSERT INTO webhook_endpoints (application_id, url, filter, enabled, secret, created, modified) \
                 VALUES (?1, ?2, ?3, 1, ?4, ?5, ?5)",
                params![endpoint.application_id, endpoint.url, filter, endpoint.secret, now],
            )?;
            let id = tx.last_insert_rowid();
            // Told about activity committed from now on.
            tx.execute(
                "INSERT INTO webhook_deliveries (endpoint_id, subscription_id, notified_sequence) \
                 SELECT ?1, s.id, s.last_sequence FROM subscriptions s JOIN accounts a ON a.id = s.account_id \
                 WHERE a.application_id = ?2",
                params![id, endpoint.application_id],
            )?;
            get_webhook_tx(tx, id)
        })
        .await
    }

    async fn list_webhooks(
        &self,
        application_id: ApplicationId,
    ) -> StoreResult<Vec<WebhookEndpoint>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoints WHERE application_id = ?1 ORDER BY id"
            ))?;
            let rows = stmt.query_map([application_id], webhook_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn get_webhook(&self, id: i64) -> StoreResult<WebhookEndpoint> {
        self.read(move |conn| get_webhook_tx(conn, id)).await
    }

    async fn update_webhook(&self, id: i64, patch: WebhookPatch) -> StoreResult<WebhookEndpoint> {
        self.write(move |tx| {
            let current = get_webhook_tx(tx, id)?;
            let url = patch.url.unwrap_or(current.url);
            let filter = patch.filter.unwrap_or(current.filter).map(|f| f.to_string());
            let enabled = patch.enabled.unwrap_or(current.enabled);
            tx.execute(
                "UPDATE webhook_endpoints SET url = ?2, filter = ?3, enabled = ?4, modified = ?5 WHERE id = ?1",
                params![id, url, filter, enabled, micros(Utc::now())],
            )?;
            get_webhook_tx(tx, id)
        })
        .await
    }

    async fn delete_webhook(&self, id: i64) -> StoreResult<()> {
        self.write(move |tx| {
            if tx.execute("DELETE FROM webhook_endpoints WHERE id = ?1", [id])? == 0 {
                return Err(StoreError::NotFound("webhook"));
            }
            Ok(())
        })
        .await
    }

    async fn claim_due_notifications(
        &self,
        now: DateTime<Utc>,
        ttl: Duration,
        limit: usize,
        per_endpoint: usize,
    ) -> StoreResult<Vec<DueNotification>> {
        let claimed_until = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        // Finding what is due scans every subscription of every endpoint's application: it
        // runs on a reader (a WAL snapshot), so committers never wait behind it. The claims are
        // then taken in one short write, each re-checked there (still free, still due), so a
        // notification claimed or delivered meanwhile is not claimed again.
        let candidates: Vec<(i64, i64, i64, i64, i64, i64, Option<i64>)> = self
            .read(move |tx| {
                // Each endpoint gets at most `per_endpoint` claims, less those it holds already:
                // rank its due notifications and keep the first places left.
                let mut stmt = tx.prepare_cached(
                    "WITH held AS (SELECT endpoint_id, COUNT(*) AS n FROM webhook_deliveries \
                     WHERE claimed_until > ?1 GROUP BY endpoint_id), \
                     due AS (SELECT e.id AS endpoint_id, s.id AS subscription_id, s.account_id, s.last_sequence, \
                     MAX(COALESCE(d.notified_sequence, 0), COALESCE(d.given_up_sequence, 0)) AS after_sequence, \
                     COALESCE(d.attempts, 0) AS attempts, d.failing_since, \
                     COALESCE(d.next_attempt_at, 0) AS next_attempt_at, \
                     ROW_NUMBER() OVER (PARTITION BY e.id ORDER BY COALESCE(d.next_attempt_at, 0), s.id) AS place, \
                     COALESCE(h.n, 0) AS held \
                     FROM webhook_endpoints e \
                     JOIN accounts a ON a.application_id = e.application_id \
                     JOIN subscriptions s ON s.account_id = a.id \
                     LEFT JOIN webhook_deliveries d ON d.endpoint_id = e.id AND d.subscription_id = s.id \
                     LEFT JOIN held h ON h.endpoint_id = e.id \
                     WHERE e.enabled = 1 \
                     AND s.last_sequence > MAX(COALESCE(d.notified_sequence, 0), COALESCE(d.given_up_sequence, 0)) \
                     AND COALESCE(d.next_attempt_at, 0) <= ?1 \
                     AND (d.claimed_until IS NULL OR d.claimed_until <= ?1)) \
                     SELECT endpoint_id, subscription_id, account_id, last_sequence, after_sequence, attempts, failing_since \
                     FROM due WHERE held + place <= ?3 \
                     ORDER BY next_attempt_at, place LIMIT ?2",
                )?;
                let per_endpoint = i64::try_from(per_endpoint).unwrap_or(i64::MAX);
                let rows = stmt.query_map(params![micros(now), limit as i64, per_endpoint], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |tx| {
            let mut due = Vec::with_capacity(candidates.len());
            // Claimed only if, as of now, nobody holds it and it is still due and unchanged
            // since the snapshot (same attempts): otherwise nothing is returned and it is
            // skipped.
            let mut claim = tx.prepare_cached(
                "INSERT INTO webhook_deliveries (endpoint_id, subscription_id, attempt_sequence, claimed_until, claim_token) \
                 VALUES (?1, ?2, ?3, ?4, 1) \
                 ON CONFLICT (endpoint_id, subscription_id) DO UPDATE SET attempt_sequence = excluded.attempt_sequence, \
                 claimed_until = excluded.claimed_until, claim_token = claim_token + 1 \
                 WHERE (webhook_deliveries.claimed_until IS NULL OR webhook_deliveries.claimed_until <= ?5) \
                 AND MAX(webhook_deliveries.notified_sequence, webhook_deliveries.given_up_sequence) = ?6 \
                 AND webhook_deliveries.attempts = ?7 \
                 RETURNING claim_token",
            )?;
            let mut endpoints: std::collections::HashMap<i64, WebhookEndpoint> = std::collections::HashMap::new();
            for (endpoint_id, subscription_id, account_id, last, after, attempts, failing_since) in candidates {
                let token: Option<i64> = claim
                    .query_row(
                        params![endpoint_id, subscription_id, last, micros(claimed_until), micros(now), after, attempts],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(token) = token else {
                    continue;
                };
                let endpoint = match endpoints.get(&endpoint_id) {
                    Some(endpoint) => endpoint.clone(),
                    None => {
                        let endpoint = get_webhook_tx(tx, endpoint_id)?;
                        endpoints.insert(endpoint_id, endpoint.clone());
                        endpoint
                    }
                };
                due.push(DueNotification {
                    endpoint,
                    subscription_id,
                    account_id,
                    after_sequence: after.unsigned_abs(),
                    through_sequence: last.unsigned_abs(),
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    failing_since: failing_since.map(from_micros).transpose()?,
                    claim_token: token,
                });
            }
            Ok(due)
        })
        .await
    }

    async fn finish_notification(
        &self,
        due: &DueNotification,
        outcome: NotificationOutcome,
        attempt: Option<WebhookAttempt>,
    ) -> StoreResult<()> {
        let due = due.clone();
        self.write(move |tx| finish_notification_tx(tx, &due, outcome, attempt.as_ref()))
            .await
    }

    async fn finish_notifications(
        &self,
        finished: Vec<(DueNotification, NotificationOutcome, Option<WebhookAttempt>)>,
    ) -> StoreResult<()> {
        self.write(move |tx| {
            for (due, outcome, attempt) in finished {
                finish_notification_tx(tx, &due, outcome, attempt.as_ref())?;
            }
            Ok(())
        })
        .await
    }

    async fn list_webhook_attempts(
        &self,
        endpoint_id: i64,
        query: AttemptQuery,
    ) -> StoreResult<Vec<WebhookAttempt>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, endpoint_id, subscription_id, account_id, sequence, started_at, latency_us, \
                 status_code, success, error FROM webhook_attempts WHERE endpoint_id = ?1 \
                 AND (?2 IS NULL OR success = ?2) AND (?3 IS NULL OR started_at >= ?3) \
                 AND (?4 IS NULL OR started_at < ?4) AND (?5 IS NULL OR id < ?5) \
                 ORDER BY id DESC LIMIT ?6",
            )?;
            let rows = stmt.query_map(
                params![
                    endpoint_id,
                    query.success,
                    query.since.map(micros),
                    query.until.map(micros),
                    query.before_id,
                    i64::try_from(query.limit).unwrap_or(i64::MAX)
                ],
                |r| {
                    Ok(WebhookAttempt {
                        id: r.get(0)?,
                        endpoint_id: r.get(1)?,
                        subscription_id: r.get(2)?,
                        account_id: r.get(3)?,
                        sequence: r.get::<_, i64>(4)?.unsigned_abs(),
                        started_at: column_time(r, 5)?,
                        latency: Duration::from_micros(r.get::<_, i64>(6)?.unsigned_abs()),
                        status_code: r.get(7)?,
                        success: r.get(8)?,
                        error: r.get(9)?,
                    })
                },
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn recover_webhook(&self, endpoint_id: i64, since: DateTime<Utc>) -> StoreResult<u64> {
        self.write(move |tx| {
            get_webhook_tx(tx, endpoint_id)?;
            let changed = tx.execute(
                "UPDATE webhook_deliveries SET given_up_sequence = 0, attempts = 0, failing_since = NULL, \
                 next_attempt_at = 0 WHERE endpoint_id = ?1 AND subscription_id IN \
                 (SELECT subscription_id FROM webhook_attempts WHERE endpoint_id = ?1 AND success = 0 AND started_at >= ?2) \
                 AND notified_sequence < (SELECT last_sequence FROM subscriptions s WHERE s.id = webhook_deliveries.subscription_id)",
                params![endpoint_id, micros(since)],
            )?;
            Ok(changed as u64)
        })
        .await
    }

    async fn create_account(&self, account: NewAccount) -> StoreResult<Account> {
        self.write(move |tx| {
            let application = get_application_tx(tx, account.application_id)?;
            let now = Utc::now();
            let config = serde_json::to_string(&account.config)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            tx.execute(
                "INSERT INTO accounts (application_id, service, admin, config, created, modified) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![
                    account.application_id,
                    account.service,
                    account.admin,
                    config,
                    micros(now)
                ],
            )?;
            let created = get_account_tx(tx, tx.last_insert_rowid())?;
            if let Some(digest) = account.token_digest {
                tx.execute(
                    "INSERT INTO account_tokens (digest, account_id, created) VALUES (?1, ?2, ?3)",
                    params![&digest[..], created.id, micros(now)],
                )?;
            }
            if application.track_activity {
                let default_subscription = NewSubscription {
                    default: Some(true),
                    ..NewSubscription::changes(created.id)
                };
                insert_subscription_tx(tx, &default_subscription, now)?;
            }
            Ok(created)
        })
        .await
    }

    async fn get_account(&self, id: AccountId) -> StoreResult<Account> {
        self.read(move |conn| get_account_tx(conn, id)).await
    }

    async fn list_accounts(&self, application_id: ApplicationId) -> StoreResult<Vec<Account>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE application_id = ?1 ORDER BY id"
            ))?;
            let rows = stmt.query_map([application_id], account_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn delete_account(&self, id: AccountId) -> StoreResult<()> {
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM activity WHERE subscription_id IN \
                 (SELECT id FROM subscriptions WHERE account_id = ?1)",
                [id],
            )?;
            // Subscriptions and checkpoints go with the account (ON DELETE CASCADE).
            if tx.execute("DELETE FROM accounts WHERE id = ?1", [id])? == 0 {
                return Err(StoreError::NotFound("account"));
            }
            Ok(())
        })
        .await
    }

    async fn create_subscription(
        &self,
        subscription: NewSubscription,
    ) -> StoreResult<Subscription> {
        self.write(move |tx| insert_subscription_tx(tx, &subscription, Utc::now()))
            .await
    }

    async fn get_subscription(&self, id: SubscriptionId) -> StoreResult<Subscription> {
        self.read(move |conn| get_subscription_tx(conn, id)).await
    }

    async fn list_active_subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE active = 1 ORDER BY id"
            ))?;
            let rows = stmt.query_map([], subscription_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn list_subscriptions(&self, account_id: AccountId) -> StoreResult<Vec<Subscription>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE account_id = ?1 ORDER BY id"
            ))?;
            let rows = stmt.query_map([account_id], subscription_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn set_subscription_active(
        &self,
        id: SubscriptionId,
        active: bool,
        disable_reason: &str,
    ) -> StoreResult<Subscription> {
        let reason = if active {
            String::new()
        } else {
            disable_reason.to_owned()
        };
        self.write(move |tx| {
            let now = micros(Utc::now());
            let changed = tx.execute(
                "UPDATE subscriptions SET active = ?2, disable_reason = ?3, modified = ?4, \
                 next_poll_at = CASE WHEN ?2 AND NOT active THEN ?4 ELSE next_poll_at END, \
                 consecutive_failures = CASE WHEN ?2 THEN 0 ELSE consecutive_failures END \
                 WHERE id = ?1",
                params![id, active, reason, now],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound("subscription"));
            }
            get_subscription_tx(tx, id)
        })
        .await
    }

    async fn delete_subscription(&self, id: SubscriptionId) -> StoreResult<()> {
        self.write(move |tx| {
            tx.execute("DELETE FROM activity WHERE subscription_id = ?1", [id])?;
            if tx.execute("DELETE FROM subscriptions WHERE id = ?1", [id])? == 0 {
                return Err(StoreError::NotFound("subscription"));
            }
            Ok(())
        })
        .await
    }

    async fn record_last_cursor(
        &self,
        id: SubscriptionId,
        cursor: &str,
        position: u64,
    ) -> StoreResult<()> {
        let cursor = cursor.to_owned();
        let position = i64::try_from(position).unwrap_or(i64::MAX);
        self.write(move |tx| {
            let exists = tx.execute(
                "UPDATE subscriptions SET last_cursor = ?2, last_cursor_updated_at = ?3, \
                 last_cursor_position = ?4 WHERE id = ?1 AND (last_cursor IS NULL \
                 OR last_cursor_position < ?4 OR (last_cursor_position = ?4 AND last_cursor != ?2))",
                params![id, cursor, micros(Utc::now()), position],
            )?;
            if exists == 0 {
                // Either unchanged (fine) or missing (an error).
                get_subscription_tx(tx, id)?;
            }
            Ok(())
        })
        .await
    }

    async fn set_default_subscription(&self, id: SubscriptionId) -> StoreResult<Subscription> {
        self.write(move |tx| {
            let subscription = get_subscription_tx(tx, id)?;
            let now = micros(Utc::now());
            tx.execute(
                "UPDATE subscriptions SET is_default = 0, modified = ?3 \
                 WHERE account_id = ?1 AND is_default = 1 AND id != ?2",
                params![subscription.account, id, now],
            )?;
            tx.execute(
                "UPDATE subscriptions SET is_default = 1, modified = ?2 WHERE id = ?1 AND is_default = 0",
                params![id, now],
            )?;
            get_subscription_tx(tx, id)
        })
        .await
    }

    async fn commit(&self, batch: CommitBatch) -> StoreResult<CommitOutcome> {
        self.write(move |tx| commit_tx(tx, batch)).await
    }

    async fn read_page(
        &self,
        subscription_id: SubscriptionId,
        after: u64,
        limit: usize,
    ) -> StoreResult<ActivityPage> {
        self.read(move |conn| {
            let mut activities = Vec::with_capacity(limit.min(1000));
            let total = scan_page(
                conn,
                subscription_id,
                after,
                limit,
                PageColumns::WithV1,
                |row| {
                    let sequence = row.sequence;
                    let text = |bytes: &[u8]| {
                        String::from_utf8(bytes.to_vec()).map_err(|_| {
                            StoreError::Corrupt(format!("activity {sequence} is not UTF-8"))
                        })
                    };
                    let v1_type = row.v1_type.and_then(|name| std::str::from_utf8(name).ok());
                    activities.push(StoredActivity {
                        sequence,
                        committed_at: from_micros(row.committed_at)?,
                        json: text(row.body)?,
                        v1: StoredV1Event::from_columns(
                            v1_type,
                            row.v1.map(text).transpose()?,
                            row.v1_target_at,
                            row.v1_target_len,
                        ),
                    });
                    Ok(())
                },
            )?;
            Ok(ActivityPage { activities, total })
        })
        .await
    }

    async fn create_backfill(
        &self,
        subscription_id: SubscriptionId,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<BackfillJob> {
        self.write(move |tx| {
            get_subscription_tx(tx, subscription_id)?;
            let now = micros(Utc::now());
            tx.prepare_cached(
                "INSERT INTO backfill_jobs (subscription_id, from_at, until_at, created, modified) \
                 VALUES (?1, ?2, ?3, ?4, ?4)",
            )?
            .execute(params![subscription_id, micros(from), micros(until), now])?;
            get_backfill_tx(tx, tx.last_insert_rowid())
        })
        .await
    }

    async fn get_backfill(&self, id: i64) -> StoreResult<BackfillJob> {
        self.read(move |conn| get_backfill_tx(conn, id)).await
    }

    async fn claim_backfill(
        &self,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<Option<BackfillClaim>> {
        let until = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        self.write(move |tx| {
            let id: Option<i64> = cached_row(
                tx,
                "SELECT id FROM backfill_jobs WHERE state IN ('pending', 'running') \
                 AND retry_at <= ?1 AND (claimed_until IS NULL OR claimed_until <= ?1) \
                 ORDER BY id LIMIT 1",
                [micros(now)],
                |r| r.get(0),
            )
            .optional()?;
            let Some(id) = id else {
                return Ok(None);
            };
            let claim_token: i64 = tx
                .prepare_cached(
                    "UPDATE backfill_jobs SET state = 'running', claimed_until = ?2, \
                     claim_token = claim_token + 1, modified = ?3 WHERE id = ?1 RETURNING claim_token",
                )?
                .query_row(params![id, micros(until), micros(now)], |r| r.get(0))?;
            Ok(Some(BackfillClaim {
                job: get_backfill_tx(tx, id)?,
                claim_token,
            }))
        })
        .await
    }

    async fn commit_backfill(
        &self,
        step: BackfillStep,
        ttl: Duration,
    ) -> StoreResult<CommitOutcome> {
        self.write(move |tx| {
            let job = get_backfill_tx(tx, step.job_id)?;
            let token: i64 = cached_row(
                tx,
                "SELECT claim_token FROM backfill_jobs WHERE id = ?1",
                [step.job_id],
                |r| r.get(0),
            )?;
            if token != step.claim_token || job.state != BackfillState::Running {
                return Err(StoreError::LeaseLost(job.subscription_id));
            }
            let fetched = step.activities.len() as i64;
            let outcome = commit_tx(
                tx,
                CommitBatch {
                    subscription_id: job.subscription_id,
                    activities: step.activities,
                    checkpoint: None,
                    lease: None,
                    watermark: None,
                },
            )?;
            let now = Utc::now();
            let claimed_until = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
            tx.prepare_cached(
                "UPDATE backfill_jobs SET checkpoint = ?2, fetched = fetched + ?3, appended = appended + ?4, \
                 state = CASE WHEN ?5 THEN 'done' ELSE state END, \
                 claimed_until = CASE WHEN ?5 THEN NULL ELSE ?6 END, error = NULL, modified = ?7 WHERE id = ?1",
            )?
            .execute(params![
                step.job_id,
                step.checkpoint,
                fetched,
                outcome.appended as i64,
                step.done,
                micros(claimed_until),
                micros(now)
            ])?;
            Ok(outcome)
        })
        .await
    }

    async fn release_backfill(
        &self,
        job_id: i64,
        claim_token: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        let error = error.to_owned();
        self.write(move |tx| {
            tx.prepare_cached(
                "UPDATE backfill_jobs SET claimed_until = NULL, error = ?3, \
                 state = CASE WHEN ?4 IS NULL THEN 'failed' ELSE state END, \
                 retry_at = COALESCE(?4, retry_at), modified = ?5 \
                 WHERE id = ?1 AND claim_token = ?2 AND state = 'running'",
            )?
            .execute(params![
                job_id,
                claim_token,
                error,
                retry_at.map(micros),
                micros(Utc::now())
            ])?;
            Ok(())
        })
        .await
    }

    async fn read_range_json(
        &self,
        subscription_id: SubscriptionId,
        range: TimeRange,
        after: Option<RangePosition>,
        limit: usize,
        mut out: Vec<u8>,
    ) -> StoreResult<RangePage> {
        self.read(move |conn| {
            in_transaction(conn, "BEGIN", |tx| {
                let (total, watermark): (i64, Option<i64>) = cached_row(
                    tx,
                    "SELECT retained_count, watermark FROM subscriptions WHERE id = ?1",
                    [subscription_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
                .ok_or(StoreError::NotFound("subscription"))?;
                // Keyset on (occurred_at, sequence) along `activity_by_time`: from the range's
                // start, or strictly after the last position read.
                let (after_time, after_sequence) = match after {
                    Some(position) => (
                        position.occurred_at_micros,
                        i64::try_from(position.sequence).unwrap_or(i64::MAX),
                    ),
                    None => (range.from_micros, 0),
                };
                let mut stmt = tx.prepare_cached(
                    "SELECT occurred_at, sequence, body FROM activity INDEXED BY activity_by_time \
                     WHERE subscription_id = ?1 AND occurred_at IS NOT NULL \
                     AND occurred_at >= ?2 AND (?3 IS NULL OR occurred_at < ?3) \
                     AND (occurred_at > ?4 OR (occurred_at = ?4 AND sequence > ?5)) \
                     ORDER BY occurred_at, sequence LIMIT ?6",
                )?;
                let mut rows = stmt.query(params![
                    subscription_id,
                    range.from_micros,
                    range.until_micros,
                    after_time,
                    after_sequence,
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ])?;
                let mut count = 0;
                let mut last = None;
                while let Some(row) = rows.next()? {
                    if count > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(
                        row.get_ref(2)?
                            .as_bytes()
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    );
                    count += 1;
                    last = Some(RangePosition {
                        occurred_at_micros: row.get(0)?,
                        sequence: row.get::<_, i64>(1)?.unsigned_abs(),
                    });
                }
                drop(rows);
                drop(stmt);
                Ok(RangePage {
                    out: std::mem::take(&mut out),
                    count,
                    last,
                    total: total.unsigned_abs(),
                    watermark: watermark.map(from_micros).transpose()?,
                })
            })
        })
        .await
    }

    async fn read_page_json(
        &self,
        subscription_id: SubscriptionId,
        after: u64,
        limit: usize,
        mut out: Vec<u8>,
    ) -> StoreResult<JsonPage> {
        self.read(move |conn| {
            let mut count = 0;
            let mut last_sequence = None;
            let total = scan_page(
                conn,
                subscription_id,
                after,
                limit,
                PageColumns::Body,
                |row| {
                    if count > 0 {
                        out.push(b',');
                    }
                    // Stored bodies are JSON written by `EncodedActivity`: copied as they are.
                    out.extend_from_slice(row.body);
                    count += 1;
                    last_sequence = Some(row.sequence);
                    Ok(())
                },
            )?;
            Ok(JsonPage {
                out,
                count,
                last_sequence,
                total,
            })
        })
        .await
    }

    async fn activity_total(&self, subscription_id: SubscriptionId) -> StoreResult<u64> {
        self.read(move |conn| {
            let total: Option<i64> = cached_row(
                conn,
                "SELECT retained_count FROM subscriptions WHERE id = ?1",
                [subscription_id],
                |r| r.get(0),
            )
            .optional()?;
            total
                .map(i64::unsigned_abs)
                .ok_or(StoreError::NotFound("subscription"))
        })
        .await
    }

    async fn latest_sequence(&self, subscription_id: SubscriptionId) -> StoreResult<u64> {
        self.read(move |conn| {
            let last: Option<i64> = cached_row(
                conn,
                "SELECT last_sequence FROM subscriptions WHERE id = ?1",
                [subscription_id],
                |r| r.get(0),
            )
            .optional()?;
            last.map(i64::unsigned_abs)
                .ok_or(StoreError::NotFound("subscription"))
        })
        .await
    }

    async fn prune_expired(&self, now: DateTime<Utc>, max_rows: usize) -> StoreResult<u64> {
        // Which subscriptions have a retention limit and something retained.
        let candidates: Vec<(SubscriptionId, i64)> = self
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT s.id, ap.retention_days FROM subscriptions s \
                     JOIN accounts ac ON ac.id = s.account_id \
                     JOIN applications ap ON ap.id = ac.application_id \
                     WHERE ap.retention_days IS NOT NULL AND s.retained_count > 0",
                )?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?;
        let mut deleted_total = 0u64;
        for (subscription_id, retention_days) in candidates {
            let budget = max_rows.saturating_sub(deleted_total as usize);
            if budget == 0 {
                break;
            }
            let cutoff = micros(now) - retention_days * 86_400_000_000;
            // One short transaction per subscription keeps writers waiting briefly at most.
            let deleted = self
                .write(move |tx| prune_subscription_tx(tx, subscription_id, cutoff, budget))
                .await?;
            deleted_total += deleted;
        }
        if deleted_total > 0 {
            tracing::debug!(deleted = deleted_total, "pruned expired activity");
        }
        Ok(deleted_total)
    }

    async fn create_destination(&self, destination: NewDestination) -> StoreResult<Destination> {
        let target = json_text(&destination.target)?;
        let filter = destination.filter.as_ref().map(json_text).transpose()?;
        self.write(move |tx| {
            get_application_tx(tx, destination.application_id)?;
            let now = micros(Utc::now());
            tx.prepare_cached(
                "INSERT INTO destinations (application_id, kind, target, filter, payload, \
                 batch_size, enabled, created, modified) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7)",
            )?
            .execute(params![
                destination.application_id,
                destination.kind,
                target,
                filter,
                destination.payload,
                destination.batch_size,
                now
            ])?;
            let id = tx.last_insert_rowid();
            // Told about activity committed from now on.
            tx.prepare_cached(
                "INSERT INTO destination_positions (destination_id, subscription_id, published_sequence, claim_token) \
                 SELECT ?1, s.id, s.last_sequence, ?3 FROM subscriptions s \
                 JOIN accounts a ON a.id = s.account_id WHERE a.application_id = ?2",
            )?
            .execute(params![id, destination.application_id, first_claim_token()])?;
            get_destination_tx(tx, id)
        })
        .await
    }

    async fn list_destinations(
        &self,
        application_id: ApplicationId,
    ) -> StoreResult<Vec<Destination>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DESTINATION_COLUMNS} FROM destinations WHERE application_id = ?1 ORDER BY id"
            ))?;
            let rows = stmt.query_map([application_id], destination_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn get_destination(&self, id: i64) -> StoreResult<Destination> {
        self.read(move |conn| get_destination_tx(conn, id)).await
    }

    async fn update_destination(
        &self,
        id: i64,
        patch: DestinationPatch,
    ) -> StoreResult<Destination> {
        self.write(move |tx| {
            let current = get_destination_tx(tx, id)?;
            let target = json_text(&patch.target.unwrap_or(current.target))?;
            let filter = patch
                .filter
                .unwrap_or(current.filter)
                .as_ref()
                .map(json_text)
                .transpose()?;
            tx.prepare_cached(
                "UPDATE destinations SET target = ?2, filter = ?3, payload = ?4, batch_size = ?5, \
                 enabled = ?6, modified = ?7 WHERE id = ?1",
            )?
            .execute(params![
                id,
                target,
                filter,
                patch.payload.unwrap_or(current.payload),
                patch.batch_size.unwrap_or(current.batch_size),
                patch.enabled.unwrap_or(current.enabled),
                micros(Utc::now())
            ])?;
            get_destination_tx(tx, id)
        })
        .await
    }

    async fn delete_destination(&self, id: i64) -> StoreResult<()> {
        self.write(move |tx| {
            if tx.execute("DELETE FROM destinations WHERE id = ?1", [id])? == 0 {
                return Err(StoreError::NotFound("destination"));
            }
            Ok(())
        })
        .await
    }

    async fn claim_due_publications(
        &self,
        now: DateTime<Utc>,
        ttl: Duration,
        limit: usize,
    ) -> StoreResult<Vec<DuePublication>> {
        let claimed_until = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        // As for webhooks: what is due is found on a reader (a snapshot), and each claim is
        // then taken in one short write, re-checked there (still free, still at the position
        // and attempt count the snapshot saw).
        let candidates: Vec<(i64, i64, i64, i64, i64, i64, Option<i64>)> = self
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT d.id, s.id, s.account_id, s.last_sequence, \
                     COALESCE(p.published_sequence, 0), COALESCE(p.attempts, 0), p.failing_since \
                     FROM destinations d \
                     JOIN accounts a ON a.application_id = d.application_id \
                     JOIN subscriptions s ON s.account_id = a.id \
                     LEFT JOIN destination_positions p ON p.destination_id = d.id AND p.subscription_id = s.id \
                     WHERE d.enabled = 1 AND s.last_sequence > COALESCE(p.published_sequence, 0) \
                     AND COALESCE(p.next_attempt_at, 0) <= ?1 \
                     AND (p.claimed_until IS NULL OR p.claimed_until <= ?1) \
                     ORDER BY COALESCE(p.next_attempt_at, 0), s.id, d.id LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![micros(now), limit as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |tx| {
            let mut claim = tx.prepare_cached(
                "INSERT INTO destination_positions (destination_id, subscription_id, claimed_until, claim_token) \
                 VALUES (?1, ?2, ?3, ?7) \
                 ON CONFLICT (destination_id, subscription_id) DO UPDATE SET \
                 claimed_until = excluded.claimed_until, claim_token = claim_token + 1 \
                 WHERE (destination_positions.claimed_until IS NULL OR destination_positions.claimed_until <= ?4) \
                 AND destination_positions.published_sequence = ?5 AND destination_positions.attempts = ?6 \
                 RETURNING claim_token, pending_through",
            )?;
            let mut destinations: std::collections::HashMap<i64, Destination> =
                std::collections::HashMap::new();
            let mut due = Vec::with_capacity(candidates.len());
            for (destination_id, subscription_id, account_id, last, after, attempts, failing_since) in candidates {
                let claimed: Option<(i64, Option<i64>)> = claim
                    .query_row(
                        params![destination_id, subscription_id, micros(claimed_until), micros(now), after, attempts, first_claim_token()],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                let Some((claim_token, pending_through)) = claimed else {
                    continue;
                };
                let destination = match destinations.get(&destination_id) {
                    Some(destination) => destination.clone(),
                    None => {
                        let destination = get_destination_tx(tx, destination_id)?;
                        destinations.insert(destination_id, destination.clone());
                        destination
                    }
                };
                due.push(DuePublication {
                    destination,
                    subscription_id,
                    account_id,
                    after_sequence: after.unsigned_abs(),
                    through_sequence: last.unsigned_abs(),
                    pending_through: pending_through.map(i64::unsigned_abs),
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    failing_since: failing_since.map(from_micros).transpose()?,
                    claim_token,
                });
            }
            Ok(due)
        })
        .await
    }

    async fn finish_publication(
        &self,
        due: &DuePublication,
        outcome: PublicationOutcome,
        attempt: Option<DestinationAttempt>,
    ) -> StoreResult<()> {
        let due = due.clone();
        self.write(move |tx| finish_publication_tx(tx, &due, outcome, attempt.as_ref()))
            .await
    }

    async fn advance_publications(
        &self,
        advances: Vec<PublicationAdvance>,
    ) -> StoreResult<Vec<bool>> {
        if advances.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |tx| {
            // SET expressions see the row as it was (see finish_publication_tx).
            let mut advance = tx.prepare_cached(
                "UPDATE destination_positions SET published_sequence = MAX(published_sequence, ?4), \
                 attempts = CASE WHEN ?4 > published_sequence THEN 0 ELSE attempts END, \
                 failing_since = CASE WHEN ?4 > published_sequence THEN NULL ELSE failing_since END, \
                 pending_through = ?5, claimed_until = ?6 \
                 WHERE destination_id = ?1 AND subscription_id = ?2 AND claim_token = ?3",
            )?;
            // A changed, disabled or deleted destination refuses the advance; it is looked up
            // once per destination in the batch (inside this transaction, so it holds for all).
            let mut versions: std::collections::HashMap<i64, Option<i64>> =
                std::collections::HashMap::new();
            let mut taken = Vec::with_capacity(advances.len());
            for item in &advances {
                let version = match versions.get(&item.destination_id) {
                    Some(version) => *version,
                    None => {
                        let version = tx
                            .prepare_cached(
                                "SELECT modified FROM destinations WHERE id = ?1 AND enabled = 1",
                            )?
                            .query_row(params![item.destination_id], |r| r.get::<_, i64>(0))
                            .optional()?;
                        versions.insert(item.destination_id, version);
                        version
                    }
                };
                if version != Some(micros(item.destination_modified)) {
                    taken.push(false);
                    continue;
                }
                let changed = advance.execute(params![
                    item.destination_id,
                    item.subscription_id,
                    item.claim_token,
                    i64::try_from(item.through).unwrap_or(i64::MAX),
                    item.pending_through.map(|p| i64::try_from(p).unwrap_or(i64::MAX)),
                    micros(item.claimed_until),
                ])?;
                if changed == 1 {
                    if let Some(attempt) = &item.attempt {
                        insert_destination_attempt_tx(tx, attempt)?;
                    }
                }
                taken.push(changed == 1);
            }
            Ok(taken)
        })
        .await
    }

    async fn list_destination_attempts(
        &self,
        destination_id: i64,
        query: AttemptQuery,
    ) -> StoreResult<Vec<DestinationAttempt>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, destination_id, subscription_id, account_id, first_sequence, last_sequence, \
                 published, started_at, latency_us, success, error FROM destination_attempts \
                 WHERE destination_id = ?1 AND (?2 IS NULL OR success = ?2) \
                 AND (?3 IS NULL OR started_at >= ?3) AND (?4 IS NULL OR started_at < ?4) \
                 AND (?5 IS NULL OR id < ?5) ORDER BY id DESC LIMIT ?6",
            )?;
            let rows = stmt.query_map(
                params![
                    destination_id,
                    query.success,
                    query.since.map(micros),
                    query.until.map(micros),
                    query.before_id,
                    i64::try_from(query.limit).unwrap_or(i64::MAX)
                ],
                |r| {
                    Ok(DestinationAttempt {
                        id: r.get(0)?,
                        destination_id: r.get(1)?,
                        subscription_id: r.get(2)?,
                        account_id: r.get(3)?,
                        first_sequence: r.get::<_, i64>(4)?.unsigned_abs(),
                        last_sequence: r.get::<_, i64>(5)?.unsigned_abs(),
                        published: r.get(6)?,
                        started_at: column_time(r, 7)?,
                        latency: Duration::from_micros(r.get::<_, i64>(8)?.unsigned_abs()),
                        success: r.get(9)?,
                        error: r.get(10)?,
                    })
                },
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn load_checkpoint(
        &self,
        subscription_id: SubscriptionId,
    ) -> StoreResult<Option<String>> {
        self.read(move |conn| {
            Ok(cached_row(
                conn,
                "SELECT state FROM checkpoints WHERE subscription_id = ?1",
                [subscription_id],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    async fn acquire_due(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        ttl: Duration,
        limit: usize,
    ) -> StoreResult<Vec<Lease>> {
        let holder = holder.to_owned();
        let expires_at = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        self.write(move |tx| {
            let ids: Vec<SubscriptionId> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT id FROM subscriptions WHERE active = 1 AND next_poll_at <= ?1 \
                     AND (lease_expires_at IS NULL OR lease_expires_at <= ?1) \
                     ORDER BY next_poll_at LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![micros(now), limit as i64], |r| r.get(0))?;
                rows.collect::<Result<Vec<_>, _>>()?
            };
            let mut leases = Vec::with_capacity(ids.len());
            let mut grant = tx.prepare_cached(
                "UPDATE subscriptions SET lease_holder = ?2, lease_token = lease_token + 1, \
                 lease_expires_at = ?3 WHERE id = ?1 RETURNING lease_token, wake_counter",
            )?;
            for subscription_id in ids {
                let (token, wake_seen) = grant
                    .query_row(params![subscription_id, holder, micros(expires_at)], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?;
                leases.push(Lease {
                    subscription_id,
                    holder: holder.clone(),
                    token,
                    expires_at,
                    wake_seen,
                });
            }
            Ok(leases)
        })
        .await
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> StoreResult<Lease> {
        let mut renewed = lease.clone();
        renewed.expires_at =
            Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let update = renewed.clone();
        self.write(move |tx| {
            let changed = tx.execute(
                "UPDATE subscriptions SET lease_expires_at = ?3 WHERE id = ?1 AND lease_token = ?2",
                params![
                    update.subscription_id,
                    update.token,
                    micros(update.expires_at)
                ],
            )?;
            if changed == 0 {
                return Err(StoreError::LeaseLost(update.subscription_id));
            }
            Ok(())
        })
        .await?;
        Ok(renewed)
    }

    async fn release_lease(&self, lease: &Lease, result: PollResult) -> StoreResult<()> {
        let lease = lease.clone();
        self.write(move |tx| {
            let now = micros(Utc::now());
            let released = "lease_holder = NULL, lease_expires_at = NULL";
            let fence = "WHERE id = ?1 AND lease_token = ?2";
            match result {
                PollResult::Succeeded { next_poll_at } => tx.execute(
                    &format!(
                        "UPDATE subscriptions SET {released}, consecutive_failures = 0, \
                         last_error = NULL, next_poll_at = CASE WHEN wake_counter != ?3 \
                         THEN ?4 ELSE ?5 END {fence}"
                    ),
                    params![
                        lease.subscription_id,
                        lease.token,
                        lease.wake_seen,
                        now,
                        micros(next_poll_at)
                    ],
                )?,
                PollResult::Failed { error, retry_at } => tx.execute(
                    &format!(
                        "UPDATE subscriptions SET {released}, \
                         consecutive_failures = consecutive_failures + 1, last_error = ?3, \
                         next_poll_at = ?4 {fence}"
                    ),
                    params![lease.subscription_id, lease.token, error, micros(retry_at)],
                )?,
                PollResult::Disabled { reason, error } => tx.execute(
                    &format!(
                        "UPDATE subscriptions SET {released}, active = 0, disable_reason = ?3, \
                         last_error = ?4, modified = ?5, \
                         consecutive_failures = consecutive_failures + 1 {fence}"
                    ),
                    params![lease.subscription_id, lease.token, reason, error, now],
                )?,
            };
            Ok(())
        })
        .await
    }

    async fn request_poll(&self, subscription_id: SubscriptionId) -> StoreResult<()> {
        self.write(move |tx| {
            // A wake never cuts short a back-off (an upstream's Retry-After is honoured).
            let changed = tx.execute(
                "UPDATE subscriptions SET wake_counter = wake_counter + 1, \
                 next_poll_at = CASE WHEN consecutive_failures = 0 THEN MIN(next_poll_at, ?2) \
                 ELSE next_poll_at END WHERE id = ?1",
                params![subscription_id, micros(Utc::now())],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound("subscription"));
            }
            Ok(())
        })
        .await
    }

    async fn poll_state(&self, subscription_id: SubscriptionId) -> StoreResult<PollState> {
        self.read(move |conn| {
            let now = micros(Utc::now());
            cached_row(
                conn,
                "SELECT next_poll_at, consecutive_failures, last_error, \
                 CASE WHEN lease_expires_at > ?2 THEN lease_holder END \
                 FROM subscriptions WHERE id = ?1",
                params![subscription_id, now],
                |r| {
                    Ok(PollState {
                        next_poll_at: column_time(r, 0)?,
                        consecutive_failures: r.get(1)?,
                        last_error: r.get(2)?,
                        lease_holder: r.get(3)?,
                    })
                },
            )
            .optional()?
            .ok_or(StoreError::NotFound("subscription"))
        })
        .await
    }
}

/// Records how one claimed notification ended (see [`Store::finish_notification`]).
fn finish_notification_tx(
    tx: &Connection,
    due: &DueNotification,
    outcome: NotificationOutcome,
    attempt: Option<&WebhookAttempt>,
) -> StoreResult<()> {
    let (endpoint_id, subscription_id, token) =
        (due.endpoint.id, due.subscription_id, due.claim_token);
    let through = i64::try_from(due.through_sequence).unwrap_or(i64::MAX);
    if let Some(attempt) = attempt {
        tx.execute(
                    "INSERT INTO webhook_attempts (endpoint_id, subscription_id, account_id, sequence, started_at, \
                     latency_us, status_code, success, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        attempt.endpoint_id,
                        attempt.subscription_id,
                        attempt.account_id,
                        i64::try_from(attempt.sequence).unwrap_or(i64::MAX),
                        micros(attempt.started_at),
                        i64::try_from(attempt.latency.as_micros()).unwrap_or(i64::MAX),
                        attempt.status_code,
                        attempt.success,
                        attempt.error,
                    ],
                )?;
    }
    let fence = "WHERE endpoint_id = ?1 AND subscription_id = ?2 AND claim_token = ?3";
    match outcome {
                NotificationOutcome::Delivered | NotificationOutcome::Skipped => tx.execute(
                    &format!(
                        "UPDATE webhook_deliveries SET notified_sequence = MAX(notified_sequence, ?4), attempts = 0, \
                         failing_since = NULL, next_attempt_at = 0, claimed_until = NULL {fence}"
                    ),
                    params![endpoint_id, subscription_id, token, through],
                )?,
                NotificationOutcome::Failed { retry_at } => tx.execute(
                    &format!(
                        "UPDATE webhook_deliveries SET attempts = attempts + 1, \
                         failing_since = COALESCE(failing_since, ?4), next_attempt_at = ?5, claimed_until = NULL {fence}"
                    ),
                    params![
                        endpoint_id,
                        subscription_id,
                        token,
                        attempt.as_ref().map_or_else(|| micros(Utc::now()), |a| micros(a.started_at)),
                        micros(retry_at)
                    ],
                )?,
                NotificationOutcome::GaveUp => tx.execute(
                    &format!(
                        "UPDATE webhook_deliveries SET given_up_sequence = MAX(given_up_sequence, ?4), attempts = 0, \
                         failing_since = NULL, next_attempt_at = 0, claimed_until = NULL {fence}"
                    ),
                    params![endpoint_id, subscription_id, token, through],
                )?,
            };
    Ok(())
}

/// Visits up to `limit` activities after `after` in sequence order, with the bytes of their
/// JSON borrowed from SQLite (no copy), and returns the retained total; both come from one
/// read transaction, so they agree.
/// Which columns [`scan_page`] reads besides the sequence, commit time and v2 body.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PageColumns {
    Body,
    /// Also the v1 event rendered at commit.
    WithV1,
}

/// One row of a page, borrowed from the statement.
struct PageRow<'a> {
    sequence: u64,
    committed_at: i64,
    body: &'a [u8],
    v1_type: Option<&'a [u8]>,
    v1: Option<&'a [u8]>,
    v1_target_at: Option<i64>,
    v1_target_len: Option<i64>,
}

fn scan_page(
    conn: &Connection,
    subscription_id: SubscriptionId,
    after: u64,
    limit: usize,
    columns: PageColumns,
    mut visit: impl FnMut(PageRow<'_>) -> StoreResult<()>,
) -> StoreResult<u64> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    in_transaction(conn, "BEGIN", |tx| {
        let total: i64 = cached_row(
            tx,
            "SELECT retained_count FROM subscriptions WHERE id = ?1",
            [subscription_id],
            |r| r.get(0),
        )
        .optional()?
        .ok_or(StoreError::NotFound("subscription"))?;
        {
            let mut stmt = tx.prepare_cached(match columns {
                PageColumns::Body => {
                    "SELECT sequence, committed_at, body FROM activity \
                     WHERE subscription_id = ?1 AND sequence > ?2 ORDER BY sequence LIMIT ?3"
                }
                PageColumns::WithV1 => {
                    "SELECT sequence, committed_at, body, v1_type, v1, v1_target_at, \
                     v1_target_len FROM activity \
                     WHERE subscription_id = ?1 AND sequence > ?2 ORDER BY sequence LIMIT ?3"
                }
            })?;
            let mut rows = stmt.query(params![subscription_id, after, limit])?;
            let corrupt = |e: rusqlite::types::FromSqlError| StoreError::Corrupt(e.to_string());
            while let Some(row) = rows.next()? {
                let (v1_type, v1, v1_target_at, v1_target_len) = match columns {
                    PageColumns::Body => (None, None, None, None),
                    PageColumns::WithV1 => (
                        row.get_ref(3)?.as_bytes_or_null().map_err(corrupt)?,
                        row.get_ref(4)?.as_bytes_or_null().map_err(corrupt)?,
                        row.get(5)?,
                        row.get(6)?,
                    ),
                };
                visit(PageRow {
                    sequence: row.get::<_, i64>(0)?.unsigned_abs(),
                    committed_at: row.get(1)?,
                    body: row.get_ref(2)?.as_bytes().map_err(corrupt)?,
                    v1_type,
                    v1,
                    v1_target_at,
                    v1_target_len,
                })?;
            }
        }
        Ok(total.unsigned_abs())
    })
}

/// Deletes up to `budget` of one subscription's oldest activity committed before `cutoff`.
///
/// Commit times are non-decreasing in sequence order within a subscription (see `commit`), so
/// the expired rows are a prefix of the stream: read the next `budget` rows after what was
/// already pruned, keep the expired prefix, and delete it by sequence range. No index on
/// commit time is needed.
fn prune_subscription_tx(
    tx: &Connection,
    subscription_id: SubscriptionId,
    cutoff: i64,
    budget: usize,
) -> StoreResult<u64> {
    let pruned_through: i64 = cached_row(
        tx,
        "SELECT pruned_through FROM subscriptions WHERE id = ?1",
        [subscription_id],
        |r| r.get(0),
    )?;
    let mut stmt = tx.prepare_cached(
        "SELECT sequence, committed_at FROM activity WHERE subscription_id = ?1 \
         AND sequence > ?2 ORDER BY sequence LIMIT ?3",
    )?;
    let mut rows = stmt.query(params![subscription_id, pruned_through, budget as i64])?;
    let mut last_expired = None;
    while let Some(row) = rows.next()? {
        let (sequence, committed_at): (i64, i64) = (row.get(0)?, row.get(1)?);
        if committed_at >= cutoff {
            break;
        }
        last_expired = Some(sequence);
    }
    let Some(last_expired) = last_expired else {
        return Ok(0);
    };
    let deleted = tx.execute(
        "DELETE FROM activity WHERE subscription_id = ?1 AND sequence > ?2 AND sequence <= ?3",
        params![subscription_id, pruned_through, last_expired],
    )?;
    tx.execute(
        "UPDATE subscriptions SET pruned_through = ?2, retained_count = retained_count - ?3 WHERE id = ?1",
        params![subscription_id, last_expired, deleted as i64],
    )?;
    Ok(deleted as u64)
}
