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
//!    ([`Store::advance_publications`], written in batches for all the pairs in flight); a
//!    page whose activity matched nothing moves the position without publishing. A crash
//!    therefore re-publishes at most the one message that was acknowledged but not yet
//!    committed.
//! 3. **A repeat is the same message.** Consumers (and JetStream's duplicate window) drop a
//!    repeated message id, `{subscription}-{first_sequence}`, so a message published again
//!    must carry exactly what the first copy carried, even if more activity was committed in
//!    between (otherwise the activity added to the repeat would be dropped with it). A message
//!    that ends at the end of what was read could grow on a later read, so before it is
//!    published its last sequence is recorded as the position's *pending* message; the next
//!    publish from that position, by any node, ends there.
//! 4. A failed publish (or connect) keeps the position, records the attempt and backs off
//!    exponentially (0.5 s to 30 s by default): a broker that is down for an hour gets
//!    everything, in order, within about 30 s of coming back. Nothing is ever given up.
//!
//! A claim stops (and the pair is claimed afresh) when the destination is changed, disabled or
//! deleted, so new settings apply from the next message. Claims expire by the nodes' clocks:
//! run the nodes with synchronised clocks (NTP), as for poll leases and webhook claims.
//!
//! One [`BrokerPublisher`] per destination is shared by all its subscriptions; it is opened on
//! first use, re-opened when the destination's settings change or the broker says the target
//! is unusable (a deleted stream is then re-created when the destination asks for that), and a
//! failed connect is retried at most once per [`WorkerConfig::reconnect_after`]. Publishers not
//! used for [`IDLE_PUBLISHER`] are closed.
//!
//! # Its own thread
//! [`DestinationWorker::spawn`] runs the worker on a thread of its own with a single-threaded
//! runtime, as `tidemark serve` does: its many short tasks (one per pair in flight, the
//! brokers' connection drivers, the advance writer) then wake one another without crossing
//! threads. On this 2-core host, with the whole process on one runtime thread instead of two,
//! Tidemark's CPU per Redis message fell from 24.0 to 20.1 µs (BENCHMARKS.md). It also caps
//! one node's publishing at one core (about 50,000 messages/s here), like a Kafka producer's
//! single sender thread; the store's writer is one thread too.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tidemark_store::{
    Destination, DestinationAttempt, DuePublication, PublicationAdvance, PublicationOutcome, Store,
    StoredActivity,
};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

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
    /// acknowledged message. Never less than one publish's timeout plus twice
    /// [`CLAIM_MARGIN`] (see [`WorkerConfig::effective_claim_ttl`]). A node that dies holding
    /// a claim delays that pair by up to this long.
    pub claim_ttl: Duration,
    /// Pairs published at once by this worker.
    pub max_in_flight: usize,
    /// Activities read from the stream at a time (at least 1).
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
            read_batch: 500,
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

/// How much claim must be left, beyond one publish's timeout, to start a publish under it.
pub const CLAIM_MARGIN: Duration = Duration::from_secs(2);

/// A destination's publisher unused for this long is closed (it is opened again when needed).
pub const IDLE_PUBLISHER: Duration = Duration::from_secs(300);

/// Advances written to the store in one call at most.
const ADVANCE_BATCH: usize = 1024;

/// How long the advance writer gathers advances when acknowledgements are slow (see
/// [`DestinationWorker::advance_linger`]).
const ADVANCE_LINGER: Duration = Duration::from_millis(1);

/// Scheduler turns the advance writer yields to gather more advances before writing (it stops
/// at the first turn that brings none).
const GATHER_TURNS: usize = 4;

/// Acknowledgements slower than this on average (many claims in flight, a busy broker) make
/// the advance writer gather for [`ADVANCE_LINGER`].
const LINGER_ABOVE_ACK: Duration = Duration::from_millis(20);

/// Acknowledged messages logged as one successful attempt at most (a run of messages one
/// claim published in a row; failures are logged one by one).
pub const MESSAGES_PER_LOGGED_ATTEMPT: usize = 16;

