//! JSON webhooks: finding due notifications, delivering them signed, retrying with back-off.
//!
//! # How a notification flows
//! A notification is *due* for (endpoint, subscription) while the subscription's stream has
//! activity beyond what the endpoint was last told about. That state is derived from committed
//! activity in the store, so a crash between a commit and its webhook loses nothing: the
//! notification is still due after the restart (at-least-once).
//!
//! 1. [`Notifier::run`] claims due notifications ([`Store::claim_due_notifications`]): at most
//!    one in flight per (endpoint, subscription), each covering the stream up to its sequence
//!    at claim time, so a burst of activity yields one webhook, and a new one only for activity
//!    committed after it began (coalescing).
//! 2. If the endpoint has a filter, the activity in the range is matched against it; when none
//!    matches, the range is marked covered without sending.
//! 3. The body `{"account": 123, "subscription": 321}` is POSTed with `X-Kloudless-Signature`
//!    and the Standard Webhooks headers. A status below 500 within the timeouts (3.05 s to
//!    connect, 27 s to answer) is a success.
//! 4. Failures back off exponentially (1 s to 15 min, jittered); after 24 h of continuous
//!    failure the notification is dropped until newer activity arrives. Every attempt is
//!    recorded.
//!
//! Concurrency is bounded globally (places in this notifier) and per endpoint (claims held in
//! the store). The claim itself skips endpoints at their limit, so a slow or dead endpoint with
//! many due notifications holds at most its own places and never delays the others; and a
//! claimed notification is sent at once, within its claim, so no two notifiers send it at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use tidemark_model::{Activity, V1Event};
use tidemark_store::{DueNotification, NotificationOutcome, Store, StoreError, WebhookAttempt};
use tokio::sync::{Notify, Semaphore};

use crate::filter::EventPattern;
use crate::signing;
pub use crate::targets::{check_target, check_url, is_private_address, MAX_URL_LEN};
use crate::targets::{refuse_private_address_literal, PublicOnlyResolver};

/// The `User-Agent` of every webhook request.
pub const USER_AGENT: &str = "tidemark-webhook/1";

/// Delivery settings; [`NotifierConfig::default`] is the seed's schedule.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// Time to connect to an endpoint (seed: 3.05 s).
    pub connect_timeout: Duration,
    /// Time to wait for the answer's next bytes once connected (seed: 27 s to read); the
    /// whole request is capped at `connect_timeout + read_timeout`.
    pub read_timeout: Duration,
    /// Delay after the first failure (seed: 1 s).
    pub backoff_initial: Duration,
    /// Longest delay between tries (seed: 15 min).
    pub backoff_max: Duration,
    /// Randomized fraction of each delay.
    pub backoff_jitter: f64,
    /// Continuous failure after which a notification is dropped until newer activity (seed:
    /// 24 h).
    pub give_up_after: Duration,
    /// How long a claim on a notification lasts (another notifier may take it over after).
    /// Never less than the request's timeouts plus [`CLAIM_MARGIN`], so that an attempt ends
    /// before its claim does (see [`NotifierConfig::effective_claim_ttl`]).
    pub claim_ttl: Duration,
    /// Deliveries in flight at once, over all endpoints.
    pub max_in_flight: usize,
    /// Deliveries in flight at once to one endpoint (claims held, over all notifiers of the
    /// store). An endpoint at its limit is passed over, so a slow or dead one cannot take the
    /// places of the others.
    pub max_in_flight_per_endpoint: usize,
    /// Longest wait between two looks for due notifications when nothing wakes the notifier.
    pub scan_interval: Duration,
    /// Shortest time between two looks: wakes that come sooner (a commit each) are gathered
    /// into one look, so a busy store is scanned at most this often, not once per commit.
    pub min_scan_gap: Duration,
    /// Activities examined per notification when an endpoint has a filter.
    pub max_filtered_activities: usize,
    /// Root certificates (PEM, one or more) trusted for `https` endpoints besides the built-in
    /// web roots: a private CA, or a receiver's self-signed certificate. Example: the contents
    /// of `/etc/tidemark/webhook-ca.pem` (`tidemark serve --webhook-ca-file`).
    pub extra_root_certificates_pem: Option<String>,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig {
            connect_timeout: Duration::from_millis(3050),
            read_timeout: Duration::from_secs(27),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(15 * 60),
            backoff_jitter: 0.2,
            give_up_after: Duration::from_secs(24 * 3600),
            claim_ttl: Duration::from_secs(60),
            max_in_flight: 256,
            max_in_flight_per_endpoint: 64,
            scan_interval: Duration::from_millis(500),
            min_scan_gap: Duration::from_millis(2),
            max_filtered_activities: 10_000,
            extra_root_certificates_pem: None,
        }
    }
}

