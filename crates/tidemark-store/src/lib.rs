//! The durable store behind every Tidemark guarantee.
//!
//! This crate owns persistence: applications, accounts, subscriptions, each subscription's
//! ordered activity stream, connector checkpoints, and the leases that keep two pollers off one
//! subscription. It does not poll, render HTTP or talk to upstreams.
//!
//! # Implementations
//! - [`SqliteStore`]: embedded SQLite in WAL mode, the default. One writer thread commits;
//!   another copies the log into the database file (checkpoints), so a checkpoint's syncs never
//!   hold up a commit. It also keeps each activity's v1 event as rendered at commit
//!   ([`StoredV1Event`]).
//! - [`PostgresStore`]: PostgreSQL, shared by several Tidemark nodes (row locks for sequence
//!   numbers, `SKIP LOCKED` leases and claims).
//!
//! [`copy_sqlite_to_postgres`] (module [`migrate`]) moves a whole SQLite store into an empty
//! PostgreSQL one, ids, sequence numbers and cursor key unchanged.
//!
//! Every implementation runs the same conformance suite ([`store_test_suite!`], behind the
//! `testsuite` feature), which proves the guarantees of DESIGN.md section 2:
//!
//! - **Sequence numbers** are assigned per subscription at commit, under that subscription's
//!   lock, so a reader following cursors never sees `n + 1` before `n` and never skips.
//! - **De-duplication**: `(subscription, activity id)` is unique; re-delivered activity is
//!   absorbed and gets no sequence number.
//! - **Atomic commits**: activity and the connector's new checkpoint are written in one
//!   transaction ([`Store::commit`]); a failed commit leaves both unchanged.
//! - **Leases with fencing**: a poller holds an expiring [`Lease`]; each grant increments the
//!   subscription's lease token, and a commit carrying an older token is refused, so a poller
//!   that stalled past its lease cannot overwrite a newer checkpoint.
//! - **Retention**: activity committed more than `retention_days` ago is pruned in bounded
//!   batches; `total` counts what is retained.
//! - **Outboxes**: webhook endpoints and broker destinations keep their own position in each
//!   subscription's stream, derived from committed activity (nothing to lose between commit
//!   and send), claimed one (endpoint or destination, subscription) at a time with fencing, and
//!   moved only forward once the receiver or broker acknowledged.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tidemark_model::{
    Account, AccountId, Activity, Application, ApplicationId, CursorKey, MonitoredResource,
    Subscription, SubscriptionId, SubscriptionType, V1Event, V1EventType,
};

pub mod migrate;
#[cfg(feature = "testsuite")]
pub mod pgtest;
mod postgres;
mod sqlite;
#[cfg(feature = "testsuite")]
pub mod testsuite;

pub use migrate::{copy_sqlite_to_postgres, CopyProgress, CopyReport};
pub use postgres::{
    url_with_database as postgres_url_with_database, PostgresStore,
    DEFAULT_POOL_SIZE as POSTGRES_DEFAULT_POOL_SIZE,
};
pub use sqlite::SqliteStore;
/// A parsed PostgreSQL connection URL (the driver's own parser).
pub use tokio_postgres::Config as PostgresConfig;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named object does not exist (or was deleted).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request conflicts with the current state (a limit, a uniqueness rule).
    #[error("{0}")]
    Conflict(String),
    /// The caller's lease is no longer the current one: another poller holds a newer lease.
    #[error("lease lost: subscription {0} was leased again by another poller")]
    LeaseLost(SubscriptionId),
    /// Stored data could not be read back (a bug or a damaged database).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The database itself failed (I/O, locking, SQL).
    #[error("database error: {0}")]
    Backend(String),
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// The SHA-256 digest of a secret (API key, bearer token). Secrets are high-entropy random
/// strings, so a fast digest is safe; the secrets themselves are never stored.
pub type SecretDigest = [u8; 32];

/// An API key of an application (the key itself is shown once, at creation, and not stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Numeric id.
    pub id: i64,
    /// The application the key belongs to.
    pub application_id: ApplicationId,
    /// The key's last characters, to tell keys apart.
    pub hint: String,
    /// When the key was created (the oldest active key signs webhooks).
    pub created: DateTime<Utc>,
}

/// Changes to an account; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AccountPatch {
    /// New `admin` flag.
    pub admin: Option<bool>,
    /// New connection config (replaces the old one as a whole).
    pub config: Option<Value>,
}

/// A new account, as connected.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Owning application.
    pub application_id: ApplicationId,
    /// Service name.
    pub service: String,
    /// Whether the account is an org-wide admin account.
    pub admin: bool,
    /// Connection config (credentials included).
    pub config: Value,
    /// Digest of the account's bearer token, if one was minted.
    pub token_digest: Option<SecretDigest>,
}

/// A new subscription, validated by the caller.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    /// The account to watch.
    pub account_id: AccountId,
    /// What the subscription does.
    pub subscription_type: SubscriptionType,
    /// Resources watched (empty: the connector's default).
    pub monitored_resources: Vec<MonitoredResource>,
    /// Whether monitoring starts active.
    pub active: bool,
    /// `Some(true)`: become the default; `Some(false)`: never; `None`: default if the account
    /// has no default subscription yet.
    pub default: Option<bool>,
    /// API category of the monitored resources, as the connector names it.
    pub monitored_resource_api: Option<String>,
    /// Object type of the monitored resources, as the connector names it.
    pub monitored_resource_object_type: Option<String>,
}

impl NewSubscription {
    /// An active `changes` subscription of the account, with the connector's default
    /// resources, that becomes the default if the account has none (seed 000's "empty body").
    pub fn changes(account_id: AccountId) -> Self {
        NewSubscription {
            account_id,
            subscription_type: SubscriptionType::Changes,
            monitored_resources: Vec::new(),
            active: true,
            default: None,
            monitored_resource_api: None,
            monitored_resource_object_type: None,
        }
    }
}

