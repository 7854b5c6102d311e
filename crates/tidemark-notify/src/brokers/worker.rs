//! The destination worker: publishes every subscription's new activity to the application's
//! broker destinations, at least once, in order, each destination at its own position.
//!
//! # How a publication flows
//! A (destination, subscription) pair is *due* while the subscription's stream has activity
//! past the destination's position. The position lives in the store and moves only after the
//! broker acknowledged a message, so a crash loses nothing: the pair is still due afterwards.
//!
//! 1. [`DestinationWorker::run`] claims due pairs ([`Store::claim_due_publications`]): at most
//!    one claim per pair is ever in flight, over all nodes, so a subscription's next message
//!    never leaves before the previous one was acknowledged.
//! 2. The claim's holder reads the stream after the position, cuts it into messages
//!    ([`MessageBuilder`]: the destination's payload format, batch size and filter) and
//!    publishes them one by one. After each acknowledgement it commits the position to the
//!    message's [`Message::through_sequence`] and keeps its claim
//!    ([`Store::advance_publication`]); a page whose activity matched nothing moves the
//!    position without publishing. A crash therefore re-publishes at most the one message
//!    that was acknowledged but not yet committed, with the same message id.
//! 3. A failed publish (or connect) keeps the position, records the attempt and backs off
//!    exponentially (0.5 s to 30 s by default): a broker that is down for an hour gets
//!    everything, in order, within about 30 s of coming back. Nothing is ever given up.
//!
//! One [`BrokerPublisher`] per destination is shared by all its subscriptions; it is opened on
//! first use, re-opened when the destination's settings change or the broker says the target
//! is unusable (a deleted stream is then re-created when the destination asks for that), and a
//! failed connect is retried at most once per [`WorkerConfig::reconnect_after`].

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tidemark_store::{Destination, DestinationAttempt, DuePublication, PublicationOutcome, Store};
use tokio::sync::{Notify, Semaphore};

use super::{
    BrokerPublisher, BrokerTarget, DestinationKind, Message, MessageBuilder, PayloadFormat,
    PublisherOptions, DEFAULT_MAX_BODY_BYTES,
};
use crate::filter::EventPattern;
use crate::webhooks::backoff_delay;

/// Publishing settings; [`WorkerConfig::default`] suits a broker on the same network.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Timeouts of each destination's publisher (connect, and one publish until its ack).
    pub publisher: PublisherOptions,
    /// How long a claim on a (destination, subscription) pair lasts; renewed with every
    /// acknowledged message. Never less than one publish's timeout plus [`CLAIM_MARGIN`]
    /// (see [`WorkerConfig::effective_claim_ttl`]). A node that dies holding a claim delays
    /// that pair by up to this long.
    pub claim_ttl: Duration,
    /// Pairs published at once by this worker.
    pub max_in_flight: usize,
    /// Activities read from the stream at a time.
    pub read_batch: usize,
    /// Largest message body (see [`MessageBuilder::max_body_bytes`]).
    pub max_body_bytes: usize,
    /// Delay after the first failure.
    pub backoff_initial: Duration,
    /// Longest delay between tries.
    pub backoff_max: Duration,
    /// Randomized fraction of each delay.
    pub backoff_jitter: f64,
    /// After a failed connect, how long the failure is reused before connecting again.
    pub reconnect_after: Duration,
    /// Longest wait between two looks for due pairs when nothing wakes the worker.
    pub scan_interval: Duration,
    /// Shortest time between two looks (wakes that come sooner are gathered into one).
    pub min_scan_gap: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            publisher: PublisherOptions::default(),
            claim_ttl: Duration::from_secs(60),
            max_in_flight: 1024,
            read_batch: 1000,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            backoff_jitter: 0.2,
            reconnect_after: Duration::from_secs(1),
            scan_interval: Duration::from_millis(500),
            min_scan_gap: Duration::from_millis(2),
        }
    }
}

/// How much longer than one publish's timeout a claim lasts at least, and how much of a claim
/// must be left to start another publish under it.
pub const CLAIM_MARGIN: Duration = Duration::from_secs(2);

impl WorkerConfig {
    /// The claim's lifetime: [`WorkerConfig::claim_ttl`], raised to outlast one publish.
    pub fn effective_claim_ttl(&self) -> Duration {
        self.claim_ttl
            .max(self.publisher.publish_timeout + CLAIM_MARGIN * 2)
    }