/// How much longer than one attempt's timeouts a claim lasts at least.
pub const CLAIM_MARGIN: Duration = Duration::from_secs(5);

impl NotifierConfig {
    /// The claim's lifetime: [`NotifierConfig::claim_ttl`], raised to outlast one attempt
    /// (connect and read timeouts) by [`CLAIM_MARGIN`].
    pub fn effective_claim_ttl(&self) -> Duration {
        self.claim_ttl
            .max(self.connect_timeout + self.read_timeout + CLAIM_MARGIN)
    }

    /// The delay before the next try after `failures` failures in a row (the first retry
    /// after one failure waits `backoff_initial`).
    pub fn retry_delay(&self, failures: u32) -> Duration {
        backoff_delay(
            self.backoff_initial,
            self.backoff_max,
            self.backoff_jitter,
            failures,
        )
    }
}

/// Exponential back-off: `initial` after one failure, doubling up to `max`, each delay moved
/// by up to `jitter` (a fraction) either way.
pub(crate) fn backoff_delay(
    initial: Duration,
    max: Duration,
    jitter: f64,
    failures: u32,
) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let base = initial
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(max);
    let jitter = jitter.clamp(0.0, 1.0);
    let factor = 1.0 + jitter * (rand::random::<f64>() * 2.0 - 1.0);
    base.mul_f64(factor).min(max)
}

/// What one HTTP attempt produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    /// The status, if the endpoint answered.
    pub status: Option<u16>,
    /// Whether it counts as delivered (a status below 500).
    pub success: bool,
    /// What went wrong, or what came back when it was not a success.
    pub error: Option<String>,
    /// Body of the answer (first 1 KB), for the test request on creation.
    pub body: String,
}

/// Sends signed webhook requests.
#[derive(Debug, Clone)]
pub struct Sender {
    /// Connects wherever the endpoint's host resolves.
    client: reqwest::Client,
    /// Connects only to public addresses: for applications that refuse private targets.
    public_client: reqwest::Client,
    /// The whole request's time limit (connect and read).
    timeout: Duration,
}

/// How one request is sent.
#[derive(Debug, Clone, Copy)]
pub struct PostOptions {
    /// Give up after this long if that is sooner than the configured timeouts.
    pub timeout: Option<Duration>,
    /// Whether the request may go to private, loopback or link-local addresses. When not, the
    /// addresses it connects to are checked as resolved (no second look-up that a DNS answer
    /// could change in between).
    pub allow_private_targets: bool,
}

impl Default for PostOptions {
    fn default() -> Self {
        PostOptions {
            timeout: None,
            allow_private_targets: true,
        }
    }
}

impl Sender {
    /// A sender with the configured timeouts, trusting the web's roots and the configured
    /// extra root certificates.
    ///
    /// # Errors
    /// When the extra root certificates are not valid PEM, or the HTTP client cannot be built
    /// (TLS backend initialisation).
    pub fn new(config: &NotifierConfig) -> Result<Self, reqwest::Error> {
        // The seed's timeouts are the socket's (Python requests' `timeout=(3.05, 27)`): to
        // connect, and between reads of the answer; the whole request is capped at their sum.
        let builder = || -> Result<reqwest::ClientBuilder, reqwest::Error> {
            let mut builder = reqwest::Client::builder()
                .connect_timeout(config.connect_timeout)
                .read_timeout(config.read_timeout)
                .timeout(config.connect_timeout + config.read_timeout)
                .user_agent(USER_AGENT)
                .redirect(reqwest::redirect::Policy::none());
            if let Some(pem) = &config.extra_root_certificates_pem {
                for certificate in reqwest::Certificate::from_pem_bundle(pem.as_bytes())? {
                    builder = builder.add_root_certificate(certificate);
                }
            }
            Ok(builder)
        };
        Ok(Sender {
            client: builder()?.build()?,
            // A proxy would resolve the host itself, past the resolver's check.
            public_client: builder()?
                .no_proxy()
                .dns_resolver(Arc::new(PublicOnlyResolver))
                .build()?,
            timeout: config.connect_timeout + config.read_timeout,
        })
    }

