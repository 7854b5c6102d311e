//! Scheduling, commit, back-off and exclusivity, proven with a scripted connector.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::json;
use tidemark_connectors::{Checkpoint, Connector, ConnectorError, PollContext, PollOutcome};
use tidemark_engine::{Backoff, Engine, EngineConfig};
use tidemark_model::Subscription;
use tidemark_store::testsuite::{sample_activity, setup};
use tidemark_store::{AccountPatch, CommitBatch, SqliteStore, Store};

/// One scripted poll result.
enum Step {
    Page(Vec<&'static str>, bool),
    Fail(ConnectorError),
}

#[derive(Default)]
struct Probe {
    polls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// Plays `script` one step per poll; when it runs out, every poll yields one fresh activity
/// (if `endless`) or nothing.
struct Scripted {
    script: Mutex<VecDeque<Step>>,
    probe: Arc<Probe>,
    delay: Duration,
    endless: bool,
}

#[async_trait]
impl Connector for Scripted {
    fn service(&self) -> &'static str {
        "scripted"
    }
    fn default_poll_interval(&self) -> Duration {
        Duration::from_secs(3600)
    }
    async fn validate(&self) -> Result<(), ConnectorError> {
        Ok(())
    }
    async fn poll(
        &self,
        context: &PollContext,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<PollOutcome, ConnectorError> {
        let now = self.probe.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.probe.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        let count = self.probe.polls.fetch_add(1, Ordering::SeqCst) + 1;
        self.probe.in_flight.fetch_sub(1, Ordering::SeqCst);
        let previous: usize = checkpoint.and_then(|c| c.0.parse().ok()).unwrap_or(0);
        let step = self.script.lock().expect("script").pop_front();
        let account = context.account.id;
        match step {
            Some(Step::Fail(error)) => Err(error),
            Some(Step::Page(ids, more)) => Ok(PollOutcome {
                activities: ids.iter().map(|id| sample_activity(account, id)).collect(),
                checkpoint: Checkpoint((previous + 1).to_string()),
                more,
            }),
            None => Ok(PollOutcome {
                activities: if self.endless {
                    vec![sample_activity(account, &format!("poll-{count}"))]
                } else {
                    Vec::new()
                },
                checkpoint: Checkpoint((previous + 1).to_string()),
                more: false,
            }),
        }
    }
}

struct Harness {
    store: Arc<SqliteStore>,
    subscription: Subscription,
    probe: Arc<Probe>,
    _dir: tempfile::TempDir,
}

fn fast_config(node: &str) -> EngineConfig {
    EngineConfig {
        node_id: node.to_owned(),
        tick: Duration::from_millis(20),
        wake_debounce: Duration::from_millis(5),
        backoff: Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
            jitter: 0.0,
        },
        ..EngineConfig::default()
    }
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(dir.path().join("t.db")).expect("store"));
    let subscription = setup(&*store).await;
    Harness {
        store,
        subscription,
        probe: Arc::new(Probe::default()),
        _dir: dir,
    }
}

type Started = (
    Arc<Engine>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
);

fn start(
    harness: &Harness,
    node: &str,
    script: Vec<Step>,
    delay: Duration,
    endless: bool,
) -> Started {
    start_with_config(harness, fast_config(node), script, delay, endless)
}

