//! What watches Tidemark from outside during a chaos run: cursor readers following every
//! subscription's stream through List Activity on random nodes, a reader of time ranges the
//! server declares final (below the watermark), and the webhook receiver.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use rand::Rng as _;
use serde_json::Value;
use tidemark_client::{Client, Query};

/// Activities per List Activity page the readers ask for.
const READER_PAGE_SIZE: u32 = 100;

/// Failed requests in a row after which a reader gives up on a subscription (all nodes down
/// for this long is a failure of the run, not chaos).
const MAX_FAILURES_IN_A_ROW: u32 = 600;

/// One subscription as one reader follows it.
#[derive(Debug, Clone)]
pub(super) struct Followed {
    /// Its account.
    pub account: i64,
    /// The subscription.
    pub subscription: i64,
    /// The cursor to continue from (`None`: the stream's start).
    cursor: Option<String>,
    /// Activity ids in the order the reader saw them.
    pub seen: Vec<String>,
    /// Ids the reader saw more than once.
    pub repeats: u64,
    seen_set: HashSet<String>,
}

impl Followed {
    /// A subscription to follow from its stream's start.
    pub fn new(account: i64, subscription: i64) -> Followed {
        Followed {
            account,
            subscription,
            cursor: None,
            seen: Vec::new(),
            repeats: 0,
            seen_set: HashSet::new(),
        }
    }
}

/// What one reader did.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ReaderStats {
    /// Pages read.
    pub pages: u64,
    /// Requests that failed (a node down, killed mid-answer), each retried on another node.
    pub failed_requests: u64,
}