    /// POSTs `body` to `url`, signed with the application's oldest API key (if any) and the
    /// endpoint's `whsec_` secret as message `message_id`.
    pub async fn post(
        &self,
        url: &str,
        body: Vec<u8>,
        api_key: Option<&str>,
        secret: &str,
        message_id: &str,
    ) -> AttemptResult {
        self.post_with(
            url,
            body,
            api_key,
            secret,
            message_id,
            PostOptions::default(),
        )
        .await
    }

    /// [`Sender::post`], as `options` say.
    pub async fn post_with(
        &self,
        url: &str,
        body: Vec<u8>,
        api_key: Option<&str>,
        secret: &str,
        message_id: &str,
        options: PostOptions,
    ) -> AttemptResult {
        let client = if options.allow_private_targets {
            &self.client
        } else {
            // Names are checked by the resolver as they are resolved; literal addresses
            // are not resolved, so they are checked here.
            if let Err(refused) = reqwest::Url::parse(url)
                .map_err(|e| e.to_string())
                .and_then(|url| refuse_private_address_literal(&url))
            {
                return AttemptResult {
                    status: None,
                    success: false,
                    error: Some(refused),
                    body: String::new(),
                };
            }
            &self.public_client
        };
        let mut request = client.post(url).header("Content-Type", "application/json");
        if let Some(timeout) = options.timeout {
            request = request.timeout(timeout.min(self.timeout));
        }
        if let Some(key) = api_key {
            request = request.header(
                "X-Kloudless-Signature",
                signing::kloudless_signature(key, &body),
            );
        }
        match signing::standard_webhooks(secret, message_id, Utc::now().timestamp(), &body) {
            Ok(headers) => {
                request = request
                    .header("webhook-id", headers.id)
                    .header("webhook-timestamp", headers.timestamp)
                    .header("webhook-signature", headers.signature);
            }
            Err(error) => {
                return AttemptResult {
                    status: None,
                    success: false,
                    error: Some(error.to_string()),
                    body: String::new(),
                };
            }
        }
        match request.body(body).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                let body: String = text.chars().take(1024).collect();
                let success = status < 500;
                AttemptResult {
                    status: Some(status),
                    success,
                    error: (!success).then(|| format!("endpoint answered {status}")),
                    body,
                }
            }
            Err(error) => {
                let kind = if error.is_timeout() {
                    "timed out"
                } else if error.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                };
                AttemptResult {
                    status: None,
                    success: false,
                    error: Some(format!("{kind}: {}", error_chain(&error))),
                    body: String::new(),
                }
            }
        }
    }
}

/// An error with its causes (`error sending request: client error (Connect): invalid peer
/// certificate: UnknownIssuer`): reqwest's own message alone does not say what failed.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Finds due notifications and delivers them. Share it in an `Arc`; call [`Notifier::wake`]
/// when activity is committed so delivery starts at once.
pub struct Notifier {
    store: Arc<dyn Store>,
    config: NotifierConfig,
    sender: Sender,
    wake: Notify,
    global: Arc<Semaphore>,
    /// Finished notifications, written to the store in batches by [`Notifier::run`].
    finished: tokio::sync::mpsc::UnboundedSender<Finished>,
    finished_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Finished>>>,
    /// The applications' signing keys, read at most once a second.
    signing_keys: Mutex<HashMap<i64, (Instant, ApplicationSettings)>>,
    /// Outcomes handed to the recorder and not yet written.
    unrecorded: std::sync::atomic::AtomicUsize,
}

/// What delivery needs to know of an application: its signing key and whether private
/// targets are allowed.
#[derive(Debug, Clone)]
struct ApplicationSettings {
    signing_key: Option<String>,
    allow_private_targets: bool,
}

/// A notification's outcome, waiting to be recorded.
type Finished = (DueNotification, NotificationOutcome, Option<WebhookAttempt>);