/// A grant to poll one subscription until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The leased subscription.
    pub subscription_id: SubscriptionId,
    /// Who holds it (a node id).
    pub holder: String,
    /// Fencing token: strictly increases with every grant on this subscription.
    pub token: i64,
    /// When the lease lapses unless renewed.
    pub expires_at: DateTime<Utc>,
    /// The subscription's wake counter when the lease was granted (a poll requested after that
    /// is honoured when the lease is released).
    pub wake_seen: i64,
}

/// An activity serialized for storage: its de-duplication key, its time and its JSON.
///
/// Encoding is separate from committing so that callers can do this CPU work in parallel with
/// the previous commit (the engine does), keeping the store's write lock for I/O only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedActivity {
    /// The connector-provided activity id (unique per subscription).
    pub id: String,
    /// The activity timestamp in microseconds since the epoch, if it has one.
    pub timestamp_micros: Option<i64>,
    /// The v2 activity object as JSON.
    pub json: String,
    /// The activity's v1 event, `None` when v1 has no form for it. Rendered here, once, so
    /// that what serves the v1 form (broker messages) need not parse `json` again; a store
    /// may keep it or not.
    pub v1: Option<RenderedV1>,
}

/// An activity's v1 event ([`V1Event`]'s serialization) as rendered at commit. Its `metadata`
/// is the activity's target, most of its size and already in the v2 text, so it is kept as
/// where it lies there rather than a second time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedV1 {
    /// The v1 type.
    pub kind: V1EventType,
    /// The event's JSON; when `target` is set, only up to its `"metadata":`.
    pub json: String,
    /// Where the target's JSON lies in the v2 text: the event is `json`, that text and `}`.
    pub target: Option<std::ops::Range<usize>>,
}

impl RenderedV1 {
    /// Renders `activity`'s v1 event, its v2 text being `body`; `None` when v1 has no form.
    fn of(activity: &Activity, body: &str) -> StoreResult<Option<Self>> {
        let corrupt =
            |e: serde_json::Error| StoreError::Corrupt(format!("activity {}: {e}", activity.id));
        let Some((kind, mut json)) = V1Event::head_json(activity).map_err(corrupt)? else {
            return Ok(None);
        };
        let target = match &activity.target {
            None => {
                json.push_str("null}");
                None
            }
            Some(target) => match target_span(body) {
                Some(span) => Some(span),
                None => {
                    // Not where the v2 serialization puts it: kept a second time.
                    json.push_str(&serde_json::to_string(target).map_err(corrupt)?);
                    json.push('}');
                    None
                }
            },
        };
        Ok(Some(RenderedV1 { kind, json, target }))
    }

    /// Appends the whole event to `out`, the activity's v2 text being `body`; `false` (and
    /// `out` as it was) when the target is not where it was recorded.
    pub fn write(&self, body: &str, out: &mut Vec<u8>) -> bool {
        let target = match &self.target {
            Some(range) => match body.get(range.clone()) {
                Some(text) => Some(text),
                None => return false,
            },
            None => None,
        };
        out.extend_from_slice(self.json.as_bytes());
        if let Some(text) = target {
            out.extend_from_slice(text.as_bytes());
            out.push(b'}');
        }
        true
    }
}

/// Where the target's JSON lies in an activity's v2 serialization `body`.
///
/// The first `,"target":` in it is the key itself: only plain values (the id and names)
/// come before that key, and no JSON string holds `,"` (a quote in one is escaped). The value
/// there is scanned, not parsed into a tree, to find its end.
fn target_span(body: &str) -> Option<std::ops::Range<usize>> {
    const KEY: &str = ",\"target\":";
    let at = body.find(KEY)? + KEY.len();
    let mut values = serde_json::Deserializer::from_str(&body[at..]);
    let value: &serde_json::value::RawValue = serde::Deserialize::deserialize(&mut values).ok()?;
    let start = (value.get().as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    Some(start..start + value.get().len())
}

impl EncodedActivity {
    /// Serializes one activity.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if the activity cannot be serialized (it always can today; the
    /// error keeps a future non-serializable field from panicking).
    pub fn encode(activity: &Activity) -> StoreResult<Self> {
        let json = serde_json::to_string(activity)
            .map_err(|e| StoreError::Corrupt(format!("activity {}: {e}", activity.id)))?;
        let v1 = RenderedV1::of(activity, &json)?;
        Ok(EncodedActivity {
            id: activity.id.clone(),
            timestamp_micros: activity.timestamp.map(|t| t.timestamp_micros()),
            json,
            v1,
        })
    }

    /// The v1 event as a store's `v1_type`, `v1`, `v1_target_at` and `v1_target_len` columns
    /// keep it (SQLite migration 9, PostgreSQL migration 4): `v1` is the JSON `null` when v1
    /// has no form; [`StoredV1Event::from_columns`] reads them back.
    pub fn v1_columns(&self) -> V1Columns<'_> {
        let Some(event) = &self.v1 else {
            return V1Columns {
                kind: None,
                json: "null",
                target_at: None,
                target_len: None,
            };
        };
        let target = event.target.as_ref();
        V1Columns {
            kind: Some(event.kind.as_str()),
            json: &event.json,
            target_at: target.and_then(|range| i64::try_from(range.start).ok()),
            target_len: target.and_then(|range| i64::try_from(range.len()).ok()),
        }
    }

    /// Serializes a list of activities, keeping their order.
    ///
    /// # Errors
    /// As [`EncodedActivity::encode`].
    pub fn encode_all(activities: &[Activity]) -> StoreResult<Vec<Self>> {
        activities.iter().map(Self::encode).collect()
    }
}

/// An activity's v1 event as stored ([`EncodedActivity::v1_columns`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V1Columns<'a> {
    /// `v1_type`: the v1 type's name, `None` when v1 has no form.
    pub kind: Option<&'static str>,
    /// `v1`: the event's JSON (up to its `"metadata":` when the target is a span), or `null`.
    pub json: &'a str,
    /// `v1_target_at`: where the target starts in the v2 text, if it is kept as a span.
    pub target_at: Option<i64>,
    /// `v1_target_len`: its length.
    pub target_len: Option<i64>,
}

