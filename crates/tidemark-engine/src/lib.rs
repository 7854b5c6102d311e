//! The engine: decides which subscription is polled when, by whom, and what happens to the
//! result.
//!
//! It owns scheduling (leasing due subscriptions from the store), running connector polls with
//! bounded concurrency, committing each poll's activity together with its checkpoint, backing
//! off on upstream errors (honouring `Retry-After`), deactivating subscriptions whose account
//! fails permanently, keeping upstream watches (push triggers) alive, and retention pruning.
//! It does not serve HTTP or deliver notifications.
//!
//! # How a poll runs
//! 1. [`Store::acquire_due`] leases due subscriptions (a lease is exclusive and fenced, so no
//!    two polls of one subscription ever run at once, on this node or any other).
//! 2. The connector polls from the stored checkpoint; the activity and the new checkpoint are
//!    committed in one transaction carrying the lease ([`Store::commit`]). A poll whose lease
//!    was taken over meanwhile is refused by the store and changes nothing.
//! 3. While the connector says `more`, the engine polls again under the same (renewed) lease.
//! 4. The lease is released with the outcome: next poll time, a back-off, or deactivation.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tidemark_connectors::{
    Checkpoint, Connector, ConnectorError, PollContext, PollOutcome, PollTrigger, WatchGuard,
};
use tidemark_model::{SubscriptionId, SubscriptionType};
use tidemark_store::{
    BackfillClaim, BackfillStep, CommitBatch, EncodedActivity, Lease, PollResult, Store, StoreError,
};
use tokio::sync::{broadcast, Notify, Semaphore};
use tracing::Instrument as _;

mod backoff;
pub mod metrics;

pub use backoff::Backoff;

/// Engine settings; [`EngineConfig::default`] gives production values.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This node's name, recorded as the lease holder.
    pub node_id: String,
    /// How long a lease lasts before another node may take the subscription over.
    pub lease_ttl: Duration,
    /// Longest sleep between two scheduler passes when nothing wakes the engine.
    pub tick: Duration,
    /// How long to gather push triggers before acting on them (one poll for a burst).
    pub wake_debounce: Duration,
    /// Polls running at once on this node.
    pub max_concurrent_polls: usize,
    /// Pages (`more: true` round trips) one lease may take before yielding to others.
    pub max_pages_per_lease: usize,
    /// Retry delays after transient failures.
    pub backoff: Backoff,
    /// How often retention pruning runs, and how many rows one pass may delete.
    pub retention_interval: Duration,
    /// Rows one retention pass may delete.
    pub retention_batch: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            node_id: format!("node-{}", std::process::id()),
            lease_ttl: Duration::from_secs(60),
            tick: Duration::from_secs(1),
            wake_debounce: Duration::from_millis(100),
            max_concurrent_polls: 16,
            max_pages_per_lease: 100,
            backoff: Backoff::default(),
            retention_interval: Duration::from_secs(600),
            retention_batch: 10_000,
        }
    }
}

/// Announced on every commit that appended activity (for followers such as the demo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The subscription appended to.
    pub subscription_id: SubscriptionId,
    /// Its highest sequence number after the commit.
    pub last_sequence: u64,
    /// How many activities the commit appended.
    pub appended: usize,
}

/// Builds the connector for an account (service name, account config). The default is the
/// connector registry, [`tidemark_connectors::build`]; tests inject scripted connectors.
pub type ConnectorSource = Arc<
    dyn Fn(&str, &serde_json::Value) -> Result<Arc<dyn Connector>, ConnectorError> + Send + Sync,
>;

/// Backfill jobs one node runs at once (they share the upstream with live polling).
const MAX_CONCURRENT_BACKFILLS: usize = 2;

/// Pages fetched ahead of the commit in progress.
const PIPELINE_DEPTH: usize = 2;

/// One polled page, its activity encoded and ready to commit.
struct Page {
    activities: Vec<EncodedActivity>,
    /// The new checkpoint; `None` when it equals the previous one (nothing to write).
    checkpoint: Option<Checkpoint>,
    /// The watermark the new checkpoint gives, if the connector can say.
    watermark: Option<chrono::DateTime<Utc>>,
    more: bool,
}

