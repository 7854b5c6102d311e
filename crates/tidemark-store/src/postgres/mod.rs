//! [`PostgresStore`]: the store several Tidemark nodes share.
//!
//! Every node connects to one PostgreSQL database through a pool of connections. What SQLite
//! gets from its single writer, PostgreSQL gets from row locks:
//!
//! - **Sequence numbers**: a commit is one call of the `tidemark_commit` function (one round
//!   trip), which takes the subscription's row lock (`FOR NO KEY UPDATE`) before numbering the batch from
//!   `last_sequence + 1`. Commits to one subscription are thus serialized and become visible in
//!   sequence order; a reader never sees `n + 1` while `n` is still uncommitted, which a global
//!   sequence (or an identity column) would allow, skipping `n` forever.
//! - **Leases**: due subscriptions are leased with `SKIP LOCKED`, so nodes never
//!   wait for each other or lease one subscription twice; every grant increments the row's
//!   `lease_token`, and `tidemark_commit` refuses a batch carrying an older token (fencing).
//! - **Webhook claims** are conditional upserts of `webhook_deliveries` rows, re-checked under
//!   the row lock (still free, still at the position the scan saw), so two notifiers never
//!   claim one (endpoint, subscription); backfill jobs are claimed with `SKIP LOCKED` too.
//! - **Other invariants** that span rows (subscriptions per account, one default, an
//!   application's last API key) lock the owning row first.
//!
//! Reads are single statements (one snapshot each): a page and its `total` always agree.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::Value;
use tidemark_model::{
    Account, AccountId, Application, ApplicationId, CursorKey, MonitoredResource, Subscription,
    SubscriptionId, SubscriptionType,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

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

/// Connections a store keeps open unless told otherwise.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// SQLSTATE `tidemark_commit` raises for a stale lease.
const LEASE_LOST: &str = "TM001";
/// SQLSTATE `tidemark_commit` raises for an unknown subscription.
const SUBSCRIPTION_NOT_FOUND: &str = "TM002";

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    cursor_key: CursorKey,
    /// Where it is connected, without the password (for logs and Debug).
    target: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.inner.target)
            .finish()
    }
}

/// Turns driver errors into [`StoreError::Backend`] with what was being done.
pub(crate) trait PgErrorExt<T> {
    /// Maps the error, naming the operation.
    fn backend(self, doing: &str) -> StoreResult<T>;
}

impl<T> PgErrorExt<T> for Result<T, tokio_postgres::Error> {
    fn backend(self, doing: &str) -> StoreResult<T> {
        self.map_err(|error| StoreError::Backend(format!("{doing}: {}", describe(&error))))
    }
}

/// The server's message when there is one (the driver's Display says only "db error").
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        if error.code().map(|c| c.code()) == Some(SUBSCRIPTION_NOT_FOUND) {
            return StoreError::NotFound("subscription");
        }
        StoreError::Backend(describe(&error))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        StoreError::Backend(format!("connection pool: {error}"))
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`) with
    /// [`DEFAULT_POOL_SIZE`] connections and brings the schema up to date.
    ///
    /// # Errors
    /// [`StoreError::Backend`] if the URL is invalid, the server cannot be reached, or the
    /// schema cannot be migrated.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with_pool_size(url, DEFAULT_POOL_SIZE).await
    }

    /// [`PostgresStore::connect`] with `pool_size` connections.
    ///
    /// # Errors
    /// As [`PostgresStore::connect`].
    pub async fn connect_with_pool_size(url: &str, pool_size: usize) -> StoreResult<Self> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?;
        let target = describe_target(&config);
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(10)))
            .wait_timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|e| StoreError::Backend(format!("building the connection pool: {e}")))?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| StoreError::Backend(format!("connecting to {target}: {e}")))?;
        migrations::migrate(&mut client).await?;
        let cursor_key = load_or_create_cursor_key(&client).await?;
        drop(client);
        tracing::debug!(%target, "postgres store open");
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                cursor_key,
                target,
            }),
        })
    }

    /// A pooled connection.
    async fn client(&self) -> StoreResult<deadpool_postgres::Client> {
        Ok(self.inner.pool.get().await?)
    }
}

/// `url` with its database replaced by `name` (user, host, port and options kept): how tools
/// reach another database on the same server, e.g. a scratch one.
pub fn url_with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// `postgres://user@host:port/database`: where `config` points, without its password.
pub(crate) fn describe_target(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

async fn load_or_create_cursor_key(client: &impl GenericClient) -> StoreResult<CursorKey> {
    let candidate: [u8; 32] = rand::random();
    // The first node to start stores its key; everyone reads back the stored one.
    client
        .execute(
            "INSERT INTO meta (key, value) VALUES ('cursor_key', $1) ON CONFLICT (key) DO NOTHING",
            &[&&candidate[..]],
        )
        .await?;
    let row = client
        .query_one("SELECT value FROM meta WHERE key = 'cursor_key'", &[])
        .await?;
    let bytes: Vec<u8> = get(&row, 0)?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("cursor key is not 32 bytes".into()))?;
    Ok(CursorKey::new(bytes))
}

// ---- statements and rows -------------------------------------------------------------------

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

async fn query(
    client: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<Vec<Row>> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query(&statement, params).await?)
}

async fn query_opt(
    client: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<Option<Row>> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query_opt(&statement, params).await?)
}

async fn query_one(client: &impl GenericClient, sql: &str, params: Params<'_>) -> StoreResult<Row> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query_one(&statement, params).await?)
}

async fn execute(client: &impl GenericClient, sql: &str, params: Params<'_>) -> StoreResult<u64> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.execute(&statement, params).await?)
}

/// A column, with a type mismatch reported as corrupt data instead of a panic.
fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, index: usize) -> StoreResult<T> {
    row.try_get(index)
        .map_err(|e| StoreError::Corrupt(format!("column {index}: {e}")))
}

fn micros(ts: DateTime<Utc>) -> i64 {
    ts.timestamp_micros()
}

fn from_micros(value: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(value)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {value} out of range")))
}

fn time(row: &Row, index: usize) -> StoreResult<DateTime<Utc>> {
    from_micros(get(row, index)?)
}

fn time_opt(row: &Row, index: usize) -> StoreResult<Option<DateTime<Utc>>> {
    get::<Option<i64>>(row, index)?.map(from_micros).transpose()
}

fn unsigned(row: &Row, index: usize) -> StoreResult<u64> {
    let value: i64 = get(row, index)?;
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative value {value}")))
}

fn small(row: &Row, index: usize) -> StoreResult<u32> {
    let value: i64 = get(row, index)?;
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("value {value} out of range")))
}

fn json<T: serde::de::DeserializeOwned>(row: &Row, index: usize) -> StoreResult<T> {
    let text: &str = get(row, index)?;
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("column {index}: {e}")))
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn ttl_after(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
}

const APPLICATION_COLUMNS: &str = "id, name, track_activity, retention_days, \
    max_subscriptions_per_account, created, allow_private_webhook_targets";

fn application_from_row(row: &Row) -> StoreResult<Application> {
    Ok(Application {
        id: get(row, 0)?,
        name: get(row, 1)?,
        track_activity: get(row, 2)?,
        retention_days: get::<Option<i64>>(row, 3)?
            .map(|days| u32::try_from(days).unwrap_or(u32::MAX)),
        max_subscriptions_per_account: small(row, 4)?,
        created: time(row, 5)?,
        allow_private_webhook_targets: get(row, 6)?,
    })
}

const API_KEY_COLUMNS: &str = "id, application_id, hint, created";

fn api_key_from_row(row: &Row) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: get(row, 0)?,
        application_id: get(row, 1)?,
        hint: get(row, 2)?,
        created: time(row, 3)?,
    })
}

const ACCOUNT_COLUMNS: &str = "id, application_id, service, admin, config, created, modified";

fn account_from_row(row: &Row) -> StoreResult<Account> {
    Ok(Account {
        id: get(row, 0)?,
        application_id: get(row, 1)?,
        service: get(row, 2)?,
        admin: get(row, 3)?,
        config: json(row, 4)?,
        created: time(row, 5)?,
        modified: time(row, 6)?,
    })
}

const SUBSCRIPTION_COLUMNS: &str = "id, account_id, subscription_type, active, disable_reason, \
    is_default, expiry, monitored_resources, monitored_resource_api, \
    monitored_resource_object_type, last_cursor, last_cursor_updated_at, created, modified";

fn subscription_from_row(row: &Row) -> StoreResult<Subscription> {
    let type_text: &str = get(row, 2)?;
    let subscription_type = SubscriptionType::parse(type_text)
        .map_err(|e| StoreError::Corrupt(format!("subscription type: {e}")))?;
    let monitored_resources: Vec<MonitoredResource> = json(row, 7)?;
    Ok(Subscription {
        id: get(row, 0)?,
        literals: tidemark_model::SubscriptionLiterals,
        account: get(row, 1)?,
        subscription_type,
        active: get(row, 3)?,
        disable_reason: get(row, 4)?,
        default: get(row, 5)?,
        expiry: time_opt(row, 6)?,
        monitored_resources,
        monitored_resource_api: get(row, 8)?,
        monitored_resource_object_type: get(row, 9)?,
        last_cursor: get(row, 10)?,
        last_cursor_updated_at: time_opt(row, 11)?,
        created: time(row, 12)?,
        modified: time(row, 13)?,
    })
}

const WEBHOOK_COLUMNS: &str = "id, application_id, url, filter, enabled, secret, created, modified";

fn webhook_from_row(row: &Row) -> StoreResult<WebhookEndpoint> {
    let filter: Option<&str> = get(row, 3)?;
    let filter = filter
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("webhook filter: {e}")))?;
    Ok(WebhookEndpoint {
        id: get(row, 0)?,
        application_id: get(row, 1)?,
        url: get(row, 2)?,
        filter,
        enabled: get(row, 4)?,
        secret: get(row, 5)?,
        created: time(row, 6)?,
        modified: time(row, 7)?,
    })
}