/// One commit: activity from a poll, and the checkpoint after it.
#[derive(Debug, Clone)]
pub struct CommitBatch {
    /// The subscription appended to.
    pub subscription_id: SubscriptionId,
    /// Activity in the order it should enter the stream.
    pub activities: Vec<EncodedActivity>,
    /// The connector's checkpoint after `activities`; `None` leaves the checkpoint unchanged.
    pub checkpoint: Option<String>,
    /// The poller's lease; when given, the commit is refused unless it is still current.
    pub lease: Option<Lease>,
    /// The connector's watermark with this checkpoint: the stream is complete before it. The
    /// stored watermark only moves forward (an older one is ignored).
    pub watermark: Option<DateTime<Utc>>,
}

impl CommitBatch {
    /// A batch appending `activities` with no checkpoint change and no lease.
    ///
    /// # Errors
    /// As [`EncodedActivity::encode`].
    pub fn new(subscription_id: SubscriptionId, activities: &[Activity]) -> StoreResult<Self> {
        Ok(CommitBatch {
            subscription_id,
            activities: EncodedActivity::encode_all(activities)?,
            checkpoint: None,
            lease: None,
            watermark: None,
        })
    }
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitOutcome {
    /// Activities that entered the stream.
    pub appended: usize,
    /// Activities absorbed as re-deliveries of ones already in the stream.
    pub duplicates: usize,
    /// The subscription's highest sequence number after the commit.
    pub last_sequence: u64,
}

/// One activity as stored: its place in the stream and its JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredActivity {
    /// Position in the subscription's stream (1, 2, 3, ... with no gaps at commit).
    pub sequence: u64,
    /// When Tidemark committed it.
    pub committed_at: DateTime<Utc>,
    /// The v2 activity object, serialized (ready to splice into a response).
    pub json: String,
    /// Its v1 event as rendered when it was committed, if the store kept that.
    pub v1: StoredV1Event,
}

/// A stored activity's v1 event, as rendered at commit ([`EncodedActivity::v1`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StoredV1Event {
    /// Not kept (a row committed before the store kept it): render it from the v2 JSON.
    #[default]
    Unrendered,
    /// v1 has no form for this activity.
    NoForm,
    /// The v1 event.
    Rendered(RenderedV1),
}

impl StoredV1Event {
    /// What a store kept in its `v1_type`, `v1`, `v1_target_at` and `v1_target_len` columns
    /// (see SQLite migration 9, PostgreSQL migration 4): `v1` NULL is a row from before; the
    /// JSON `null` is an activity with no v1 form. A type the store does not know, or a target
    /// span that is not one, is treated as not kept, so the event is rendered afresh.
    pub fn from_columns(
        v1_type: Option<&str>,
        v1: Option<String>,
        target_at: Option<i64>,
        target_len: Option<i64>,
    ) -> Self {
        let target = match (target_at, target_len) {
            (None, None) => None,
            (Some(at), Some(len)) => match (usize::try_from(at), usize::try_from(len)) {
                (Ok(at), Ok(len)) => Some(at..at.saturating_add(len)),
                _ => return StoredV1Event::Unrendered,
            },
            _ => return StoredV1Event::Unrendered,
        };
        match (v1_type, v1) {
            (_, None) => StoredV1Event::Unrendered,
            (None, Some(json)) if json == "null" && target.is_none() => StoredV1Event::NoForm,
            (None, Some(_)) => StoredV1Event::Unrendered,
            (Some(name), Some(json)) => match V1EventType::from_name(name) {
                Some(kind) => StoredV1Event::Rendered(RenderedV1 { kind, json, target }),
                None => StoredV1Event::Unrendered,
            },
        }
    }
}

impl StoredActivity {
    /// Parses the stored JSON back into an [`Activity`].
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if the stored text is not an activity.
    pub fn activity(&self) -> StoreResult<Activity> {
        serde_json::from_str(&self.json)
            .map_err(|e| StoreError::Corrupt(format!("activity {}: {e}", self.sequence)))
    }
}

/// One page of a subscription's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityPage {
    /// The activities, in sequence order.
    pub activities: Vec<StoredActivity>,
    /// Activities currently retained for the subscription (`total`).
    pub total: u64,
}

/// A page of a subscription's stream as JSON bytes (see [`Store::read_page_json`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPage {
    /// The caller's buffer with the page's activity objects appended, comma-separated.
    pub out: Vec<u8>,
    /// Activities appended.
    pub count: usize,
    /// Sequence number of the last activity appended.
    pub last_sequence: Option<u64>,
    /// Activities currently retained for the subscription (`total`).
    pub total: u64,
}

/// A time range of activity timestamps: `[from, until)` in epoch microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// Inclusive start.
    pub from_micros: i64,
    /// Exclusive end; `None`: open-ended.
    pub until_micros: Option<i64>,
}

/// A position inside a time range: the last activity read, as (timestamp, sequence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RangePosition {
    /// The activity's timestamp, epoch microseconds.
    pub occurred_at_micros: i64,
    /// Its sequence number (the tie-breaker among equal timestamps).
    pub sequence: u64,
}

/// A page of a time range as JSON bytes (see [`Store::read_range_json`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePage {
    /// The caller's buffer with the page's activity objects appended, comma-separated.
    pub out: Vec<u8>,
    /// Activities appended.
    pub count: usize,
    /// The last activity appended.
    pub last: Option<RangePosition>,
    /// Activities currently retained for the subscription (`total`).
    pub total: u64,
    /// The subscription's watermark, read in the same snapshot.
    pub watermark: Option<DateTime<Utc>>,
}

/// Where a backfill job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackfillState {
    /// Created, not started.
    Pending,
    /// Being fetched (or waiting to retry after a transient upstream failure).
    Running,
    /// The whole range is in the stream.
    Done,
    /// Stopped for good; `error` says why.
    Failed,
}

