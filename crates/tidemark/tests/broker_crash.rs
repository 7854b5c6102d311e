//! `kill -9` of `tidemark serve` while it publishes to a broker destination, three times, with
//! activity committed all along: after the last restart every subscription's activity is
//! published in order with nothing skipped, and each kill repeats at most one message per
//! subscription (the one in flight), identical to its first copy and with the same message
//! id, so a consumer can drop it.
//!
//! One test per broker (NATS JetStream, RabbitMQ, Redis Streams), started by
//! `scripts/brokers.sh`. The test process commits the activity straight into the server's
//! SQLite database (as a poller would), in small commits whose activity types change every
//! three activities, so messages often end at the end of what was committed and would grow
//! if published again later; it watches the destination's attempts log to kill the server
//! while it publishes.

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
const ACTIVITIES: usize = 1500;
const BATCH_SIZE: usize = 5;
const KILLS: usize = 3;

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
    let event_type = ["add", "update", "delete"][(index / 3) % 3];
    serde_json::from_value(json!({
        "id": format!("s{subscription}-{index}"), "account": account,
        "api": "activity", "type": "activity", "event_category": "storage",
        "event_type": event_type, "event_subtype": "unknown",
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

async fn kill_mid_publish_then_restart(kind: &str, target: Value, consumer: Consumer) {
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

    // Commit in small pieces, all along, while the server publishes (and dies).
    let committer = {
        let store = SqliteStore::open(&db).expect("the server's database");
        let subscriptions = subscriptions.clone();
        tokio::spawn(async move {
            let mut index = 0;
            let mut size = 1;
            while index < ACTIVITIES {
                let end = (index + size).min(ACTIVITIES);
                for &(account, subscription) in &subscriptions {
                    let batch: Vec<_> = (index..end)
                        .map(|i| activity(account, subscription, i))
                        .collect();
                    store
                        .commit(CommitBatch::new(subscription, &batch).expect("encode"))
                        .await
                        .expect("commit");
                }
                index = end;
                size = size % 4 + 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let total = SUBSCRIPTIONS * ACTIVITIES;
    for kill in 1..=KILLS {
        // Kill once more of it went out.
        let goal = total * kill / (KILLS + 2);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let done = published(&store, destination).await;
            if done >= goal {
                break;
            }
            assert!(Instant::now() < deadline, "publishing stalled at {done}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill().expect("kill -9");
        child.wait().expect("reaped");
        let at_kill = published(&store, destination).await;
        assert!(
            at_kill < total,
            "everything was published before kill {kill}: raise ACTIVITIES"
        );
        eprintln!("{kind}: kill {kill} after {at_kill} of {total} activities were acknowledged");
        child = serve(&db, port);
        wait_healthy(&client, &base).await;
    }
    committer.await.expect("committer");

    let complete = |received: &[Received]| {
        let carried = carried_v2_ids(received);
        subscriptions
            .iter()
            .all(|(_, subscription)| carried.get(subscription).map_or(0, Vec::len) >= ACTIVITIES)
    };
    let received = consumer.consume_until(complete).await;
    child.kill().expect("kill");
    let _ = child.wait();

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
            repeated <= KILLS,
            "{kind}: subscription {subscription} re-published {repeated} messages over {KILLS} kills"
        );
    }
    let unique_ids: HashSet<&String> = first_copy.keys().collect();
    eprintln!(
        "{kind}: {} messages, {} repeated after the kill",
        unique_ids.len(),
        repeats.values().sum::<usize>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_kill_9_mid_publish_to_nats_republishes_at_most_one_message_per_subscription() {
    let stream = unique("TMCRASH");
    let prefix = unique("tmcrash.");
    let target = json!({"url": nats_url(), "stream": stream, "subject_prefix": prefix,
                        "create_stream": true});
    kill_mid_publish_then_restart("nats", target, Consumer::Nats { stream, prefix }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_kill_9_mid_publish_to_rabbitmq_republishes_at_most_one_message_per_subscription() {
    let exchange = unique("tm-crash-");
    let prefix = unique("crash");
    let queue = rabbitmq_bind_queue(&exchange, &prefix).await;
    let target = json!({"url": amqp_url(), "exchange": exchange, "routing_key_prefix": prefix,
                        "declare": true});
    kill_mid_publish_then_restart("rabbitmq", target, Consumer::Rabbitmq { queue }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_kill_9_mid_publish_to_redis_republishes_at_most_one_message_per_subscription() {
    let key = unique("tm:crash:");
    let target = json!({"url": redis_url(), "stream_key": key});
    kill_mid_publish_then_restart("redis", target, Consumer::Redis { key }).await;
}