fn start_with_config(
    harness: &Harness,
    config: EngineConfig,
    script: Vec<Step>,
    delay: Duration,
    endless: bool,
) -> Started {
    let connector: Arc<dyn Connector> = Arc::new(Scripted {
        script: Mutex::new(script.into()),
        probe: Arc::clone(&harness.probe),
        delay,
        endless,
    });
    let engine = Engine::with_connectors(
        harness.store.clone(),
        config,
        Arc::new(move |_service: &str, _config: &serde_json::Value| Ok(Arc::clone(&connector))),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(Arc::clone(&engine).run(async move {
        let _ = stopped.await;
    }));
    (engine, stop, handle)
}

async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_engine_commits_every_page_with_its_checkpoint() {
    let h = harness().await;
    let script = vec![
        Step::Page(vec!["a", "b"], true),
        Step::Page(vec!["c"], false),
    ];
    let (engine, stop, handle) = start(&h, "n1", script, Duration::ZERO, false);
    let mut commits = engine.subscribe_commits();
    let id = h.subscription.id;
    wait_until("3 activities", || async {
        h.store.latest_sequence(id).await.expect("seq") == 3
    })
    .await;
    let announced = commits.recv().await.expect("announcement");
    assert_eq!(announced.subscription_id, id);
    let rows = h.store.read_activity(id, 0, 10).await.expect("read");
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r.activity().expect("parses").id)
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(
        h.store.load_checkpoint(id).await.expect("cp").as_deref(),
        Some("2")
    );
    let state = h.store.poll_state(id).await.expect("state");
    assert!(
        state.next_poll_at > Utc::now() + chrono::Duration::minutes(50),
        "next poll after the interval"
    );
    let _ = stop.send(());
    handle.await.expect("engine stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_rate_limit_honours_retry_after() {
    let h = harness().await;
    let script = vec![Step::Fail(ConnectorError::RateLimited {
        retry_after: Some(Duration::from_secs(30)),
    })];
    let (_engine, stop, handle) = start(&h, "n1", script, Duration::ZERO, false);
    let id = h.subscription.id;
    wait_until("a recorded failure", || async {
        h.store
            .poll_state(id)
            .await
            .expect("state")
            .consecutive_failures
            == 1
    })
    .await;
    let state = h.store.poll_state(id).await.expect("state");
    let wait = state.next_poll_at - Utc::now();
    assert!(
        wait > chrono::Duration::seconds(25),
        "Retry-After ignored: retry in {wait}"
    );
    assert!(state
        .last_error
        .as_deref()
        .unwrap_or_default()
        .contains("retry after 30s"));
    assert!(
        h.store.get_subscription(id).await.expect("sub").active,
        "rate limits never disable"
    );
    let _ = stop.send(());
    handle.await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_transient_failures_back_off_then_recover() {
    let h = harness().await;
    let script = vec![
        Step::Fail(ConnectorError::Transient("503".into())),
        Step::Fail(ConnectorError::Transient("503".into())),
        Step::Page(vec!["x"], false),
    ];
    let (_engine, stop, handle) = start(&h, "n1", script, Duration::ZERO, false);
    let id = h.subscription.id;
    wait_until("recovery", || async {
        h.store.latest_sequence(id).await.expect("seq") == 1
    })
    .await;
    wait_until("failures reset", || async {
        h.store
            .poll_state(id)
            .await
            .expect("state")
            .consecutive_failures
            == 0
    })
    .await;
    assert_eq!(h.probe.polls.load(Ordering::SeqCst), 3);
    let _ = stop.send(());
    handle.await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_unauthorized_deactivates_the_subscription() {
    let h = harness().await;
    let script = vec![Step::Fail(ConnectorError::Unauthorized(
        "401 from upstream".into(),
    ))];
    let (_engine, stop, handle) = start(&h, "n1", script, Duration::ZERO, false);
    let id = h.subscription.id;
    wait_until("deactivation", || async {
        !h.store.get_subscription(id).await.expect("sub").active
    })
    .await;
    let subscription = h.store.get_subscription(id).await.expect("sub");
    assert_eq!(subscription.disable_reason, "invalid_credentials");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        h.probe.polls.load(Ordering::SeqCst),
        1,
        "a deactivated subscription is not polled"
    );
    let _ = stop.send(());
    handle.await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_two_engines_never_poll_one_subscription_at_once() {
    let h = harness().await;
    let (first, stop_first, first_handle) =
        start(&h, "node-a", Vec::new(), Duration::from_millis(15), true);
    let (second, stop_second, second_handle) =
        start(&h, "node-b", Vec::new(), Duration::from_millis(15), true);
    let id = h.subscription.id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        first.request_poll(id);
        second.request_poll(id);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let _ = stop_first.send(());
    let _ = stop_second.send(());
    first_handle.await.expect("stops");
    second_handle.await.expect("stops");
    let polls = h.probe.polls.load(Ordering::SeqCst);
    assert!(polls >= 10, "only {polls} polls ran");
    assert_eq!(
        h.probe.max_in_flight.load(Ordering::SeqCst),
        1,
        "two polls of one subscription overlapped"
    );
    let rows = h.store.read_activity(id, 0, 100_000).await.expect("read");
    for (index, row) in rows.iter().enumerate() {
        assert_eq!(row.sequence, index as u64 + 1);
    }
    assert_eq!(
        rows.len(),
        polls,
        "every poll's activity committed exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_unknown_service_disables_with_invalid_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(dir.path().join("t.db")).expect("store"));
    let application = store.create_application("app").await.expect("app");
    let account = store
        .create_account(tidemark_store::NewAccount {
            application_id: application.id,
            service: "no-such-service".into(),
            admin: false,
            config: serde_json::json!({}),
            token_digest: None,
        })
        .await
        .expect("account");
    let subscription = store
        .create_subscription(tidemark_store::NewSubscription::changes(account.id))
        .await
        .expect("subscription");
    let engine = Engine::new(store.clone(), fast_config("n1"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(Arc::clone(&engine).run(async move {
        let _ = stopped.await;
    }));
    let id = subscription.id;
    wait_until("deactivation", || async {
        !store.get_subscription(id).await.expect("sub").active
    })
    .await;
    assert_eq!(
        store
            .get_subscription(id)
            .await
            .expect("sub")
            .disable_reason,
        "invalid_config"
    );
    let state = store.poll_state(id).await.expect("state");
    assert!(state
        .last_error
        .unwrap_or_default()
        .contains("unknown service `no-such-service`"));
    let _ = stop.send(());
    handle.await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_corrupt_checkpoint_deactivates_and_keeps_committed_activity() {
    let h = harness().await;
    let script = vec![
        Step::Page(vec!["kept-1", "kept-2"], false),
        Step::Fail(ConnectorError::CorruptCheckpoint(
            "unknown version 9".into(),
        )),
    ];
    let (engine, stop, handle) = start(&h, "n1", script, Duration::ZERO, false);
    let id = h.subscription.id;
    wait_until("first page", || async {
        h.store.latest_sequence(id).await.expect("seq") == 2
    })
    .await;
    engine.request_poll(id);
    wait_until("deactivation", || async {
        !h.store.get_subscription(id).await.expect("sub").active
    })
    .await;
    let subscription = h.store.get_subscription(id).await.expect("sub");
    assert_eq!(subscription.disable_reason, "corrupt_checkpoint");
    let state = h.store.poll_state(id).await.expect("state");
    assert!(state
        .last_error
        .unwrap_or_default()
        .contains("unknown version 9"));
    assert_eq!(
        h.store.latest_sequence(id).await.expect("seq"),
        2,
        "committed activity is kept"
    );
    assert_eq!(
        h.store.load_checkpoint(id).await.expect("cp").as_deref(),
        Some("1")
    );
    let _ = stop.send(());
    handle.await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_account_poll_interval_overrides_the_connector_default() {
    let h = harness().await;
    // The scripted connector's own interval is an hour; the account asks for a second.
    h.store
        .update_account(
            h.subscription.account,
            AccountPatch {
                config: Some(json!({"poll_interval_seconds": 1})),
                ..AccountPatch::default()
            },
        )
        .await
        .expect("account config");
    let (_engine, stop, handle) = start(&h, "n1", Vec::new(), Duration::ZERO, false);
    wait_until("three polls a second apart", || async {
        h.probe.polls.load(Ordering::SeqCst) >= 3
    })
    .await;
    let state = h.store.poll_state(h.subscription.id).await.expect("state");
    assert!(
        state.next_poll_at < Utc::now() + chrono::Duration::seconds(30),
        "next poll a second after the last, not the connector's hour: {state:?}"
    );
    let _ = stop.send(());
    handle.await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_connector_default_poll_interval_applies_without_an_account_override() {
    let h = harness().await;
    let (_engine, stop, handle) = start(&h, "n1", Vec::new(), Duration::ZERO, false);
    let id = h.subscription.id;
    wait_until(
        "the first poll released with its next poll time",
        || async {
            let state = h.store.poll_state(id).await.expect("state");
            h.probe.polls.load(Ordering::SeqCst) == 1
                && state.lease_holder.is_none()
                && state.next_poll_at > Utc::now() + chrono::Duration::minutes(50)
        },
    )
    .await;
    // The window in which the account override above polls three times.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        h.probe.polls.load(Ordering::SeqCst),
        1,
        "polled again before the connector's hour"
    );
    let _ = stop.send(());
    handle.await.expect("stops");
}

/// Moves a subscription's activity `days` into the past, as if committed then (through a raw
/// connection on the same file: the store always commits at the current time).
fn backdate_activity(path: &std::path::Path, subscription_id: i64, days: i64) {
    let conn = rusqlite::Connection::open(path).expect("raw connection");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    conn.execute(
        "UPDATE activity SET committed_at = committed_at - ?2 WHERE subscription_id = ?1",
        rusqlite::params![subscription_id, days * 86_400_000_000],
    )
    .expect("backdate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_running_engine_prunes_activity_past_retention() {
    let h = harness().await;
    let id = h.subscription.id;
    let account = h
        .store
        .get_account(h.subscription.account)
        .await
        .expect("account");
    let mut application = h
        .store
        .get_application(account.application_id)
        .await
        .expect("application");
    application.retention_days = Some(1);
    h.store
        .update_application(&application)
        .await
        .expect("retention");
    let commit = |ids: &[&str]| {
        let activities: Vec<_> = ids
            .iter()
            .map(|activity_id| sample_activity(account.id, activity_id))
            .collect();
        let store = Arc::clone(&h.store);
        async move {
            store
                .commit(CommitBatch::new(id, &activities).expect("encodes"))
                .await
                .expect("commit")
        }
    };
    commit(&["old-1", "old-2"]).await;
    backdate_activity(h.store.path(), id, 2);
    commit(&["fresh"]).await;

    let config = EngineConfig {
        retention_interval: Duration::from_millis(100),
        ..fast_config("n1")
    };
    let (_engine, stop, handle) = start_with_config(&h, config, Vec::new(), Duration::ZERO, false);
    wait_until("the two-day-old activity pruned", || async {
        h.store.activity_total(id).await.expect("total") == 1
    })
    .await;
    let retained: Vec<String> = h
        .store
        .read_activity(id, 0, 10)
        .await
        .expect("read")
        .iter()
        .map(|row| row.activity().expect("parses").id)
        .collect();
    assert_eq!(retained, ["fresh"], "activity within retention is kept");

    // Not just once at start-up: the loop keeps pruning at its interval.
    backdate_activity(h.store.path(), id, 2);
    wait_until("the later pass prunes the rest", || async {
        h.store.activity_total(id).await.expect("total") == 0
    })
    .await;
    assert!(h
        .store
        .read_activity(id, 0, 10)
        .await
        .expect("read")
        .is_empty());
    assert_eq!(
        h.store.latest_sequence(id).await.expect("seq"),
        3,
        "pruning never renumbers the stream"
    );
    let _ = stop.send(());
    handle.await.expect("stops");
}