impl BackfillState {
    /// The wire (and stored) name.
    pub fn as_str(self) -> &'static str {
        match self {
            BackfillState::Pending => "pending",
            BackfillState::Running => "running",
            BackfillState::Done => "done",
            BackfillState::Failed => "failed",
        }
    }

    /// Reads a stored name.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a name this build does not know.
    pub fn parse(text: &str) -> StoreResult<Self> {
        Ok(match text {
            "pending" => BackfillState::Pending,
            "running" => BackfillState::Running,
            "done" => BackfillState::Done,
            "failed" => BackfillState::Failed,
            other => return Err(StoreError::Corrupt(format!("backfill state {other:?}"))),
        })
    }
}

/// A job fetching `[from, until)` of upstream history into a subscription's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillJob {
    /// Numeric id.
    pub id: i64,
    /// The subscription whose stream it fills.
    pub subscription_id: SubscriptionId,
    /// Start of the range (inclusive).
    pub from: DateTime<Utc>,
    /// End of the range (exclusive).
    pub until: DateTime<Utc>,
    /// Where it is.
    pub state: BackfillState,
    /// The connector's position in the range, committed with the activity it produced.
    pub checkpoint: Option<String>,
    /// Activities fetched from the upstream so far.
    pub fetched: u64,
    /// Of those, how many were new to the stream (the rest were already there).
    pub appended: u64,
    /// The last failure, if any.
    pub error: Option<String>,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When it last changed.
    pub modified: DateTime<Utc>,
}

/// A claimed backfill job: only the holder of `claim_token` may commit for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillClaim {
    /// The job, as claimed.
    pub job: BackfillJob,
    /// The fencing token of this claim.
    pub claim_token: i64,
}

/// One step of a backfill: activity plus the job's new position, committed together.
#[derive(Debug, Clone)]
pub struct BackfillStep {
    /// The job and claim committing.
    pub job_id: i64,
    /// The claim's token (a stale claim's step is refused and changes nothing).
    pub claim_token: i64,
    /// The activity fetched (its `checkpoint`, `lease` and `watermark` are ignored).
    pub activities: Vec<EncodedActivity>,
    /// The job's new position.
    pub checkpoint: String,
    /// The whole range has been fetched.
    pub done: bool,
}

/// A JSON webhook endpoint of an application.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEndpoint {
    /// Numeric id.
    pub id: i64,
    /// The owning application.
    pub application_id: ApplicationId,
    /// Where notifications are POSTed.
    pub url: String,
    /// EventBridge-style event pattern; `None` notifies for all activity.
    pub filter: Option<Value>,
    /// Disabled endpoints are not notified (their state is kept).
    pub enabled: bool,
    /// The Standard Webhooks signing secret (`whsec_...`).
    pub secret: String,
    /// When the endpoint was created.
    pub created: DateTime<Utc>,
    /// When it last changed.
    pub modified: DateTime<Utc>,
}

/// A new webhook endpoint.
#[derive(Debug, Clone)]
pub struct NewWebhookEndpoint {
    /// The owning application.
    pub application_id: ApplicationId,
    /// Where notifications are POSTed.
    pub url: String,
    /// Event pattern, if any.
    pub filter: Option<Value>,
    /// The Standard Webhooks signing secret.
    pub secret: String,
}

/// Changes to a webhook endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    /// New URL.
    pub url: Option<String>,
    /// New filter (`Some(None)` removes it).
    pub filter: Option<Option<Value>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

/// A notification due for one (endpoint, subscription), claimed by one notifier.
#[derive(Debug, Clone, PartialEq)]
pub struct DueNotification {
    /// The endpoint to notify.
    pub endpoint: WebhookEndpoint,
    /// The subscription with new activity.
    pub subscription_id: SubscriptionId,
    /// Its account.
    pub account_id: AccountId,
    /// Activity above this sequence is what the notification is about.
    pub after_sequence: u64,
    /// The subscription's last sequence when the notification was claimed: a success covers
    /// everything up to it.
    pub through_sequence: u64,
    /// Failed attempts in a row before this one.
    pub attempts: u32,
    /// When the current run of failures began.
    pub failing_since: Option<DateTime<Utc>>,
    /// Fencing token of the claim.
    pub claim_token: i64,
}

/// How a claimed notification ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationOutcome {
    /// Delivered (a status below 500): everything through `through_sequence` is notified.
    Delivered,
    /// Nothing in the range matched the endpoint's filter: covered without sending.
    Skipped,
    /// Failed; try again at `retry_at`.
    Failed {
        /// When to try again.
        retry_at: DateTime<Utc>,
    },
    /// Failed for too long: stop until newer activity arrives.
    GaveUp,
}

/// One delivery attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAttempt {
    /// Numeric id (increasing).
    pub id: i64,
    /// The endpoint.
    pub endpoint_id: i64,
    /// The subscription notified about.
    pub subscription_id: SubscriptionId,
    /// Its account.
    pub account_id: AccountId,
    /// The stream position the notification covered.
    pub sequence: u64,
    /// When the attempt started.
    pub started_at: DateTime<Utc>,
    /// How long it took.
    pub latency: std::time::Duration,
    /// The HTTP status, if a response came back.
    pub status_code: Option<u16>,
    /// Whether it counted as delivered.
    pub success: bool,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Which attempts to list (newest first).
#[derive(Debug, Clone, Default)]
pub struct AttemptQuery {
    /// Only successes (`Some(true)`) or failures (`Some(false)`).
    pub success: Option<bool>,
    /// Started at or after.
    pub since: Option<DateTime<Utc>>,
    /// Started before.
    pub until: Option<DateTime<Utc>>,
    /// Only attempts with an id below this (paging).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

/// A broker destination of an application (NATS JetStream, RabbitMQ, Redis Streams).
///
/// The store keeps what the notifier validated; `target` holds the kind's own settings
/// (connection URL, stream or exchange, subject or routing-key prefix).
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    /// Numeric id.
    pub id: i64,
    /// The owning application.
    pub application_id: ApplicationId,
    /// `nats`, `rabbitmq` or `redis`.
    pub kind: String,
    /// The kind's settings.
    pub target: Value,
    /// EventBridge-style event pattern, evaluated per activity; `None` publishes everything.
    pub filter: Option<Value>,
    /// `v1`, `v2` or `both`: which rendering of the activity messages carry.
    pub payload: String,
    /// Most activities in one message.
    pub batch_size: u32,
    /// Disabled destinations are not published to (their positions are kept).
    pub enabled: bool,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When it last changed.
    pub modified: DateTime<Utc>,
}