/// Follows `subscriptions` with cursors, each page from a random node, sweeping them in turn
/// until `finish` turns true; then one last sweep to the end of every stream.
///
/// # Errors
/// If one subscription's requests fail [`MAX_FAILURES_IN_A_ROW`] times in a row.
pub(super) async fn follow(
    clients: Arc<Vec<Client>>,
    mut subscriptions: Vec<Followed>,
    mut finish: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(Vec<Followed>, ReaderStats)> {
    let mut stats = ReaderStats::default();
    loop {
        let last_sweep = *finish.borrow();
        for followed in &mut subscriptions {
            read_to_end(&clients, followed, &mut stats).await?;
        }
        if last_sweep {
            return Ok((subscriptions, stats));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = finish.wait_for(|finished| *finished) => {}
        }
    }
}

/// Reads `followed` until an empty page.
async fn read_to_end(
    clients: &[Client],
    followed: &mut Followed,
    stats: &mut ReaderStats,
) -> anyhow::Result<()> {
    let mut failures_in_a_row = 0u32;
    loop {
        let client = &clients[rand::rng().random_range(0..clients.len())];
        let query = match &followed.cursor {
            Some(cursor) => Query::after(cursor.clone()),
            None => Query::start(),
        }
        .page_size(READER_PAGE_SIZE);
        let page = match client
            .activity_page(
                followed.account.into(),
                followed.subscription.into(),
                &query,
            )
            .await
        {
            Ok(page) => page,
            Err(error) => {
                stats.failed_requests += 1;
                failures_in_a_row += 1;
                tracing::debug!(%error, subscription = followed.subscription, "read failed");
                anyhow::ensure!(
                    failures_in_a_row < MAX_FAILURES_IN_A_ROW,
                    "reading subscription {} failed {failures_in_a_row} times in a row: {error}",
                    followed.subscription
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        failures_in_a_row = 0;
        stats.pages += 1;
        followed.cursor = Some(page.cursor);
        if page.objects.is_empty() {
            return Ok(());
        }
        for activity in page.objects {
            if !followed.seen_set.insert(activity.id.clone()) {
                followed.repeats += 1;
            }
            followed.seen.push(activity.id);
        }
    }
}

/// A time range read whole while it was final: `[from, until)` with `until` at or below the
/// watermark the server had just announced, so the stream may never gain activity in it.
#[derive(Debug, Clone)]
pub(super) struct FinalRange {
    /// The subscription.
    pub subscription: i64,
    /// Start of the range (epoch µs, inclusive).
    pub from_micros: i64,
    /// End of the range (epoch µs, exclusive): the watermark.
    pub until_micros: i64,
    /// The ids the range held.
    pub ids: HashSet<String>,
}

/// At most this many final ranges are kept (the oldest first).
const MAX_FINAL_RANGES: usize = 5000;

/// Until `finish` turns true, picks random subscriptions and reads `[from, watermark)` of each
/// from random nodes: a range the server says is final. The checks compare each with the
/// stream at the end (DESIGN 3: a range whose `until` is at or below the watermark never gains
/// activity).
///
/// # Returns
/// The ranges read, and how many requests failed (retried later on another subscription).
pub(super) async fn read_final_ranges(
    clients: Arc<Vec<Client>>,
    subscriptions: Vec<(i64, i64)>,
    from: chrono::DateTime<chrono::Utc>,
    mut finish: tokio::sync::watch::Receiver<bool>,
) -> (Vec<FinalRange>, u64) {
    let mut ranges = Vec::new();
    let mut failed = 0u64;
    while !*finish.borrow() && !subscriptions.is_empty() {
        let (account, subscription) =
            subscriptions[rand::rng().random_range(0..subscriptions.len())];
        let client = &clients[rand::rng().random_range(0..clients.len())];
        let probe = client
            .activity_page(
                account.into(),
                subscription.into(),
                &Query::range(from, None).page_size(1),
            )
            .await;
        let watermark = match probe {
            Ok(page) => page.watermark,
            Err(_) => {
                failed += 1;
                None
            }
        };
        if let Some(until) = watermark.filter(|until| *until > from) {
            let client = &clients[rand::rng().random_range(0..clients.len())];
            match client
                .read_range(account.into(), subscription.into(), from, Some(until), 200)
                .await
            {
                Ok(read) if ranges.len() < MAX_FINAL_RANGES => ranges.push(FinalRange {
                    subscription,
                    from_micros: from.timestamp_micros(),
                    until_micros: until.timestamp_micros(),
                    ids: read.activities.into_iter().map(|a| a.id).collect(),
                }),
                Ok(_) => {}
                Err(_) => failed += 1,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = finish.wait_for(|finished| *finished) => {}
        }
    }
    (ranges, failed)
}

/// What the webhook receiver saw.
#[derive(Debug, Default)]
pub(super) struct Received {
    /// While true, notifications are refused with 503 (an outage of the application).
    pub refusing: bool,
    /// Notifications refused.
    pub refused: u64,
    /// Notifications received (the endpoint test excluded).
    pub total: u64,
    /// Per subscription: notifications received, and when the last one arrived (epoch µs);
    /// refused ones do not count.
    pub by_subscription: HashMap<i64, (u64, i64)>,
}

#[derive(Clone)]
struct ReceiverState {
    application_id: String,
    received: Arc<Mutex<Received>>,
}

async fn receive(
    State(state): State<ReceiverState>,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    let arrived = chrono::Utc::now().timestamp_micros();
    if body.as_ref() == b"{}" {
        // The endpoint test (seed 003): answer with the application id.
        return (StatusCode::OK, state.application_id.clone());
    }
    let Ok(notification) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON".into());
    };
    let Some(subscription) = notification["subscription"].as_i64() else {
        return (StatusCode::BAD_REQUEST, "no subscription".into());
    };
    let mut received = state
        .received
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if received.refusing {
        received.refused += 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "outage".into());
    }
    received.total += 1;
    let entry = received.by_subscription.entry(subscription).or_default();
    entry.0 += 1;
    entry.1 = entry.1.max(arrived);
    (StatusCode::OK, String::new())
}

/// Starts the webhook receiver on a loopback port.
///
/// # Returns
/// Its URL and what it receives.
pub(super) async fn start_receiver(
    application_id: i64,
) -> anyhow::Result<(String, Arc<Mutex<Received>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let received = Arc::new(Mutex::new(Received::default()));
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(ReceiverState {
            application_id: application_id.to_string(),
            received: Arc::clone(&received),
        });
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::warn!(%error, "webhook receiver stopped");
        }
    });
    Ok((url, received))
}