    /// The delay before the next try after `failures` failures in a row.
    pub fn retry_delay(&self, failures: u32) -> Duration {
        backoff_delay(
            self.backoff_initial,
            self.backoff_max,
            self.backoff_jitter,
            failures,
        )
    }
}

/// A destination's publisher, or why it could not be opened.
enum Connection {
    Open(Arc<BrokerPublisher>),
    Failed { at: Instant, error: String },
}

/// One destination's connection, opened by the first claim that needs it.
struct Slot {
    /// The destination's settings the connection was made with (`modified`).
    version: DateTime<Utc>,
    connection: Option<Connection>,
}

/// Publishes due activity to broker destinations. Share it in an `Arc`; call
/// [`DestinationWorker::wake`] when activity is committed so publishing starts at once.
pub struct DestinationWorker {
    store: Arc<dyn Store>,
    config: WorkerConfig,
    wake: Notify,
    places: Arc<Semaphore>,
    /// Per destination id: its connection slot, locked while connecting so that the claims
    /// waiting for it share one connect.
    slots: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl std::fmt::Debug for DestinationWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationWorker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Why a claim stopped early.
enum Stop {
    /// The claim was taken over or its time ran out: leave the pair to its next holder.
    LostClaim,
    /// The worker is stopping: release the claim where the position is.
    ShuttingDown,
    /// Publishing failed: back off. The message, when one was being published.
    Failed {
        error: String,
        message: Option<(u64, u64, usize)>,
        started_at: DateTime<Utc>,
        latency: Duration,
    },
}

impl DestinationWorker {
    /// A worker over `store`.
    pub fn new(store: Arc<dyn Store>, config: WorkerConfig) -> Arc<Self> {
        crate::metrics::describe();
        Arc::new(DestinationWorker {
            places: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            store,
            config,
            wake: Notify::new(),
            slots: Mutex::new(HashMap::new()),
        })
    }

