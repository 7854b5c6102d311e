//! `tidemark bench webhooks`: webhook deliveries per second, commit-to-receipt latency, and
//! coalescing, with subscriptions receiving activity at a steady rate and a loopback receiver.
//!
//! Phases: saturated (commits as fast as the store takes them, one activity per commit, to
//! the subscriptions in turn), half load (half the delivery rate reached), and bursts
//! (several commits in a row to each subscription, to measure coalescing). Deliveries per
//! second count the webhooks that arrived over the time they arrived in: from the phase's
//! start to the last one, drain included. The baseline is the same receiver taking bare
//! POSTs from one HTTP client at the notifier's concurrency for one endpoint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use clap::Args;
use serde_json::{json, Value};
use tidemark_notify::webhooks::{Notifier, NotifierConfig};
use tidemark_store::{
    CommitBatch, NewAccount, NewSubscription, NewWebhookEndpoint, SqliteStore, Store,
};

use super::{synthetic, BenchDir, Latencies};

/// Options of `tidemark bench webhooks`.
#[derive(Debug, Args)]
pub struct WebhooksArgs {
    /// Subscriptions receiving activity.
    #[arg(long, default_value_t = 1000)]
    subscriptions: usize,
    /// Seconds each phase runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent committers (the load generator), each committing one activity at a time,
    /// as pollers do; the store group-commits what they send together.
    #[arg(long, default_value_t = 8)]
    committers: usize,
    #[command(flatten)]
    dir: BenchDir,
}

/// Activity ids unique across phases (the store would absorb repeats as duplicates).
static NEXT_ACTIVITY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Commits in a row to one subscription in the bursts phase.
const BURST: usize = 10;

/// What the receiver saw and when each subscription's activity was committed.
#[derive(Default)]
struct Timeline {
    /// Per subscription: commit instants not yet followed by a webhook.
    pending: Mutex<HashMap<i64, Vec<Instant>>>,
    latencies: Mutex<Latencies>,
    received: Mutex<u64>,
    /// When the last webhook arrived.
    last_received: Mutex<Option<Instant>>,
}

async fn receive(
    State(timeline): State<Arc<Timeline>>,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    if body.as_ref() == b"{}" {
        return (StatusCode::OK, "1".into());
    }
    let now = Instant::now();
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, String::new());
    };
    let subscription = value["subscription"].as_i64().unwrap_or_default();
    if let Ok(mut received) = timeline.received.lock() {
        *received += 1;
    }
    if let Ok(mut last) = timeline.last_received.lock() {
        *last = Some(now);
    }
    let first = timeline.pending.lock().ok().and_then(|mut pending| {
        pending.get_mut(&subscription).and_then(|commits| {
            let first = commits.first().copied();
            commits.clear();
            first
        })
    });
    if let (Some(first), Ok(mut latencies)) = (first, timeline.latencies.lock()) {
        latencies.record(now - first);
    }
    (StatusCode::OK, String::new())
}

struct Phase {
    committed: u64,
    delivered: u64,
    /// Seconds committing.
    seconds: f64,
    /// Seconds from the phase's start to the last webhook's arrival.
    delivery_seconds: f64,
    latencies: Latencies,
}

impl Phase {
    fn deliveries_per_second(&self) -> f64 {
        self.delivered as f64 / self.delivery_seconds.max(f64::EPSILON)
    }

    fn webhooks_per_1000_activities(&self) -> f64 {
        self.delivered as f64 * 1000.0 / self.committed.max(1) as f64
    }
}

/// The baseline: bare POSTs of a webhook-sized body to the receiver, `concurrency` at a time
/// from one client, for `seconds`. Returns requests per second.
async fn baseline_posts_per_second(
    url: &str,
    concurrency: usize,
    seconds: u64,
) -> anyhow::Result<f64> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let client = client.clone();
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while started.elapsed() < Duration::from_secs(seconds) {
                client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(r#"{"account":1,"subscription":1}"#)
                    .send()
                    .await?
                    .error_for_status()?;
                sent += 1;
            }
            anyhow::Ok(sent)
        }));
    }
    let mut sent = 0;
    for task in tasks {
        sent += task.await??;
    }
    Ok(sent as f64 / started.elapsed().as_secs_f64())
}

