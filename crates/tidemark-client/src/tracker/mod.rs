//! The parallel time-range tracker of seed 000 ("Parallel tracking"), without its race
//! conditions.
//!
//! # How it runs
//! Each *round* reads the subscription's watermark (a range query from the saved position,
//! one activity per page) and splits `[position, watermark)` into slices of equal duration.
//! Workers take slices newest first (seed 000's reverse order) and page through each with
//! its range-bound cursor until an empty page, spooling what they read. Slices are released
//! to the [`Sink`] strictly oldest first: a slice's activity goes out only once it is complete
//! and every older slice has gone out, so the sink sees the activity of `[start, watermark)`
//! in (timestamp, sequence) order, exactly as one reader of that range would. When the round
//! is done the tracker reads the watermark again; caught up, it waits
//! [`TrackerConfig::poll_interval`] (or, with [`TrackerConfig::once`], stops).
//!
//! # Why nothing is lost or repeated
//! - A slice ends at or below the watermark, and the server guarantees that no activity with
//!   a timestamp below the watermark arrives later. So a slice read to its empty page is
//!   complete for good: seed 000's "late activity" cannot land in it afterwards. Activity
//!   above the watermark is left for a later round, whose slices start exactly where the
//!   released ones ended (`[from, until)` ranges, microsecond boundaries).
//! - The saved position only moves past released slices (the end of the newest contiguous
//!   run of them), and only after the sink accepted the slice ([`Sink::finish_slice`]); it is
//!   saved atomically with the sink's mark. After `kill -9` the tracker resumes from the file:
//!   the sink cuts off what it accepted after the mark (a slice released halfway), and that
//!   slice is read again. Completed-but-unreleased newer slices are simply read again too.
//! - Activity without a timestamp is in no time range (the server's rule), so the tracker
//!   never sees it; follow the stream by cursor for that.
//!
//! # Memory
//! Each slice waits in a [`spool`] (memory up to [`TrackerConfig::spool_memory`], then an
//! unnamed temporary file), so slices of any size are fine.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::types::{AccountRef, Query, SubscriptionRef};
use crate::{Client, ClientError};

mod sink;
mod spool;
mod state;

pub use sink::{ActivitySink, NdjsonFile, NdjsonWriter, Sink};
use spool::Spool;
use state::SavedState;

/// How a [`Tracker`] works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerConfig {
    /// Slices read at once, 1..=256.
    pub workers: usize,
    /// Slices each round is split into (none: one per worker). More slices than workers
    /// balance uneven activity better; every slice costs one extra (empty) page.
    pub slices: Option<usize>,
    /// Activities per page, 1..=1000.
    pub page_size: u32,
    /// How long to wait, once caught up to the watermark, before reading it again.
    pub poll_interval: Duration,
    /// Stop once caught up to the watermark instead of waiting for more.
    pub once: bool,
    /// Where tracking starts when there is no saved state: none, at the subscription's
    /// oldest activity with a timestamp (or the watermark, if that is older).
    pub start: Option<DateTime<Utc>>,
    /// The state file: the position is saved there after every released slice, and tracking
    /// resumes from it. None: nothing is saved.
    pub state_path: Option<PathBuf>,
    /// Where slices too large for memory wait (none: the system's temporary directory).
    pub spool_dir: Option<PathBuf>,
    /// Bytes of activity one slice keeps in memory before spilling into a file.
    pub spool_memory: usize,
    /// Tries of one request after a transient failure (transport error, 5xx, 429 beyond the
    /// client's own retries), with exponential backoff, before the tracker gives up.
    pub retries: u32,
}

impl Default for TrackerConfig {
    /// Four workers, one slice each, pages of 1000, a 30 s poll interval, no state file.
    fn default() -> Self {
        TrackerConfig {
            workers: 4,
            slices: None,
            page_size: 1000,
            poll_interval: Duration::from_secs(30),
            once: false,
            start: None,
            state_path: None,
            spool_dir: None,
            spool_memory: 32 << 20,
            retries: 5,
        }
    }
}

