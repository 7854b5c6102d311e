//! The destination worker end to end against real brokers (`scripts/brokers.sh`): activity
//! committed to a store is published to NATS JetStream, RabbitMQ and Redis Streams and read
//! back with each broker's ordinary client.
//!
//! For each broker:
//! - shape and order: several subscriptions commit concurrently while the worker publishes;
//!   every subscription's activity arrives complete, once (after dropping repeated message
//!   ids), in stream order, in messages of at most `batch_size`, with seed 003's body and
//!   headers and the message id `{subscription}-{first_sequence}`;
//! - filters: a second destination with an event pattern and `payload: v1` gets only the
//!   matching activity, in order, and moves past batches where nothing matches;
//! - restart: the broker is stopped mid-stream (`broker-ctl`), activity is committed while it
//!   is down, publishes fail and back off, and once it is started again everything arrives,
//!   in order, with nothing lost.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tidemark_model::Activity;
use tidemark_notify::brokers::{DestinationWorker, PublisherOptions, WorkerConfig};
use tidemark_store::SqliteStore;
use tidemark_store::{
    AttemptQuery, CommitBatch, NewAccount, NewDestination, NewSubscription, Store,
};
use tokio::sync::RwLock;

mod support;
use support::*;

/// The restart test takes a broker's lock for writing, the others for reading.
static NATS: RwLock<()> = RwLock::const_new(());
static RABBITMQ: RwLock<()> = RwLock::const_new(());
static REDIS: RwLock<()> = RwLock::const_new(());

/// Subscriptions committing at once.
const SUBSCRIPTIONS: usize = 6;
/// Commits per subscription, and activities per commit.
const COMMITS: usize = 6;
const PER_COMMIT: usize = 7;
/// The unfiltered destination's batch size.
const BATCH_SIZE: u32 = 4;

#[derive(Debug, Clone, Copy)]
enum Broker {
    Nats,
    Rabbitmq,
    Redis,
}

impl Broker {
    fn name(self) -> &'static str {
        match self {
            Broker::Nats => "nats",
            Broker::Rabbitmq => "rabbitmq",
            Broker::Redis => "redis",
        }
    }

    fn lock(self) -> &'static RwLock<()> {
        match self {
            Broker::Nats => &NATS,
            Broker::Rabbitmq => &RABBITMQ,
            Broker::Redis => &REDIS,
        }
    }

    /// A fresh target on this broker (its own stream, exchange and queue, or key), and how to
    /// read what is published to it.
    async fn target(self) -> (Value, Consumer) {
        match self {
            Broker::Nats => {
                let stream = unique("TMDEST");
                let prefix = unique("tmdest.");
                (
                    json!({"url": nats_url(), "stream": stream, "subject_prefix": prefix,
                           "create_stream": true}),
                    Consumer::Nats { stream, prefix },
                )
            }
            Broker::Rabbitmq => {
                let exchange = unique("tm-dest-");
                let prefix = unique("activity");
                let queue = rabbitmq_bind_queue(&exchange, &prefix).await;
                (
                    json!({"url": amqp_url(), "exchange": exchange,
                           "routing_key_prefix": prefix, "declare": true}),
                    Consumer::Rabbitmq { queue },
                )
            }
            Broker::Redis => {
                let key = unique("tm:dest:");
                (
                    json!({"url": redis_url(), "stream_key": key}),
                    Consumer::Redis { key: key.clone() },
                )
            }
        }
    }
}

/// Messages until every subscription's distinct messages carry `expected[subscription]`
/// activities (in their v1 list when `v1_only`, else in v2).
async fn consume_all(
    consumer: &Consumer,
    expected: &HashMap<i64, usize>,
    v1_only: bool,
) -> Vec<Received> {
    consumer
        .consume_until(|received| {
            let counts = activity_counts(received, v1_only);
            expected.iter().all(|(subscription, count)| {
                counts.get(subscription).copied().unwrap_or(0) >= *count
            })
        })
        .await
}

/// Activities carried per subscription by distinct messages.
fn activity_counts(received: &[Received], v1_only: bool) -> HashMap<i64, usize> {
    let list = if v1_only { "v1" } else { "v2" };
    let mut seen = HashSet::new();
    let mut counts = HashMap::new();
    for message in received {
        if !seen.insert(message.message_id.clone()) {
            continue;
        }
        let Some(subscription) = message
            .headers
            .get("subscriptionId")
            .and_then(|id| id.parse::<i64>().ok())
        else {
            continue;
        };
        *counts.entry(subscription).or_default() += message.body["activity"][list]
            .as_array()
            .map_or(0, Vec::len);
    }
    counts
}

