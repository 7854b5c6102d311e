//! Several engines (nodes) on one PostgreSQL store: work is shared, a subscription is never
//! polled by two nodes at once, and a dead node's subscriptions are taken over within one
//! lease period. (Fencing of a node that lost its lease is proven on every store by the
//! conformance suite's stale-commit test.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tidemark_connectors::{Checkpoint, Connector, ConnectorError, PollContext, PollOutcome};
use tidemark_engine::{Backoff, Engine, EngineConfig};
use tidemark_store::pgtest::TestDatabase;
use tidemark_store::testsuite::sample_activity;
use tidemark_store::{NewAccount, NewSubscription, PostgresStore, Store};

/// Per-subscription poll accounting shared by every node's connector.
#[derive(Default)]
struct Ledger {
    in_flight: Mutex<HashMap<i64, usize>>,
    overlaps: AtomicUsize,
    polls_by_node: Mutex<HashMap<String, usize>>,
    first_poll_at: Mutex<HashMap<(String, i64), Instant>>,
}

/// Every poll yields one new activity; `hang` makes the node's polls never return (a node
/// that dies mid-poll).
struct Counting {
    node: String,
    ledger: Arc<Ledger>,
    delay: Duration,
    hang: Arc<AtomicBool>,
}

#[async_trait]
impl Connector for Counting {
    fn service(&self) -> &'static str {
        "counting"
    }
    fn default_poll_interval(&self) -> Duration {
        Duration::from_millis(50)
    }
    async fn validate(&self) -> Result<(), ConnectorError> {
        Ok(())
    }
    async fn poll(
        &self,
        context: &PollContext,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<PollOutcome, ConnectorError> {
        let id = context.subscription.id;
        self.ledger
            .first_poll_at
            .lock()
            .expect("ledger")
            .entry((self.node.clone(), id))
            .or_insert_with(Instant::now);
        {
            let mut in_flight = self.ledger.in_flight.lock().expect("ledger");
            let now = in_flight.entry(id).or_default();
            *now += 1;
            if *now > 1 {
                self.ledger.overlaps.fetch_add(1, Ordering::SeqCst);
            }
        }
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(self.delay).await;
        *self
            .ledger
            .in_flight
            .lock()
            .expect("ledger")
            .entry(id)
            .or_default() -= 1;
        *self
            .ledger
            .polls_by_node
            .lock()
            .expect("ledger")
            .entry(self.node.clone())
            .or_default() += 1;
        let previous: u64 = checkpoint.and_then(|c| c.0.parse().ok()).unwrap_or(0);
        let next = previous + 1;
        Ok(PollOutcome {
            activities: vec![sample_activity(
                context.account.id,
                &format!("s{id}-{next}"),
            )],
            checkpoint: Checkpoint(next.to_string()),
            more: false,
        })
    }
}

