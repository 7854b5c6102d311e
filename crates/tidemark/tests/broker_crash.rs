//! `kill -9` of `tidemark serve` while it publishes to a broker destination: after a restart
//! every subscription's activity is published in order with nothing skipped, and at most one
//! message per subscription is published twice (the one acknowledged but not yet committed),
//! with the same message id, so a consumer can drop it.
//!
//! One test per broker (NATS JetStream, RabbitMQ, Redis Streams), started by
//! `scripts/brokers.sh`. The test process commits the activity straight into the server's
//! SQLite database (as a poller would) and watches the destination's attempts log to kill the
//! server once part of it is published.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tidemark_store::{AttemptQuery, CommitBatch, NewAccount, NewSubscription, SqliteStore, Store};

#[path = "../../tidemark-notify/tests/support/mod.rs"]
mod support;
use support::*;

const API_KEY: &str = "tmk_broker_crash_test_key_0123456789";
const SUBSCRIPTIONS: usize = 4;
const ACTIVITIES: usize = 2000;
const BATCH_SIZE: usize = 5;

fn serve(db: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--bootstrap-api-key",
            API_KEY,
            // A claim held by the killed process lapses after max(this, publish timeout + 4 s).
            "--broker-claim-ttl-secs",
            "1",
            "--broker-publish-timeout-secs",
            "2",
        ])
        .arg("--db")
        .arg(format!("sqlite://{}", db.display()))
        .env("TIDEMARK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts")
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "serve never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn activity(account: i64, subscription: i64, index: usize) -> tidemark_model::Activity {
    serde_json::from_value(json!({
        "id": format!("s{subscription}-{index}"), "account": account,
        "api": "activity", "type": "activity", "event_category": "storage",
        "event_type": "add", "event_subtype": "unknown",
        "target": {"type": "file", "id": format!("f{index}"), "name": format!("doc{index}.txt")},
        "timestamp": "2026-01-02T03:04:05Z", "actor": {"type": "user", "id": "u1"}
    }))
    .expect("activity")
}

/// Activities the destination's successful attempts carried.
async fn published(store: &SqliteStore, destination: i64) -> usize {
    store
        .list_destination_attempts(
            destination,
            AttemptQuery {
                success: Some(true),
                limit: 1_000_000,
                ..AttemptQuery::default()
            },
        )
        .await
        .expect("attempts")
        .iter()
        .map(|attempt| attempt.published as usize)
        .sum()
}