    /// New activity was committed: look for due pairs now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Publishes until `shutdown` resolves, then waits for the claims in flight (each ends
    /// after its current publish).
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        loop {
            let scanned = tokio::time::Instant::now();
            self.dispatch_due(&stop_rx).await;
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {
                    tokio::time::sleep_until(scanned + self.config.min_scan_gap).await;
                }
                _ = tokio::time::sleep(self.config.scan_interval) => {}
            }
        }
        let _ = stop_tx.send(true);
        let all = u32::try_from(self.config.max_in_flight.max(1)).unwrap_or(u32::MAX);
        let _ = self.places.acquire_many(all).await;
    }

    /// Claims as many due pairs as there are free places and starts publishing each.
    async fn dispatch_due(self: &Arc<Self>, stop: &tokio::sync::watch::Receiver<bool>) {
        let free = self.places.available_permits();
        if free == 0 {
            return;
        }
        let ttl = self.config.effective_claim_ttl();
        // Measured from before the call, this deadline is never later than the store's.
        let claim_deadline = Instant::now() + ttl;
        let due = match self
            .store
            .claim_due_publications(Utc::now(), ttl, free)
            .await
        {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "could not claim due publications");
                return;
            }
        };
        for publication in due {
            let Ok(permit) = Arc::clone(&self.places).try_acquire_owned() else {
                break;
            };
            let worker = Arc::clone(self);
            let stop = stop.clone();
            tokio::spawn(async move {
                let _permit = permit;
                worker
                    .publish_claim(publication, claim_deadline, stop)
                    .await;
            });
        }
    }

    /// Publishes one claimed pair from its position as far as the claim reached, then
    /// releases it (or backs off).
    #[tracing::instrument(skip_all, fields(destination_id = due.destination.id, subscription_id = due.subscription_id))]
    async fn publish_claim(
        &self,
        due: DuePublication,
        claim_deadline: Instant,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut position = due.after_sequence;
        match self
            .publish_from(&due, &mut position, claim_deadline, &stop)
            .await
        {
            // Every acknowledged message was committed as it went; this releases the claim
            // (at once on shutdown too, so a restarted node need not wait for it to lapse).
            Ok(()) | Err(Stop::ShuttingDown) => {
                self.finish(
                    &due,
                    PublicationOutcome::Published { through: position },
                    None,
                )
                .await;
            }
            Err(Stop::LostClaim) => {}
            Err(Stop::Failed {
                error,
                message,
                started_at,
                latency,
            }) => {
                // Messages acknowledged under this claim reset the failure count.
                let failures = if position > due.after_sequence {
                    1
                } else {
                    due.attempts + 1
                };
                let delay = self.config.retry_delay(failures);
                tracing::debug!(%error, retry_in_ms = delay.as_millis() as u64, "publish failed");
                if failures == 1 {
                    tracing::warn!(%error, "publishing to the destination failed; retrying with back-off");
                }
                let (first_sequence, last_sequence, published) =
                    message.unwrap_or((position + 1, due.through_sequence.max(position + 1), 0));
                let attempt = DestinationAttempt {
                    id: 0,
                    destination_id: due.destination.id,
                    subscription_id: due.subscription_id,
                    account_id: due.account_id,
                    first_sequence,
                    last_sequence,
                    published: u32::try_from(published).unwrap_or(u32::MAX),
                    started_at,
                    latency,
                    success: false,
                    error: Some(error),
                };
                let retry_at =
                    Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                // Acknowledged messages before the failure were committed one by one; the
                // position stays where the last of them left it.
                self.finish(&due, PublicationOutcome::Failed { retry_at }, Some(attempt))
                    .await;
            }
        }
    }

    /// Records how a claim ended; a store error leaves the claim to lapse (the pair is due
    /// again after it, from the last committed position).
    async fn finish(
        &self,
        due: &DuePublication,
        outcome: PublicationOutcome,
        attempt: Option<DestinationAttempt>,
    ) {
        if let Err(error) = self.store.finish_publication(due, outcome, attempt).await {
            tracing::warn!(%error, "could not record a publication's outcome; its claim will lapse");
        }
    }

    /// Publishes the claimed pair's activity after `position`, committing `position` after
    /// every acknowledged message, until the claim's `through_sequence` is covered.
    async fn publish_from(
        &self,
        due: &DuePublication,
        position: &mut u64,
        mut claim_deadline: Instant,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), Stop> {
        let failed = |error: String| Stop::Failed {
            error,
            message: None,
            started_at: Utc::now(),
            latency: Duration::ZERO,
        };
        let builder = message_builder(&due.destination, self.config.max_body_bytes);
        let publisher = self.publisher(&due.destination).await.map_err(failed)?;
        let ttl = self.config.effective_claim_ttl();
        while *position < due.through_sequence {
            if *stop.borrow() {
                return Err(Stop::ShuttingDown);
            }
            let page = self
                .store
                .read_activity(due.subscription_id, *position, self.config.read_batch)
                .await
                .map_err(|e| failed(format!("reading the stream: {e}")))?;
            let Some(last) = page.last().map(|stored| stored.sequence) else {
                // Nothing after the position any more (pruned, or the subscription deleted).
                *position = due.through_sequence;
                break;
            };
            let messages = builder
                .build(due.account_id, due.subscription_id, &page)
                .map_err(|e| failed(e.to_string()))?;
            if messages.is_empty() {
                // Nothing matched the filter: move on without publishing.
                claim_deadline = self.advance(due, last, None, ttl).await?;
                *position = last;
                continue;
            }
            for message in &messages {
                if *stop.borrow() {
                    return Err(Stop::ShuttingDown);
                }
                let left = claim_deadline.saturating_duration_since(Instant::now());
                if left < self.config.publisher.publish_timeout + CLAIM_MARGIN {
                    // Too little claim left for another publish: renew it first (the ack
                    // below renews it again).
                    self.advance(due, *position, None, ttl).await?;
                }
                let started_at = Utc::now();
                let timer = Instant::now();
                let result = publisher.publish(message).await;
                let latency = timer.elapsed();
                match result {
                    Ok(ack) => {
                        if ack.duplicate {
                            tracing::debug!(message_id = %message.message_id(), "broker already had the message");
                        }
                        let attempt = attempt_of(due, message, started_at, latency);
                        claim_deadline = self
                            .advance(due, message.through_sequence, Some(attempt), ttl)
                            .await?;
                        *position = message.through_sequence;
                    }
                    Err(error) => {
                        if !error.is_retriable() {
                            // The target changed under us (a stream or exchange deleted, a
                            // binding removed): connect afresh next time, checking it again.
                            self.forget_publisher(due.destination.id);
                        }
                        return Err(Stop::Failed {
                            error: error.to_string(),
                            message: Some((
                                message.first_sequence,
                                message.last_sequence,
                                message.activity_count,
                            )),
                            started_at,
                            latency,
                        });
                    }
                }
            }
            // Activity after the last message that had nothing to carry.
            if last > *position {
                claim_deadline = self.advance(due, last, None, ttl).await?;
                *position = last;
            }
        }
        Ok(())
    }

    /// Commits `through` under the claim and renews it; the claim's new deadline.
    async fn advance(
        &self,
        due: &DuePublication,
        through: u64,
        attempt: Option<DestinationAttempt>,
        ttl: Duration,
    ) -> Result<Instant, Stop> {
        let deadline = Instant::now() + ttl;
        let until = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        match self
            .store
            .advance_publication(due, through, until, attempt)
            .await
        {
            Ok(true) => Ok(deadline),
            Ok(false) => {
                tracing::debug!("claim taken over; leaving the pair to its new holder");
                Err(Stop::LostClaim)
            }
            Err(error) => {
                // The message was acknowledged but its position not committed: it will be
                // published again (same id) once the claim lapses.
                tracing::warn!(%error, "could not commit a destination's position");
                Err(Stop::LostClaim)
            }
        }
    }

    /// The destination's publisher, connecting when there is none for its current settings.
    async fn publisher(&self, destination: &Destination) -> Result<Arc<BrokerPublisher>, String> {
        let slot = {
            let mut slots = self
                .slots
                .lock()
                .map_err(|_| "publisher table poisoned".to_owned())?;
            Arc::clone(slots.entry(destination.id).or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Slot {
                    version: destination.modified,
                    connection: None,
                }))
            }))
        };
        let mut slot = slot.lock().await;
        if slot.version != destination.modified {
            slot.version = destination.modified;
            slot.connection = None;
        }
        match &slot.connection {
            Some(Connection::Open(publisher)) => return Ok(Arc::clone(publisher)),
            Some(Connection::Failed { at, error })
                if at.elapsed() < self.config.reconnect_after =>
            {
                return Err(error.clone())
            }
            _ => {}
        }
        let connected = match parse_target(destination) {
            Ok(target) => BrokerPublisher::connect(&target, self.config.publisher)
                .await
                .map_err(|e| format!("cannot publish to {}: {e}", target.redacted_url())),
            Err(error) => Err(error),
        };
        match connected {
            Ok(publisher) => {
                let publisher = Arc::new(publisher);
                slot.connection = Some(Connection::Open(Arc::clone(&publisher)));
                tracing::info!(destination_id = destination.id, kind = %destination.kind, "connected to the destination's broker");
                Ok(publisher)
            }
            Err(error) => {
                slot.connection = Some(Connection::Failed {
                    at: Instant::now(),
                    error: error.clone(),
                });
                Err(error)
            }
        }
    }

    /// Drops a destination's publisher so the next claim connects (and checks) again.
    fn forget_publisher(&self, destination_id: i64) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.remove(&destination_id);
        }
    }
}