/// A fetched and encoded page, or the error that ended fetching.
type PendingPage = Result<Page, PollError>;

fn encode(
    connector: &dyn Connector,
    outcome: PollOutcome,
    previous: Option<&Checkpoint>,
) -> Result<Page, StoreError> {
    let changed = previous != Some(&outcome.checkpoint);
    Ok(Page {
        activities: EncodedActivity::encode_all(&outcome.activities)?,
        watermark: changed
            .then(|| connector.watermark(&outcome.checkpoint))
            .flatten(),
        checkpoint: changed.then_some(outcome.checkpoint),
        more: outcome.more,
    })
}

/// Why a poll ended without success.
#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The scheduler and poller. Cheap to share: wrap it in an `Arc` and call [`Engine::run`].
pub struct Engine {
    store: Arc<dyn Store>,
    config: EngineConfig,
    connectors: ConnectorSource,
    wake: Notify,
    pending_wakes: Mutex<HashSet<SubscriptionId>>,
    watches: Mutex<HashMap<SubscriptionId, WatchGuard>>,
    permits: Arc<Semaphore>,
    committed: broadcast::Sender<Committed>,
    /// Backfill jobs running on this node.
    backfills: Arc<Semaphore>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over `store`, using the registered connectors.
    pub fn new(store: Arc<dyn Store>, config: EngineConfig) -> Arc<Self> {
        Self::with_connectors(store, config, Arc::new(tidemark_connectors::build))
    }

    /// An engine over `store` that builds connectors with `connectors`.
    pub fn with_connectors(
        store: Arc<dyn Store>,
        config: EngineConfig,
        connectors: ConnectorSource,
    ) -> Arc<Self> {
        metrics::describe();
        let (committed, _) = broadcast::channel(1024);
        Arc::new(Engine {
            store,
            permits: Arc::new(Semaphore::new(config.max_concurrent_polls.max(1))),
            config,
            connectors,
            wake: Notify::new(),
            pending_wakes: Mutex::new(HashSet::new()),
            watches: Mutex::new(HashMap::new()),
            committed,
            backfills: Arc::new(Semaphore::new(MAX_CONCURRENT_BACKFILLS)),
        })
    }

    /// Commit announcements; lagging receivers miss announcements, never activity (the stream
    /// is in the store).
    pub fn subscribe_commits(&self) -> broadcast::Receiver<Committed> {
        self.committed.subscribe()
    }

    /// Asks for `subscription_id` to be polled soon (debounced). Safe to call from any thread,
    /// as often as upstream signals arrive.
    pub fn request_poll(&self, subscription_id: SubscriptionId) {
        if let Ok(mut pending) = self.pending_wakes.lock() {
            pending.insert(subscription_id);
        }
        self.wake.notify_one();
    }

