//! A harness for driving the real engine against an upstream simulator over real HTTP: an
//! engine on its own runtime (so a test can kill it mid-poll, as `kill -9` would), an account
//! and subscription, and waits on the committed stream.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tidemark_engine::{Backoff, Engine, EngineConfig};
use tidemark_model::{Activity, Subscription};
use tidemark_store::{NewAccount, NewSubscription, SqliteStore, Store};

/// An engine running on a runtime of its own.
pub struct Node {
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// Engine settings for tests: quick ticks, short leases and back-off.
pub fn test_config(node: &str) -> EngineConfig {
    EngineConfig {
        node_id: node.to_owned(),
        tick: Duration::from_millis(50),
        wake_debounce: Duration::from_millis(20),
        lease_ttl: Duration::from_secs(4),
        backoff: Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(2),
            jitter: 0.0,
        },
        ..EngineConfig::default()
    }
}

impl Node {
    /// Starts an engine over `store`.
    pub fn start(store: &Arc<SqliteStore>, config: EngineConfig) -> Node {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("engine runtime");
        let engine = Engine::new(store.clone(), config);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (finished, done) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(async move {
            engine
                .run(async move {
                    let _ = stopped.await;
                })
                .await;
            let _ = finished.send(());
        });
        Node {
            runtime: Some(runtime),
            stop: Some(stop),
            done: Some(done),
        }
    }

    /// Stops the engine cleanly (in-flight polls finish and release their leases).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = tokio::time::timeout(Duration::from_secs(60), done).await;
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// Kills the engine wherever it is: every task stops at its next await, nothing is
    /// released (leases lapse), as with `kill -9`.
    pub fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A store in a fresh temporary directory.
pub fn store() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("tidemark.db")).expect("store opens");
    (dir, Arc::new(store))
}

/// An account of `service` with `config`, and a `changes` subscription on it.
pub async fn subscribe(store: &SqliteStore, service: &str, config: Value) -> Subscription {
    let application = store.create_application("upstream-e2e").await.expect("app");
    let account = store
        .create_account(NewAccount {
            application_id: application.id,
            service: service.into(),
            admin: true,
            config,
            token_digest: None,
        })
        .await
        .expect("account");
    store
        .create_subscription(NewSubscription::changes(account.id))
        .await
        .expect("subscription")
}

/// The whole stream, checked gap-free (sequence numbers 1, 2, 3, ...).
pub async fn stream(store: &SqliteStore, subscription: &Subscription) -> Vec<Activity> {
    let rows = store
        .read_activity(subscription.id, 0, 1_000_000)
        .await
        .expect("read");
    for (index, row) in rows.iter().enumerate() {
        assert_eq!(row.sequence, index as u64 + 1, "gap in the stream");
    }
    rows.iter()
        .map(|row| row.activity().expect("parses"))
        .collect()
}

/// Waits until the stream holds at least `count` activities, then returns it.
pub async fn wait_for(
    store: &SqliteStore,
    subscription: &Subscription,
    count: usize,
) -> Vec<Activity> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let latest = store.latest_sequence(subscription.id).await.expect("seq");
        if latest as usize >= count {
            return stream(store, subscription).await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream has {latest} activities, expected {count}: {:?}",
            store.poll_state(subscription.id).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `condition` holds (checked every 50 ms, up to 60 s).
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts every activity id is distinct and timestamps never go backwards.
pub fn assert_once_in_order(activities: &[Activity]) {
    let mut seen = std::collections::HashSet::new();
    for activity in activities {
        assert!(seen.insert(activity.id.clone()), "{} repeated", activity.id);
    }
    for pair in activities.windows(2) {
        assert!(
            pair[0].timestamp <= pair[1].timestamp,
            "out of order: {} at {:?} before {} at {:?}",
            pair[0].id,
            pair[0].timestamp,
            pair[1].id,
            pair[1].timestamp
        );
    }
}

/// Starts a node, kills it once `count / 10` activities are committed (in the middle of a
/// multi-page poll: the upstream must be slowed enough), then lets another node take over the
/// lapsed lease and finish. Returns the whole stream.
pub async fn kill_mid_poll_and_resume(
    store: &std::sync::Arc<SqliteStore>,
    subscription: &Subscription,
    count: usize,
) -> Vec<Activity> {
    let node = Node::start(store, test_config("n1"));
    wait_for(store, subscription, count / 10).await;
    node.kill();
    let at_kill = stream(store, subscription).await.len();
    assert!(at_kill < count, "the kill came after the poll had finished");
    let node = Node::start(store, test_config("n2"));
    let all = wait_for(store, subscription, count).await;
    node.stop().await;
    assert_once_in_order(&all);
    all
}

/// Asserts that after the first 429 in `requests` (with `Retry-After: 2`) nothing was asked
/// before the 2 s elapsed, but for the poll's other request in flight beside it. Returns when
/// Retry-After had elapsed.
pub fn assert_retry_after_honoured(
    requests: &[tidemark_simulators::RecordedRequest],
) -> chrono::DateTime<chrono::Utc> {
    let limited = requests
        .iter()
        .find(|request| request.status == 429)
        .expect("a 429 was answered");
    let sibling = limited.at + chrono::Duration::milliseconds(200);
    let honoured = limited.at + chrono::Duration::milliseconds(1_950);
    for request in requests {
        assert!(
            request.at <= sibling || request.at >= honoured,
            "a request {:?} after a 429 with Retry-After 2 s: {request:?}",
            request.at - limited.at
        );
    }
    honoured
}

/// Waits until `subscription` is disabled, and checks it was for rejected credentials.
pub async fn wait_disabled_for_credentials(store: &SqliteStore, subscription: &Subscription) {
    wait_until("the subscription is disabled", || async {
        !store
            .get_subscription(subscription.id)
            .await
            .expect("sub")
            .active
    })
    .await;
    let disabled = store.get_subscription(subscription.id).await.expect("sub");
    assert_eq!(disabled.disable_reason, "invalid_credentials");
}