impl WorkerConfig {
    /// The claim's lifetime: [`WorkerConfig::claim_ttl`], raised to outlast one publish with
    /// room to renew it.
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

/// A destination's slot and when a claim last asked for it.
struct SlotEntry {
    slot: Arc<tokio::sync::Mutex<Slot>>,
    used: Instant,
}

/// An advance waiting to be written, with where to say whether it was taken.
type AdvanceRequest = (PublicationAdvance, oneshot::Sender<Option<bool>>);

/// Publishes due activity to broker destinations. Share it in an `Arc`; call
/// [`DestinationWorker::wake`] when activity is committed so publishing starts at once.
pub struct DestinationWorker {
    store: Arc<dyn Store>,
    config: WorkerConfig,
    wake: Notify,
    places: Arc<Semaphore>,
    /// Per destination id: its connection slot, locked while connecting so that the claims
    /// waiting for it share one connect.
    slots: Mutex<HashMap<i64, SlotEntry>>,
    /// Advances of every claim in flight, written in batches by [`DestinationWorker::run`].
    advances: mpsc::UnboundedSender<AdvanceRequest>,
    advances_rx: Mutex<Option<mpsc::UnboundedReceiver<AdvanceRequest>>>,
    /// How long acknowledgements take lately, in microseconds (a moving average).
    ack_micros: AtomicU64,
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
    /// The claim was taken over, its destination changed, or the position could not be
    /// written: leave the pair to its next claim (released if it is still ours).
    LostClaim,
    /// The worker is stopping: release the claim where the position is.
    ShuttingDown,
    /// Publishing failed: back off.
    Failed(Failure),
}

/// A failed publish (or what kept it from being tried).
struct Failure {
    error: String,
    /// The message's first and last sequence and activity count, when one was published.
    message: Option<(u64, u64, usize)>,
    started_at: DateTime<Utc>,
    latency: Duration,
}

impl Failure {
    /// A failure before any message was published, that began at `started_at`.
    fn before_publishing(error: String, started_at: DateTime<Utc>) -> Stop {
        Stop::Failed(Failure {
            error,
            message: None,
            latency: (Utc::now() - started_at).to_std().unwrap_or_default(),
            started_at,
        })
    }
}

/// What one claim is doing: its position and pending message as the store holds them, and
/// how long the claim lasts.
struct Progress<'a> {
    due: &'a DuePublication,
    /// Everything up to here is acknowledged and committed.
    position: u64,
    /// The pending message as last written (see the module doc).
    pending: Option<u64>,
    /// When the claim ends, as this node reckons it (never later than the store's).
    deadline: Instant,
    /// Acknowledged messages not logged yet.
    unlogged: Option<Run>,
}

/// Messages acknowledged in a row, logged as one successful attempt.
struct Run {
    first_sequence: u64,
    last_sequence: u64,
    activities: usize,
    messages: usize,
    started_at: DateTime<Utc>,
    /// Time spent waiting for the broker's acknowledgements.
    latency: Duration,
}

impl Progress<'_> {
    /// Counts an acknowledged message; returns the attempt to log once enough have gathered.
    fn acknowledged(
        &mut self,
        message: &Message,
        started_at: DateTime<Utc>,
        latency: Duration,
    ) -> Option<DestinationAttempt> {
        let run = self.unlogged.get_or_insert(Run {
            first_sequence: message.first_sequence,
            last_sequence: message.last_sequence,
            activities: 0,
            messages: 0,
            started_at,
            latency: Duration::ZERO,
        });
        run.last_sequence = message.last_sequence;
        run.activities += message.activity_count;
        run.messages += 1;
        run.latency += latency;
        if run.messages >= MESSAGES_PER_LOGGED_ATTEMPT {
            self.take_attempt()
        } else {
            None
        }
    }

    /// The acknowledged messages not logged yet, as one successful attempt.
    fn take_attempt(&mut self) -> Option<DestinationAttempt> {
        let run = self.unlogged.take()?;
        Some(DestinationAttempt {
            id: 0,
            destination_id: self.due.destination.id,
            subscription_id: self.due.subscription_id,
            account_id: self.due.account_id,
            first_sequence: run.first_sequence,
            last_sequence: run.last_sequence,
            published: u32::try_from(run.activities).unwrap_or(u32::MAX),
            started_at: run.started_at,
            latency: run.latency,
            success: true,
            error: None,
        })
    }
}