const BACKFILL_COLUMNS: &str = "id, subscription_id, from_at, until_at, state, checkpoint, \
    fetched, appended, error, created, modified";

fn backfill_from_row(row: &Row) -> StoreResult<BackfillJob> {
    Ok(BackfillJob {
        id: get(row, 0)?,
        subscription_id: get(row, 1)?,
        from: time(row, 2)?,
        until: time(row, 3)?,
        state: BackfillState::parse(get(row, 4)?)?,
        checkpoint: get(row, 5)?,
        fetched: unsigned(row, 6)?,
        appended: unsigned(row, 7)?,
        error: get(row, 8)?,
        created: time(row, 9)?,
        modified: time(row, 10)?,
    })
}

// ---- statements shared by several calls ----------------------------------------------------

async fn get_application_in(c: &impl GenericClient, id: ApplicationId) -> StoreResult<Application> {
    let row = query_opt(
        c,
        &format!("SELECT {APPLICATION_COLUMNS} FROM applications WHERE id = $1"),
        &[&id],
    )
    .await?
    .ok_or(StoreError::NotFound("application"))?;
    application_from_row(&row)
}

async fn get_account_in(c: &impl GenericClient, id: AccountId) -> StoreResult<Account> {
    let row = query_opt(
        c,
        &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"),
        &[&id],
    )
    .await?
    .ok_or(StoreError::NotFound("account"))?;
    account_from_row(&row)
}

async fn get_subscription_in(
    c: &impl GenericClient,
    id: SubscriptionId,
) -> StoreResult<Subscription> {
    let row = query_opt(
        c,
        &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1"),
        &[&id],
    )
    .await?
    .ok_or(StoreError::NotFound("subscription"))?;
    subscription_from_row(&row)
}

async fn get_webhook_in(c: &impl GenericClient, id: i64) -> StoreResult<WebhookEndpoint> {
    let row = query_opt(
        c,
        &format!("SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoints WHERE id = $1"),
        &[&id],
    )
    .await?
    .ok_or(StoreError::NotFound("webhook"))?;
    webhook_from_row(&row)
}

async fn get_backfill_in(c: &impl GenericClient, id: i64) -> StoreResult<BackfillJob> {
    let row = query_opt(
        c,
        &format!("SELECT {BACKFILL_COLUMNS} FROM backfill_jobs WHERE id = $1"),
        &[&id],
    )
    .await?
    .ok_or(StoreError::NotFound("backfill job"))?;
    backfill_from_row(&row)
}

async fn list_rows<T>(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    map: fn(&Row) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    query(c, sql, params).await?.iter().map(map).collect()
}

async fn create_application_in(c: &impl GenericClient, name: &str) -> StoreResult<Application> {
    let row = query_one(
        c,
        &format!(
            "INSERT INTO applications (name, created) VALUES ($1, $2) RETURNING {APPLICATION_COLUMNS}"
        ),
        &[&name, &micros(Utc::now())],
    )
    .await?;
    application_from_row(&row)
}

async fn create_api_key_in(
    c: &impl GenericClient,
    application_id: ApplicationId,
    digest: &SecretDigest,
    hint: &str,
    signing_key: &str,
) -> StoreResult<ApiKey> {
    get_application_in(c, application_id).await?;
    let row = query_one(
        c,
        &format!(
            "INSERT INTO api_keys (application_id, digest, hint, created, signing_key) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {API_KEY_COLUMNS}"
        ),
        &[
            &application_id,
            &&digest[..],
            &hint,
            &micros(Utc::now()),
            &signing_key,
        ],
    )
    .await?;
    api_key_from_row(&row)
}

/// Creates a subscription inside the caller's transaction. The account's row is locked first,
/// so concurrent creations on one account see each other (the limit and the one-default rule
/// hold across nodes).
async fn insert_subscription_in(
    tx: &impl GenericClient,
    new: &NewSubscription,
    now: DateTime<Utc>,
) -> StoreResult<Subscription> {
    let application_id: i64 = match query_opt(
        tx,
        "SELECT application_id FROM accounts WHERE id = $1 FOR NO KEY UPDATE",
        &[&new.account_id],
    )
    .await?
    {
        Some(row) => get(&row, 0)?,
        None => return Err(StoreError::NotFound("account")),
    };
    let application = get_application_in(tx, application_id).await?;
    let counts = query_one(
        tx,
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE is_default) FROM subscriptions WHERE account_id = $1",
        &[&new.account_id],
    )
    .await?;
    let existing: i64 = get(&counts, 0)?;
    let defaults: i64 = get(&counts, 1)?;
    if existing >= i64::from(application.max_subscriptions_per_account) {
        return Err(StoreError::Conflict(format!(
            "account {} already has {existing} subscription(s); the application allows {} per account",
            new.account_id, application.max_subscriptions_per_account
        )));
    }
    let is_default = new.default.unwrap_or(defaults == 0);
    if is_default {
        execute(
            tx,
            "UPDATE subscriptions SET is_default = FALSE, modified = $2 \
             WHERE account_id = $1 AND is_default",
            &[&new.account_id, &micros(now)],
        )
        .await?;
    }
    let resources = serde_json::to_string(&new.monitored_resources)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let reason = if new.active {
        ""
    } else {
        "deactivated_by_user"
    };
    let row = query_one(
        tx,
        &format!(
            "INSERT INTO subscriptions (account_id, subscription_type, active, disable_reason, \
             is_default, monitored_resources, monitored_resource_api, monitored_resource_object_type, \
             created, modified, next_poll_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9) \
             RETURNING {SUBSCRIPTION_COLUMNS}"
        ),
        &[
            &new.account_id,
            &new.subscription_type.as_str(),
            &new.active,
            &reason,
            &is_default,
            &resources,
            &new.monitored_resource_api,
            &new.monitored_resource_object_type,
            &micros(now),
        ],
    )
    .await?;
    subscription_from_row(&row)
}

/// Appends a batch through `tidemark_commit` (see the module doc), on the caller's connection
/// or transaction.
async fn commit_in(c: &impl GenericClient, batch: CommitBatch) -> StoreResult<CommitOutcome> {
    let subscription_id = batch.subscription_id;
    let token = batch.lease.as_ref().map(|lease| lease.token);
    let mut ids = Vec::with_capacity(batch.activities.len());
    let mut times = Vec::with_capacity(batch.activities.len());
    let mut bodies = Vec::with_capacity(batch.activities.len());
    let mut v1_types = Vec::with_capacity(batch.activities.len());
    let mut v1s = Vec::with_capacity(batch.activities.len());
    let mut v1_at = Vec::with_capacity(batch.activities.len());
    let mut v1_len = Vec::with_capacity(batch.activities.len());
    for activity in &batch.activities {
        ids.push(activity.id.as_str());
        times.push(activity.timestamp_micros);
        bodies.push(activity.json.as_str());
        let v1 = activity.v1_columns();
        v1_types.push(v1.kind);
        v1s.push(v1.json);
        v1_at.push(v1.target_at);
        v1_len.push(v1.target_len);
    }
    let statement = c
        .prepare_cached(
            "SELECT appended, duplicates, last_sequence \
             FROM tidemark_commit($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .await?;
    let result = c
        .query_one(
            &statement,
            &[
                &subscription_id,
                &token,
                &ids,
                &times,
                &bodies,
                &v1_types,
                &v1s,
                &v1_at,
                &v1_len,
                &batch.checkpoint,
                &batch.watermark.map(micros),
                &micros(Utc::now()),
            ],
        )
        .await;
    let row = match result {
        Ok(row) => row,
        Err(error) if error.code().map(|c| c.code()) == Some(LEASE_LOST) => {
            return Err(StoreError::LeaseLost(subscription_id))
        }
        Err(error) => return Err(error.into()),
    };
    Ok(CommitOutcome {
        appended: usize::try_from(unsigned(&row, 0)?).unwrap_or(usize::MAX),
        duplicates: usize::try_from(unsigned(&row, 1)?).unwrap_or(usize::MAX),
        last_sequence: unsigned(&row, 2)?,
    })
}

/// Reads one page and the retained total in one statement (one snapshot), visiting each row's
/// sequence, commit time and JSON, and its v1 event as rendered at commit when `with_v1`
/// (otherwise [`StoredV1Event::Unrendered`], and those columns are not read).
async fn scan_page(
    c: &impl GenericClient,
    subscription_id: SubscriptionId,
    after: u64,
    limit: usize,
    with_v1: bool,
    mut visit: impl FnMut(u64, i64, &str, StoredV1Event) -> StoreResult<()>,
) -> StoreResult<u64> {
    // No outer ORDER BY: it would sort the whole page (a megabyte of JSON) again, though the
    // one-row nested loop already yields it in index order. `in_order` makes sure instead.
    let sql = if with_v1 {
        "SELECT s.retained_count, a.sequence, a.committed_at, a.body, \
         a.v1_type, a.v1, a.v1_target_at, a.v1_target_len FROM subscriptions s \
         LEFT JOIN LATERAL (SELECT sequence, committed_at, body, v1_type, v1, v1_target_at, \
           v1_target_len FROM activity \
           WHERE subscription_id = s.id AND sequence > $2 ORDER BY sequence LIMIT $3) a ON TRUE \
         WHERE s.id = $1"
    } else {
        "SELECT s.retained_count, a.sequence, a.committed_at, a.body FROM subscriptions s \
         LEFT JOIN LATERAL (SELECT sequence, committed_at, body FROM activity \
           WHERE subscription_id = s.id AND sequence > $2 ORDER BY sequence LIMIT $3) a ON TRUE \
         WHERE s.id = $1"
    };
    let mut rows = query(
        c,
        sql,
        &[
            &subscription_id,
            &to_i64(after),
            &i64::try_from(limit).unwrap_or(i64::MAX),
        ],
    )
    .await?;
    let first = rows.first().ok_or(StoreError::NotFound("subscription"))?;
    let total = unsigned(first, 0)?;
    in_order(&mut rows, |row| Ok((get::<Option<i64>>(row, 1)?, 0)))?;
    for row in &rows {
        let Some(sequence) = get::<Option<i64>>(row, 1)? else {
            break;
        };
        let committed_at: i64 = get(row, 2)?;
        let v1 = if with_v1 {
            StoredV1Event::from_columns(
                get::<Option<&str>>(row, 4)?,
                get::<Option<String>>(row, 5)?,
                get(row, 6)?,
                get(row, 7)?,
            )
        } else {
            StoredV1Event::Unrendered
        };
        visit(sequence.unsigned_abs(), committed_at, get(row, 3)?, v1)?;
    }
    Ok(total)
}

/// Puts rows in `key` order if they are not already (they always are with the plans
/// PostgreSQL picks for the page reads, which the SQL does not promise): checked in one pass,
/// sorted only if needed.
fn in_order(
    rows: &mut [Row],
    key: impl Fn(&Row) -> StoreResult<(Option<i64>, i64)>,
) -> StoreResult<()> {
    let keys = rows.iter().map(&key).collect::<StoreResult<Vec<_>>>()?;
    if keys.windows(2).all(|pair| pair[0] <= pair[1]) {
        return Ok(());
    }
    // Every key was read above, so none fails here.
    rows.sort_by_cached_key(|row| key(row).unwrap_or((None, 0)));
    Ok(())
}

/// Records how one claimed notification ended (see [`Store::finish_notification`]).
async fn finish_notification_in(
    tx: &impl GenericClient,
    due: &DueNotification,
    outcome: &NotificationOutcome,
    attempt: Option<&WebhookAttempt>,
) -> StoreResult<()> {
    let (endpoint_id, subscription_id, token) =
        (due.endpoint.id, due.subscription_id, due.claim_token);
    let through = to_i64(due.through_sequence);
    if let Some(attempt) = attempt {
        execute(
            tx,
            "INSERT INTO webhook_attempts (endpoint_id, subscription_id, account_id, sequence, \
             started_at, latency_us, status_code, success, error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &attempt.endpoint_id,
                &attempt.subscription_id,
                &attempt.account_id,
                &to_i64(attempt.sequence),
                &micros(attempt.started_at),
                &i64::try_from(attempt.latency.as_micros()).unwrap_or(i64::MAX),
                &attempt.status_code.map(i32::from),
                &attempt.success,
                &attempt.error,
            ],
        )
        .await?;
    }
    match outcome {
        NotificationOutcome::Delivered | NotificationOutcome::Skipped => execute(
            tx,
            "UPDATE webhook_deliveries SET notified_sequence = GREATEST(notified_sequence, $4), \
                 attempts = 0, failing_since = NULL, next_attempt_at = 0, claimed_until = NULL \
                 WHERE endpoint_id = $1 AND subscription_id = $2 AND claim_token = $3",
            &[&endpoint_id, &subscription_id, &token, &through],
        )
        .await?,
        NotificationOutcome::Failed { retry_at } => {
            let started = attempt.map_or_else(|| micros(Utc::now()), |a| micros(a.started_at));
            execute(
                tx,
                "UPDATE webhook_deliveries SET attempts = attempts + 1, \
                 failing_since = COALESCE(failing_since, $4), next_attempt_at = $5, \
                 claimed_until = NULL \
                 WHERE endpoint_id = $1 AND subscription_id = $2 AND claim_token = $3",
                &[
                    &endpoint_id,
                    &subscription_id,
                    &token,
                    &started,
                    &micros(*retry_at),
                ],
            )
            .await?
        }
        NotificationOutcome::GaveUp => execute(
            tx,
            "UPDATE webhook_deliveries SET given_up_sequence = GREATEST(given_up_sequence, $4), \
                 attempts = 0, failing_since = NULL, next_attempt_at = 0, claimed_until = NULL \
                 WHERE endpoint_id = $1 AND subscription_id = $2 AND claim_token = $3",
            &[&endpoint_id, &subscription_id, &token, &through],
        )
        .await?,
    };
    Ok(())
}