/// A new destination.
#[derive(Debug, Clone)]
pub struct NewDestination {
    /// The owning application.
    pub application_id: ApplicationId,
    /// `nats`, `rabbitmq` or `redis`.
    pub kind: String,
    /// The kind's settings.
    pub target: Value,
    /// Event pattern, if any.
    pub filter: Option<Value>,
    /// `v1`, `v2` or `both`.
    pub payload: String,
    /// Most activities in one message.
    pub batch_size: u32,
}

/// Changes to a destination; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct DestinationPatch {
    /// New settings.
    pub target: Option<Value>,
    /// New filter (`Some(None)` removes it).
    pub filter: Option<Option<Value>>,
    /// New payload rendering.
    pub payload: Option<String>,
    /// New batch size.
    pub batch_size: Option<u32>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

/// Activity of one subscription waiting to be published to one destination, claimed by one
/// publisher: at most one claim per (destination, subscription) is in flight, so a batch is
/// never published before the previous one was acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct DuePublication {
    /// The destination.
    pub destination: Destination,
    /// The subscription with activity to publish.
    pub subscription_id: SubscriptionId,
    /// Its account.
    pub account_id: AccountId,
    /// The destination's position: everything up to it is acknowledged by the broker.
    pub after_sequence: u64,
    /// The subscription's last sequence when the claim was taken.
    pub through_sequence: u64,
    /// The last sequence of a message published from `after_sequence` whose acknowledgement
    /// was never committed (see [`PublicationAdvance::pending_through`]): the next message from
    /// this position must end exactly there, so that a repeat is the same message.
    pub pending_through: Option<u64>,
    /// Failed attempts in a row before this one.
    pub attempts: u32,
    /// When the current run of failures began.
    pub failing_since: Option<DateTime<Utc>>,
    /// Fencing token of the claim.
    pub claim_token: i64,
}

/// How a claimed publication ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicationOutcome {
    /// The broker acknowledged everything through `through` (or it matched no filter): the
    /// position moves there. Activity after it stays due.
    Published {
        /// The last sequence acknowledged (or passed over as unmatched).
        through: u64,
    },
    /// Publishing failed; try again at `retry_at` from the same position.
    Failed {
        /// When to try again.
        retry_at: DateTime<Utc>,
    },
}

/// A claimed publication's progress, written after a broker acknowledged a message (or
/// before a message is published, to record it as pending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationAdvance {
    /// The destination.
    pub destination_id: i64,
    /// The subscription.
    pub subscription_id: SubscriptionId,
    /// The claim's fencing token.
    pub claim_token: i64,
    /// The destination's `modified` when the claim was taken: a destination changed (or
    /// disabled) since refuses the advance, so its new settings apply from the next claim.
    pub destination_modified: DateTime<Utc>,
    /// The position moves here (never back). The failure count is cleared only when it moves.
    pub through: u64,
    /// The last sequence of the message about to be published from `through`, if any
    /// (`None` when nothing is in flight).
    pub pending_through: Option<u64>,
    /// The claim is kept until then.
    pub claimed_until: DateTime<Utc>,
    /// The attempt to log with it.
    pub attempt: Option<DestinationAttempt>,
}

impl PublicationAdvance {
    /// An advance of `due`'s claim to `through`, kept until `claimed_until`.
    pub fn of(due: &DuePublication, through: u64, claimed_until: DateTime<Utc>) -> Self {
        PublicationAdvance {
            destination_id: due.destination.id,
            subscription_id: due.subscription_id,
            claim_token: due.claim_token,
            destination_modified: due.destination.modified,
            through,
            pending_through: None,
            claimed_until,
            attempt: None,
        }
    }
}

/// The claim token a new destination position starts from: the time in microseconds. A
/// position deleted and created again (SQLite may reuse a deleted row's id) starts above every
/// token its earlier life handed out (one per claim), so a claim from that life never matches.
pub(crate) fn first_claim_token() -> i64 {
    Utc::now().timestamp_micros()
}

/// One publish attempt, as recorded: a failed publish (or connect), or a run of messages one
/// claim published in a row, each acknowledged (`first_sequence` of the first to
/// `last_sequence` of the last; the publisher logs up to 16 messages as one success).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationAttempt {
    /// Numeric id (increasing).
    pub id: i64,
    /// The destination.
    pub destination_id: i64,
    /// The subscription published from.
    pub subscription_id: SubscriptionId,
    /// Its account.
    pub account_id: AccountId,
    /// The first sequence the message (or run) covered.
    pub first_sequence: u64,
    /// The last sequence the message (or run) covered.
    pub last_sequence: u64,
    /// Activities carried (those that matched the filter).
    pub published: u32,
    /// When the attempt started.
    pub started_at: DateTime<Utc>,
    /// How long until the broker answered (for a run: its acknowledgements' waits added up).
    pub latency: std::time::Duration,
    /// Whether the broker acknowledged it.
    pub success: bool,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// How a poll ended, recorded when its lease is released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollResult {
    /// The poll succeeded; poll again at `next_poll_at` (sooner if woken meanwhile).
    Succeeded {
        /// When the next periodic poll is due.
        next_poll_at: DateTime<Utc>,
    },
    /// The poll failed and will be retried at `retry_at`.
    Failed {
        /// What went wrong, for operators.
        error: String,
        /// When to try again (back-off already applied).
        retry_at: DateTime<Utc>,
    },
    /// The poll failed permanently: deactivate the subscription with this reason.
    Disabled {
        /// The subscription's new `disable_reason`.
        reason: String,
        /// What went wrong, for operators.
        error: String,
    },
}