fn config(node: &str, lease_ttl: Duration) -> EngineConfig {
    EngineConfig {
        node_id: node.to_owned(),
        lease_ttl,
        // Fewer slots than subscriptions, so no two nodes can hold every subscription between
        // them and leave the third idle: each has to take its share.
        max_concurrent_polls: 4,
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

struct Node {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
}

fn start_node(
    store: &Arc<PostgresStore>,
    node: &str,
    ledger: &Arc<Ledger>,
    lease_ttl: Duration,
    hang: Arc<AtomicBool>,
) -> Node {
    let connector: Arc<dyn Connector> = Arc::new(Counting {
        node: node.to_owned(),
        ledger: Arc::clone(ledger),
        delay: Duration::from_millis(5),
        hang,
    });
    let engine = Engine::with_connectors(
        Arc::clone(store) as Arc<dyn Store>,
        config(node, lease_ttl),
        Arc::new(move |_service: &str, _config: &serde_json::Value| Ok(Arc::clone(&connector))),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(engine.run(async move {
        let _ = stopped.await;
    }));
    Node { stop, handle }
}

async fn subscriptions(store: &PostgresStore, count: usize) -> Vec<i64> {
    let application = store.create_application("nodes").await.expect("app");
    let mut ids = Vec::new();
    for _ in 0..count {
        let account = store
            .create_account(NewAccount {
                application_id: application.id,
                service: "counting".into(),
                admin: false,
                config: serde_json::json!({}),
                token_digest: None,
            })
            .await
            .expect("account");
        ids.push(
            store
                .create_subscription(NewSubscription::changes(account.id))
                .await
                .expect("subscription")
                .id,
        );
    }
    ids
}

/// Each stream is 1..n with activity s{id}-1 ... s{id}-n: every poll committed exactly once,
/// in order, whichever node ran it.
async fn assert_streams_exact(store: &PostgresStore, ids: &[i64]) -> usize {
    let mut total = 0;
    for &id in ids {
        let rows = store.read_activity(id, 0, 100_000).await.expect("read");
        for (index, row) in rows.iter().enumerate() {
            assert_eq!(row.sequence, index as u64 + 1, "subscription {id}");
            assert_eq!(
                row.activity().expect("parses").id,
                format!("s{id}-{}", index + 1),
                "subscription {id}: a poll's activity lost or repeated"
            );
        }
        total += rows.len();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_three_nodes_share_subscriptions_and_never_poll_one_twice_at_once() {
    let database = TestDatabase::create().await;
    let store = Arc::new(PostgresStore::connect(&database.url).await.expect("store"));
    let ids = subscriptions(&store, 30).await;
    let ledger = Arc::new(Ledger::default());
    let nodes: Vec<Node> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|node| {
            start_node(
                &store,
                node,
                &ledger,
                Duration::from_secs(10),
                Arc::new(AtomicBool::new(false)),
            )
        })
        .collect();
    // Until every subscription has been polled a few times.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut least = u64::MAX;
        for &id in &ids {
            least = least.min(store.latest_sequence(id).await.expect("seq"));
        }
        if least >= 5 {
            break;
        }
        assert!(Instant::now() < deadline, "polling stalled at {least}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for node in nodes {
        let _ = node.stop.send(());
        node.handle.await.expect("node stops");
    }
    assert_eq!(
        ledger.overlaps.load(Ordering::SeqCst),
        0,
        "two nodes polled one subscription at once"
    );
    let total = assert_streams_exact(&store, &ids).await;
    let by_node = ledger.polls_by_node.lock().expect("ledger").clone();
    assert_eq!(by_node.len(), 3, "every node took a share: {by_node:?}");
    let polls: usize = by_node.values().sum();
    assert!(
        total <= polls && total + 3 >= polls,
        "every finished poll committed once ({total} committed, {polls} polls; a stop may cut \
         the last poll of each node short)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_a_dead_nodes_subscriptions_are_taken_over_within_one_lease_period() {
    let database = TestDatabase::create().await;
    let store = Arc::new(PostgresStore::connect(&database.url).await.expect("store"));
    // As many as one node has poll slots, so node A leases them all.
    let ids = subscriptions(&store, 4).await;
    let ledger = Arc::new(Ledger::default());
    let lease_ttl = Duration::from_secs(2);
    // Node A runs on a runtime of its own, with a store (connections) of its own: it leases
    // everything, hangs mid-poll, and dies when that runtime is shut down (every task of it
    // gone at once, as in a kill -9), its leases still held in the store.
    let hang = Arc::new(AtomicBool::new(true));
    let runtime_a = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let url = database.url.clone();
    let (ledger_a, hang_a) = (Arc::clone(&ledger), Arc::clone(&hang));
    let node_a = runtime_a.spawn(async move {
        let store_a = Arc::new(PostgresStore::connect(&url).await.expect("store"));
        let node = start_node(&store_a, "node-a", &ledger_a, lease_ttl, hang_a);
        let _ = node.handle.await;
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while ledger.first_poll_at.lock().expect("ledger").len() < ids.len() {
        assert!(Instant::now() < deadline, "node A never leased everything");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    runtime_a.shutdown_background();
    drop(node_a);
    let died_at = Instant::now();
    for &id in &ids {
        let state = store.poll_state(id).await.expect("state");
        assert_eq!(
            state.lease_holder.as_deref(),
            Some("node-a"),
            "the dead node still holds {id}"
        );
    }

    let alive = start_node(
        &store,
        "node-b",
        &ledger,
        lease_ttl,
        Arc::new(AtomicBool::new(false)),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut done = true;
        for &id in &ids {
            done &= store.latest_sequence(id).await.expect("seq") >= 1;
        }
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "node B never took over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_polls = ledger.first_poll_at.lock().expect("ledger").clone();
    for &id in &ids {
        let taken_over = first_polls[&("node-b".to_owned(), id)];
        let waited = taken_over.saturating_duration_since(died_at);
        assert!(
            waited <= lease_ttl + Duration::from_millis(750),
            "subscription {id} waited {waited:?} for a new node (lease period {lease_ttl:?})"
        );
    }
    let _ = alive.stop.send(());
    alive.handle.await.expect("stops");
    assert_streams_exact(&store, &ids).await;
}