/// The destination's broker target, as stored (checked when it was saved).
fn parse_target(destination: &Destination) -> Result<BrokerTarget, String> {
    let kind = DestinationKind::from_name(&destination.kind)
        .ok_or_else(|| format!("unknown destination kind `{}`", destination.kind))?;
    BrokerTarget::parse_kind(kind, &destination.target).map_err(|e| e.to_string())
}

/// How the destination's messages are cut: its payload, batch size and filter (a stored
/// filter was checked when saved; one that no longer parses filters nothing, as for webhooks).
fn message_builder(destination: &Destination, max_body_bytes: usize) -> MessageBuilder {
    let payload = PayloadFormat::from_name(&destination.payload).unwrap_or_default();
    let max_activities = usize::try_from(destination.batch_size)
        .ok()
        .and_then(NonZeroUsize::new)
        .unwrap_or(NonZeroUsize::MIN);
    let mut builder = MessageBuilder::new(payload, max_activities);
    builder.max_body_bytes = max_body_bytes;
    builder.filter = destination
        .filter
        .as_ref()
        .and_then(|pattern| match EventPattern::parse(pattern) {
            Ok(pattern) => Some(pattern),
            Err(error) => {
                tracing::warn!(destination_id = destination.id, %error, "stored filter does not parse; publishing everything");
                None
            }
        });
    builder
}

/// The attempt log entry of an acknowledged message.
fn attempt_of(
    due: &DuePublication,
    message: &Message,
    started_at: DateTime<Utc>,
    latency: Duration,
) -> DestinationAttempt {
    DestinationAttempt {
        id: 0,
        destination_id: due.destination.id,
        subscription_id: due.subscription_id,
        account_id: due.account_id,
        first_sequence: message.first_sequence,
        last_sequence: message.last_sequence,
        published: u32::try_from(message.activity_count).unwrap_or(u32::MAX),
        started_at,
        latency,
        success: true,
        error: None,
    }
}