/// One time slice of a round: `[from, until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    /// Its place in the round, from 0 (the oldest).
    pub index: usize,
    /// Inclusive start.
    pub from: DateTime<Utc>,
    /// Exclusive end.
    pub until: DateTime<Utc>,
}

/// Splits `[from, until)` into at most `count` contiguous slices of equal duration (to the
/// microsecond, the server's resolution), oldest first. Empty when `until <= from`.
pub fn split(from: DateTime<Utc>, until: DateTime<Utc>, count: usize) -> Vec<Slice> {
    let start = i128::from(from.timestamp_micros());
    let span = i128::from(until.timestamp_micros()) - start;
    if span <= 0 || count == 0 {
        return Vec::new();
    }
    let count = i128::try_from(count).unwrap_or(i128::MAX).min(span);
    let boundary = |i: i128| -> DateTime<Utc> {
        let micros = i64::try_from(start + span * i / count).unwrap_or(i64::MAX);
        DateTime::from_timestamp_micros(micros).unwrap_or(until)
    };
    (0..count)
        .map(|i| Slice {
            index: usize::try_from(i).unwrap_or(usize::MAX),
            from: boundary(i),
            until: boundary(i + 1),
        })
        .collect()
}

/// Why tracking stopped. The saved position is consistent whatever the error: run the
/// tracker again to continue.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    /// The API failed (after retries, for transient failures).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The state file cannot be read or written, or belongs to another subscription.
    #[error("state file {}: {message}", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The sink refused activity or could not resume.
    #[error("sink: {0}")]
    Sink(std::io::Error),
    /// A spooled slice could not be written or read back.
    #[error("spool: {0}")]
    Spool(std::io::Error),
    /// A [`TrackerConfig`] value is out of range.
    #[error("invalid tracker configuration: {0}")]
    Config(String),
    /// The subscription has no watermark (its connector cannot say when a time range is
    /// complete), so no range can be tracked to completion; a tracker that does not stop
    /// when caught up waits for one instead.
    #[error(
        "the subscription has no watermark: its connector cannot say when a time range is complete"
    )]
    NoWatermark,
    /// A worker or the sink's thread died.
    #[error("tracker task failed: {0}")]
    Task(String),
}

/// Live counters of a running tracker (for progress bars); all runs of a state file add up
/// in [`Summary`], these count this run.
#[derive(Debug)]
pub struct Progress {
    rounds: AtomicU64,
    slices_planned: AtomicU64,
    slices_released: AtomicU64,
    activities_read: AtomicU64,
    activities_released: AtomicU64,
    position_micros: AtomicI64,
    watermark_micros: AtomicI64,
}

/// Marks a time counter as not known yet.
const UNKNOWN: i64 = i64::MIN;

impl Default for Progress {
    fn default() -> Self {
        Progress {
            rounds: AtomicU64::new(0),
            slices_planned: AtomicU64::new(0),
            slices_released: AtomicU64::new(0),
            activities_read: AtomicU64::new(0),
            activities_released: AtomicU64::new(0),
            position_micros: AtomicI64::new(UNKNOWN),
            watermark_micros: AtomicI64::new(UNKNOWN),
        }
    }
}

fn known_time(micros: &AtomicI64) -> Option<DateTime<Utc>> {
    match micros.load(Ordering::Relaxed) {
        UNKNOWN => None,
        value => DateTime::from_timestamp_micros(value),
    }
}

impl Progress {
    /// Rounds planned.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }
    /// Slices planned over all rounds.
    pub fn slices_planned(&self) -> u64 {
        self.slices_planned.load(Ordering::Relaxed)
    }
    /// Slices released to the sink.
    pub fn slices_released(&self) -> u64 {
        self.slices_released.load(Ordering::Relaxed)
    }
    /// Activities read by the workers (released or waiting).
    pub fn activities_read(&self) -> u64 {
        self.activities_read.load(Ordering::Relaxed)
    }
    /// Activities released to the sink.
    pub fn activities_released(&self) -> u64 {
        self.activities_released.load(Ordering::Relaxed)
    }
    /// The position: everything before it is delivered.
    pub fn position(&self) -> Option<DateTime<Utc>> {
        known_time(&self.position_micros)
    }
    /// The watermark of the current round.
    pub fn watermark(&self) -> Option<DateTime<Utc>> {
        known_time(&self.watermark_micros)
    }
}

