//! Connectors: the code that talks to one upstream service and turns its notion of "something
//! happened" into unified [`Activity`] plus a new [`Checkpoint`].
//!
//! This crate owns the [`Connector`] trait, the registry of services ([`build`]), and one
//! module per service. It does no storage and no scheduling: the engine calls [`Connector::poll`]
//! and commits what it returns.
//!
//! # Checkpoints and exactly-once
//!
//! A connector is a pure function of (upstream state, checkpoint):
//! `poll(checkpoint) -> (activities, checkpoint', more)`. The engine commits `activities` and
//! `checkpoint'` in ONE store transaction (DESIGN 2.5). Therefore:
//!
//! - If the commit fails or the process dies before it, the old checkpoint is still in place and
//!   the next poll fetches the same upstream events again. Nothing is lost.
//! - Re-fetched events must carry the **same activity id** as the first time (derive it from the
//!   upstream's own event identity, never from a clock or a counter): the store's unique key
//!   (subscription, activity id) absorbs the repeat. Nothing is duplicated.
//! - Within one poll, activities are emitted in upstream time order. Where the upstream has
//!   several feeds, they are cut at a common high-water mark, so a later poll never emits an
//!   event older than one already emitted (DESIGN 2.3).
//! - A checkpoint never loses tied items: a position is a (timestamp, tie-breaker) pair or
//!   equivalent, never "last timestamp + 1 ms" (DESIGN 2.4).
//! - `more: true` asks the engine to poll again at once (the connector pages through a backlog
//!   with intermediate checkpoints, so one commit never has to hold an unbounded batch).
//!
//! Push (an upstream webhook or an OS file watch) is only ever a trigger to poll the
//! checkpointed source, never the source of record ([`Connector::watch`]).
//!
//! # Errors
//! [`ConnectorError`] says what the engine should do: retry later ([`ConnectorError::Transient`],
//! [`ConnectorError::RateLimited`]), or stop and tell the user ([`ConnectorError::Unauthorized`],
//! [`ConnectorError::BadConfig`], [`ConnectorError::CorruptCheckpoint`]).

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tidemark_model::{Account, Activity, Subscription};

mod feed;
pub mod http;
pub mod jive;
pub mod local;
pub mod onna;

/// A connector's opaque position in its upstream, committed with the activity it produced.
///
/// The text is the connector's own serialization (JSON by convention); nothing else reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint(pub String);

/// What one poll returned.
#[derive(Debug, Clone)]
pub struct PollOutcome {
    /// New activity, in upstream time order.
    pub activities: Vec<Activity>,
    /// The position after `activities`; to be committed with them.
    pub checkpoint: Checkpoint,
    /// More is available right now: poll again without waiting.
    pub more: bool,
}

/// What a poll is about: the account and the subscription being served.
#[derive(Debug, Clone)]
pub struct PollContext {
    /// The upstream account (its numeric id goes into every activity).
    pub account: Account,
    /// The subscription being polled (`created` marks where tracking began).
    pub subscription: Subscription,
}

/// Optional capabilities a connector declares (DESIGN 5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Can fetch upstream history by time range (admin audit feeds; backfill).
    pub time_range: bool,
    /// Supports the `crawl` subscription type.
    pub crawl: bool,
    /// Can be told of changes by the upstream ([`Connector::watch`]).
    pub push: bool,
}

/// Why a connector call failed, and therefore what the engine does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    /// No connector is registered under this service name.
    #[error("unknown service `{0}`")]
    UnknownService(String),
    /// The account's config is invalid (permanent until the account is changed).
    #[error("invalid account config: {0}")]
    BadConfig(String),
    /// The upstream refused the credentials (permanent: the subscription is disabled).
    #[error("upstream rejected the credentials: {0}")]
    Unauthorized(String),
    /// The upstream asked us to slow down.
    #[error("rate limited by upstream{}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// The upstream's `Retry-After`, if it gave one.
        retry_after: Option<Duration>,
    },
    /// A failure that may go away (network, 5xx, the upstream not reachable right now).
    #[error("transient upstream failure: {0}")]
    Transient(String),
    /// The upstream answered something this connector cannot read (malformed JSON, a missing
    /// field, a 4xx to a request it should have accepted). Retried with back-off, never
    /// skipped: the checkpoint does not move past what could not be read.
    #[error("unreadable upstream response: {0}")]
    BadResponse(String),
    /// The stored checkpoint cannot be read by this connector.
    #[error("corrupt checkpoint: {0}")]
    CorruptCheckpoint(String),
    /// The connector does not offer this capability.
    #[error("`{0}` is not supported by this connector")]
    Unsupported(&'static str),
}