pub async fn run(args: WebhooksArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.subscriptions >= 1 && args.seconds >= 1 && (1..=256).contains(&args.committers),
        "--subscriptions and --seconds must be positive, --committers in 1..=256"
    );
    let dir = args.dir.create()?;
    let store: Arc<SqliteStore> = Arc::new(SqliteStore::open(dir.path().join("webhooks.db"))?);
    let (application_id, _) =
        tidemark_server::bootstrap_application(&*store, "bench", None).await?;
    let mut subscriptions = Vec::with_capacity(args.subscriptions);
    for _ in 0..args.subscriptions {
        let account = store
            .create_account(NewAccount {
                application_id,
                service: "synthetic".into(),
                admin: false,
                config: json!({}),
                token_digest: None,
            })
            .await?;
        subscriptions.push(
            store
                .create_subscription(NewSubscription::changes(account.id))
                .await?,
        );
    }
    let timeline = Arc::new(Timeline::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let baseline_url = format!("http://{}/baseline", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .route("/baseline", post(|| async { StatusCode::OK }))
        .with_state(Arc::clone(&timeline));
    tokio::spawn(async move { axum::serve(listener, app).await });
    store
        .create_webhook(NewWebhookEndpoint {
            application_id,
            url,
            filter: None,
            secret: tidemark_notify::signing::new_endpoint_secret(),
        })
        .await?;
    let config = NotifierConfig::default();
    let concurrency = config.max_in_flight_per_endpoint;
    let baseline = baseline_posts_per_second(&baseline_url, concurrency, args.seconds).await?;
    let notifier = Notifier::new(store.clone(), config)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let notifier_task = tokio::spawn(Arc::clone(&notifier).run(async move {
        let _ = stop_rx.await;
    }));
    println!(
        "bench webhooks: {} subscriptions, {} committers, one endpoint on loopback, {} s per phase, in {}",
        args.subscriptions,
        args.committers,
        args.seconds,
        dir.path().display()
    );
    println!(
        "  baseline   bare POSTs to the same receiver, {concurrency} at a time: {baseline:.0}/s"
    );

    // Phase 1: as much activity as the store takes, to find the delivery rate.
    let full = run_phase(
        &store,
        &notifier,
        &timeline,
        &subscriptions,
        Load {
            rate: None,
            burst: 1,
            seconds: args.seconds,
            committers: args.committers,
        },
    )
    .await?;
    let delivery_rate = full.deliveries_per_second();
    report("saturated", &full);
    // Phase 2: half of that delivery rate, one activity per commit, spread over the subscriptions.
    let half = run_phase(
        &store,
        &notifier,
        &timeline,
        &subscriptions,
        Load {
            rate: Some(delivery_rate / 2.0),
            burst: 1,
            seconds: args.seconds,
            committers: args.committers,
        },
    )
    .await?;
    report("half load", &half);
    // Phase 3: bursts of commits to each subscription in turn, as fast as the store takes them.
    let bursts = run_phase(
        &store,
        &notifier,
        &timeline,
        &subscriptions,
        Load {
            rate: None,
            burst: BURST,
            seconds: args.seconds,
            committers: args.committers,
        },
    )
    .await?;
    report("bursts", &bursts);
    let _ = stop_tx.send(());
    notifier_task.await?;

    let mut half_latencies = half.latencies;
    println!(
        "  deliveries/s at saturation {delivery_rate:.0} (target >= 5000), {:.2}x the bare-POST baseline; p99 commit-to-receipt at half load {:.1} ms (target < 50 ms); {:.0} webhooks per 1,000 activities in bursts of {BURST}",
        delivery_rate / baseline.max(f64::EPSILON),
        half_latencies.percentile_ms(0.99),
        bursts.webhooks_per_1000_activities()
    );
    println!(
        "{}",
        json!({"bench": "webhooks", "subscriptions": args.subscriptions, "committers": args.committers, "deliveries_per_s": delivery_rate.round(),
               "baseline_posts_per_s": baseline.round(), "ratio_to_baseline": (delivery_rate / baseline.max(f64::EPSILON) * 1000.0).round() / 1000.0,
               "webhooks_per_1000_activities_saturated": full.webhooks_per_1000_activities().round(),
               "burst": BURST, "webhooks_per_1000_activities_bursts": bursts.webhooks_per_1000_activities().round(),
               "half_load_rate": (delivery_rate / 2.0).round(), "half_load_p50_ms": (half_latencies.percentile_ms(0.5) * 100.0).round() / 100.0,
               "half_load_p99_ms": (half_latencies.percentile_ms(0.99) * 100.0).round() / 100.0})
    );
    Ok(())
}

fn report(name: &str, phase: &Phase) {
    let mut latencies = Latencies::default();
    latencies.extend(phase.latencies.clone());
    println!(
        "  {name:<10} committed {:>7} activities in {:.1} s, delivered {:>6} webhooks in {:.1} s ({:.0}/s, {:.0} per 1,000 activities), commit-to-receipt p50 {:.1} ms p99 {:.1} ms",
        phase.committed,
        phase.seconds,
        phase.delivered,
        phase.delivery_seconds,
        phase.deliveries_per_second(),
        phase.webhooks_per_1000_activities(),
        latencies.percentile_ms(0.5),
        latencies.percentile_ms(0.99)
    );
}

/// How a phase loads the store.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// Commits per second in all (`None`: as fast as the store takes them).
    rate: Option<f64>,
    /// Commits in a row to one subscription.
    burst: usize,
    /// How long the phase commits.
    seconds: u64,
    /// Concurrent committers.
    committers: usize,
}