const DESTINATION_COLUMNS: &str =
    "id, application_id, kind, target, filter, payload, batch_size, enabled, created, modified";

fn destination_from_row(row: &Row) -> StoreResult<Destination> {
    let filter: Option<&str> = get(row, 4)?;
    let filter = filter
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("destination filter: {e}")))?;
    Ok(Destination {
        id: get(row, 0)?,
        application_id: get(row, 1)?,
        kind: get(row, 2)?,
        target: json(row, 3)?,
        filter,
        payload: get(row, 5)?,
        batch_size: small(row, 6)?,
        enabled: get(row, 7)?,
        created: time(row, 8)?,
        modified: time(row, 9)?,
    })
}

async fn get_destination_in(c: &impl GenericClient, id: i64) -> StoreResult<Destination> {
    let row = query_opt(
        c,
        &format!("SELECT {DESTINATION_COLUMNS} FROM destinations WHERE id = $1"),
        &[&id],
    )
    .await?
    .ok_or(StoreError::NotFound("destination"))?;
    destination_from_row(&row)
}

fn json_text(value: &Value) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Logs one publish attempt.
async fn insert_destination_attempt_in(
    tx: &impl GenericClient,
    attempt: &DestinationAttempt,
) -> StoreResult<()> {
    execute(
        tx,
        "INSERT INTO destination_attempts (destination_id, subscription_id, account_id, \
         first_sequence, last_sequence, published, started_at, latency_us, success, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &attempt.destination_id,
            &attempt.subscription_id,
            &attempt.account_id,
            &to_i64(attempt.first_sequence),
            &to_i64(attempt.last_sequence),
            &i64::from(attempt.published),
            &micros(attempt.started_at),
            &i64::try_from(attempt.latency.as_micros()).unwrap_or(i64::MAX),
            &attempt.success,
            &attempt.error,
        ],
    )
    .await?;
    Ok(())
}

/// Records how one claimed publication ended (see [`Store::finish_publication`]).
async fn finish_publication_in(
    tx: &impl GenericClient,
    due: &DuePublication,
    outcome: PublicationOutcome,
    attempt: Option<&DestinationAttempt>,
) -> StoreResult<()> {
    let (destination_id, subscription_id, token) =
        (due.destination.id, due.subscription_id, due.claim_token);
    if let Some(attempt) = attempt {
        insert_destination_attempt_in(tx, attempt).await?;
    }
    match outcome {
        PublicationOutcome::Published { through } => {
            execute(
                tx,
                // SET expressions see the row as it was: the failure count is cleared only
                // when the position moves, and a pending message only once it is reached.
                "UPDATE destination_positions SET \
                 published_sequence = GREATEST(published_sequence, $4), \
                 attempts = CASE WHEN $4 > published_sequence THEN 0 ELSE attempts END, \
                 failing_since = CASE WHEN $4 > published_sequence THEN NULL ELSE failing_since END, \
                 pending_through = CASE WHEN pending_through <= $4 THEN NULL ELSE pending_through END, \
                 next_attempt_at = 0, claimed_until = NULL \
                 WHERE destination_id = $1 AND subscription_id = $2 AND claim_token = $3",
                &[&destination_id, &subscription_id, &token, &to_i64(through)],
            )
            .await?
        }
        PublicationOutcome::Failed { retry_at } => {
            let started = attempt.map_or_else(|| micros(Utc::now()), |a| micros(a.started_at));
            execute(
                tx,
                "UPDATE destination_positions SET attempts = attempts + 1, \
                 failing_since = COALESCE(failing_since, $4), next_attempt_at = $5, \
                 claimed_until = NULL \
                 WHERE destination_id = $1 AND subscription_id = $2 AND claim_token = $3",
                &[
                    &destination_id,
                    &subscription_id,
                    &token,
                    &started,
                    &micros(retry_at),
                ],
            )
            .await?
        }
    };
    Ok(())
}

/// Deletes up to `budget` of one subscription's oldest activity committed before `cutoff`
/// (the expired rows are a prefix of the stream: commit times never decrease within one). The
/// subscription's row is taken with `SKIP LOCKED`: a subscription being committed to right now
/// is left for the next round rather than waited for.
async fn prune_subscription_in(
    tx: &impl GenericClient,
    subscription_id: SubscriptionId,
    cutoff: i64,
    budget: usize,
) -> StoreResult<u64> {
    let Some(row) = query_opt(
        tx,
        "SELECT pruned_through FROM subscriptions WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED",
        &[&subscription_id],
    )
    .await?
    else {
        return Ok(0);
    };
    let pruned_through: i64 = get(&row, 0)?;
    let last_expired: Option<i64> = get(
        &query_one(
            tx,
            "SELECT MAX(sequence) FROM (SELECT sequence, committed_at FROM activity \
             WHERE subscription_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3) head \
             WHERE committed_at < $4",
            &[
                &subscription_id,
                &pruned_through,
                &i64::try_from(budget).unwrap_or(i64::MAX),
                &cutoff,
            ],
        )
        .await?,
        0,
    )?;
    let Some(last_expired) = last_expired else {
        return Ok(0);
    };
    let deleted = execute(
        tx,
        "DELETE FROM activity WHERE subscription_id = $1 AND sequence > $2 AND sequence <= $3",
        &[&subscription_id, &pruned_through, &last_expired],
    )
    .await?;
    execute(
        tx,
        "UPDATE subscriptions SET pruned_through = $2, retained_count = retained_count - $3 \
         WHERE id = $1",
        &[&subscription_id, &last_expired, &to_i64(deleted)],
    )
    .await?;
    Ok(deleted)
}

#[async_trait]
impl Store for PostgresStore {
    fn cursor_key(&self) -> &CursorKey {
        &self.inner.cursor_key
    }

    // ---- applications ------------------------------------------------------------------

    async fn create_application(&self, name: &str) -> StoreResult<Application> {
        create_application_in(&self.client().await?, name).await
    }