impl ConnectorError {
    /// Whether trying again later can succeed (the engine backs off and retries).
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            ConnectorError::RateLimited { .. }
                | ConnectorError::Transient(_)
                | ConnectorError::BadResponse(_)
        )
    }

    /// The subscription's `disable_reason` when this error is permanent.
    pub fn disable_reason(&self) -> Option<&'static str> {
        match self {
            ConnectorError::Unauthorized(_) => Some("invalid_credentials"),
            ConnectorError::BadConfig(_) | ConnectorError::UnknownService(_) => {
                Some("invalid_config")
            }
            ConnectorError::CorruptCheckpoint(_) => Some("corrupt_checkpoint"),
            ConnectorError::Unsupported(_) => Some("not_supported"),
            ConnectorError::RateLimited { .. }
            | ConnectorError::Transient(_)
            | ConnectorError::BadResponse(_) => None,
        }
    }
}

/// A callback a watch uses to ask for an immediate poll of its subscription.
#[derive(Clone)]
pub struct PollTrigger(Arc<dyn Fn() + Send + Sync>);

impl PollTrigger {
    /// Wraps the engine's "poll this subscription now" callback.
    pub fn new(trigger: impl Fn() + Send + Sync + 'static) -> Self {
        PollTrigger(Arc::new(trigger))
    }

    /// Requests a poll. Cheap and idempotent: call it on every upstream signal.
    pub fn fire(&self) {
        (self.0)()
    }
}

impl std::fmt::Debug for PollTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PollTrigger")
    }
}

/// Keeps a watch alive; dropping it stops the watch.
pub struct WatchGuard(#[allow(dead_code)] Box<dyn Send + Sync>);

impl WatchGuard {
    /// Wraps whatever must live as long as the watch (a watcher, a task handle, ...).
    pub fn new(inner: impl Send + Sync + 'static) -> Self {
        WatchGuard(Box::new(inner))
    }
}

impl std::fmt::Debug for WatchGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WatchGuard")
    }
}

/// One upstream service, bound to one account's config.
#[async_trait]
pub trait Connector: Send + Sync {
    /// The Kloudless service name (`local`, `jive`, ...).
    fn service(&self) -> &'static str;

    /// What the connector can do beyond `poll`.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// How often to poll when nothing triggers a poll sooner (the account's
    /// `poll_interval_seconds` overrides it; see [`poll_interval`]).
    fn default_poll_interval(&self) -> Duration;

    /// The API category and object type of the resources a subscription monitors
    /// (`monitored_resource_api`, `monitored_resource_object_type`), e.g.
    /// `(Some("storage"), Some("folder"))`.
    fn monitored_resource_kind(&self) -> (Option<&'static str>, Option<&'static str>) {
        (None, None)
    }

    /// Checks a subscription's `monitored_resources` (seed 003 lists, per service, what may be
    /// monitored and how many). By default a connector monitors the whole account and accepts
    /// none.
    ///
    /// # Errors
    /// [`ConnectorError::BadConfig`] saying what is not supported.
    fn check_monitored_resources(
        &self,
        resources: &[tidemark_model::MonitoredResource],
    ) -> Result<(), ConnectorError> {
        if resources.is_empty() {
            Ok(())
        } else {
            Err(ConnectorError::BadConfig(format!(
                "`{}` does not support monitored_resources; it monitors the whole account",
                self.service()
            )))
        }
    }

    /// Checks that the account can be reached with its config (called when it is connected).
    async fn validate(&self) -> Result<(), ConnectorError>;