    /// Runs the scheduler until `shutdown` resolves, then waits for running polls to finish.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut next_retention = tokio::time::Instant::now();
        let mut next_watch_sweep = tokio::time::Instant::now() + Duration::from_secs(30);
        tracing::info!(node = %self.config.node_id, "engine started");
        self.adopt_push_subscriptions().await;
        loop {
            self.flush_wakes().await;
            self.schedule_due().await;
            self.start_backfills().await;
            let now = tokio::time::Instant::now();
            if now >= next_retention {
                next_retention = now + self.config.retention_interval;
                self.prune_retention().await;
            }
            if now >= next_watch_sweep {
                next_watch_sweep = now + Duration::from_secs(30);
                self.sweep_watches().await;
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {
                    // Let a burst of triggers gather into one poll.
                    tokio::time::sleep(self.config.wake_debounce).await;
                }
                _ = tokio::time::sleep(self.config.tick) => {}
            }
        }
        // Wait for in-flight polls (each ends with a commit or a release).
        let all = u32::try_from(self.config.max_concurrent_polls.max(1)).unwrap_or(u32::MAX);
        let _ = self.permits.acquire_many(all).await;
        if let Ok(mut watches) = self.watches.lock() {
            watches.clear();
        }
        tracing::info!("engine stopped");
    }

    /// At start-up, polls every subscription whose connector is push-driven right away: its
    /// upstream may have changed while no watch was running, and the poll starts the watch.
    async fn adopt_push_subscriptions(&self) {
        let subscriptions = match self.store.list_active_subscriptions().await {
            Ok(subscriptions) => subscriptions,
            Err(error) => {
                tracing::warn!(%error, "could not list subscriptions at start-up");
                return;
            }
        };
        for subscription in subscriptions {
            let Ok(account) = self.store.get_account(subscription.account).await else {
                continue;
            };
            let push = (self.connectors)(&account.service, &account.config)
                .map(|connector| connector.capabilities().push)
                .unwrap_or(false);
            if push {
                self.request_poll(subscription.id);
            }
        }
    }

    async fn flush_wakes(&self) {
        let pending: Vec<SubscriptionId> = match self.pending_wakes.lock() {
            Ok(mut pending) => pending.drain().collect(),
            Err(_) => return,
        };
        for subscription_id in pending {
            match self.store.request_poll(subscription_id).await {
                Ok(()) | Err(StoreError::NotFound(_)) => {}
                Err(error) => {
                    tracing::warn!(subscription_id, %error, "could not record poll request")
                }
            }
        }
    }

    async fn schedule_due(self: &Arc<Self>) {
        let free = self.permits.available_permits();
        if free == 0 {
            return;
        }
        let leases = match self
            .store
            .acquire_due(
                &self.config.node_id,
                Utc::now(),
                self.config.lease_ttl,
                free,
            )
            .await
        {
            Ok(leases) => leases,
            Err(error) => {
                tracing::warn!(%error, "could not lease due subscriptions");
                return;
            }
        };
        for lease in leases {
            let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
                // Raced with another pass: give the lease back, due now.
                let _ = self
                    .store
                    .release_lease(
                        &lease,
                        PollResult::Succeeded {
                            next_poll_at: Utc::now(),
                        },
                    )
                    .await;
                continue;
            };
            let engine = Arc::clone(self);
            let span = tracing::info_span!("poll", subscription_id = lease.subscription_id);
            tokio::spawn(
                async move {
                    engine.run_leased_poll(lease).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
    }

    /// Claims backfill jobs while this node has room for them, and runs each in a task.
    async fn start_backfills(self: &Arc<Self>) {
        while let Ok(permit) = Arc::clone(&self.backfills).try_acquire_owned() {
            let claim = match self
                .store
                .claim_backfill(Utc::now(), self.config.lease_ttl)
                .await
            {
                Ok(Some(claim)) => claim,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, "could not claim backfill jobs");
                    return;
                }
            };
            let engine = Arc::clone(self);
            let span = tracing::info_span!(
                "backfill",
                job = claim.job.id,
                subscription_id = claim.job.subscription_id
            );
            tokio::spawn(
                async move {
                    engine.run_backfill(claim).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
    }

    /// Fetches a backfill job's range page by page, each page committed with the job's
    /// position; a transient failure releases the claim to retry later, a permanent one
    /// fails the job.
    async fn run_backfill(&self, claim: BackfillClaim) {
        let job = claim.job;
        let token = claim.claim_token;
        let release = |error: String, retry_at: Option<chrono::DateTime<Utc>>| async move {
            if retry_at.is_none() {
                tracing::warn!(%error, "backfill failed");
            } else {
                tracing::info!(%error, "backfill will retry");
            }
            if let Err(store_error) = self
                .store
                .release_backfill(job.id, token, &error, retry_at)
                .await
            {
                tracing::warn!(%store_error, "could not release the backfill claim; it will lapse");
            }
        };
        let context = match self.backfill_context(job.subscription_id).await {
            Ok(context) => context,
            Err(error) => return release(error.to_string(), None).await,
        };
        let connector = match (self.connectors)(&context.account.service, &context.account.config) {
            Ok(connector) if connector.capabilities().time_range => connector,
            Ok(connector) => {
                return release(
                    format!(
                        "the `{}` connector cannot fetch history by time range",
                        connector.service()
                    ),
                    None,
                )
                .await
            }
            Err(error) => return release(error.to_string(), None).await,
        };
        let mut checkpoint = job.checkpoint.clone().map(Checkpoint);
        let limit = self.config.lease_ttl / 2;
        loop {
            let fetched = tokio::time::timeout(
                limit,
                connector.fetch_range(&context, job.from, job.until, checkpoint.as_ref()),
            )
            .await
            .unwrap_or_else(|_| {
                Err(ConnectorError::Transient(format!(
                    "fetch took longer than {}s",
                    limit.as_secs()
                )))
            });
            let outcome = match fetched {
                Ok(outcome) => outcome,
                Err(error) if error.is_retriable() => {
                    let delay = match &error {
                        ConnectorError::RateLimited {
                            retry_after: Some(retry_after),
                        } => *retry_after,
                        _ => self.config.backoff.delay(0),
                    };
                    return release(error.to_string(), Some(Utc::now() + chrono_duration(delay)))
                        .await;
                }
                Err(error) => return release(error.to_string(), None).await,
            };
            let done = !outcome.more;
            let activities = match EncodedActivity::encode_all(&outcome.activities) {
                Ok(activities) => activities,
                Err(error) => return release(error.to_string(), None).await,
            };
            let step = BackfillStep {
                job_id: job.id,
                claim_token: token,
                activities,
                checkpoint: outcome.checkpoint.0.clone(),
                done,
            };
            match self
                .store
                .commit_backfill(step, self.config.lease_ttl)
                .await
            {
                Ok(committed) => {
                    metrics::committed(
                        &context.account.service,
                        committed.appended,
                        committed.duplicates,
                    );
                    if committed.appended > 0 {
                        let _ = self.committed.send(Committed {
                            subscription_id: job.subscription_id,
                            last_sequence: committed.last_sequence,
                            appended: committed.appended,
                        });
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "backfill step not committed; the job resumes from its last position");
                    return;
                }
            }
            if done {
                tracing::info!("backfill done");
                return;
            }
            checkpoint = Some(outcome.checkpoint);
        }
    }

    async fn backfill_context(
        &self,
        subscription_id: SubscriptionId,
    ) -> Result<PollContext, StoreError> {
        let subscription = self.store.get_subscription(subscription_id).await?;
        let account = self.store.get_account(subscription.account).await?;
        Ok(PollContext {
            account,
            subscription,
        })
    }

    /// Polls one leased subscription until it has nothing more (or its page budget is spent),
    /// then releases the lease with the outcome.
    async fn run_leased_poll(self: &Arc<Self>, lease: Lease) {
        let _held = metrics::LeaseHeld::new();
        let started = std::time::Instant::now();
        let mut service = String::from("unknown");
        let result = self.poll_pages(&lease, &mut service).await;
        let elapsed = started.elapsed();
        let release = match result {
            Ok(interval) => {
                metrics::poll_finished(&service, "ok", elapsed);
                PollResult::Succeeded {
                    next_poll_at: Utc::now() + chrono_duration(interval),
                }
            }
            Err(PollError::Store(StoreError::LeaseLost(_))) => {
                metrics::poll_finished(&service, "lease_lost", elapsed);
                tracing::warn!("lease lost during poll; another poller took over");
                return;
            }
            Err(PollError::Store(error)) => {
                metrics::poll_finished(&service, "store_error", elapsed);
                tracing::error!(%error, "store failed during poll");
                PollResult::Failed {
                    error: error.to_string(),
                    retry_at: Utc::now() + chrono_duration(self.config.backoff.initial),
                }
            }
            Err(PollError::Connector(error)) => {
                metrics::poll_finished(&service, error_label(&error), elapsed);
                self.failure_result(&lease, error).await
            }
        };
        if let Err(error) = self.store.release_lease(&lease, release).await {
            tracing::warn!(%error, "could not release lease; it will lapse");
        }
    }

    async fn failure_result(&self, lease: &Lease, error: ConnectorError) -> PollResult {
        if let Some(reason) = error.disable_reason() {
            tracing::warn!(%error, reason, "deactivating subscription");
            self.drop_watch(lease.subscription_id);
            return PollResult::Disabled {
                reason: reason.to_owned(),
                error: error.to_string(),
            };
        }
        let failures = self
            .store
            .poll_state(lease.subscription_id)
            .await
            .map(|state| state.consecutive_failures)
            .unwrap_or(0);
        let delay = match &error {
            ConnectorError::RateLimited {
                retry_after: Some(retry_after),
            } => *retry_after,
            _ => self.config.backoff.delay(failures),
        };
        tracing::warn!(%error, failures = failures + 1, retry_in_ms = delay.as_millis() as u64, "poll failed; backing off");
        PollResult::Failed {
            error: error.to_string(),
            retry_at: Utc::now() + chrono_duration(delay),
        }
    }

    async fn poll_pages(
        self: &Arc<Self>,
        lease: &Lease,
        service: &mut String,
    ) -> Result<Duration, PollError> {
        let subscription = self.store.get_subscription(lease.subscription_id).await?;
        let account = self.store.get_account(subscription.account).await?;
        *service = account.service.clone();
        if subscription.subscription_type != SubscriptionType::Changes {
            return Err(
                ConnectorError::Unsupported(match subscription.subscription_type {
                    SubscriptionType::Crawl => "crawl",
                    _ => "analytics",
                })
                .into(),
            );
        }
        let connector = (self.connectors)(&account.service, &account.config)?;
        let interval = tidemark_connectors::poll_interval(&account.config, &*connector)?;
        let context = PollContext {
            account,
            subscription,
        };
        self.ensure_watch(&*connector, &context);

        let checkpoint = self
            .store
            .load_checkpoint(lease.subscription_id)
            .await?
            .map(Checkpoint);
        let budget = self.config.max_pages_per_lease.max(1);

        // A pipeline: the connector fetches (and encodes) page N+1 while page N commits. Pages commit strictly in order; when a commit
        // fails, the pages fetched after it are dropped unseen (their checkpoints were never
        // stored, so they are fetched again). At most PIPELINE_DEPTH pages wait in between.
        let (pages_tx, pages_rx) = tokio::sync::mpsc::channel::<PendingPage>(PIPELINE_DEPTH);
        let fetching = {
            let engine = Arc::clone(self);
            let context = context.clone();
            tokio::spawn(
                async move {
                    let mut checkpoint = checkpoint;
                    for _ in 0..budget {
                        match engine
                            .poll_connector(&*connector, &context, checkpoint.as_ref())
                            .await
                        {
                            Err(error) => {
                                let _ = pages_tx.send(Err(error.into())).await;
                                return;
                            }
                            Ok(outcome) => {
                                let more = outcome.more;
                                let next_checkpoint = Some(outcome.checkpoint.clone());
                                // Encoding follows fetching on this side of the pipeline, on
                                // the thread that built the activities (which then frees them
                                // where they were allocated); the writer keeps the other core.
                                let page = encode(&*connector, outcome, checkpoint.as_ref())
                                    .map_err(PollError::from);
                                checkpoint = next_checkpoint;
                                let failed = page.is_err();
                                if pages_tx.send(page).await.is_err() || failed || !more {
                                    return;
                                }
                            }
                        }
                    }
                }
                .in_current_span(),
            )
        };
        let result = self
            .commit_pages(lease.clone(), &context.account.service, pages_rx, interval)
            .await;
        // Whatever the fetcher is doing now is past what was committed: stop it before the
        // lease is released, so no poll of this subscription outlives its lease.
        fetching.abort();
        let _ = fetching.await;
        result
    }

    /// Commits pages in the order they were fetched, renewing the lease as needed. Returns when
    /// the connector has no more (the account's poll interval) or the page budget is spent
    /// (zero: due again at once).
    async fn commit_pages(
        &self,
        mut lease: Lease,
        service: &str,
        mut pages: tokio::sync::mpsc::Receiver<PendingPage>,
        interval: Duration,
    ) -> Result<Duration, PollError> {
        let mut page_number = 0usize;
        while let Some(pending) = pages.recv().await {
            let page = pending?;
            let fetched = page.activities.len();
            if fetched == 0 && page.checkpoint.is_none() {
                // Nothing happened upstream: no write at all.
                tracing::debug!(page = page_number, "poll found nothing new");
                if !page.more {
                    return Ok(interval);
                }
                page_number += 1;
                continue;
            }
            let committed = self
                .store
                .commit(CommitBatch {
                    subscription_id: lease.subscription_id,
                    activities: page.activities,
                    checkpoint: page.checkpoint.map(|checkpoint| checkpoint.0),
                    lease: Some(lease.clone()),
                    watermark: page.watermark,
                })
                .await?;
            metrics::committed(service, committed.appended, committed.duplicates);
            tracing::debug!(
                page = page_number,
                fetched,
                appended = committed.appended,
                duplicates = committed.duplicates,
                last_sequence = committed.last_sequence,
                more = page.more,
                "poll committed"
            );
            if committed.appended > 0 {
                let _ = self.committed.send(Committed {
                    subscription_id: lease.subscription_id,
                    last_sequence: committed.last_sequence,
                    appended: committed.appended,
                });
            }
            if !page.more {
                return Ok(interval);
            }
            if lease.expires_at - Utc::now() < chrono_duration(self.config.lease_ttl / 2) {
                lease = self
                    .store
                    .renew_lease(&lease, self.config.lease_ttl)
                    .await?;
            }
            page_number += 1;
        }
        // The page budget is spent and the connector has more: due again at once, after
        // other subscriptions had a turn.
        Ok(Duration::ZERO)
    }

    /// One connector poll, bounded by half the lease period.
    async fn poll_connector(
        &self,
        connector: &dyn Connector,
        context: &PollContext,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<PollOutcome, ConnectorError> {
        let limit = self.config.lease_ttl / 2;
        tokio::time::timeout(limit, connector.poll(context, checkpoint))
            .await
            .map_err(|_| {
                ConnectorError::Transient(format!("poll took longer than {}s", limit.as_secs()))
            })?
    }

    fn ensure_watch(self: &Arc<Self>, connector: &dyn Connector, context: &PollContext) {
        if !connector.capabilities().push {
            return;
        }
        let subscription_id = context.subscription.id;
        let Ok(mut watches) = self.watches.lock() else {
            return;
        };
        if watches.contains_key(&subscription_id) {
            return;
        }
        let weak = Arc::downgrade(self);
        let trigger = PollTrigger::new(move || {
            if let Some(engine) = weak.upgrade() {
                engine.request_poll(subscription_id);
            }
        });
        match connector.watch(context, trigger) {
            Ok(Some(guard)) => {
                tracing::debug!(subscription_id, "watching upstream for changes");
                watches.insert(subscription_id, guard);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(subscription_id, %error, "could not watch upstream; relying on periodic polls")
            }
        }
    }

    fn drop_watch(&self, subscription_id: SubscriptionId) {
        if let Ok(mut watches) = self.watches.lock() {
            watches.remove(&subscription_id);
        }
    }

    /// Stops watches of subscriptions that were deleted or deactivated.
    async fn sweep_watches(&self) {
        let ids: Vec<SubscriptionId> = match self.watches.lock() {
            Ok(watches) => watches.keys().copied().collect(),
            Err(_) => return,
        };
        for subscription_id in ids {
            let keep =
                matches!(self.store.get_subscription(subscription_id).await, Ok(s) if s.active);
            if !keep {
                self.drop_watch(subscription_id);
            }
        }
    }

    async fn prune_retention(&self) {
        match self
            .store
            .prune_expired(Utc::now(), self.config.retention_batch)
            .await
        {
            Ok(0) => {}
            Ok(deleted) => {
                metrics::pruned(deleted);
                tracing::info!(deleted, "pruned activity past retention");
            }
            Err(error) => tracing::warn!(%error, "retention pruning failed"),
        }
    }
}

fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

fn error_label(error: &ConnectorError) -> &'static str {
    match error {
        ConnectorError::RateLimited { .. } => "rate_limited",
        ConnectorError::Transient(_) => "transient",
        ConnectorError::BadResponse(_) => "bad_response",
        ConnectorError::Unauthorized(_) => "unauthorized",
        ConnectorError::BadConfig(_) | ConnectorError::UnknownService(_) => "bad_config",
        ConnectorError::CorruptCheckpoint(_) => "corrupt_checkpoint",
        ConnectorError::Unsupported(_) => "unsupported",
    }
}