/// Scheduling state of one subscription, for operators and the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollState {
    /// When the next poll is due.
    pub next_poll_at: DateTime<Utc>,
    /// Failures since the last successful poll.
    pub consecutive_failures: u32,
    /// The last failure's message, cleared on success.
    pub last_error: Option<String>,
    /// Current lease holder, if the lease has not lapsed.
    pub lease_holder: Option<String>,
}

/// Persistence for everything Tidemark keeps. See the crate doc for the guarantees.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The key that signs this store's cursors (created with the store, never changes).
    fn cursor_key(&self) -> &CursorKey;

    // ---- applications ------------------------------------------------------------------

    /// Creates an application with default settings.
    async fn create_application(&self, name: &str) -> StoreResult<Application>;
    /// Creates an application and its first API key in one transaction (a first application
    /// is never left without a key).
    async fn create_application_with_key(
        &self,
        name: &str,
        digest: SecretDigest,
        hint: &str,
        signing_key: &str,
    ) -> StoreResult<(Application, ApiKey)>;
    /// Every application, by id.
    async fn list_applications(&self) -> StoreResult<Vec<Application>>;
    /// One application.
    async fn get_application(&self, id: ApplicationId) -> StoreResult<Application>;
    /// Replaces an application's settings (`track_activity`, `retention_days`,
    /// `max_subscriptions_per_account`, `name`).
    async fn update_application(&self, application: &Application) -> StoreResult<Application>;

    // ---- API keys ----------------------------------------------------------------------

    /// Stores a new API key's digest for an application, with the key itself for signing
    /// webhooks (`X-Kloudless-Signature` is an HMAC keyed with it).
    async fn create_api_key(
        &self,
        application_id: ApplicationId,
        digest: SecretDigest,
        hint: &str,
        signing_key: &str,
    ) -> StoreResult<ApiKey>;
    /// The application's oldest API key, which signs its webhooks (seed 003).
    async fn signing_key(&self, application_id: ApplicationId) -> StoreResult<Option<String>>;
    /// An application's API keys, oldest first.
    async fn list_api_keys(&self, application_id: ApplicationId) -> StoreResult<Vec<ApiKey>>;
    /// Deletes one of an application's keys.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the application has no such key (another application's key
    /// included); [`StoreError::Conflict`] if it is the application's last key.
    async fn delete_api_key(&self, application_id: ApplicationId, key_id: i64) -> StoreResult<()>;
    /// The key with this digest, if any.
    async fn find_api_key(&self, digest: SecretDigest) -> StoreResult<Option<ApiKey>>;

    // ---- accounts ----------------------------------------------------------------------

    /// Connects an account. If its application tracks activity, a default `changes`
    /// subscription is created in the same transaction.
    async fn create_account(&self, account: NewAccount) -> StoreResult<Account>;
    /// One account.
    async fn get_account(&self, id: AccountId) -> StoreResult<Account>;
    /// The account whose bearer token has this digest, if any.
    async fn find_account_by_token(&self, digest: SecretDigest) -> StoreResult<Option<Account>>;
    /// Changes an account's `admin` flag or config.
    async fn update_account(&self, id: AccountId, patch: AccountPatch) -> StoreResult<Account>;
    /// An application's accounts, by id.
    async fn list_accounts(&self, application_id: ApplicationId) -> StoreResult<Vec<Account>>;
    /// Deletes an account with its token, subscriptions, activity and checkpoints.
    async fn delete_account(&self, id: AccountId) -> StoreResult<()>;

    // ---- subscriptions -----------------------------------------------------------------

    /// Creates a subscription, enforcing the application's per-account limit and the
    /// one-default rule.
    async fn create_subscription(&self, subscription: NewSubscription)
        -> StoreResult<Subscription>;
    /// One subscription.
    async fn get_subscription(&self, id: SubscriptionId) -> StoreResult<Subscription>;
    /// Every active subscription of every application, by id.
    async fn list_active_subscriptions(&self) -> StoreResult<Vec<Subscription>>;
    /// An account's subscriptions, by id.
    async fn list_subscriptions(&self, account_id: AccountId) -> StoreResult<Vec<Subscription>>;
    /// Activates or deactivates a subscription (`disable_reason` is cleared on activation).
    async fn set_subscription_active(
        &self,
        id: SubscriptionId,
        active: bool,
        disable_reason: &str,
    ) -> StoreResult<Subscription>;
    /// Makes a subscription its account's default (and no other).
    async fn set_default_subscription(&self, id: SubscriptionId) -> StoreResult<Subscription>;
    /// Deletes a subscription and all its activity and checkpoints.
    async fn delete_subscription(&self, id: SubscriptionId) -> StoreResult<()>;
    /// Records a cursor handed out at stream `position` as `last_cursor` (with
    /// `last_cursor_updated_at`) if it is at least as far as the one recorded: `last_cursor` is
    /// always the newest cursor handed out, whatever order concurrent readers finish in.
    async fn record_last_cursor(
        &self,
        id: SubscriptionId,
        cursor: &str,
        position: u64,
    ) -> StoreResult<()>;

    // ---- the stream --------------------------------------------------------------------

    /// Appends activity and stores the checkpoint, atomically (see [`CommitBatch`]).
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] if the batch's lease is stale; [`StoreError::NotFound`] if
    /// the subscription is gone. Either way nothing is written.
    async fn commit(&self, batch: CommitBatch) -> StoreResult<CommitOutcome>;
    /// Up to `limit` activities with sequence numbers above `after`, in order, with the
    /// number retained, both read from one consistent snapshot.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the subscription does not exist.
    async fn read_page(
        &self,
        subscription_id: SubscriptionId,
        after: u64,
        limit: usize,
    ) -> StoreResult<ActivityPage>;
    /// Like [`Store::read_page`], but appends the activities' JSON objects, separated by commas,
    /// to `out` (which may already hold a response's opening bytes) instead of returning them
    /// one by one: the read path of List Activity, with no copy beyond the one into `out`.
    async fn read_page_json(
        &self,
        subscription_id: SubscriptionId,
        after: u64,
        limit: usize,
        mut out: Vec<u8>,
    ) -> StoreResult<JsonPage> {
        let page = self.read_page(subscription_id, after, limit).await?;
        for (index, row) in page.activities.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            out.extend_from_slice(row.json.as_bytes());
        }
        Ok(JsonPage {
            count: page.activities.len(),
            last_sequence: page.activities.last().map(|row| row.sequence),
            total: page.total,
            out,
        })
    }
    /// Creates a pending backfill job for `[from, until)` of a subscription's upstream.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown subscription.
    async fn create_backfill(
        &self,
        subscription_id: SubscriptionId,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<BackfillJob>;

    /// One backfill job.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    async fn get_backfill(&self, id: i64) -> StoreResult<BackfillJob>;

    /// Claims the oldest job that is pending, or running with a lapsed claim and due to
    /// retry, until `now + ttl`.
    async fn claim_backfill(
        &self,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> StoreResult<Option<BackfillClaim>>;

    /// Commits one step: the activity into the stream (de-duplicated by id) and the job's
    /// position and counters, in one transaction; extends the claim by `ttl`.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] if the claim is no longer current (nothing is written).
    async fn commit_backfill(
        &self,
        step: BackfillStep,
        ttl: std::time::Duration,
    ) -> StoreResult<CommitOutcome>;

    /// Ends a claim without finishing: a transient failure (retry at `retry_at`) or, with
    /// `failed`, for good. Nothing happens if the claim is no longer current.
    async fn release_backfill(
        &self,
        job_id: i64,
        claim_token: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> StoreResult<()>;

    /// Up to `limit` activities whose timestamp is in `range`, after `after`, in (timestamp,
    /// sequence) order, appended to `out` as JSON like [`Store::read_page_json`]. Activity
    /// without a timestamp is in no range. Activity committed later with a timestamp before
    /// `after` is not returned by this read (the subscription's watermark says when a range is
    /// final).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown subscription.
    async fn read_range_json(
        &self,
        subscription_id: SubscriptionId,
        range: TimeRange,
        after: Option<RangePosition>,
        limit: usize,
        out: Vec<u8>,
    ) -> StoreResult<RangePage>;

    /// Up to `limit` activities with sequence numbers above `after`, in order (empty for a
    /// subscription that does not exist).
    async fn read_activity(
        &self,
        subscription_id: SubscriptionId,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredActivity>> {
        match self.read_page(subscription_id, after, limit).await {
            Ok(page) => Ok(page.activities),
            Err(StoreError::NotFound(_)) => Ok(Vec::new()),
            Err(error) => Err(error),
        }
    }
    /// Number of activities currently retained for the subscription.
    async fn activity_total(&self, subscription_id: SubscriptionId) -> StoreResult<u64>;
    /// The subscription's highest sequence number (0 if empty).
    async fn latest_sequence(&self, subscription_id: SubscriptionId) -> StoreResult<u64>;
    /// Deletes activity committed more than its application's `retention_days` before `now`,
    /// at most `max_rows` rows per call. Returns how many were deleted.
    async fn prune_expired(&self, now: DateTime<Utc>, max_rows: usize) -> StoreResult<u64>;

    // ---- webhooks ----------------------------------------------------------------------

    /// Creates an endpoint. It is told about activity committed from now on: every existing
    /// subscription of the application counts as notified through its current sequence.
    async fn create_webhook(&self, endpoint: NewWebhookEndpoint) -> StoreResult<WebhookEndpoint>;
    /// An application's endpoints, by id.
    async fn list_webhooks(
        &self,
        application_id: ApplicationId,
    ) -> StoreResult<Vec<WebhookEndpoint>>;
    /// One endpoint.
    async fn get_webhook(&self, id: i64) -> StoreResult<WebhookEndpoint>;
    /// Changes an endpoint.
    async fn update_webhook(&self, id: i64, patch: WebhookPatch) -> StoreResult<WebhookEndpoint>;
    /// Deletes an endpoint with its delivery state and attempts.
    async fn delete_webhook(&self, id: i64) -> StoreResult<()>;
    /// Claims up to `limit` due notifications until `now + ttl`: at most one in flight per
    /// (endpoint, subscription), and at most `per_endpoint` claims unexpired at `now` per
    /// endpoint, counting those already held (by any notifier). An endpoint at its limit is
    /// skipped, so its due notifications never take the places of other endpoints'.
    async fn claim_due_notifications(
        &self,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
        limit: usize,
        per_endpoint: usize,
    ) -> StoreResult<Vec<DueNotification>>;
    /// Records how a claimed notification ended, and its attempt if one was made. A claim that
    /// was taken over meanwhile changes nothing but the attempts log.
    async fn finish_notification(
        &self,
        due: &DueNotification,
        outcome: NotificationOutcome,
        attempt: Option<WebhookAttempt>,
    ) -> StoreResult<()>;
    /// [`Store::finish_notification`] for many notifications at once (one transaction where
    /// the store can).
    async fn finish_notifications(
        &self,
        finished: Vec<(DueNotification, NotificationOutcome, Option<WebhookAttempt>)>,
    ) -> StoreResult<()> {
        for (due, outcome, attempt) in finished {
            self.finish_notification(&due, outcome, attempt).await?;
        }
        Ok(())
    }
    /// An endpoint's attempts, newest first.
    async fn list_webhook_attempts(
        &self,
        endpoint_id: i64,
        query: AttemptQuery,
    ) -> StoreResult<Vec<WebhookAttempt>>;
    /// Makes every subscription with a failed attempt since `since`, and activity the endpoint
    /// has not been told about since, due again at once (its back-off and any give-up
    /// forgotten). Returns how many.
    async fn recover_webhook(&self, endpoint_id: i64, since: DateTime<Utc>) -> StoreResult<u64>;

    // ---- broker destinations -----------------------------------------------------------

    /// Creates a destination. Like a webhook endpoint, it is told about activity committed
    /// from now on: every existing subscription of the application starts at its current
    /// sequence.
    async fn create_destination(&self, destination: NewDestination) -> StoreResult<Destination>;
    /// An application's destinations, by id.
    async fn list_destinations(
        &self,
        application_id: ApplicationId,
    ) -> StoreResult<Vec<Destination>>;
    /// One destination.
    async fn get_destination(&self, id: i64) -> StoreResult<Destination>;
    /// Changes a destination.
    async fn update_destination(
        &self,
        id: i64,
        patch: DestinationPatch,
    ) -> StoreResult<Destination>;
    /// Deletes a destination with its positions and attempts.
    async fn delete_destination(&self, id: i64) -> StoreResult<()>;
    /// Claims up to `limit` (destination, subscription) pairs with unpublished activity, due
    /// at `now`, until `now + ttl`; at most one claim per pair is ever unexpired.
    async fn claim_due_publications(
        &self,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
        limit: usize,
    ) -> StoreResult<Vec<DuePublication>>;
    /// Records how a claimed publication ended (moving the position only forward), and its
    /// attempt if one was made. A claim taken over meanwhile changes nothing but the log.
    async fn finish_publication(
        &self,
        due: &DuePublication,
        outcome: PublicationOutcome,
        attempt: Option<DestinationAttempt>,
    ) -> StoreResult<()>;
    /// Writes the progress of claimed publications, each in its own right: moves the position
    /// forward (clearing the failure count when it moves), records the pending message and the
    /// attempt, and keeps the claim until `claimed_until` so the same publisher goes on. For
    /// each advance, in order, whether it was taken: `false` when its claim was taken over, or
    /// its destination was changed, disabled or deleted since the claim (nothing is written
    /// for it then, and its publisher must stop).
    async fn advance_publications(
        &self,
        advances: Vec<PublicationAdvance>,
    ) -> StoreResult<Vec<bool>>;
    /// A destination's attempts, newest first.
    async fn list_destination_attempts(
        &self,
        destination_id: i64,
        query: AttemptQuery,
    ) -> StoreResult<Vec<DestinationAttempt>>;

    // ---- checkpoints, leases and scheduling --------------------------------------------

    /// The subscription's checkpoint (`None` before its first commit).
    async fn load_checkpoint(&self, subscription_id: SubscriptionId)
        -> StoreResult<Option<String>>;
    /// Leases up to `limit` active subscriptions whose poll is due at `now` and whose lease
    /// is free or lapsed.
    async fn acquire_due(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
        limit: usize,
    ) -> StoreResult<Vec<Lease>>;
    /// Extends a lease that is still current.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] if another poller holds a newer lease.
    async fn renew_lease(&self, lease: &Lease, ttl: std::time::Duration) -> StoreResult<Lease>;
    /// Gives a lease back and records how the poll ended. A stale lease changes nothing.
    async fn release_lease(&self, lease: &Lease, result: PollResult) -> StoreResult<()>;
    /// Asks for the subscription to be polled as soon as possible (an upstream push).
    async fn request_poll(&self, subscription_id: SubscriptionId) -> StoreResult<()>;
    /// The subscription's scheduling state.
    async fn poll_state(&self, subscription_id: SubscriptionId) -> StoreResult<PollState>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_model::{EventCategory, EventSubtype, EventType};

    /// The rendered event, written whole, is what serializing [`V1Event`] gives: with the
    /// target kept as a span of the v2 text, and without a target at all.
    #[test]
    fn test_the_rendered_v1_event_is_the_v1_event() {
        let mut with_target = Activity::new(
            "a\",\"target\":{}",
            7,
            EventCategory::Storage,
            EventType::Update,
            EventSubtype::Rename,
        );
        with_target.target = Some(serde_json::json!({
            "id": "f",
            "name": "ré,\"target\":x",
            "parent": {"target": {"id": "p"}},
        }));
        with_target.previous_target = Some(serde_json::json!({"target": "before"}));
        with_target.raw = Some(serde_json::json!({",\"target\":": 1, "target": [1, 2]}));
        with_target.session = Some(serde_json::json!({"ip": "10.0.0.1"}));
        with_target.actor = Some(serde_json::json!({"id": 42}));
        with_target.timestamp = chrono::DateTime::from_timestamp_micros(1_556_180_314_053_393);
        let without_target = Activity::new(
            "b",
            7,
            EventCategory::Storage,
            EventType::Add,
            EventSubtype::Unknown,
        );
        for (activity, spanned) in [(with_target, true), (without_target, false)] {
            let encoded = EncodedActivity::encode(&activity).expect("encodes");
            let rendered = encoded.v1.clone().expect("has a v1 form");
            let columns = encoded.v1_columns();
            assert_eq!(
                StoredV1Event::from_columns(
                    columns.kind,
                    Some(columns.json.to_owned()),
                    columns.target_at,
                    columns.target_len
                ),
                StoredV1Event::Rendered(rendered.clone()),
                "the columns read back as the event"
            );
            assert_eq!(rendered.target.is_some(), spanned);
            let mut whole = Vec::new();
            assert!(rendered.write(&encoded.json, &mut whole));
            let expected = V1Event::from_activity(&activity).expect("v1");
            assert_eq!(whole, serde_json::to_vec(&expected).expect("serializes"));
            assert_eq!(rendered.kind, expected.kind);
        }
        let read = Activity::new(
            "r",
            7,
            EventCategory::Storage,
            EventType::Access,
            EventSubtype::Preview,
        );
        let read = EncodedActivity::encode(&read).expect("encodes");
        assert!(read.v1.is_none());
        let columns = read.v1_columns();
        assert_eq!(
            StoredV1Event::from_columns(columns.kind, Some(columns.json.to_owned()), None, None),
            StoredV1Event::NoForm
        );
    }
}