    /// Fetches activity after `checkpoint` (`None`: the subscription's first poll).
    async fn poll(
        &self,
        context: &PollContext,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<PollOutcome, ConnectorError>;

    /// Fetches upstream history in `[from, until)` (backfill), a page at a time like
    /// [`Connector::poll`]: `checkpoint` is this range's position (`None`: its start); the
    /// outcome's `more: false` means the whole range has been fetched. Activity ids are the
    /// same as live polling gives, so history already in the stream is absorbed.
    ///
    /// # Errors
    /// [`ConnectorError::Unsupported`] unless [`Capabilities::time_range`].
    async fn fetch_range(
        &self,
        _context: &PollContext,
        _from: chrono::DateTime<chrono::Utc>,
        _until: chrono::DateTime<chrono::Utc>,
        _checkpoint: Option<&Checkpoint>,
    ) -> Result<PollOutcome, ConnectorError> {
        Err(ConnectorError::Unsupported("backfill"))
    }

    /// The subscription's watermark once `checkpoint` is committed: the upstream time before
    /// which every activity has been emitted (the connector's declared upstream lag already
    /// taken off). `None`: this connector cannot say.
    fn watermark(&self, _checkpoint: &Checkpoint) -> Option<chrono::DateTime<chrono::Utc>> {
        None
    }

    /// Starts watching the upstream; `trigger` is fired whenever a poll should happen now.
    /// `Ok(None)` when the connector has no push mechanism.
    fn watch(
        &self,
        _context: &PollContext,
        _trigger: PollTrigger,
    ) -> Result<Option<WatchGuard>, ConnectorError> {
        Ok(None)
    }
}

/// Builds a connector for one account's config.
pub type BuildConnector = fn(config: &Value) -> Result<Arc<dyn Connector>, ConnectorError>;

/// Every supported service, keyed by its Kloudless service name: the one place connectors
/// are registered.
static REGISTRY: LazyLock<BTreeMap<&'static str, BuildConnector>> = LazyLock::new(|| {
    let mut registry: BTreeMap<&'static str, BuildConnector> = BTreeMap::new();
    registry.insert(jive::SERVICE, jive::build);
    registry.insert(local::SERVICE, local::build);
    registry.insert(onna::SERVICE, onna::build);
    registry
});

/// Builds the connector for `service` from an account's `config`.
///
/// # Errors
/// [`ConnectorError::UnknownService`], or the connector's [`ConnectorError::BadConfig`].
pub fn build(service: &str, config: &Value) -> Result<Arc<dyn Connector>, ConnectorError> {
    let build = REGISTRY
        .get(service)
        .ok_or_else(|| ConnectorError::UnknownService(service.to_owned()))?;
    build(config)
}

/// The names of every registered service.
pub fn services() -> impl Iterator<Item = &'static str> {
    REGISTRY.keys().copied()
}

/// The poll interval for an account: its `poll_interval_seconds` if set, else the connector's
/// default.
///
/// # Errors
/// [`ConnectorError::BadConfig`] if `poll_interval_seconds` is not a whole number in
/// 1..=86400.
pub fn poll_interval(
    config: &Value,
    connector: &dyn Connector,
) -> Result<Duration, ConnectorError> {
    match config.get("poll_interval_seconds") {
        None | Some(Value::Null) => Ok(connector.default_poll_interval()),
        Some(value) => match value.as_u64() {
            Some(seconds @ 1..=86_400) => Ok(Duration::from_secs(seconds)),
            _ => Err(ConnectorError::BadConfig(format!(
                "poll_interval_seconds must be a whole number of seconds in 1..=86400, got {value}"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_unknown_service_is_a_typed_error() {
        match build("gopher", &json!({})) {
            Err(ConnectorError::UnknownService(service)) => assert_eq!(service, "gopher"),
            other => panic!(
                "expected UnknownService, got {:?}",
                other.map(|c| c.service())
            ),
        }
        assert!(services().any(|service| service == "local"));
    }

    #[test]
    fn test_account_poll_interval_overrides_the_connector_default() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().to_string_lossy().into_owned();
        let connector = build("local", &json!({ "path": path })).expect("local builds");
        let default = poll_interval(&json!({ "path": path }), &*connector).expect("default");
        assert_eq!(default, connector.default_poll_interval());
        let overridden = poll_interval(
            &json!({ "path": path, "poll_interval_seconds": 5 }),
            &*connector,
        )
        .expect("override");
        assert_eq!(overridden, Duration::from_secs(5));
        for bad in [json!(0), json!(-1), json!(1.5), json!("60"), json!(86_401)] {
            let err = poll_interval(&json!({ "poll_interval_seconds": bad }), &*connector)
                .expect_err("rejected");
            assert!(err.to_string().contains("poll_interval_seconds"), "{err}");
            assert_eq!(err.disable_reason(), Some("invalid_config"));
        }
    }

    #[test]
    fn test_errors_say_whether_to_retry() {
        assert!(ConnectorError::Transient("x".into()).is_retriable());
        assert!(ConnectorError::RateLimited { retry_after: None }.is_retriable());
        assert!(!ConnectorError::Unauthorized("x".into()).is_retriable());
        assert_eq!(
            ConnectorError::Unauthorized("x".into()).disable_reason(),
            Some("invalid_credentials")
        );
        assert_eq!(
            ConnectorError::CorruptCheckpoint("x".into()).disable_reason(),
            Some("corrupt_checkpoint")
        );
        assert_eq!(ConnectorError::Transient("x".into()).disable_reason(), None);
    }
}