/// A store with one application and `SUBSCRIPTIONS` accounts, one subscription each.
struct Setup {
    store: Arc<SqliteStore>,
    application_id: i64,
    /// (account, subscription)
    subscriptions: Vec<(i64, i64)>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("dir");
    let store = Arc::new(SqliteStore::open(dir.path().join("tidemark.db")).expect("store"));
    let application = store.create_application("brokers").await.expect("app");
    let mut subscriptions = Vec::new();
    for _ in 0..SUBSCRIPTIONS {
        let account = store
            .create_account(NewAccount {
                application_id: application.id,
                service: "local".into(),
                admin: false,
                config: json!({"path": "/tmp"}),
                token_digest: None,
            })
            .await
            .expect("account");
        let subscription = store
            .create_subscription(NewSubscription::changes(account.id))
            .await
            .expect("subscription");
        subscriptions.push((account.id, subscription.id));
    }
    Setup {
        store,
        application_id: application.id,
        subscriptions,
        _dir: dir,
    }
}

/// The `index`th activity of a subscription: the v1 type changes every few activities, and
/// every 9th is a read (no v1 form).
fn activity(account: i64, subscription: i64, index: usize) -> Activity {
    let (event_type, subtype) = if index % 9 == 8 {
        ("access", "preview")
    } else {
        [
            ("add", "unknown"),
            ("update", "unknown"),
            ("delete", "unknown"),
        ][(index / 3) % 3]
    };
    serde_json::from_value(json!({
        "id": format!("s{subscription}-{index}"), "account": account,
        "api": "activity", "type": "activity", "event_category": "storage",
        "event_type": event_type, "event_subtype": subtype,
        "target": {"type": "file", "id": format!("f{index}"), "name": format!("doc{index}.txt")},
        "timestamp": "2026-01-02T03:04:05Z", "actor": {"type": "user", "id": "u1"}
    }))
    .expect("activity")
}