/// Commits one activity at a time to the subscriptions in turn, `burst` commits in a row to
/// each, at `rate` commits per second (as fast as possible when `None`), for `seconds`; then
/// waits for the last webhooks.
async fn run_phase(
    store: &Arc<SqliteStore>,
    notifier: &Arc<Notifier>,
    timeline: &Arc<Timeline>,
    subscriptions: &[tidemark_model::Subscription],
    load: Load,
) -> anyhow::Result<Phase> {
    let Load {
        rate,
        burst,
        seconds,
        committers,
    } = load;
    if let Ok(mut latencies) = timeline.latencies.lock() {
        *latencies = Latencies::default();
    }
    let received_before = timeline.received.lock().map(|r| *r).unwrap_or(0);
    let base = chrono::Utc::now();

    let started = Instant::now();
    // Several committers over disjoint subscriptions keep the store's writer busy; the rate,
    // if any, is shared among them.
    let committers = committers.min(subscriptions.len());
    let mut tasks = Vec::with_capacity(committers);
    for committer in 0..committers {
        let mine: Vec<tidemark_model::Subscription> = subscriptions
            .iter()
            .skip(committer)
            .step_by(committers)
            .cloned()
            .collect();
        let store = Arc::clone(store);
        let notifier = Arc::clone(notifier);
        let timeline = Arc::clone(timeline);
        let interval = rate.map(|r| Duration::from_secs_f64(committers as f64 / r.max(1.0)));
        tasks.push(tokio::spawn(async move {
            let mut committed = 0u64;
            while started.elapsed() < Duration::from_secs(seconds) {
                let subscription = &mine[(committed as usize / burst) % mine.len()];
                let index = NEXT_ACTIVITY.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let activity = synthetic::activity(subscription.account, index, base);
                store
                    .commit(CommitBatch::new(subscription.id, &[activity])?)
                    .await?;
                if let Ok(mut pending) = timeline.pending.lock() {
                    pending
                        .entry(subscription.id)
                        .or_default()
                        .push(Instant::now());
                }
                notifier.wake();
                committed += 1;
                if let Some(interval) = interval {
                    let due = started + interval.mul_f64(committed as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            anyhow::Ok(committed)
        }));
    }
    let mut committed = 0u64;
    for task in tasks {
        committed += task.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Let the last webhooks arrive: they are counted, and the delivery window runs to the last.
    let drain = Instant::now() + Duration::from_secs(5);
    while Instant::now() < drain {
        let pending = timeline
            .pending
            .lock()
            .map(|p| p.values().any(|c| !c.is_empty()))
            .unwrap_or(false);
        if !pending {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = timeline.received.lock().map(|r| *r).unwrap_or(0) - received_before;
    let last_received = timeline
        .last_received
        .lock()
        .ok()
        .and_then(|last| *last)
        .filter(|last| *last > started)
        .unwrap_or(started);
    let latencies = timeline
        .latencies
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    Ok(Phase {
        committed,
        delivered,
        seconds: elapsed,
        delivery_seconds: (last_received - started).as_secs_f64(),
        latencies,
    })
}