/// What a finished run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Activities delivered by this run.
    pub activities: u64,
    /// Slices released by this run.
    pub slices: u64,
    /// Rounds this run planned.
    pub rounds: u64,
    /// Activities delivered by every run of the state file (this run's without one).
    pub total_activities: u64,
    /// Where tracking stands: everything before it is delivered (none: no start was found,
    /// the subscription has neither activity nor a watermark yet).
    pub position: Option<DateTime<Utc>>,
    /// The last watermark read.
    pub watermark: Option<DateTime<Utc>>,
}

/// The parallel time-range tracker of one subscription (see the module doc).
#[derive(Debug)]
pub struct Tracker {
    client: Client,
    account: AccountRef,
    subscription: SubscriptionRef,
    config: TrackerConfig,
    progress: Arc<Progress>,
}

/// What the workers share.
#[derive(Debug, Clone)]
struct Reader {
    client: Client,
    account: AccountRef,
    subscription: SubscriptionRef,
    page_size: u32,
    retries: u32,
    spool_memory: usize,
    spool_dir: PathBuf,
    progress: Arc<Progress>,
}

/// The part of a List Activity answer a worker needs; the objects stay undecoded.
#[derive(Deserialize)]
struct RawPage<'a> {
    #[serde(borrow)]
    objects: Vec<&'a RawValue>,
    cursor: String,
}

/// The wait before retry `attempt` (from 1) of a transient failure.
fn backoff(attempt: u32, error: &ClientError) -> Duration {
    match error {
        ClientError::RateLimited { retry_after } => *retry_after,
        _ => Duration::from_millis(100u64 << attempt.min(6)).min(Duration::from_secs(5)),
    }
}