/// Commits activities `from..to` of every subscription, the subscriptions concurrently, in
/// commits of `PER_COMMIT`.
async fn commit_range(setup: &Setup, from: usize, to: usize) {
    let mut tasks = Vec::new();
    for &(account, subscription) in &setup.subscriptions {
        let store = Arc::clone(&setup.store);
        tasks.push(tokio::spawn(async move {
            let mut index = from;
            while index < to {
                let end = (index + PER_COMMIT).min(to);
                let batch: Vec<Activity> = (index..end)
                    .map(|i| activity(account, subscription, i))
                    .collect();
                store
                    .commit(CommitBatch::new(subscription, &batch).expect("encode"))
                    .await
                    .expect("commit");
                index = end;
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("committer");
    }
}

async fn create_destination(
    setup: &Setup,
    kind: Broker,
    target: Value,
    filter: Option<Value>,
    payload: &str,
    batch_size: u32,
) -> i64 {
    setup
        .store
        .create_destination(NewDestination {
            application_id: setup.application_id,
            kind: kind.name().into(),
            target,
            filter,
            payload: payload.into(),
            batch_size,
        })
        .await
        .expect("destination")
        .id
}

fn fast_config() -> WorkerConfig {
    WorkerConfig {
        publisher: PublisherOptions {
            connect_timeout: Duration::from_secs(5),
            publish_timeout: Duration::from_secs(2),
        },
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        reconnect_after: Duration::from_millis(200),
        scan_interval: Duration::from_millis(20),
        ..WorkerConfig::default()
    }
}

/// Runs a worker over the setup's store until the returned sender is dropped or fired.
fn start_worker(setup: &Setup) -> (Arc<DestinationWorker>, tokio::sync::oneshot::Sender<()>) {
    let store: Arc<dyn Store> = setup.store.clone();
    let worker = DestinationWorker::new(store, fast_config());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(Arc::clone(&worker).run(async move {
        let _ = stopped.await;
    }));
    (worker, stop)
}

/// The messages of each subscription after dropping repeated ids, in arrival order, checking
/// the headers and body of each against the subscription they claim.
fn by_subscription(received: &[Received], setup: &Setup) -> HashMap<i64, Vec<Value>> {
    let accounts: HashMap<i64, i64> = setup
        .subscriptions
        .iter()
        .map(|&(account, subscription)| (subscription, account))
        .collect();
    let mut seen = HashSet::new();
    let mut out: HashMap<i64, Vec<Value>> = HashMap::new();
    for message in received {
        if !seen.insert(message.message_id.clone()) {
            continue;
        }
        let subscription: i64 = message.headers["subscriptionId"]
            .parse()
            .expect("numeric subscriptionId");
        let account = accounts[&subscription];
        assert_eq!(message.headers["accountId"], account.to_string());
        assert_eq!(message.body["account"], account);
        assert_eq!(message.body["subscription"], subscription);
        let first = message.message_id.strip_prefix(&format!("{subscription}-"));
        assert!(first.is_some(), "message id {}", message.message_id);
        out.entry(subscription).or_default().push(
            json!({"id": message.message_id, "headers": message.headers, "body": message.body}),
        );
    }
    out
}

/// The v2 ids a subscription's messages carried, in order, checking each message: at most
/// `batch_size` activities, all of the `v1ActivityType` header's type (none without it), the
/// message id naming its first activity's sequence.
fn carried_ids(messages: &[Value], batch_size: u32, v1_only: bool) -> Vec<String> {
    let mut ids = Vec::new();
    let mut sequence_of_next = None::<u64>;
    for message in messages {
        let body = &message["body"];
        let headers: BTreeMap<String, String> =
            serde_json::from_value(message["headers"].clone()).expect("headers");
        let v1 = body["activity"]["v1"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let items = if v1_only {
            assert!(body["activity"].get("v2").is_none(), "payload v1 only");
            v1.clone()
        } else {
            let v2 = body["activity"]["v2"].as_array().cloned().expect("v2 list");
            if headers.contains_key("v1ActivityType") {
                assert_eq!(v1.len(), v2.len());
            } else {
                assert!(v1.is_empty(), "a read has no v1 form");
            }
            v2
        };
        assert!(!items.is_empty() && items.len() <= batch_size as usize);
        match headers.get("v1ActivityType") {
            Some(kind) => assert!(v1.iter().all(|event| event["type"] == kind.as_str())),
            None => assert!(!v1_only),
        }
        let first: u64 = message["id"]
            .as_str()
            .and_then(|id| id.rsplit('-').next())
            .and_then(|n| n.parse().ok())
            .expect("sequence in message id");
        if let Some(next) = sequence_of_next {
            assert!(first >= next, "message ids increase: {first} after {next}");
        }
        sequence_of_next = Some(first + 1);
        for item in &items {
            // v1 events carry the activity's id as `id` too.
            ids.push(item["id"].as_str().expect("id").to_owned());
        }
    }
    ids
}

/// Activity ids `0..count` of a subscription that pass `keep`.
fn expected_ids(subscription: i64, count: usize, keep: impl Fn(usize) -> bool) -> Vec<String> {
    (0..count)
        .filter(|&i| keep(i))
        .map(|i| format!("s{subscription}-{i}"))
        .collect()
}

fn is_add(index: usize) -> bool {
    index % 9 != 8 && (index / 3).is_multiple_of(3)
}

/// How many activities each subscription's messages must carry: `count` of them pass `keep`.
fn expected_counts(
    setup: &Setup,
    count: usize,
    keep: impl Fn(usize) -> bool,
) -> HashMap<i64, usize> {
    let per_subscription = (0..count).filter(|&i| keep(i)).count();
    setup
        .subscriptions
        .iter()
        .map(|&(_, subscription)| (subscription, per_subscription))
        .collect()
}

async fn scenario_shape_order_and_filters(broker: Broker) {
    let _shared = broker.lock().read().await;
    let setup = setup().await;
    let (target, all) = broker.target().await;
    create_destination(&setup, broker, target, None, "both", BATCH_SIZE).await;
    let (target, adds) = broker.target().await;
    let filter = json!({"detail": {"activity": {"v1": {"type": ["add"]}}}});
    let filtered = create_destination(&setup, broker, target, Some(filter), "v1", 100).await;
    let (worker, stop) = start_worker(&setup);
    let total = COMMITS * PER_COMMIT;
    // Commit while the worker publishes, waking it as the engine does.
    let committer = {
        let worker = Arc::clone(&worker);
        async move {
            for round in 0..COMMITS {
                commit_range(&setup, round * PER_COMMIT, (round + 1) * PER_COMMIT).await;
                worker.wake();
            }
            setup
        }
    };
    let setup = committer.await;

    let received = consume_all(&all, &expected_counts(&setup, total, |_| true), false).await;
    let messages = by_subscription(&received, &setup);
    for &(_, subscription) in &setup.subscriptions {
        let got = carried_ids(&messages[&subscription], BATCH_SIZE, false);
        assert_eq!(
            got,
            expected_ids(subscription, total, |_| true),
            "{broker:?}: subscription {subscription}, all activity once, in order"
        );
    }

    let received = consume_all(&adds, &expected_counts(&setup, total, is_add), true).await;
    let messages = by_subscription(&received, &setup);
    for &(_, subscription) in &setup.subscriptions {
        let got = carried_ids(&messages[&subscription], 100, true);
        assert_eq!(
            got,
            expected_ids(subscription, total, is_add),
            "{broker:?}: subscription {subscription}, only the adds, in order"
        );
        assert!(messages[&subscription]
            .iter()
            .all(|m| m["headers"]["v1ActivityType"] == "add"));
    }
    // Every position moved past everything, published or filtered out.
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_all_published(&setup).await;
    let attempts = setup
        .store
        .list_destination_attempts(
            filtered,
            AttemptQuery {
                limit: 1000,
                ..AttemptQuery::default()
            },
        )
        .await
        .expect("attempts");
    assert!(attempts.iter().all(|a| a.success), "{attempts:?}");
    let published: u32 = attempts.iter().map(|a| a.published).sum();
    assert!(published as usize >= SUBSCRIPTIONS * expected_ids(0, total, is_add).len());
}

/// With the worker stopped: whether every (destination, subscription) position reached its
/// stream's end (nothing is due even once every claim would have lapsed).
async fn assert_all_published(setup: &Setup) {
    let later = chrono::Utc::now() + chrono::Duration::minutes(10);
    let due = setup
        .store
        .claim_due_publications(later, Duration::from_millis(1), 1000)
        .await
        .expect("claim");
    assert!(
        due.is_empty(),
        "still behind: {:?}",
        due.iter()
            .map(|d| (
                d.destination.id,
                d.subscription_id,
                d.after_sequence,
                d.through_sequence
            ))
            .collect::<Vec<_>>()
    );
}

/// Waits until the destination's successful attempts carried at least `count` activities.
async fn wait_for_published(setup: &Setup, destination: i64, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let attempts = setup
            .store
            .list_destination_attempts(
                destination,
                AttemptQuery {
                    success: Some(true),
                    limit: 100_000,
                    ..AttemptQuery::default()
                },
            )
            .await
            .expect("attempts");
        let published: usize = attempts.iter().map(|a| a.published as usize).sum();
        if published >= count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {published} of {count} activities published"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the destination has at least `count` failed attempts; returns how many.
async fn wait_for_failures(setup: &Setup, destination: i64, count: usize) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let failures = setup
            .store
            .list_destination_attempts(
                destination,
                AttemptQuery {
                    success: Some(false),
                    limit: 100_000,
                    ..AttemptQuery::default()
                },
            )
            .await
            .expect("attempts")
            .len();
        if failures >= count {
            return failures;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {failures} of {count} failed attempts"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scenario_broker_restart(broker: Broker) {
    let _exclusive = broker.lock().write().await;
    let setup = setup().await;
    let (target, consumer) = broker.target().await;
    let destination = create_destination(&setup, broker, target, None, "both", BATCH_SIZE).await;
    let (worker, _stop) = start_worker(&setup);
    let total = COMMITS * PER_COMMIT;
    let half = total / 2;
    commit_range(&setup, 0, half).await;
    worker.wake();
    wait_for_published(&setup, destination, half * SUBSCRIPTIONS).await;

    broker_ctl(broker.name(), "stop").await;
    // While the broker is away: one activity that starts a run of its type, so the message
    // that fails carries it alone; publishing fails (and backs off)...
    commit_range(&setup, half, half + 1).await;
    worker.wake();
    let failed = wait_for_failures(&setup, destination, 1).await;
    // ...then the rest of that run and more. The failed message is published again as it
    // was, not grown by what came after it (a NATS client even delivers the first copy, kept
    // in its buffer, once the server is back, and JetStream drops the repeat by its id).
    commit_range(&setup, half + 1, total).await;
    worker.wake();
    wait_for_failures(&setup, destination, failed + 1).await;
    broker_ctl(broker.name(), "start").await;

    let received = consume_all(&consumer, &expected_counts(&setup, total, |_| true), false).await;
    let messages = by_subscription(&received, &setup);
    for &(_, subscription) in &setup.subscriptions {
        let got = carried_ids(&messages[&subscription], BATCH_SIZE, false);
        assert_eq!(
            got,
            expected_ids(subscription, total, |_| true),
            "{broker:?}: subscription {subscription}, nothing lost or reordered across the restart"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_nats_destination_publishes_every_subscription_in_order_and_filters() {
    scenario_shape_order_and_filters(Broker::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_rabbitmq_destination_publishes_every_subscription_in_order_and_filters() {
    scenario_shape_order_and_filters(Broker::Rabbitmq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_redis_destination_publishes_every_subscription_in_order_and_filters() {
    scenario_shape_order_and_filters(Broker::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_nats_destination_survives_a_broker_restart_mid_stream() {
    scenario_broker_restart(Broker::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_rabbitmq_destination_survives_a_broker_restart_mid_stream() {
    scenario_broker_restart(Broker::Rabbitmq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_redis_destination_survives_a_broker_restart_mid_stream() {
    scenario_broker_restart(Broker::Redis).await;
}