async fn kill_mid_publish_then_restart(kind: &str, target: Value, consumer: impl AsyncConsume) {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("t.db");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut child = serve(&db, port);
    wait_healthy(&client, &base).await;

    let store = SqliteStore::open(&db).expect("the server's database");
    // The accounts watch an empty directory: the only activity is what the test commits.
    let watched = dir.path().join("watched");
    std::fs::create_dir(&watched).expect("mkdir");
    let application_id = store.list_applications().await.expect("apps")[0].id;
    let mut subscriptions = Vec::new();
    for _ in 0..SUBSCRIPTIONS {
        let account = store
            .create_account(NewAccount {
                application_id,
                service: "local".into(),
                admin: false,
                config: json!({"path": watched}),
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
    let response = client
        .post(format!("{base}/v1/destinations"))
        .header("Authorization", format!("APIKey {API_KEY}"))
        .json(&json!({"kind": kind, "target": target, "batch_size": BATCH_SIZE, "payload": "v2"}))
        .send()
        .await
        .expect("create destination");
    assert!(response.status().is_success(), "{}", response.status());
    let destination = response.json::<Value>().await.expect("json")["id"]
        .as_i64()
        .expect("destination id");

    for &(account, subscription) in &subscriptions {
        for chunk in (0..ACTIVITIES).collect::<Vec<_>>().chunks(200) {
            let batch: Vec<_> = chunk
                .iter()
                .map(|&i| activity(account, subscription, i))
                .collect();
            store
                .commit(CommitBatch::new(subscription, &batch).expect("encode"))
                .await
                .expect("commit");
        }
    }
    let total = SUBSCRIPTIONS * ACTIVITIES;
    // Kill once part of it went out.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = published(&store, destination).await;
        if done >= total / 5 {
            assert!(
                done < total,
                "everything was published before the kill: raise ACTIVITIES"
            );
            break;
        }
        assert!(Instant::now() < deadline, "publishing never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
    let at_kill = published(&store, destination).await;
    eprintln!("{kind}: killed after {at_kill} of {total} activities were acknowledged");

    let mut restarted = serve(&db, port);
    wait_healthy(&client, &base).await;
    let received = consumer.consume(total / BATCH_SIZE).await;
    restarted.kill().expect("kill");
    let _ = restarted.wait();

    // Per subscription: each message id once after dropping repeats, at most one repeat,
    // identical to the first copy, and the activity complete and in order.
    let mut first_copy: HashMap<String, &Received> = HashMap::new();
    let mut repeats: HashMap<i64, usize> = HashMap::new();
    let mut carried: HashMap<i64, Vec<String>> = HashMap::new();
    for message in &received {
        let subscription: i64 = message.headers["subscriptionId"]
            .parse()
            .expect("subscriptionId");
        if let Some(earlier) = first_copy.get(&message.message_id) {
            assert_eq!(
                earlier.body, message.body,
                "a repeat carries the same activity"
            );
            *repeats.entry(subscription).or_default() += 1;
            continue;
        }
        first_copy.insert(message.message_id.clone(), message);
        let ids = carried.entry(subscription).or_default();
        for item in message.body["activity"]["v2"].as_array().expect("v2") {
            ids.push(item["id"].as_str().expect("id").to_owned());
        }
    }
    for &(_, subscription) in &subscriptions {
        let expected: Vec<String> = (0..ACTIVITIES)
            .map(|i| format!("s{subscription}-{i}"))
            .collect();
        assert_eq!(
            carried.get(&subscription),
            Some(&expected),
            "{kind}: subscription {subscription} complete and in order"
        );
        let repeated = repeats.get(&subscription).copied().unwrap_or(0);
        assert!(
            repeated <= 1,
            "{kind}: subscription {subscription} re-published {repeated} messages"
        );
    }
    let unique_ids: HashSet<&String> = first_copy.keys().collect();
    eprintln!(
        "{kind}: {} messages, {} repeated after the kill",
        unique_ids.len(),
        repeats.values().sum::<usize>()
    );
}

/// Reads at least `count` messages of a destination (and the repeats that follow them).
trait AsyncConsume {
    async fn consume(&self, count: usize) -> Vec<Received>;
}

struct NatsConsumer {
    stream: String,
    prefix: String,
}

impl AsyncConsume for NatsConsumer {
    async fn consume(&self, count: usize) -> Vec<Received> {
        nats_consume(&self.stream, &self.prefix, count).await
    }
}

struct RabbitMqConsumer {
    queue: String,
}

impl AsyncConsume for RabbitMqConsumer {
    async fn consume(&self, count: usize) -> Vec<Received> {
        rabbitmq_consume(&self.queue, count).await
    }
}

struct RedisConsumer {
    key: String,
}

impl AsyncConsume for RedisConsumer {
    async fn consume(&self, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let received = redis_consume(&self.key).await;
            if received.len() >= count {
                tokio::time::sleep(Duration::from_millis(500)).await;
                return redis_consume(&self.key).await;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} entries arrived",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_kill_9_mid_publish_to_nats_republishes_at_most_one_message_per_subscription() {
    let stream = unique("TMCRASH");
    let prefix = unique("tmcrash.");
    let target = json!({"url": nats_url(), "stream": stream, "subject_prefix": prefix,
                        "create_stream": true});
    kill_mid_publish_then_restart("nats", target, NatsConsumer { stream, prefix }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_kill_9_mid_publish_to_rabbitmq_republishes_at_most_one_message_per_subscription() {
    let exchange = unique("tm-crash-");
    let prefix = unique("crash");
    let queue = rabbitmq_bind_queue(&exchange, &prefix).await;
    let target = json!({"url": amqp_url(), "exchange": exchange, "routing_key_prefix": prefix,
                        "declare": true});
    kill_mid_publish_then_restart("rabbitmq", target, RabbitMqConsumer { queue }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_kill_9_mid_publish_to_redis_republishes_at_most_one_message_per_subscription() {
    let key = unique("tm:crash:");
    let target = json!({"url": redis_url(), "stream_key": key});
    kill_mid_publish_then_restart("redis", target, RedisConsumer { key }).await;
}