impl Reader {
    /// One page, retried on transient failures.
    async fn page_body(&self, query: &Query) -> Result<impl AsRef<[u8]>, ClientError> {
        let mut attempt = 0;
        loop {
            match self
                .client
                .activity_page_body(self.account, self.subscription, query)
                .await
            {
                Ok(body) => return Ok(body),
                Err(error) if error.is_transient() && attempt < self.retries => {
                    attempt += 1;
                    let wait = backoff(attempt, &error);
                    tracing::warn!(%error, attempt, wait_ms = wait.as_millis() as u64, "list activity failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The first page of `[from, ..)` with one activity: the oldest activity and the
    /// watermark.
    async fn probe(
        &self,
        from: DateTime<Utc>,
    ) -> Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>), ClientError> {
        #[derive(Deserialize)]
        struct Probe {
            objects: Vec<Timestamped>,
            #[serde(default, with = "tidemark_model::time::iso_opt")]
            watermark: Option<DateTime<Utc>>,
        }
        #[derive(Deserialize)]
        struct Timestamped {
            #[serde(default, with = "tidemark_model::time::iso_opt")]
            timestamp: Option<DateTime<Utc>>,
        }
        let body = self
            .page_body(&Query::range(from, None).page_size(1))
            .await?;
        let probe: Probe = serde_json::from_slice(body.as_ref())
            .map_err(|e| ClientError::decode("List Activity", e))?;
        let oldest = probe.objects.first().and_then(|a| a.timestamp);
        Ok((oldest, probe.watermark))
    }

    /// Reads `slice` to its empty page into a spool.
    #[tracing::instrument(skip_all, fields(slice = slice.index))]
    async fn read_slice(&self, slice: Slice) -> Result<Spool, TrackError> {
        let mut spool = Spool::new(self.spool_memory, &self.spool_dir);
        let mut query = Query::range(slice.from, Some(slice.until)).page_size(self.page_size);
        loop {
            let body = self.page_body(&query).await?;
            let page: RawPage<'_> = serde_json::from_slice(body.as_ref())
                .map_err(|e| ClientError::decode("List Activity", e))?;
            if page.objects.is_empty() {
                tracing::debug!(activities = spool.len(), "slice read");
                return Ok(spool);
            }
            for object in &page.objects {
                spool.push(object.get()).map_err(TrackError::Spool)?;
            }
            self.progress
                .activities_read
                .fetch_add(page.objects.len() as u64, Ordering::Relaxed);
            query = Query::after(page.cursor).page_size(self.page_size);
        }
    }
}

impl Tracker {
    /// A tracker of `subscription` of `account` through `client`.
    ///
    /// # Errors
    /// [`TrackError::Config`] for values out of range.
    pub fn new(
        client: Client,
        account: AccountRef,
        subscription: SubscriptionRef,
        config: TrackerConfig,
    ) -> Result<Tracker, TrackError> {
        if !(1..=256).contains(&config.workers) {
            return Err(TrackError::Config(format!(
                "workers must be in 1..=256, not {}",
                config.workers
            )));
        }
        if config.slices == Some(0) || config.slices.is_some_and(|s| s > 1_000_000) {
            return Err(TrackError::Config(
                "slices must be in 1..=1000000".to_owned(),
            ));
        }
        if !(1..=1000).contains(&config.page_size) {
            return Err(TrackError::Config(format!(
                "page_size must be in 1..=1000, not {}",
                config.page_size
            )));
        }
        Ok(Tracker {
            client,
            account,
            subscription,
            config,
            progress: Arc::default(),
        })
    }

    /// The live counters of this tracker's runs.
    pub fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    fn reader(&self) -> Reader {
        Reader {
            client: self.client.clone(),
            account: self.account,
            subscription: self.subscription,
            page_size: self.config.page_size,
            retries: self.config.retries,
            spool_memory: self.config.spool_memory,
            spool_dir: self
                .config
                .spool_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir),
            progress: Arc::clone(&self.progress),
        }
    }

    /// Tracks until caught up (with [`TrackerConfig::once`]) or forever; returns the sink.
    ///
    /// # Errors
    /// See [`TrackError`]; the saved position is consistent after any of them.
    pub async fn run<S: Sink + Send + 'static>(&self, sink: S) -> Result<(S, Summary), TrackError> {
        self.run_until(sink, std::future::pending()).await
    }

    /// Tracks until caught up (with [`TrackerConfig::once`]) or until `stop` completes
    /// (checked between rounds and while waiting: a round in progress is finished first).
    ///
    /// # Errors
    /// See [`TrackError`].
    pub async fn run_until<S: Sink + Send + 'static>(
        &self,
        sink: S,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(S, Summary), TrackError> {
        let mut stop = std::pin::pin!(stop.fuse());
        let reader = self.reader();
        let account = self.account.to_string();
        let subscription = self.subscription.to_string();
        let mut sink = Some(sink);
        let mut state = match &self.config.state_path {
            Some(path) => state::load(path)?,
            None => None,
        };
        if let (Some(saved), Some(path)) = (&mut state, &self.config.state_path) {
            if saved.account != account || saved.subscription != subscription {
                return Err(TrackError::State {
                    path: path.clone(),
                    message: format!(
                        "it tracks account {} subscription {}, not account {account} subscription {subscription}",
                        saved.account, saved.subscription
                    ),
                });
            }
            if self.config.start.is_some() {
                tracing::info!(position = %tidemark_model::time::format(&saved.position), "resuming from the state file; the start given is not used");
            }
            saved.sink_mark = with_sink(&mut sink, {
                let mark = saved.sink_mark;
                move |sink| sink.resume(mark)
            })
            .await?
            .map_err(TrackError::Sink)?;
        }
        let (mut activities, mut slices, mut rounds) = (0u64, 0u64, 0u64);
        let mut watermark = None;
        loop {
            let probe_from = state
                .as_ref()
                .map(|s| s.position)
                .or(self.config.start)
                .unwrap_or(DateTime::UNIX_EPOCH);
            let (oldest, read_watermark) = reader.probe(probe_from).await?;
            watermark = read_watermark.or(watermark);
            if let Some(at) = watermark {
                self.progress
                    .watermark_micros
                    .store(at.timestamp_micros(), Ordering::Relaxed);
            }
            if state.is_none() {
                let start = match (self.config.start, oldest, watermark) {
                    (Some(start), _, _) => Some(start),
                    // Nothing below the watermark arrives later, and nothing is older than the
                    // oldest activity now: the older of the two loses nothing.
                    (None, Some(oldest), Some(watermark)) => Some(oldest.min(watermark)),
                    (None, None, Some(watermark)) => Some(watermark),
                    // Without a watermark, activity older than the oldest now may still come.
                    (None, _, None) => None,
                };
                if let Some(start) = start {
                    let mark = with_sink(&mut sink, |sink| sink.resume(None))
                        .await?
                        .map_err(TrackError::Sink)?;
                    let fresh = SavedState::new(account.clone(), subscription.clone(), start, mark);
                    if let Some(path) = &self.config.state_path {
                        state::save(path, &fresh)?;
                    }
                    state = Some(fresh);
                }
            }
            let position = state.as_ref().map(|s| s.position);
            if let Some(at) = position {
                self.progress
                    .position_micros
                    .store(at.timestamp_micros(), Ordering::Relaxed);
            }
            match (position, watermark) {
                (Some(position), Some(watermark)) if watermark > position => {
                    let Some(current) = &mut state else {
                        return Err(TrackError::Task("no position".to_owned()));
                    };
                    rounds += 1;
                    let (released, count) =
                        self.round(&reader, &mut sink, current, watermark).await?;
                    slices += released;
                    activities += count;
                    if stop.as_mut().now_or_never().is_some() {
                        break;
                    }
                    continue;
                }
                (_, None) if self.config.once => return Err(TrackError::NoWatermark),
                (_, None) => tracing::warn!("the subscription has no watermark yet; waiting"),
                _ if self.config.once => break,
                _ => {}
            }
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
        let sink = sink.ok_or_else(|| TrackError::Task("the sink was lost".to_owned()))?;
        Ok((
            sink,
            Summary {
                activities,
                slices,
                rounds,
                total_activities: state.as_ref().map_or(activities, |s| s.activities),
                position: state.as_ref().map(|s| s.position),
                watermark,
            },
        ))
    }

    /// One round over `[state.position, watermark)`; returns slices and activities
    /// released.
    #[tracing::instrument(skip_all, fields(from = %tidemark_model::time::format(&state.position), until = %tidemark_model::time::format(&watermark)))]
    async fn round<S: Sink + Send + 'static>(
        &self,
        reader: &Reader,
        sink: &mut Option<S>,
        state: &mut SavedState,
        watermark: DateTime<Utc>,
    ) -> Result<(u64, u64), TrackError> {
        let slices = split(
            state.position,
            watermark,
            self.config.slices.unwrap_or(self.config.workers),
        );
        self.progress.rounds.fetch_add(1, Ordering::Relaxed);
        self.progress
            .slices_planned
            .fetch_add(slices.len() as u64, Ordering::Relaxed);
        // Workers pop from the end: the newest slice first.
        let queue = Arc::new(Mutex::new(slices.clone()));
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..self.config.workers.min(slices.len()) {
            let queue = Arc::clone(&queue);
            let done = done_tx.clone();
            let reader = reader.clone();
            workers.spawn(async move {
                loop {
                    let next = match queue.lock() {
                        Ok(mut queue) => queue.pop(),
                        Err(_) => None,
                    };
                    let Some(slice) = next else {
                        return;
                    };
                    let result = reader.read_slice(slice).await;
                    let failed = result.is_err();
                    if done.send((slice.index, result)).is_err() || failed {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let mut completed: BTreeMap<usize, Spool> = BTreeMap::new();
        let (mut released, mut activities) = (0u64, 0u64);
        for slice in &slices {
            while !completed.contains_key(&slice.index) {
                let Some((index, result)) = done_rx.recv().await else {
                    let failure = match workers.join_next().await {
                        Some(Err(error)) => error.to_string(),
                        _ => "a worker stopped".to_owned(),
                    };
                    return Err(TrackError::Task(failure));
                };
                // An error drops `workers`, which aborts the others.
                completed.insert(index, result?);
            }
            let Some(spool) = completed.remove(&slice.index) else {
                continue;
            };
            let count = spool.len();
            self.release(sink, state, *slice, spool, watermark).await?;
            released += 1;
            activities += count;
        }
        Ok((released, activities))
    }

    /// Gives one complete slice to the sink, then saves the position after it.
    async fn release<S: Sink + Send + 'static>(
        &self,
        sink: &mut Option<S>,
        state: &mut SavedState,
        slice: Slice,
        spool: Spool,
        watermark: DateTime<Utc>,
    ) -> Result<(), TrackError> {
        debug_assert_eq!(state.position, slice.from, "slices are released in order");
        debug_assert!(slice.until <= watermark, "never past the watermark");
        let mut next = state.clone();
        let path = self.config.state_path.clone();
        let count = spool.len();
        let saved = with_sink(sink, move |sink| -> Result<SavedState, TrackError> {
            let mut lines = spool.into_reader().map_err(TrackError::Spool)?;
            let mut line = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).map_err(TrackError::Spool)? == 0 {
                    break;
                }
                sink.accept(line.strip_suffix('\n').unwrap_or(&line))
                    .map_err(TrackError::Sink)?;
            }
            next.sink_mark = sink.finish_slice(&slice).map_err(TrackError::Sink)?;
            next.position = slice.until;
            next.watermark = Some(watermark);
            next.slices += 1;
            next.activities += count;
            next.updated = state::now();
            if let Some(path) = &path {
                state::save(path, &next)?;
            }
            Ok(next)
        })
        .await??;
        *state = saved;
        self.progress
            .slices_released
            .fetch_add(1, Ordering::Relaxed);
        self.progress
            .activities_released
            .fetch_add(count, Ordering::Relaxed);
        self.progress
            .position_micros
            .store(slice.until.timestamp_micros(), Ordering::Relaxed);
        Ok(())
    }
}

/// Runs `work` with the sink on a blocking thread (sinks do blocking I/O), and puts the sink
/// back.
async fn with_sink<S: Sink + Send + 'static, T: Send + 'static>(
    sink: &mut Option<S>,
    work: impl FnOnce(&mut S) -> T + Send + 'static,
) -> Result<T, TrackError> {
    let mut owned = sink
        .take()
        .ok_or_else(|| TrackError::Task("the sink was lost".to_owned()))?;
    let (owned, result) = tokio::task::spawn_blocking(move || {
        let result = work(&mut owned);
        (owned, result)
    })
    .await
    .map_err(|e| TrackError::Task(format!("the sink's thread: {e}")))?;
    *sink = Some(owned);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        tidemark_model::time::parse(text).expect("time")
    }

    #[test]
    fn test_split_covers_the_range_with_contiguous_slices_oldest_first() {
        let (from, until) = (at("2026-01-01T00:00:00Z"), at("2026-01-01T01:00:00Z"));
        for count in [1, 4, 7, 16] {
            let slices = split(from, until, count);
            assert_eq!(slices.len(), count);
            assert_eq!(slices[0].from, from);
            assert_eq!(slices[count - 1].until, until);
            for (i, pair) in slices.windows(2).enumerate() {
                assert_eq!(pair[0].until, pair[1].from, "contiguous");
                assert!(pair[0].from < pair[0].until, "not empty");
                assert_eq!(pair[0].index, i);
            }
        }
        let four = split(from, until, 4);
        assert_eq!(four[1].from, at("2026-01-01T00:15:00Z"));
    }

    #[test]
    fn test_split_never_makes_empty_slices() {
        let from = at("2026-01-01T00:00:00Z");
        let until = from + chrono::Duration::microseconds(3);
        let slices = split(from, until, 16);
        assert_eq!(slices.len(), 3, "one microsecond each at most");
        assert!(split(until, from, 4).is_empty());
        assert!(split(from, from, 4).is_empty());
    }
}
