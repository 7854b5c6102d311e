//! Starts the real API on `127.0.0.1:0` over a fresh SQLite store, and fills subscriptions
//! with timestamped activity directly in the store.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tidemark_client::{Auth, Client};
use tidemark_model::Activity;
use tidemark_store::{CommitBatch, NewAccount, NewSubscription, SqliteStore, Store};

/// A running API server with its store.
pub struct TestServer {
    pub base: String,
    pub store: Arc<SqliteStore>,
    pub api_key: String,
    pub application_id: i64,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(SqliteStore::open(dir.path().join("api.db")).expect("store"));
        let (application_id, api_key) =
            tidemark_server::bootstrap_application(&*store, "test", None)
                .await
                .expect("bootstrap");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = tidemark_server::AppState::new(store.clone(), None);
        tokio::spawn(tidemark_server::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        TestServer {
            base,
            store,
            api_key,
            application_id,
            stop: Some(stop),
            _dir: dir,
        }
    }

    /// A client with the application's API key.
    pub fn client(&self) -> Client {
        Client::new(&self.base, Auth::ApiKey(self.api_key.clone())).expect("client")
    }

    /// An account (of a service nothing polls) and its subscription, made in the store.
    pub async fn subscription(&self) -> (i64, i64) {
        let account = self
            .store
            .create_account(NewAccount {
                application_id: self.application_id,
                service: "synthetic".into(),
                admin: false,
                config: serde_json::json!({}),
                token_digest: None,
            })
            .await
            .expect("account");
        let subscription = self
            .store
            .create_subscription(NewSubscription::changes(account.id))
            .await
            .expect("subscription");
        (account.id, subscription.id)
    }

    /// Commits `activities` in batches of 5,000, the last batch with `watermark`.
    pub async fn commit(
        &self,
        subscription: i64,
        activities: &[Activity],
        watermark: Option<DateTime<Utc>>,
    ) {
        let batches: Vec<&[Activity]> = activities.chunks(5000).collect();
        let last = batches.len().saturating_sub(1);
        for (index, batch) in batches.into_iter().enumerate() {
            self.store
                .commit(CommitBatch {
                    watermark: if index == last { watermark } else { None },
                    ..CommitBatch::new(subscription, batch).expect("encode")
                })
                .await
                .expect("commit");
        }
        if activities.is_empty() && watermark.is_some() {
            self.store
                .commit(CommitBatch {
                    watermark,
                    ..CommitBatch::new(subscription, &[]).expect("encode")
                })
                .await
                .expect("commit");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A time with microseconds only (the store's resolution).
pub fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).expect("in range")
}

/// A small deterministic generator (no dependency, same sequence every run).
pub struct Lcg(pub u64);

impl Lcg {
    /// 31 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    /// 62 random bits.
    pub fn wide(&mut self) -> u64 {
        (self.next() << 31) | self.next()
    }
}

/// `count` activities named `{prefix}{i}` with timestamps spread over `[from, from + span)`,
/// committed in a shuffled order (so the stream's sequence order is not time order), every
/// tenth sharing its timestamp with the one before (ties across pages and slices).
pub fn spread(
    account: i64,
    prefix: &str,
    count: usize,
    from: DateTime<Utc>,
    span: Duration,
    seed: u64,
) -> Vec<Activity> {
    let span_micros = span.num_microseconds().expect("span") as u64;
    let mut random = Lcg(seed);
    let mut activities: Vec<Activity> = Vec::with_capacity(count);
    let mut previous = from;
    for i in 0..count {
        let mut activity =
            tidemark_store::testsuite::sample_activity(account, &format!("{prefix}{i}"));
        let at = if i % 10 == 9 {
            previous
        } else {
            from + Duration::microseconds((random.wide() % span_micros) as i64)
        };
        previous = at;
        activity.timestamp = Some(micros(at));
        activities.push(activity);
    }
    for i in (1..activities.len()).rev() {
        let j = (random.next() % (i as u64 + 1)) as usize;
        activities.swap(i, j);
    }
    activities
}