    async fn create_application_with_key(
        &self,
        name: &str,
        digest: SecretDigest,
        hint: &str,
        signing_key: &str,
    ) -> StoreResult<(Application, ApiKey)> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let application = create_application_in(&tx, name).await?;
        let key = create_api_key_in(&tx, application.id, &digest, hint, signing_key).await?;
        tx.commit().await?;
        Ok((application, key))
    }

    async fn list_applications(&self) -> StoreResult<Vec<Application>> {
        list_rows(
            &self.client().await?,
            &format!("SELECT {APPLICATION_COLUMNS} FROM applications ORDER BY id"),
            &[],
            application_from_row,
        )
        .await
    }

    async fn get_application(&self, id: ApplicationId) -> StoreResult<Application> {
        get_application_in(&self.client().await?, id).await
    }

    async fn update_application(&self, application: &Application) -> StoreResult<Application> {
        let row = query_opt(
            &self.client().await?,
            &format!(
                "UPDATE applications SET name = $2, track_activity = $3, retention_days = $4, \
                 max_subscriptions_per_account = $5, allow_private_webhook_targets = $6 \
                 WHERE id = $1 RETURNING {APPLICATION_COLUMNS}"
            ),
            &[
                &application.id,
                &application.name,
                &application.track_activity,
                &application.retention_days.map(i64::from),
                &i64::from(application.max_subscriptions_per_account),
                &application.allow_private_webhook_targets,
            ],
        )
        .await?
        .ok_or(StoreError::NotFound("application"))?;
        application_from_row(&row)
    }

    // ---- API keys ----------------------------------------------------------------------

    async fn create_api_key(
        &self,
        application_id: ApplicationId,
        digest: SecretDigest,
        hint: &str,
        signing_key: &str,
    ) -> StoreResult<ApiKey> {
        create_api_key_in(
            &self.client().await?,
            application_id,
            &digest,
            hint,
            signing_key,
        )
        .await
    }

    async fn signing_key(&self, application_id: ApplicationId) -> StoreResult<Option<String>> {
        let row = query_opt(
            &self.client().await?,
            "SELECT signing_key FROM api_keys WHERE application_id = $1 \
             AND signing_key IS NOT NULL ORDER BY created, id LIMIT 1",
            &[&application_id],
        )
        .await?;
        row.map(|row| get(&row, 0)).transpose()
    }

    async fn list_api_keys(&self, application_id: ApplicationId) -> StoreResult<Vec<ApiKey>> {
        list_rows(
            &self.client().await?,
            &format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE application_id = $1 ORDER BY created, id"
            ),
            &[&application_id],
            api_key_from_row,
        )
        .await
    }

    async fn delete_api_key(&self, application_id: ApplicationId, key_id: i64) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The application's row is the lock that keeps two deletions from each leaving the
        // other's key as "not the last one".
        if query_opt(
            &tx,
            "SELECT id FROM applications WHERE id = $1 FOR NO KEY UPDATE",
            &[&application_id],
        )
        .await?
        .is_none()
        {
            return Err(StoreError::NotFound("API key"));
        }
        let row = query_one(
            &tx,
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE id = $2) FROM api_keys WHERE application_id = $1",
            &[&application_id, &key_id],
        )
        .await?;
        let (keys, owned): (i64, i64) = (get(&row, 0)?, get(&row, 1)?);
        if owned == 0 {
            return Err(StoreError::NotFound("API key"));
        }
        if keys <= 1 {
            return Err(StoreError::Conflict(
                "this is the application's last API key; create another one before deleting it"
                    .into(),
            ));
        }
        execute(&tx, "DELETE FROM api_keys WHERE id = $1", &[&key_id]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_api_key(&self, digest: SecretDigest) -> StoreResult<Option<ApiKey>> {
        let row = query_opt(
            &self.client().await?,
            &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE digest = $1"),
            &[&&digest[..]],
        )
        .await?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    // ---- accounts ----------------------------------------------------------------------

    async fn create_account(&self, account: NewAccount) -> StoreResult<Account> {
        let config = serde_json::to_string(&account.config)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let application = get_application_in(&tx, account.application_id).await?;
        let now = Utc::now();
        let row = query_one(
            &tx,
            &format!(
                "INSERT INTO accounts (application_id, service, admin, config, created, modified) \
                 VALUES ($1, $2, $3, $4, $5, $5) RETURNING {ACCOUNT_COLUMNS}"
            ),
            &[
                &account.application_id,
                &account.service,
                &account.admin,
                &config,
                &micros(now),
            ],
        )
        .await?;
        let created = account_from_row(&row)?;
        if let Some(digest) = account.token_digest {
            execute(
                &tx,
                "INSERT INTO account_tokens (digest, account_id, created) VALUES ($1, $2, $3)",
                &[&&digest[..], &created.id, &micros(now)],
            )
            .await?;
        }
        if application.track_activity {
            let default_subscription = NewSubscription {
                default: Some(true),
                ..NewSubscription::changes(created.id)
            };
            insert_subscription_in(&tx, &default_subscription, now).await?;
        }
        tx.commit().await?;
        Ok(created)
    }

    async fn get_account(&self, id: AccountId) -> StoreResult<Account> {
        get_account_in(&self.client().await?, id).await
    }

    async fn find_account_by_token(&self, digest: SecretDigest) -> StoreResult<Option<Account>> {
        let row = query_opt(
            &self.client().await?,
            &format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = \
                 (SELECT account_id FROM account_tokens WHERE digest = $1)"
            ),
            &[&&digest[..]],
        )
        .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn update_account(&self, id: AccountId, patch: AccountPatch) -> StoreResult<Account> {
        let config = patch
            .config
            .map(|config| {
                serde_json::to_string(&config).map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .transpose()?;
        let row = query_opt(
            &self.client().await?,
            &format!(
                "UPDATE accounts SET admin = COALESCE($2, admin), config = COALESCE($3, config), \
                 modified = $4 WHERE id = $1 RETURNING {ACCOUNT_COLUMNS}"
            ),
            &[&id, &patch.admin, &config, &micros(Utc::now())],
        )
        .await?
        .ok_or(StoreError::NotFound("account"))?;
        account_from_row(&row)
    }

    async fn list_accounts(&self, application_id: ApplicationId) -> StoreResult<Vec<Account>> {
        list_rows(
            &self.client().await?,
            &format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE application_id = $1 ORDER BY id"
            ),
            &[&application_id],
            account_from_row,
        )
        .await
    }

    async fn delete_account(&self, id: AccountId) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        execute(
            &tx,
            "DELETE FROM activity WHERE subscription_id IN \
             (SELECT id FROM subscriptions WHERE account_id = $1)",
            &[&id],
        )
        .await?;
        // Subscriptions and checkpoints go with the account (ON DELETE CASCADE).
        if execute(&tx, "DELETE FROM accounts WHERE id = $1", &[&id]).await? == 0 {
            return Err(StoreError::NotFound("account"));
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- subscriptions -----------------------------------------------------------------

    async fn create_subscription(
        &self,
        subscription: NewSubscription,
    ) -> StoreResult<Subscription> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let created = insert_subscription_in(&tx, &subscription, Utc::now()).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn get_subscription(&self, id: SubscriptionId) -> StoreResult<Subscription> {
        get_subscription_in(&self.client().await?, id).await
    }

    async fn list_active_subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        list_rows(
            &self.client().await?,
            &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE active ORDER BY id"),
            &[],
            subscription_from_row,
        )
        .await
    }

    async fn list_subscriptions(&self, account_id: AccountId) -> StoreResult<Vec<Subscription>> {
        list_rows(
            &self.client().await?,
            &format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE account_id = $1 ORDER BY id"
            ),
            &[&account_id],
            subscription_from_row,
        )
        .await
    }

    async fn set_subscription_active(
        &self,
        id: SubscriptionId,
        active: bool,
        disable_reason: &str,
    ) -> StoreResult<Subscription> {
        let reason = if active { "" } else { disable_reason };
        let row = query_opt(
            &self.client().await?,
            &format!(
                "UPDATE subscriptions SET active = $2, disable_reason = $3, modified = $4, \
                 next_poll_at = CASE WHEN $2 AND NOT active THEN $4::BIGINT ELSE next_poll_at END, \
                 consecutive_failures = CASE WHEN $2 THEN 0 ELSE consecutive_failures END \
                 WHERE id = $1 RETURNING {SUBSCRIPTION_COLUMNS}"
            ),
            &[&id, &active, &reason, &micros(Utc::now())],
        )
        .await?
        .ok_or(StoreError::NotFound("subscription"))?;
        subscription_from_row(&row)
    }

    async fn set_default_subscription(&self, id: SubscriptionId) -> StoreResult<Subscription> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let subscription = get_subscription_in(&tx, id).await?;
        // The account's row serializes default changes (and creations) on one account.
        execute(
            &tx,
            "SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE",
            &[&subscription.account],
        )
        .await?;
        let now = micros(Utc::now());
        execute(
            &tx,
            "UPDATE subscriptions SET is_default = FALSE, modified = $3 \
             WHERE account_id = $1 AND is_default AND id != $2",
            &[&subscription.account, &id, &now],
        )
        .await?;
        execute(
            &tx,
            "UPDATE subscriptions SET is_default = TRUE, modified = $2 WHERE id = $1 AND NOT is_default",
            &[&id, &now],
        )
        .await?;
        let updated = get_subscription_in(&tx, id).await?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn delete_subscription(&self, id: SubscriptionId) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        execute(
            &tx,
            "DELETE FROM activity WHERE subscription_id = $1",
            &[&id],
        )
        .await?;
        if execute(&tx, "DELETE FROM subscriptions WHERE id = $1", &[&id]).await? == 0 {
            return Err(StoreError::NotFound("subscription"));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_last_cursor(
        &self,
        id: SubscriptionId,
        cursor: &str,
        position: u64,
    ) -> StoreResult<()> {
        let client = self.client().await?;
        let changed = execute(
            &client,
            "UPDATE subscriptions SET last_cursor = $2, last_cursor_updated_at = $3, \
             last_cursor_position = $4 WHERE id = $1 AND (last_cursor IS NULL \
             OR last_cursor_position < $4 OR (last_cursor_position = $4 AND last_cursor != $2))",
            &[&id, &cursor, &micros(Utc::now()), &to_i64(position)],
        )
        .await?;
        if changed == 0 {
            // Either unchanged (fine) or missing (an error).
            get_subscription_in(&client, id).await?;
        }
        Ok(())
    }

    // ---- the stream --------------------------------------------------------------------

    async fn commit(&self, batch: CommitBatch) -> StoreResult<CommitOutcome> {
        // One statement: atomic by itself, no BEGIN/COMMIT round trips.
        commit_in(&self.client().await?, batch).await
    }

    async fn read_page(
        &self,
        subscription_id: SubscriptionId,
        after: u64,
        limit: usize,
    ) -> StoreResult<ActivityPage> {
        let mut activities = Vec::with_capacity(limit.min(1000));
        let total = scan_page(
            &self.client().await?,
            subscription_id,
            after,
            limit,
            true,
            |sequence, committed_at, json, v1| {
                activities.push(StoredActivity {
                    sequence,
                    committed_at: from_micros(committed_at)?,
                    json: json.to_owned(),
                    v1,
                });
                Ok(())
            },
        )
        .await?;
        Ok(ActivityPage { activities, total })
    }

    async fn read_page_json(
        &self,
        subscription_id: SubscriptionId,
        after: u64,
        limit: usize,
        mut out: Vec<u8>,
    ) -> StoreResult<JsonPage> {
        let mut count = 0;
        let mut last_sequence = None;
        let total = scan_page(
            &self.client().await?,
            subscription_id,
            after,
            limit,
            false,
            |sequence, _, json, _| {
                if count > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(json.as_bytes());
                count += 1;
                last_sequence = Some(sequence);
                Ok(())
            },
        )
        .await?;
        Ok(JsonPage {
            out,
            count,
            last_sequence,
            total,
        })
    }

    async fn create_backfill(
        &self,
        subscription_id: SubscriptionId,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<BackfillJob> {
        let client = self.client().await?;
        get_subscription_in(&client, subscription_id).await?;
        let row = query_one(
            &client,
            &format!(
                "INSERT INTO backfill_jobs (subscription_id, from_at, until_at, created, modified) \
                 VALUES ($1, $2, $3, $4, $4) RETURNING {BACKFILL_COLUMNS}"
            ),
            &[
                &subscription_id,
                &micros(from),
                &micros(until),
                &micros(Utc::now()),
            ],
        )
        .await
        .map_err(|error| match error {
            // Deleted between the check and the insert.
            StoreError::Backend(text) if text.contains("23503") => {
                StoreError::NotFound("subscription")
            }
            other => other,
        })?;
        backfill_from_row(&row)
    }

    async fn get_backfill(&self, id: i64) -> StoreResult<BackfillJob> {
        get_backfill_in(&self.client().await?, id).await
    }

    async fn claim_backfill(
        &self,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> StoreResult<Option<BackfillClaim>> {
        let until = ttl_after(now, ttl);
        let row = query_opt(
            &self.client().await?,
            &format!(
                "UPDATE backfill_jobs SET state = 'running', claimed_until = $2, \
                 claim_token = claim_token + 1, modified = $1 \
                 WHERE id = (SELECT id FROM backfill_jobs WHERE state IN ('pending', 'running') \
                   AND retry_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1) \
                   ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 RETURNING claim_token, {BACKFILL_COLUMNS}"
            ),
            &[&micros(now), &micros(until)],
        )
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let claim_token: i64 = get(&row, 0)?;
        // The job's columns follow the token.
        let job = BackfillJob {
            id: get(&row, 1)?,
            subscription_id: get(&row, 2)?,
            from: time(&row, 3)?,
            until: time(&row, 4)?,
            state: BackfillState::parse(get(&row, 5)?)?,
            checkpoint: get(&row, 6)?,
            fetched: unsigned(&row, 7)?,
            appended: unsigned(&row, 8)?,
            error: get(&row, 9)?,
            created: time(&row, 10)?,
            modified: time(&row, 11)?,
        };
        Ok(Some(BackfillClaim { job, claim_token }))
    }

    async fn commit_backfill(
        &self,
        step: BackfillStep,
        ttl: Duration,
    ) -> StoreResult<CommitOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = query_opt(
            &tx,
            "SELECT subscription_id, claim_token, state FROM backfill_jobs WHERE id = $1 FOR UPDATE",
            &[&step.job_id],
        )
        .await?
        .ok_or(StoreError::NotFound("backfill job"))?;
        let subscription_id: i64 = get(&row, 0)?;
        let token: i64 = get(&row, 1)?;
        let state = BackfillState::parse(get(&row, 2)?)?;
        if token != step.claim_token || state != BackfillState::Running {
            return Err(StoreError::LeaseLost(subscription_id));
        }
        let fetched = step.activities.len() as i64;
        let outcome = commit_in(
            &tx,
            CommitBatch {
                subscription_id,
                activities: step.activities,
                checkpoint: None,
                lease: None,
                watermark: None,
            },
        )
        .await?;
        let now = Utc::now();
        execute(
            &tx,
            "UPDATE backfill_jobs SET checkpoint = $2, fetched = fetched + $3, \
             appended = appended + $4, state = CASE WHEN $5 THEN 'done' ELSE state END, \
             claimed_until = CASE WHEN $5 THEN NULL ELSE $6::BIGINT END, error = NULL, modified = $7 \
             WHERE id = $1",
            &[
                &step.job_id,
                &step.checkpoint,
                &fetched,
                &(outcome.appended as i64),
                &step.done,
                &micros(ttl_after(now, ttl)),
                &micros(now),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn release_backfill(
        &self,
        job_id: i64,
        claim_token: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        execute(
            &self.client().await?,
            "UPDATE backfill_jobs SET claimed_until = NULL, error = $3, \
             state = CASE WHEN $4::BIGINT IS NULL THEN 'failed' ELSE state END, \
             retry_at = COALESCE($4, retry_at), modified = $5 \
             WHERE id = $1 AND claim_token = $2 AND state = 'running'",
            &[
                &job_id,
                &claim_token,
                &error,
                &retry_at.map(micros),
                &micros(Utc::now()),
            ],
        )
        .await?;
        Ok(())
    }

    async fn read_range_json(
        &self,
        subscription_id: SubscriptionId,
        range: TimeRange,
        after: Option<RangePosition>,
        limit: usize,
        mut out: Vec<u8>,
    ) -> StoreResult<RangePage> {
        // Keyset on (occurred_at, sequence) along `activity_by_time`: from the range's start, or
        // strictly after the last position read.
        let (after_time, after_sequence) = match after {
            Some(position) => (position.occurred_at_micros, to_i64(position.sequence)),
            None => (range.from_micros, 0),
        };
        let rows = query(
            &self.client().await?,
            "SELECT s.retained_count, s.watermark, a.occurred_at, a.sequence, a.body \
             FROM subscriptions s LEFT JOIN LATERAL (SELECT occurred_at, sequence, body \
               FROM activity WHERE subscription_id = s.id AND occurred_at IS NOT NULL \
               AND occurred_at >= $2 AND ($3::BIGINT IS NULL OR occurred_at < $3) \
               AND (occurred_at, sequence) > ($4, $5) \
               ORDER BY occurred_at, sequence LIMIT $6) a ON TRUE \
             WHERE s.id = $1",
            &[
                &subscription_id,
                &range.from_micros,
                &range.until_micros,
                &after_time,
                &after_sequence,
                &i64::try_from(limit).unwrap_or(i64::MAX),
            ],
        )
        .await?;
        let first = rows.first().ok_or(StoreError::NotFound("subscription"))?;
        let total = unsigned(first, 0)?;
        let watermark = time_opt(first, 1)?;
        let mut rows = rows;
        in_order(&mut rows, |row| {
            Ok((
                get::<Option<i64>>(row, 2)?,
                get::<Option<i64>>(row, 3)?.unwrap_or(0),
            ))
        })?;
        let mut count = 0;
        let mut last = None;
        for row in &rows {
            let Some(occurred_at) = get::<Option<i64>>(row, 2)? else {
                break;
            };
            if count > 0 {
                out.push(b',');
            }
            out.extend_from_slice(get::<&str>(row, 4)?.as_bytes());
            count += 1;
            last = Some(RangePosition {
                occurred_at_micros: occurred_at,
                sequence: unsigned(row, 3)?,
            });
        }
        Ok(RangePage {
            out,
            count,
            last,
            total,
            watermark,
        })
    }

    async fn activity_total(&self, subscription_id: SubscriptionId) -> StoreResult<u64> {
        let row = query_opt(
            &self.client().await?,
            "SELECT retained_count FROM subscriptions WHERE id = $1",
            &[&subscription_id],
        )
        .await?
        .ok_or(StoreError::NotFound("subscription"))?;
        unsigned(&row, 0)
    }

    async fn latest_sequence(&self, subscription_id: SubscriptionId) -> StoreResult<u64> {
        let row = query_opt(
            &self.client().await?,
            "SELECT last_sequence FROM subscriptions WHERE id = $1",
            &[&subscription_id],
        )
        .await?
        .ok_or(StoreError::NotFound("subscription"))?;
        unsigned(&row, 0)
    }

    async fn prune_expired(&self, now: DateTime<Utc>, max_rows: usize) -> StoreResult<u64> {
        let mut client = self.client().await?;
        let candidates: Vec<(SubscriptionId, i64)> = query(
            &client,
            "SELECT s.id, ap.retention_days FROM subscriptions s \
             JOIN accounts ac ON ac.id = s.account_id \
             JOIN applications ap ON ap.id = ac.application_id \
             WHERE ap.retention_days IS NOT NULL AND s.retained_count > 0 ORDER BY s.id",
            &[],
        )
        .await?
        .iter()
        .map(|row| Ok((get(row, 0)?, get(row, 1)?)))
        .collect::<StoreResult<_>>()?;
        let mut deleted_total = 0u64;
        for (subscription_id, retention_days) in candidates {
            let budget =
                max_rows.saturating_sub(usize::try_from(deleted_total).unwrap_or(max_rows));
            if budget == 0 {
                break;
            }
            let cutoff = micros(now).saturating_sub(retention_days.saturating_mul(86_400_000_000));
            // One short transaction per subscription: a commit waits for it at most briefly.
            let tx = client.transaction().await?;
            let deleted = prune_subscription_in(&tx, subscription_id, cutoff, budget).await?;
            tx.commit().await?;
            deleted_total += deleted;
        }
        if deleted_total > 0 {
            tracing::debug!(deleted = deleted_total, "pruned expired activity");
        }
        Ok(deleted_total)
    }

    // ---- webhooks ----------------------------------------------------------------------

    async fn create_webhook(&self, endpoint: NewWebhookEndpoint) -> StoreResult<WebhookEndpoint> {
        let filter = endpoint.filter.as_ref().map(Value::to_string);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        get_application_in(&tx, endpoint.application_id).await?;
        let now = micros(Utc::now());
        let row = query_one(
            &tx,
            &format!(
                "INSERT INTO webhook_endpoints (application_id, url, filter, enabled, secret, created, modified) \
                 VALUES ($1, $2, $3, TRUE, $4, $5, $5) RETURNING {WEBHOOK_COLUMNS}"
            ),
            &[
                &endpoint.application_id,
                &endpoint.url,
                &filter,
                &endpoint.secret,
                &now,
            ],
        )
        .await?;
        let created = webhook_from_row(&row)?;
        // Told about activity committed from now on.
        execute(
            &tx,
            "INSERT INTO webhook_deliveries (endpoint_id, subscription_id, notified_sequence) \
             SELECT $1, s.id, s.last_sequence FROM subscriptions s \
             JOIN accounts a ON a.id = s.account_id WHERE a.application_id = $2",
            &[&created.id, &endpoint.application_id],
        )
        .await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn list_webhooks(
        &self,
        application_id: ApplicationId,
    ) -> StoreResult<Vec<WebhookEndpoint>> {
        list_rows(
            &self.client().await?,
            &format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoints WHERE application_id = $1 ORDER BY id"
            ),
            &[&application_id],
            webhook_from_row,
        )
        .await
    }

    async fn get_webhook(&self, id: i64) -> StoreResult<WebhookEndpoint> {
        get_webhook_in(&self.client().await?, id).await
    }

    async fn update_webhook(&self, id: i64, patch: WebhookPatch) -> StoreResult<WebhookEndpoint> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let current = webhook_from_row(
            &query_opt(
                &tx,
                &format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoints WHERE id = $1 FOR UPDATE"
                ),
                &[&id],
            )
            .await?
            .ok_or(StoreError::NotFound("webhook"))?,
        )?;
        let url = patch.url.unwrap_or(current.url);
        let filter = patch
            .filter
            .unwrap_or(current.filter)
            .map(|f| f.to_string());
        let enabled = patch.enabled.unwrap_or(current.enabled);
        let row = query_one(
            &tx,
            &format!(
                "UPDATE webhook_endpoints SET url = $2, filter = $3, enabled = $4, modified = $5 \
                 WHERE id = $1 RETURNING {WEBHOOK_COLUMNS}"
            ),
            &[&id, &url, &filter, &enabled, &micros(Utc::now())],
        )
        .await?;
        let updated = webhook_from_row(&row)?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn delete_webhook(&self, id: i64) -> StoreResult<()> {
        if execute(
            &self.client().await?,
            "DELETE FROM webhook_endpoints WHERE id = $1",
            &[&id],
        )
        .await?
            == 0
        {
            return Err(StoreError::NotFound("webhook"));
        }
        Ok(())
    }

    async fn claim_due_notifications(
        &self,
        now: DateTime<Utc>,
        ttl: Duration,
        limit: usize,
        per_endpoint: usize,
    ) -> StoreResult<Vec<DueNotification>> {
        let claimed_until = micros(ttl_after(now, ttl));
        let now = micros(now);
        let mut client = self.client().await?;
        // What is due, from one snapshot; each endpoint gets at most `per_endpoint` claims,
        // less those it holds already.
        let candidates = query(
            &client,
            "WITH held AS (SELECT endpoint_id, COUNT(*) AS n FROM webhook_deliveries \
             WHERE claimed_until > $1 GROUP BY endpoint_id), \
             due AS (SELECT e.id AS endpoint_id, s.id AS subscription_id, s.account_id, s.last_sequence, \
             GREATEST(COALESCE(d.notified_sequence, 0), COALESCE(d.given_up_sequence, 0)) AS after_sequence, \
             COALESCE(d.attempts, 0) AS attempts, d.failing_since, \
             COALESCE(d.next_attempt_at, 0) AS next_attempt_at, \
             ROW_NUMBER() OVER (PARTITION BY e.id ORDER BY COALESCE(d.next_attempt_at, 0), s.id) AS place, \
             COALESCE(h.n, 0) AS held \
             FROM webhook_endpoints e \
             JOIN accounts a ON a.application_id = e.application_id \
             JOIN subscriptions s ON s.account_id = a.id \
             LEFT JOIN webhook_deliveries d ON d.endpoint_id = e.id AND d.subscription_id = s.id \
             LEFT JOIN held h ON h.endpoint_id = e.id \
             WHERE e.enabled \
             AND s.last_sequence > GREATEST(COALESCE(d.notified_sequence, 0), COALESCE(d.given_up_sequence, 0)) \
             AND COALESCE(d.next_attempt_at, 0) <= $1 \
             AND (d.claimed_until IS NULL OR d.claimed_until <= $1)) \
             SELECT endpoint_id, subscription_id, account_id, last_sequence, after_sequence, attempts, failing_since \
             FROM due WHERE held + place <= $3 \
             ORDER BY next_attempt_at, place LIMIT $2",
            &[
                &now,
                &i64::try_from(limit).unwrap_or(i64::MAX),
                &i64::try_from(per_endpoint).unwrap_or(i64::MAX),
            ],
        )
        .await?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut wanted = Vec::with_capacity(candidates.len());
        for row in &candidates {
            let (endpoint_id, subscription_id): (i64, i64) = (get(row, 0)?, get(row, 1)?);
            let account_id: i64 = get(row, 2)?;
            let (last, after, attempts): (i64, i64, i64) =
                (get(row, 3)?, get(row, 4)?, get(row, 5)?);
            let failing_since: Option<i64> = get(row, 6)?;
            wanted.push((
                endpoint_id,
                subscription_id,
                account_id,
                last,
                after,
                attempts,
                failing_since,
            ));
        }
        // Rows are locked in one order (endpoint, subscription) by every notifier: two claims
        // never wait on each other in a cycle.
        wanted.sort_by_key(|w| (w.0, w.1));
        let tx = client.transaction().await?;
        // Claimed only if, as of now (under the row's lock), nobody holds it and it is still
        // at the position and attempt count the snapshot saw; otherwise it is skipped.
        let endpoints_col: Vec<i64> = wanted.iter().map(|w| w.0).collect();
        let subscriptions_col: Vec<i64> = wanted.iter().map(|w| w.1).collect();
        let lasts_col: Vec<i64> = wanted.iter().map(|w| w.3).collect();
        let afters_col: Vec<i64> = wanted.iter().map(|w| w.4).collect();
        let attempts_col: Vec<i64> = wanted.iter().map(|w| w.5).collect();
        let claimed = query(
            &tx,
            "INSERT INTO webhook_deliveries AS d (endpoint_id, subscription_id, attempt_sequence, \
               claimed_until, claim_token, notified_sequence, attempts) \
             SELECT w.endpoint_id, w.subscription_id, w.last, $6, 1, w.after, w.attempts \
               FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[]) \
                 WITH ORDINALITY AS w(endpoint_id, subscription_id, last, after, attempts, ord) \
               ORDER BY w.ord \
             ON CONFLICT (endpoint_id, subscription_id) DO UPDATE SET \
               attempt_sequence = excluded.attempt_sequence, claimed_until = excluded.claimed_until, \
               claim_token = d.claim_token + 1 \
             WHERE (d.claimed_until IS NULL OR d.claimed_until <= $7) \
               AND GREATEST(d.notified_sequence, d.given_up_sequence) = excluded.notified_sequence \
               AND d.attempts = excluded.attempts \
             RETURNING d.endpoint_id, d.subscription_id, d.claim_token",
            &[
                &endpoints_col,
                &subscriptions_col,
                &lasts_col,
                &afters_col,
                &attempts_col,
                &claimed_until,
                &now,
            ],
        )
        .await?;
        let mut tokens = HashMap::with_capacity(claimed.len());
        for row in &claimed {
            let key: (i64, i64) = (get(row, 0)?, get(row, 1)?);
            tokens.insert(key, get::<i64>(row, 2)?);
        }
        let mut endpoints: HashMap<i64, WebhookEndpoint> = HashMap::new();
        let mut due = Vec::with_capacity(tokens.len());
        // Back in the scan's order (most overdue first).
        for row in &candidates {
            let key: (i64, i64) = (get(row, 0)?, get(row, 1)?);
            let Some(&claim_token) = tokens.get(&key) else {
                continue;
            };
            let endpoint = match endpoints.get(&key.0) {
                Some(endpoint) => endpoint.clone(),
                None => {
                    let endpoint = get_webhook_in(&tx, key.0).await?;
                    endpoints.insert(key.0, endpoint.clone());
                    endpoint
                }
            };
            due.push(DueNotification {
                endpoint,
                subscription_id: key.1,
                account_id: get(row, 2)?,
                after_sequence: unsigned(row, 4)?,
                through_sequence: unsigned(row, 3)?,
                attempts: small(row, 5)?,
                failing_since: time_opt(row, 6)?,
                claim_token,
            });
        }
        tx.commit().await?;
        Ok(due)
    }

    async fn finish_notification(
        &self,
        due: &DueNotification,
        outcome: NotificationOutcome,
        attempt: Option<WebhookAttempt>,
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        finish_notification_in(&tx, due, &outcome, attempt.as_ref()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn finish_notifications(
        &self,
        mut finished: Vec<(DueNotification, NotificationOutcome, Option<WebhookAttempt>)>,
    ) -> StoreResult<()> {
        // The same lock order as claims.
        finished.sort_by_key(|(due, _, _)| (due.endpoint.id, due.subscription_id));
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Sent together: the driver pipelines statements issued at once on one connection, so
        // a batch costs about one round trip, not one per notification.
        futures::future::try_join_all(finished.iter().map(|(due, outcome, attempt)| {
            finish_notification_in(&tx, due, outcome, attempt.as_ref())
        }))
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_webhook_attempts(
        &self,
        endpoint_id: i64,
        query_: AttemptQuery,
    ) -> StoreResult<Vec<WebhookAttempt>> {
        list_rows(
            &self.client().await?,
            "SELECT id, endpoint_id, subscription_id, account_id, sequence, started_at, latency_us, \
             status_code, success, error FROM webhook_attempts WHERE endpoint_id = $1 \
             AND ($2::BOOLEAN IS NULL OR success = $2) AND ($3::BIGINT IS NULL OR started_at >= $3) \
             AND ($4::BIGINT IS NULL OR started_at < $4) AND ($5::BIGINT IS NULL OR id < $5) \
             ORDER BY id DESC LIMIT $6",
            &[
                &endpoint_id,
                &query_.success,
                &query_.since.map(micros),
                &query_.until.map(micros),
                &query_.before_id,
                &i64::try_from(query_.limit).unwrap_or(i64::MAX),
            ],
            |row| {
                Ok(WebhookAttempt {
                    id: get(row, 0)?,
                    endpoint_id: get(row, 1)?,
                    subscription_id: get(row, 2)?,
                    account_id: get(row, 3)?,
                    sequence: unsigned(row, 4)?,
                    started_at: time(row, 5)?,
                    latency: Duration::from_micros(unsigned(row, 6)?),
                    status_code: get::<Option<i32>>(row, 7)?
                        .map(|code| u16::try_from(code).unwrap_or(0)),
                    success: get(row, 8)?,
                    error: get(row, 9)?,
                })
            },
        )
        .await
    }

    async fn recover_webhook(&self, endpoint_id: i64, since: DateTime<Utc>) -> StoreResult<u64> {
        let client = self.client().await?;
        get_webhook_in(&client, endpoint_id).await?;
        execute(
            &client,
            "UPDATE webhook_deliveries d SET given_up_sequence = 0, attempts = 0, \
             failing_since = NULL, next_attempt_at = 0 WHERE d.endpoint_id = $1 \
             AND d.subscription_id IN (SELECT subscription_id FROM webhook_attempts \
               WHERE endpoint_id = $1 AND NOT success AND started_at >= $2) \
             AND d.notified_sequence < (SELECT last_sequence FROM subscriptions s \
               WHERE s.id = d.subscription_id)",
            &[&endpoint_id, &micros(since)],
        )
        .await
    }

    // ---- broker destinations -----------------------------------------------------------

    async fn create_destination(&self, destination: NewDestination) -> StoreResult<Destination> {
        let target = json_text(&destination.target)?;
        let filter = destination.filter.as_ref().map(json_text).transpose()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        get_application_in(&tx, destination.application_id).await?;
        let row = query_one(
            &tx,
            &format!(
                "INSERT INTO destinations (application_id, kind, target, filter, payload, \
                 batch_size, enabled, created, modified) VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7, $7) \
                 RETURNING {DESTINATION_COLUMNS}"
            ),
            &[
                &destination.application_id,
                &destination.kind,
                &target,
                &filter,
                &destination.payload,
                &i64::from(destination.batch_size),
                &micros(Utc::now()),
            ],
        )
        .await?;
        let created = destination_from_row(&row)?;
        // Told about activity committed from now on.
        execute(
            &tx,
            "INSERT INTO destination_positions (destination_id, subscription_id, published_sequence, claim_token) \
             SELECT $1, s.id, s.last_sequence, $3 FROM subscriptions s \
             JOIN accounts a ON a.id = s.account_id WHERE a.application_id = $2",
            &[&created.id, &destination.application_id, &first_claim_token()],
        )
        .await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn list_destinations(
        &self,
        application_id: ApplicationId,
    ) -> StoreResult<Vec<Destination>> {
        list_rows(
            &self.client().await?,
            &format!(
                "SELECT {DESTINATION_COLUMNS} FROM destinations WHERE application_id = $1 ORDER BY id"
            ),
            &[&application_id],
            destination_from_row,
        )
        .await
    }

    async fn get_destination(&self, id: i64) -> StoreResult<Destination> {
        get_destination_in(&self.client().await?, id).await
    }

    async fn update_destination(
        &self,
        id: i64,
        patch: DestinationPatch,
    ) -> StoreResult<Destination> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let current = destination_from_row(
            &query_opt(
                &tx,
                &format!("SELECT {DESTINATION_COLUMNS} FROM destinations WHERE id = $1 FOR UPDATE"),
                &[&id],
            )
            .await?
            .ok_or(StoreError::NotFound("destination"))?,
        )?;
        let target = json_text(&patch.target.unwrap_or(current.target))?;
        let filter = patch
            .filter
            .unwrap_or(current.filter)
            .as_ref()
            .map(json_text)
            .transpose()?;
        let row = query_one(
            &tx,
            &format!(
                "UPDATE destinations SET target = $2, filter = $3, payload = $4, batch_size = $5, \
                 enabled = $6, modified = $7 WHERE id = $1 RETURNING {DESTINATION_COLUMNS}"
            ),
            &[
                &id,
                &target,
                &filter,
                &patch.payload.unwrap_or(current.payload),
                &i64::from(patch.batch_size.unwrap_or(current.batch_size)),
                &patch.enabled.unwrap_or(current.enabled),
                &micros(Utc::now()),
            ],
        )
        .await?;
        let updated = destination_from_row(&row)?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn delete_destination(&self, id: i64) -> StoreResult<()> {
        if execute(
            &self.client().await?,
            "DELETE FROM destinations WHERE id = $1",
            &[&id],
        )
        .await?
            == 0
        {
            return Err(StoreError::NotFound("destination"));
        }
        Ok(())
    }

    async fn claim_due_publications(
        &self,
        now: DateTime<Utc>,
        ttl: Duration,
        limit: usize,
    ) -> StoreResult<Vec<DuePublication>> {
        let claimed_until = micros(ttl_after(now, ttl));
        let now = micros(now);
        let mut client = self.client().await?;
        let candidates = query(
            &client,
            "SELECT d.id, s.id, s.account_id, s.last_sequence, \
             COALESCE(p.published_sequence, 0), COALESCE(p.attempts, 0), p.failing_since \
             FROM destinations d \
             JOIN accounts a ON a.application_id = d.application_id \
             JOIN subscriptions s ON s.account_id = a.id \
             LEFT JOIN destination_positions p ON p.destination_id = d.id AND p.subscription_id = s.id \
             WHERE d.enabled AND s.last_sequence > COALESCE(p.published_sequence, 0) \
             AND COALESCE(p.next_attempt_at, 0) <= $1 \
             AND (p.claimed_until IS NULL OR p.claimed_until <= $1) \
             ORDER BY COALESCE(p.next_attempt_at, 0), s.id, d.id LIMIT $2",
            &[&now, &i64::try_from(limit).unwrap_or(i64::MAX)],
        )
        .await?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        // One lock order, (destination, subscription), for every publisher.
        let mut wanted: Vec<(i64, i64, i64, i64)> = candidates
            .iter()
            .map(|row| Ok((get(row, 0)?, get(row, 1)?, get(row, 4)?, get(row, 5)?)))
            .collect::<StoreResult<_>>()?;
        wanted.sort_unstable();
        let tx = client.transaction().await?;
        // Claimed only if, under the row's lock, nobody holds it and it is still at the
        // position and attempt count the scan saw.
        let claimed = query(
            &tx,
            "INSERT INTO destination_positions AS p (destination_id, subscription_id, \
               published_sequence, attempts, claimed_until, claim_token) \
             SELECT w.destination_id, w.subscription_id, w.after, w.attempts, $5, $7 \
               FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[]) \
                 WITH ORDINALITY AS w(destination_id, subscription_id, after, attempts, ord) \
               ORDER BY w.ord \
             ON CONFLICT (destination_id, subscription_id) DO UPDATE SET \
               claimed_until = excluded.claimed_until, claim_token = p.claim_token + 1 \
             WHERE (p.claimed_until IS NULL OR p.claimed_until <= $6) \
               AND p.published_sequence = excluded.published_sequence \
               AND p.attempts = excluded.attempts \
             RETURNING p.destination_id, p.subscription_id, p.claim_token, p.pending_through",
            &[
                &wanted.iter().map(|w| w.0).collect::<Vec<i64>>(),
                &wanted.iter().map(|w| w.1).collect::<Vec<i64>>(),
                &wanted.iter().map(|w| w.2).collect::<Vec<i64>>(),
                &wanted.iter().map(|w| w.3).collect::<Vec<i64>>(),
                &claimed_until,
                &now,
                &first_claim_token(),
            ],
        )
        .await?;
        let mut tokens = HashMap::with_capacity(claimed.len());
        for row in &claimed {
            let key: (i64, i64) = (get(row, 0)?, get(row, 1)?);
            let pending: Option<i64> = get(row, 3)?;
            tokens.insert(key, (get::<i64>(row, 2)?, pending.map(i64::unsigned_abs)));
        }
        let mut destinations: HashMap<i64, Destination> = HashMap::new();
        let mut due = Vec::with_capacity(tokens.len());
        for row in &candidates {
            let key: (i64, i64) = (get(row, 0)?, get(row, 1)?);
            let Some(&(claim_token, pending_through)) = tokens.get(&key) else {
                continue;
            };
            let destination = match destinations.get(&key.0) {
                Some(destination) => destination.clone(),
                None => {
                    let destination = get_destination_in(&tx, key.0).await?;
                    destinations.insert(key.0, destination.clone());
                    destination
                }
            };
            due.push(DuePublication {
                destination,
                subscription_id: key.1,
                account_id: get(row, 2)?,
                after_sequence: unsigned(row, 4)?,
                through_sequence: unsigned(row, 3)?,
                pending_through,
                attempts: small(row, 5)?,
                failing_since: time_opt(row, 6)?,
                claim_token,
            });
        }
        tx.commit().await?;
        Ok(due)
    }

    async fn finish_publication(
        &self,
        due: &DuePublication,
        outcome: PublicationOutcome,
        attempt: Option<DestinationAttempt>,
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        finish_publication_in(&tx, due, outcome, attempt.as_ref()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn advance_publications(
        &self,
        advances: Vec<PublicationAdvance>,
    ) -> StoreResult<Vec<bool>> {
        if advances.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut taken = Vec::with_capacity(advances.len());
        for item in &advances {
            // SET expressions see the row as it was (see finish_publication_in).
            let changed = execute(
                &tx,
                "UPDATE destination_positions SET \
                 published_sequence = GREATEST(published_sequence, $4), \
                 attempts = CASE WHEN $4 > published_sequence THEN 0 ELSE attempts END, \
                 failing_since = CASE WHEN $4 > published_sequence THEN NULL ELSE failing_since END, \
                 pending_through = $5, claimed_until = $6 \
                 WHERE destination_id = $1 AND subscription_id = $2 AND claim_token = $3 \
                 AND EXISTS (SELECT 1 FROM destinations d WHERE d.id = $1 AND d.enabled AND d.modified = $7)",
                &[
                    &item.destination_id,
                    &item.subscription_id,
                    &item.claim_token,
                    &to_i64(item.through),
                    &item.pending_through.map(to_i64),
                    &micros(item.claimed_until),
                    &micros(item.destination_modified),
                ],
            )
            .await?;
            if changed == 1 {
                if let Some(attempt) = &item.attempt {
                    insert_destination_attempt_in(&tx, attempt).await?;
                }
            }
            taken.push(changed == 1);
        }
        tx.commit().await?;
        Ok(taken)
    }

    async fn list_destination_attempts(
        &self,
        destination_id: i64,
        query_: AttemptQuery,
    ) -> StoreResult<Vec<DestinationAttempt>> {
        list_rows(
            &self.client().await?,
            "SELECT id, destination_id, subscription_id, account_id, first_sequence, last_sequence, \
             published, started_at, latency_us, success, error FROM destination_attempts \
             WHERE destination_id = $1 AND ($2::BOOLEAN IS NULL OR success = $2) \
             AND ($3::BIGINT IS NULL OR started_at >= $3) AND ($4::BIGINT IS NULL OR started_at < $4) \
             AND ($5::BIGINT IS NULL OR id < $5) ORDER BY id DESC LIMIT $6",
            &[
                &destination_id,
                &query_.success,
                &query_.since.map(micros),
                &query_.until.map(micros),
                &query_.before_id,
                &i64::try_from(query_.limit).unwrap_or(i64::MAX),
            ],
            |row| {
                Ok(DestinationAttempt {
                    id: get(row, 0)?,
                    destination_id: get(row, 1)?,
                    subscription_id: get(row, 2)?,
                    account_id: get(row, 3)?,
                    first_sequence: unsigned(row, 4)?,
                    last_sequence: unsigned(row, 5)?,
                    published: small(row, 6)?,
                    started_at: time(row, 7)?,
                    latency: Duration::from_micros(unsigned(row, 8)?),
                    success: get(row, 9)?,
                    error: get(row, 10)?,
                })
            },
        )
        .await
    }

    // ---- checkpoints, leases and scheduling --------------------------------------------

    async fn load_checkpoint(
        &self,
        subscription_id: SubscriptionId,
    ) -> StoreResult<Option<String>> {
        let row = query_opt(
            &self.client().await?,
            "SELECT state FROM checkpoints WHERE subscription_id = $1",
            &[&subscription_id],
        )
        .await?;
        row.map(|row| get(&row, 0)).transpose()
    }

    async fn acquire_due(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        ttl: Duration,
        limit: usize,
    ) -> StoreResult<Vec<Lease>> {
        let expires_at = ttl_after(now, ttl);
        // SKIP LOCKED: a row another node is leasing (or committing to) right now is passed
        // over, never waited for and never leased twice.
        let rows = query(
            &self.client().await?,
            "UPDATE subscriptions SET lease_holder = $3, lease_token = lease_token + 1, \
             lease_expires_at = $4 WHERE id IN (SELECT id FROM subscriptions \
               WHERE active AND next_poll_at <= $1 \
               AND (lease_expires_at IS NULL OR lease_expires_at <= $1) \
               ORDER BY next_poll_at LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED) \
             RETURNING id, lease_token, wake_counter, next_poll_at",
            &[
                &micros(now),
                &i64::try_from(limit).unwrap_or(i64::MAX),
                &holder,
                &micros(expires_at),
            ],
        )
        .await?;
        let mut leases = Vec::with_capacity(rows.len());
        let mut order = Vec::with_capacity(rows.len());
        for row in &rows {
            order.push(get::<i64>(row, 3)?);
            leases.push(Lease {
                subscription_id: get(row, 0)?,
                holder: holder.to_owned(),
                token: get(row, 1)?,
                expires_at,
                wake_seen: get(row, 2)?,
            });
        }
        // Most overdue first, as the scan picked them (UPDATE ... RETURNING keeps no order).
        let mut paired: Vec<(i64, Lease)> = order.into_iter().zip(leases).collect();
        paired.sort_by_key(|(due, lease)| (*due, lease.subscription_id));
        Ok(paired.into_iter().map(|(_, lease)| lease).collect())
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> StoreResult<Lease> {
        let mut renewed = lease.clone();
        renewed.expires_at = ttl_after(Utc::now(), ttl);
        let changed = execute(
            &self.client().await?,
            "UPDATE subscriptions SET lease_expires_at = $3 WHERE id = $1 AND lease_token = $2",
            &[
                &renewed.subscription_id,
                &renewed.token,
                &micros(renewed.expires_at),
            ],
        )
        .await?;
        if changed == 0 {
            return Err(StoreError::LeaseLost(lease.subscription_id));
        }
        Ok(renewed)
    }

    async fn release_lease(&self, lease: &Lease, result: PollResult) -> StoreResult<()> {
        let client = self.client().await?;
        let now = micros(Utc::now());
        match result {
            PollResult::Succeeded { next_poll_at } => {
                execute(
                    &client,
                    "UPDATE subscriptions SET lease_holder = NULL, lease_expires_at = NULL, \
                     consecutive_failures = 0, last_error = NULL, \
                     next_poll_at = CASE WHEN wake_counter != $3 THEN $4::BIGINT ELSE $5::BIGINT END \
                     WHERE id = $1 AND lease_token = $2",
                    &[
                        &lease.subscription_id,
                        &lease.token,
                        &lease.wake_seen,
                        &now,
                        &micros(next_poll_at),
                    ],
                )
                .await?
            }
            PollResult::Failed { error, retry_at } => {
                execute(
                    &client,
                    "UPDATE subscriptions SET lease_holder = NULL, lease_expires_at = NULL, \
                     consecutive_failures = consecutive_failures + 1, last_error = $3, \
                     next_poll_at = $4 WHERE id = $1 AND lease_token = $2",
                    &[
                        &lease.subscription_id,
                        &lease.token,
                        &error,
                        &micros(retry_at),
                    ],
                )
                .await?
            }
            PollResult::Disabled { reason, error } => {
                execute(
                    &client,
                    "UPDATE subscriptions SET lease_holder = NULL, lease_expires_at = NULL, \
                     active = FALSE, disable_reason = $3, last_error = $4, modified = $5, \
                     consecutive_failures = consecutive_failures + 1 \
                     WHERE id = $1 AND lease_token = $2",
                    &[&lease.subscription_id, &lease.token, &reason, &error, &now],
                )
                .await?
            }
        };
        Ok(())
    }

    async fn request_poll(&self, subscription_id: SubscriptionId) -> StoreResult<()> {
        // A wake never cuts short a back-off (an upstream's Retry-After is honoured).
        let changed = execute(
            &self.client().await?,
            "UPDATE subscriptions SET wake_counter = wake_counter + 1, \
             next_poll_at = CASE WHEN consecutive_failures = 0 THEN LEAST(next_poll_at, $2) \
             ELSE next_poll_at END WHERE id = $1",
            &[&subscription_id, &micros(Utc::now())],
        )
        .await?;
        if changed == 0 {
            return Err(StoreError::NotFound("subscription"));
        }
        Ok(())
    }

    async fn poll_state(&self, subscription_id: SubscriptionId) -> StoreResult<PollState> {
        let row = query_opt(
            &self.client().await?,
            "SELECT next_poll_at, consecutive_failures, last_error, \
             CASE WHEN lease_expires_at > $2 THEN lease_holder END \
             FROM subscriptions WHERE id = $1",
            &[&subscription_id, &micros(Utc::now())],
        )
        .await?
        .ok_or(StoreError::NotFound("subscription"))?;
        Ok(PollState {
            next_poll_at: time(&row, 0)?,
            consecutive_failures: small(&row, 1)?,
            last_error: get(&row, 2)?,
            lease_holder: get(&row, 3)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::url_with_database;

    #[test]
    fn test_url_with_database_replaces_only_the_database() {
        assert_eq!(
            url_with_database("postgres://u@127.0.0.1:5/postgres", "t1"),
            "postgres://u@127.0.0.1:5/t1"
        );
        assert_eq!(
            url_with_database("postgres://u:p@h/db?sslmode=disable", "t2"),
            "postgres://u:p@h/t2?sslmode=disable"
        );
        assert_eq!(url_with_database("postgres://h", "t3"), "postgres://h/t3");
    }
}
