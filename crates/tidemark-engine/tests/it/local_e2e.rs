//! The real engine with the real `local` connector on a real directory: live file changes,
//! changes made while Tidemark is stopped, and a 10,000-file burst, none lost or repeated.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tidemark_engine::{Engine, EngineConfig};
use tidemark_model::{Activity, EventSubtype, EventType, Subscription};
use tidemark_store::{NewAccount, NewSubscription, SqliteStore, Store};

struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.handle.await.expect("engine stops cleanly");
    }
}

fn start(store: &Arc<SqliteStore>) -> Running {
    let config = EngineConfig {
        tick: Duration::from_millis(50),
        wake_debounce: Duration::from_millis(50),
        ..EngineConfig::default()
    };
    let engine = Engine::new(store.clone(), config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(engine.run(async move {
        let _ = stopped.await;
    }));
    Running { stop, handle }
}

/// Rescans so rare that within a test only file events (or the engine's start-up poll) can
/// drive a poll: a broken watch fails the test instead of being covered by the rescan.
const NO_RESCAN: Option<u64> = Some(3600);

/// How long a live change may take to reach the stream (generous: a loaded 2-core machine).
const LIVE_DEADLINE: Duration = Duration::from_secs(30);

/// How long the 10,000-file burst may take to reach the stream.
const BURST_DEADLINE: Duration = Duration::from_secs(60);

/// A `local` account on `root` with one subscription; `rescan_interval_seconds` as given
/// (`None`: the connector's default of 60 s).
async fn local_subscription(
    store: &SqliteStore,
    root: &Path,
    rescan_interval_seconds: Option<u64>,
) -> Subscription {
    let application = store.create_application("e2e").await.expect("app");
    let account = store
        .create_account(NewAccount {
            application_id: application.id,
            service: "local".into(),
            admin: false,
            config: json!({
                "path": root.to_string_lossy(),
                "rescan_interval_seconds": rescan_interval_seconds,
            }),
            token_digest: None,
        })
        .await
        .expect("account");
    store
        .create_subscription(NewSubscription::changes(account.id))
        .await
        .expect("subscription")
}

async fn wait_for_baseline(store: &SqliteStore, subscription: &Subscription) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while store
        .load_checkpoint(subscription.id)
        .await
        .expect("cp")
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no baseline checkpoint"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits up to `within` until the stream holds at least `count` activities, then returns all
/// of them.
async fn wait_for_stream(
    store: &SqliteStore,
    subscription: &Subscription,
    count: u64,
    within: Duration,
) -> Vec<Activity> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let latest = store.latest_sequence(subscription.id).await.expect("seq");
        if latest >= count {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream has {latest} activities, expected {count}: {:?}",
            store.poll_state(subscription.id).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

fn path_of(activity: &Activity) -> String {
    activity
        .target
        .as_ref()
        .and_then(|t| t["path"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn summary(activities: &[Activity]) -> Vec<(EventType, EventSubtype, String)> {
    activities
        .iter()
        .map(|a| (a.event_type, a.event_subtype, path_of(a)))
        .collect()
}

/// Each change reaches the stream through the OS file watch: the rescan is an hour away.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_live_file_changes_become_activity() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("watched");
    std::fs::create_dir(&root).expect("mkdir");
    std::fs::write(root.join("existing.txt"), "before").expect("write");
    // Files born within the connector's clock slack of the subscription count as new.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let store = Arc::new(SqliteStore::open(dir.path().join("t.db")).expect("store"));
    let subscription = local_subscription(&store, &root, NO_RESCAN).await;
    let engine = start(&store);
    wait_for_baseline(&store, &subscription).await;

    std::fs::write(root.join("new.txt"), "hello").expect("create");
    let seen = wait_for_stream(&store, &subscription, 1, LIVE_DEADLINE).await;
    assert_eq!(
        summary(&seen),
        vec![(EventType::Add, EventSubtype::Unknown, "/new.txt".to_owned())]
    );

    std::fs::write(root.join("new.txt"), "hello, world").expect("modify");
    wait_for_stream(&store, &subscription, 2, LIVE_DEADLINE).await;
    std::fs::rename(root.join("new.txt"), root.join("renamed.txt")).expect("rename");
    wait_for_stream(&store, &subscription, 3, LIVE_DEADLINE).await;
    std::fs::create_dir(root.join("sub")).expect("mkdir");
    wait_for_stream(&store, &subscription, 4, LIVE_DEADLINE).await;
    std::fs::rename(root.join("renamed.txt"), root.join("sub/renamed.txt")).expect("move");
    wait_for_stream(&store, &subscription, 5, LIVE_DEADLINE).await;
    std::fs::remove_file(root.join("existing.txt")).expect("delete");
    let seen = wait_for_stream(&store, &subscription, 6, LIVE_DEADLINE).await;
    assert_eq!(
        summary(&seen),
        vec![
            (EventType::Add, EventSubtype::Unknown, "/new.txt".to_owned()),
            (
                EventType::Update,
                EventSubtype::Unknown,
                "/new.txt".to_owned()
            ),
            (
                EventType::Update,
                EventSubtype::Rename,
                "/renamed.txt".to_owned()
            ),
            (EventType::Add, EventSubtype::Unknown, "/sub".to_owned()),
            (
                EventType::Update,
                EventSubtype::Move,
                "/sub/renamed.txt".to_owned()
            ),
            (
                EventType::Delete,
                EventSubtype::Unknown,
                "/existing.txt".to_owned()
            ),
        ]
    );
    engine.stop().await;
}

/// The engine polls push-driven subscriptions when it starts (the rescan is an hour away).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_changes_made_while_stopped_appear_after_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("watched");
    std::fs::create_dir(&root).expect("mkdir");
    std::fs::write(root.join("keep.txt"), "v1").expect("write");
    std::fs::write(root.join("doomed.txt"), "x").expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let db = dir.path().join("t.db");
    let subscription = {
        let store = Arc::new(SqliteStore::open(&db).expect("store"));
        let subscription = local_subscription(&store, &root, NO_RESCAN).await;
        let engine = start(&store);
        wait_for_baseline(&store, &subscription).await;
        engine.stop().await;
        subscription
    };
    // Tidemark is down: change things.
    std::fs::write(root.join("added-offline.txt"), "new").expect("create");
    std::fs::remove_file(root.join("doomed.txt")).expect("delete");
    std::fs::rename(root.join("keep.txt"), root.join("kept.txt")).expect("rename");

    let store = Arc::new(SqliteStore::open(&db).expect("reopen"));
    let engine = start(&store);
    let seen = wait_for_stream(&store, &subscription, 3, LIVE_DEADLINE).await;
    let mut kinds: Vec<(EventType, EventSubtype, String)> = summary(&seen);
    kinds.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(
        kinds,
        vec![
            (
                EventType::Add,
                EventSubtype::Unknown,
                "/added-offline.txt".to_owned()
            ),
            (
                EventType::Delete,
                EventSubtype::Unknown,
                "/doomed.txt".to_owned()
            ),
            (
                EventType::Update,
                EventSubtype::Rename,
                "/kept.txt".to_owned()
            ),
        ]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        store.latest_sequence(subscription.id).await.expect("seq"),
        3,
        "nothing repeated"
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_ten_thousand_files_in_one_burst_none_lost() {
    const FILES: usize = 10_000;
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("watched");
    std::fs::create_dir(&root).expect("mkdir");
    let store = Arc::new(SqliteStore::open(dir.path().join("t.db")).expect("store"));
    let subscription = local_subscription(&store, &root, None).await;
    let engine = start(&store);
    wait_for_baseline(&store, &subscription).await;

    for index in 0..FILES {
        std::fs::write(root.join(format!("f{index:05}.txt")), index.to_string()).expect("write");
    }
    wait_for_stream(&store, &subscription, FILES as u64, BURST_DEADLINE).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let latest = store.latest_sequence(subscription.id).await.expect("seq");
    let seen = wait_for_stream(&store, &subscription, latest, BURST_DEADLINE).await;
    // Every file is added exactly once. A scan may catch a file between its creation and the
    // write of its content; that file then also gets one `update` when the content lands.
    let adds: Vec<String> = seen
        .iter()
        .filter(|a| a.event_type == EventType::Add)
        .map(path_of)
        .collect();
    let distinct: HashSet<&String> = adds.iter().collect();
    assert_eq!(adds.len(), FILES, "adds");
    assert_eq!(distinct.len(), FILES, "every file exactly once");
    let updates: Vec<&Activity> = seen
        .iter()
        .filter(|a| a.event_type != EventType::Add)
        .collect();
    assert!(
        updates
            .iter()
            .all(|a| a.event_type == EventType::Update && distinct.contains(&path_of(a))),
        "only content updates of the new files may follow: {:?}",
        summary(&seen[FILES.min(seen.len())..])
    );
    assert!(
        updates.len() < 100,
        "{} updates for 10,000 single writes",
        updates.len()
    );
    engine.stop().await;
}