/// How long an application's signing key is reused before it is read again.
const SIGNING_KEY_TTL: Duration = Duration::from_secs(1);
/// Outcomes recorded in one store transaction at most.
const FINISH_BATCH: usize = 512;

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// A notifier over `store`. Registers the notifier's metric descriptions with the
    /// installed recorder (as the engine does when it is built).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(store: Arc<dyn Store>, config: NotifierConfig) -> Result<Arc<Self>, reqwest::Error> {
        crate::metrics::describe();
        let (finished, finished_rx) = tokio::sync::mpsc::unbounded_channel();
        Ok(Arc::new(Notifier {
            sender: Sender::new(&config)?,
            global: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            store,
            config,
            wake: Notify::new(),
            finished,
            finished_rx: Mutex::new(Some(finished_rx)),
            signing_keys: Mutex::new(HashMap::new()),
            unrecorded: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    /// New activity was committed: look for due notifications now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Delivers until `shutdown` resolves, then waits for deliveries in flight.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let recorder = self
            .finished_rx
            .lock()
            .ok()
            .and_then(|mut rx| rx.take())
            .map(|rx| tokio::spawn(Arc::clone(&self).record_finished(rx)));
        loop {
            let scanned = tokio::time::Instant::now();
            self.dispatch_due().await;
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {
                    tokio::time::sleep_until(scanned + self.config.min_scan_gap).await;
                }
                _ = tokio::time::sleep(self.config.scan_interval) => {}
            }
        }
        let all = u32::try_from(self.config.max_in_flight.max(1)).unwrap_or(u32::MAX);
        let _ = self.global.acquire_many(all).await;
        // Every delivery has handed over its outcome; let the recorder write the last ones.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.unrecorded.load(std::sync::atomic::Ordering::SeqCst) > 0
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if let Some(recorder) = recorder {
            recorder.abort();
            let _ = recorder.await;
        }
        if let Ok(mut rx) = self.finished_rx.lock() {
            drop(rx.take());
        }
    }

    /// Writes finished notifications in batches (one transaction for whatever has gathered),
    /// then looks for newly due ones.
    async fn record_finished(
        self: Arc<Self>,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<Finished>,
    ) {
        let mut batch = Vec::with_capacity(FINISH_BATCH);
        while rx.recv_many(&mut batch, FINISH_BATCH).await > 0 {
            let count = batch.len();
            if let Err(error) = self
                .store
                .finish_notifications(std::mem::take(&mut batch))
                .await
            {
                tracing::warn!(%error, count, "could not record webhook outcomes; they will be sent again");
            }
            self.unrecorded
                .fetch_sub(count, std::sync::atomic::Ordering::SeqCst);
            self.wake();
        }
    }

    fn finish(
        &self,
        due: DueNotification,
        outcome: NotificationOutcome,
        attempt: Option<WebhookAttempt>,
    ) {
        self.unrecorded
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.finished.send((due, outcome, attempt)).is_err() {
            self.unrecorded
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            tracing::warn!("notifier stopped before recording an outcome; it will be sent again");
        }
    }

    async fn application_settings(&self, application_id: i64) -> ApplicationSettings {
        if let Ok(cache) = self.signing_keys.lock() {
            if let Some((at, settings)) = cache.get(&application_id) {
                if at.elapsed() < SIGNING_KEY_TTL {
                    return settings.clone();
                }
            }
        }
        let signing_key = self
            .store
            .signing_key(application_id)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "could not read the signing key");
                None
            });
        // Unknown settings count as the safe choice: private targets refused.
        let allow_private_targets = self
            .store
            .get_application(application_id)
            .await
            .map(|application| application.allow_private_webhook_targets)
            .unwrap_or(false);
        let settings = ApplicationSettings {
            signing_key,
            allow_private_targets,
        };
        if let Ok(mut cache) = self.signing_keys.lock() {
            cache.insert(application_id, (Instant::now(), settings.clone()));
        }
        settings
    }

    /// Claims what is due, as many as there are free places, and starts delivering each.
    ///
    /// The store enforces the per-endpoint limit while claiming, so every claimed notification
    /// starts at once: nothing waits for an endpoint while holding a place or its claim.
    async fn dispatch_due(self: &Arc<Self>) {
        let free = self.global.available_permits();
        if free == 0 {
            return;
        }
        let ttl = self.config.effective_claim_ttl();
        // The claim lasts until `now + ttl` as the store sees it; measured from before the
        // call, the deadline here is never later than the store's.
        let claim_deadline = Instant::now() + ttl;
        let due = match self
            .store
            .claim_due_notifications(
                Utc::now(),
                ttl,
                free,
                self.config.max_in_flight_per_endpoint.max(1),
            )
            .await
        {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "could not claim due notifications");
                return;
            }
        };
        debug_assert!(due.len() <= free);
        for notification in due {
            // Only this loop takes places, and it claimed no more than were free.
            let Ok(permit) = Arc::clone(&self.global).try_acquire_owned() else {
                break;
            };
            let notifier = Arc::clone(self);
            tokio::spawn(async move {
                let _permit = permit;
                notifier.deliver(notification, claim_deadline).await;
            });
        }
    }

    /// Delivers (or skips) one claimed notification and records the outcome.
    #[tracing::instrument(skip_all, fields(endpoint_id = due.endpoint.id, subscription_id = due.subscription_id))]
    async fn deliver(&self, due: DueNotification, claim_deadline: Instant) {
        match self.matches_filter(&due).await {
            Ok(true) => {}
            Ok(false) => {
                self.finish(due, NotificationOutcome::Skipped, None);
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "could not evaluate the endpoint's filter; sending");
            }
        }
        let body = serde_json::to_vec(
            &json!({ "account": due.account_id, "subscription": due.subscription_id }),
        )
        .unwrap_or_default();
        let settings = self.application_settings(due.endpoint.application_id).await;
        // One id per notification, the same for its retries, so receivers can de-duplicate.
        let message_id = format!(
            "msg_{}_{}_{}",
            due.endpoint.id, due.subscription_id, due.through_sequence
        );
        let started_at = Utc::now();
        let timer = Instant::now();
        let result = match check_url(&due.endpoint.url) {
            Err(error) => AttemptResult {
                status: None,
                success: false,
                error: Some(error),
                body: String::new(),
            },
            Ok(_) => {
                // The request must end before the claim does, or another notifier could send
                // the same notification meanwhile.
                let Some(left) = claim_deadline
                    .checked_duration_since(Instant::now())
                    .and_then(|left| left.checked_sub(CLAIM_MARGIN))
                else {
                    tracing::warn!(
                        "claim ran out before the webhook could be sent; leaving it to expire"
                    );
                    return;
                };
                let options = PostOptions {
                    timeout: Some(left),
                    allow_private_targets: settings.allow_private_targets,
                };
                self.sender
                    .post_with(
                        &due.endpoint.url,
                        body,
                        settings.signing_key.as_deref(),
                        &due.endpoint.secret,
                        &message_id,
                        options,
                    )
                    .await
            }
        };
        let latency = timer.elapsed();
        crate::metrics::attempt(result.success, latency);
        let outcome = if result.success {
            NotificationOutcome::Delivered
        } else {
            let failing_since = due.failing_since.unwrap_or(started_at);
            let failing_for = (Utc::now() - failing_since).to_std().unwrap_or_default();
            if failing_for >= self.config.give_up_after {
                tracing::warn!(
                    failures = due.attempts + 1,
                    "webhook failing for too long; waiting for new activity"
                );
                NotificationOutcome::GaveUp
            } else {
                let delay = self.config.retry_delay(due.attempts + 1);
                tracing::debug!(error = ?result.error, retry_in_ms = delay.as_millis() as u64, "webhook failed");
                NotificationOutcome::Failed {
                    retry_at: Utc::now()
                        + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX),
                }
            }
        };
        let attempt = WebhookAttempt {
            id: 0,
            endpoint_id: due.endpoint.id,
            subscription_id: due.subscription_id,
            account_id: due.account_id,
            sequence: due.through_sequence,
            started_at,
            latency,
            status_code: result.status,
            success: result.success,
            error: result.error,
        };
        self.finish(due, outcome, Some(attempt));
    }

    /// Whether any activity in the notification's range matches the endpoint's filter (true
    /// without a filter).
    async fn matches_filter(&self, due: &DueNotification) -> Result<bool, StoreError> {
        let Some(pattern) = &due.endpoint.filter else {
            return Ok(true);
        };
        let Ok(pattern) = EventPattern::parse(pattern) else {
            return Ok(true);
        };
        let mut position = due.after_sequence;
        let mut examined = 0;
        while position < due.through_sequence && examined < self.config.max_filtered_activities {
            let rows = self
                .store
                .read_activity(due.subscription_id, position, 500)
                .await?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                if row.sequence > due.through_sequence {
                    return Ok(false);
                }
                position = row.sequence;
                examined += 1;
                let activity = row.activity()?;
                if pattern.matches(&event_document(
                    due.account_id,
                    due.subscription_id,
                    &activity,
                )) {
                    return Ok(true);
                }
            }
        }
        // Past the examination budget, err on the side of notifying.
        Ok(examined >= self.config.max_filtered_activities)
    }
}

/// The document filters are evaluated against (seed 003's EventBridge `detail`).
pub fn event_document(account: i64, subscription: i64, activity: &Activity) -> Value {
    json!({
        "detail": {
            "account": account,
            "subscription": subscription,
            "activity": {
                "v1": V1Event::from_activity(activity),
                "v2": activity,
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_retry_delays_double_from_one_second_to_fifteen_minutes() {
        let config = NotifierConfig {
            backoff_jitter: 0.0,
            ..NotifierConfig::default()
        };
        let delays: Vec<u64> = (1..=12)
            .map(|failures| config.retry_delay(failures).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]);
    }
}