impl DestinationWorker {
    /// A worker over `store`.
    pub fn new(store: Arc<dyn Store>, config: WorkerConfig) -> Arc<Self> {
        crate::metrics::describe();
        let (advances, advances_rx) = mpsc::unbounded_channel();
        Arc::new(DestinationWorker {
            places: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            store,
            config,
            wake: Notify::new(),
            slots: Mutex::new(HashMap::new()),
            advances,
            advances_rx: Mutex::new(Some(advances_rx)),
            ack_micros: AtomicU64::new(0),
        })
    }

    /// New activity was committed: look for due pairs now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// [`DestinationWorker::run`] on a thread of its own (see the module doc); the receiver
    /// resolves when it has finished.
    ///
    /// # Errors
    /// If the thread or its runtime cannot be started.
    pub fn spawn(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<oneshot::Receiver<()>> {
        run_on_own_thread("tidemark-brokers", move || self.run(shutdown))
    }

    /// Publishes until `shutdown` resolves, then waits for the claims in flight (each ends
    /// after its current publish and releases its claim).
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let recorder = self
            .advances_rx
            .lock()
            .ok()
            .and_then(|mut rx| rx.take())
            .map(|rx| tokio::spawn(Arc::clone(&self).write_advances(rx)));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut swept = Instant::now();
        loop {
            let scanned = tokio::time::Instant::now();
            self.dispatch_due(&stop_rx).await;
            if swept.elapsed() >= IDLE_PUBLISHER / 10 {
                self.close_idle_publishers();
                swept = Instant::now();
            }
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
        if let Some(recorder) = recorder {
            recorder.abort();
            let _ = recorder.await;
        }
        if let Ok(mut slots) = self.slots.lock() {
            slots.clear();
        }
    }

    /// Writes the advances of all claims in flight, whatever has gathered in one store call,
    /// and tells each claim whether its advance was taken (`None`: the write failed).
    async fn write_advances(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<AdvanceRequest>) {
        let mut batch = Vec::with_capacity(ADVANCE_BATCH);
        while rx.recv_many(&mut batch, ADVANCE_BATCH).await > 0 {
            self.gather_advances(&mut rx, &mut batch).await;
            let (items, replies): (Vec<_>, Vec<_>) = std::mem::take(&mut batch).into_iter().unzip();
            match self.store.advance_publications(items).await {
                Ok(taken) => {
                    for (reply, taken) in replies.into_iter().zip(taken) {
                        let _ = reply.send(Some(taken));
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "could not commit destination positions");
                    for reply in replies {
                        let _ = reply.send(None);
                    }
                }
            }
        }
    }

    /// Adds to `batch` the advances that come while other claims get to run: one write costs
    /// about as much for one advance as for a hundred.
    ///
    /// First it yields for up to [`GATHER_TURNS`] scheduler turns (no timer: under load that
    /// gathers tens, when idle it costs nothing); then, while acknowledgements are slow, it
    /// waits [`DestinationWorker::advance_linger`] for more.
    async fn gather_advances(
        &self,
        rx: &mut mpsc::UnboundedReceiver<AdvanceRequest>,
        batch: &mut Vec<AdvanceRequest>,
    ) {
        for _ in 0..GATHER_TURNS {
            if batch.len() >= ADVANCE_BATCH {
                break;
            }
            let before = batch.len();
            tokio::task::yield_now().await;
            while batch.len() < ADVANCE_BATCH {
                match rx.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            if batch.len() == before {
                break;
            }
        }
        if let Some(linger) = self.advance_linger() {
            let until = tokio::time::Instant::now() + linger;
            while batch.len() < ADVANCE_BATCH {
                let room = ADVANCE_BATCH - batch.len();
                match tokio::time::timeout_at(until, rx.recv_many(batch, room)).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
    }

    /// Counts an acknowledgement's latency into the moving average.
    fn record_ack(&self, latency: Duration) {
        let sample = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let average = self.ack_micros.load(Ordering::Relaxed);
        // Races between claims lose a sample now and then, which an average can spare.
        let next = average - average / 16 + sample / 16;
        self.ack_micros.store(next, Ordering::Relaxed);
    }

    /// How long the advance writer waits to gather more claims' advances into one write:
    /// [`ADVANCE_LINGER`] while acknowledgements take [`LINGER_ABOVE_ACK`] or longer, otherwise
    /// none. Tokio's timer has millisecond granularity, so the wait is 1–2 ms: at most about a
    /// tenth of each message's round when it applies.
    fn advance_linger(&self) -> Option<Duration> {
        let ack = Duration::from_micros(self.ack_micros.load(Ordering::Relaxed));
        (ack >= LINGER_ABOVE_ACK).then_some(ADVANCE_LINGER)
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
            // Only this loop takes places, and it claimed no more than were free.
            let Ok(permit) = Arc::clone(&self.places).try_acquire_owned() else {
                self.finish(
                    &publication,
                    PublicationOutcome::Published {
                        through: publication.after_sequence,
                    },
                    None,
                )
                .await;
                continue;
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
        let mut progress = Progress {
            due: &due,
            position: due.after_sequence,
            pending: due.pending_through,
            deadline: claim_deadline,
            unlogged: None,
        };
        let result = self.publish_from(&mut progress, &stop).await;
        let position = progress.position;
        let logged = progress.take_attempt();
        match result {
            // Every acknowledged message was committed as it went; this releases the claim
            // (at once on shutdown too, so a restarted node need not wait for it to lapse).
            // A claim taken over is left alone by the store (its token no longer matches); one
            // whose destination changed is released, to be claimed with the new settings.
            Ok(()) | Err(Stop::ShuttingDown) | Err(Stop::LostClaim) => {
                self.finish(
                    &due,
                    PublicationOutcome::Published { through: position },
                    logged,
                )
                .await;
            }
            Err(Stop::Failed(failure)) => {
                // Messages acknowledged under this claim reset the failure count.
                let failures = if position > due.after_sequence {
                    1
                } else {
                    due.attempts + 1
                };
                let delay = self.config.retry_delay(failures);
                if failures == 1 {
                    tracing::warn!(error = %failure.error, "publishing to the destination failed; retrying with back-off");
                } else {
                    tracing::debug!(error = %failure.error, failures, retry_in_ms = delay.as_millis() as u64, "publish failed again");
                }
                let (first_sequence, last_sequence, published) = failure.message.unwrap_or((
                    position + 1,
                    due.through_sequence.max(position + 1),
                    0,
                ));
                let attempt = DestinationAttempt {
                    id: 0,
                    destination_id: due.destination.id,
                    subscription_id: due.subscription_id,
                    account_id: due.account_id,
                    first_sequence,
                    last_sequence,
                    published: u32::try_from(published).unwrap_or(u32::MAX),
                    started_at: failure.started_at,
                    latency: failure.latency,
                    success: false,
                    error: Some(failure.error),
                };
                let retry_at =
                    Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                if let Some(logged) = logged {
                    // The messages acknowledged before the failure, logged under the claim.
                    let pending = progress.pending;
                    let _ = self
                        .advance(&mut progress, position, pending, Some(logged))
                        .await;
                }
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

    /// Publishes the claimed pair's activity after its position, committing the position
    /// after every acknowledged message, until the claim's `through_sequence` is covered.
    async fn publish_from(
        &self,
        progress: &mut Progress<'_>,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), Stop> {
        let due = progress.due;
        let started_at = Utc::now();
        let builder = message_builder(&due.destination, self.config.max_body_bytes);
        let publisher = self.publisher(&due.destination, started_at).await?;
        // The message in flight when the last claim ended: the next one from this position
        // ends there (see the module doc).
        let mut in_flight = due.pending_through.filter(|&p| p > due.after_sequence);
        while progress.position < due.through_sequence || in_flight.is_some() {
            if *stop.borrow() {
                return Err(Stop::ShuttingDown);
            }
            let mut page = self
                .store
                .read_activity(
                    due.subscription_id,
                    progress.position,
                    self.config.read_batch.max(1),
                )
                .await
                .map_err(|e| {
                    Failure::before_publishing(format!("reading the stream: {e}"), Utc::now())
                })?;
            if let Some(end) = in_flight.take() {
                // The page is in sequence order. If the pending message's activity is gone
                // (pruned), nothing of it is left to repeat: cut afresh.
                let kept = page
                    .iter()
                    .take_while(|stored| stored.sequence <= end)
                    .count();
                if kept > 0 {
                    page.truncate(kept);
                }
            }
            let Some(last) = page.last().map(|stored| stored.sequence) else {
                // Nothing after the position any more (pruned, or the subscription deleted).
                progress.position = progress.position.max(due.through_sequence);
                break;
            };
            warn_on_gap(progress.position, &page);
            let failed_build =
                |e: super::MessageError| Failure::before_publishing(e.to_string(), Utc::now());
            // Messages are built one at a time, each while the one before is in flight.
            let mut messages = builder.messages(due.account_id, due.subscription_id, &page);
            // The last message may end only because the page did: it could grow on a later
            // read, so it is recorded as pending before it goes out. The others end where the
            // next message begins, whatever comes after.
            let max = builder.max_activities.get();
            let pending_of = |message: &Message| -> Option<u64> {
                (message.through_sequence == last && message.activity_count < max)
                    .then_some(message.last_sequence)
            };
            let Some(first) = messages.next().transpose().map_err(failed_build)? else {
                // Nothing matched the filter: move on without publishing.
                self.advance(progress, last, None, None).await?;
                continue;
            };
            let mut next = Some(first);
            while let Some(message) = next.take() {
                if *stop.borrow() {
                    return Err(Stop::ShuttingDown);
                }
                let pending = pending_of(&message);
                let short = progress.deadline.saturating_duration_since(Instant::now())
                    < self.config.publisher.publish_timeout + CLAIM_MARGIN;
                if (pending.is_some() && pending != progress.pending) || short {
                    // Record the pending message, or renew a claim running short.
                    let keep = pending.or(progress.pending);
                    self.advance(progress, progress.position, keep, None)
                        .await?;
                    if progress.deadline.saturating_duration_since(Instant::now())
                        < self.config.publisher.publish_timeout + CLAIM_MARGIN
                    {
                        tracing::warn!("could not renew the claim in time; leaving the pair");
                        return Err(Stop::LostClaim);
                    }
                }
                let started_at = Utc::now();
                let timer = Instant::now();
                let result = publisher.publish(&message).await;
                let latency = timer.elapsed();
                match result {
                    Ok(ack) => {
                        self.record_ack(latency);
                        if ack.duplicate {
                            tracing::debug!(message_id = %message.message_id(), "broker already had the message");
                        }
                        let attempt = progress.acknowledged(&message, started_at, latency);
                        // The next message is built first, so that whether it is pending goes
                        // with this commit; a bad activity in it fails only after the commit.
                        let following = messages.next().transpose();
                        let next_pending = match &following {
                            Ok(Some(following)) => pending_of(following),
                            _ => None,
                        };
                        self.advance(progress, message.through_sequence, next_pending, attempt)
                            .await?;
                        next = following.map_err(failed_build)?;
                    }
                    Err(error) => {
                        if !error.is_retriable() {
                            // The target changed under us (a stream or exchange deleted, a
                            // binding removed): connect afresh next time, checking it again.
                            self.forget_publisher(due.destination.id);
                        }
                        return Err(Stop::Failed(Failure {
                            error: error.to_string(),
                            message: Some((
                                message.first_sequence,
                                message.last_sequence,
                                message.activity_count,
                            )),
                            started_at,
                            latency,
                        }));
                    }
                }
            }
            // The last message's `through_sequence` covers the page to its end.
            debug_assert_eq!(progress.position, last);
        }
        Ok(())
    }

    /// Commits `through` (and the pending message) under the claim and renews it.
    async fn advance(
        &self,
        progress: &mut Progress<'_>,
        through: u64,
        pending: Option<u64>,
        attempt: Option<DestinationAttempt>,
    ) -> Result<(), Stop> {
        let ttl = self.config.effective_claim_ttl();
        let deadline = Instant::now() + ttl;
        let until = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let mut item = PublicationAdvance::of(progress.due, through, until);
        item.pending_through = pending;
        item.attempt = attempt;
        let (reply, answer) = oneshot::channel();
        if self.advances.send((item, reply)).is_err() {
            return Err(Stop::LostClaim);
        }
        match answer.await {
            Ok(Some(true)) => {
                progress.position = progress.position.max(through);
                progress.pending = pending;
                progress.deadline = deadline;
                Ok(())
            }
            Ok(Some(false)) => {
                tracing::debug!("claim taken over or destination changed; leaving the pair");
                Err(Stop::LostClaim)
            }
            // The write failed (logged by the writer): a message acknowledged but not
            // committed is published again, the same, by the pair's next claim.
            Ok(None) | Err(_) => Err(Stop::LostClaim),
        }
    }

    /// The destination's publisher, connecting when there is none for its current settings.
    async fn publisher(
        &self,
        destination: &Destination,
        started_at: DateTime<Utc>,
    ) -> Result<Arc<BrokerPublisher>, Stop> {
        let slot = {
            let mut slots = self.slots.lock().map_err(|_| Stop::LostClaim)?;
            let entry = slots.entry(destination.id).or_insert_with(|| SlotEntry {
                slot: Arc::new(tokio::sync::Mutex::new(Slot {
                    version: destination.modified,
                    connection: None,
                })),
                used: Instant::now(),
            });
            entry.used = Instant::now();
            Arc::clone(&entry.slot)
        };
        let mut slot = slot.lock().await;
        if destination.modified > slot.version {
            slot.version = destination.modified;
            slot.connection = None;
        } else if destination.modified < slot.version {
            // This claim was taken with settings that have changed since.
            return Err(Stop::LostClaim);
        }
        match &slot.connection {
            Some(Connection::Open(publisher)) => return Ok(Arc::clone(publisher)),
            Some(Connection::Failed { at, error })
                if at.elapsed() < self.config.reconnect_after =>
            {
                return Err(Failure::before_publishing(error.clone(), started_at))
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
                Err(Failure::before_publishing(error, started_at))
            }
        }
    }

    /// Drops a destination's publisher so the next claim connects (and checks) again.
    fn forget_publisher(&self, destination_id: i64) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.remove(&destination_id);
        }
    }

    /// Closes the publishers of destinations no claim asked for in [`IDLE_PUBLISHER`]
    /// (deleted, disabled, or without activity).
    fn close_idle_publishers(&self) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.retain(|_, entry| entry.used.elapsed() < IDLE_PUBLISHER);
        }
    }
}

/// Logs activity that left the stream before this destination published it (retention).
/// Runs the future `make` returns on a new thread named `name`, with a single-threaded
/// runtime that is dropped (cancelling what it still runs) once that future ends; the
/// receiver gets its output. What [`DestinationWorker::spawn`] uses, public so a benchmark can
/// give a bare client the same.
///
/// # Errors
/// If the runtime or the thread cannot be started.
pub fn run_on_own_thread<F, Fut, T>(name: &str, make: F) -> std::io::Result<oneshot::Receiver<T>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done, finished) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let output = runtime.block_on(make());
            let _ = done.send(output);
        })?;
    Ok(finished)
}

fn warn_on_gap(position: u64, page: &[StoredActivity]) {
    if let Some(first) = page.first() {
        if first.sequence > position + 1 {
            tracing::warn!(
                from = position + 1,
                to = first.sequence - 1,
                "activity was pruned before it was published to this destination"
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The future runs on the named thread, not the caller's, with timers, and its output
    /// comes back.
    #[tokio::test]
    async fn test_run_on_own_thread_runs_there_and_returns_the_output() {
        let caller = std::thread::current().id();
        let finished = run_on_own_thread("tidemark-test-thread", move || async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let here = std::thread::current();
            (here.id() != caller, here.name().map(str::to_owned))
        })
        .expect("started");
        let (elsewhere, name) = finished.await.expect("finished");
        assert!(elsewhere);
        assert_eq!(name.as_deref(), Some("tidemark-test-thread"));
    }
}
