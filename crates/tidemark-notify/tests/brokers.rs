//! The broker publishers against real servers: NATS (JetStream), RabbitMQ and Redis, started
//! by `scripts/brokers.sh` (sourced by `scripts/test`), which exports their URLs and a
//! `broker-ctl` script to stop and start each one. A missing variable fails the test: these
//! tests are never skipped.
//!
//! Each test consumes with the broker's ordinary client (an async-nats pull consumer, a lapin
//! consumer on a bound queue, `XRANGE`) and checks the message shape, the headers, and the
//! order of each subscription's messages while several subscriptions publish concurrently.
//! The restart tests stop the server process mid-stream while several subscriptions publish,
//! see every subscription's publishes fail retriably, start it again and check that the
//! publisher reconnects and nothing is lost or reordered.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use tidemark_notify::brokers::{
    BrokerPublisher, BrokerTarget, ConnectError, DestinationKind, Message, MessageBuilder,
    NatsPublisher, NatsTarget, PayloadFormat, Publisher, PublisherOptions, RabbitMqPublisher,
    RabbitMqTarget, RedisPublisher, RedisTarget,
};
use tidemark_store::{StoredActivity, StoredV1Event};
use tokio::sync::RwLock;

mod support;
use support::*;

/// Restart tests take a broker's lock for writing, the others for reading, so no test sees
/// the server go away under it.
static NATS: RwLock<()> = RwLock::const_new(());
static RABBITMQ: RwLock<()> = RwLock::const_new(());
static REDIS: RwLock<()> = RwLock::const_new(());

const ACCOUNT: i64 = 9;
/// Subscriptions publishing at once.
const SUBSCRIPTIONS: i64 = 6;
/// Activities per subscription.
const ACTIVITIES: u64 = 40;

/// A loopback URL nothing listens on.
fn closed_port_url(scheme: &str, path: &str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    format!("{scheme}://127.0.0.1:{port}{path}")
}

fn options() -> PublisherOptions {
    PublisherOptions {
        connect_timeout: Duration::from_secs(10),
        publish_timeout: Duration::from_secs(3),
    }
}

/// A subscription's messages: `ACTIVITIES` activities whose v1 type changes every 5 (and a
/// read, which has no v1 form, every 7th), cut at 4 per message.
fn messages_of(subscription: i64) -> Vec<Message> {
    let kinds = [
        ("add", "unknown"),
        ("update", "rename"),
        ("delete", "unknown"),
    ];
    let activities: Vec<StoredActivity> = (1..=ACTIVITIES)
        .map(|sequence| {
            let (event_type, subtype) = if sequence % 7 == 0 {
                ("access", "preview")
            } else {
                kinds[(sequence as usize / 5) % kinds.len()]
            };
            let activity = json!({
                "id": format!("s{subscription}-a{sequence}"), "account": ACCOUNT,
                "api": "activity", "type": "activity", "event_category": "storage",
                "event_type": event_type, "event_subtype": subtype,
                "target": {"type": "file", "id": format!("f{sequence}"), "name": "doc.txt"},
                "timestamp": "2026-01-02T03:04:05Z", "session": {"type": "login", "ip": "10.0.0.1"},
                "actor": {"type": "user", "id": "u1"}
            });
            StoredActivity {
                sequence,
                committed_at: Utc::now(),
                json: activity.to_string(),
                v1: StoredV1Event::Unrendered,
            }
        })
        .collect();
    let builder = MessageBuilder::new(PayloadFormat::Both, NonZeroUsize::new(4).expect("non-zero"));
    let messages = builder
        .build(ACCOUNT, subscription, &activities)
        .expect("messages");
    assert!(messages.len() > 10, "a long enough stream");
    messages
}

fn workload() -> HashMap<i64, Vec<Message>> {
    (1..=SUBSCRIPTIONS)
        .map(|offset| {
            let subscription = 1000 + offset;
            (subscription, messages_of(subscription))
        })
        .collect()
}

fn total(workload: &HashMap<i64, Vec<Message>>) -> usize {
    workload.values().map(Vec::len).sum()
}

/// Publishes every subscription's messages, the subscriptions concurrently, each in order and
/// each message only after the previous one was acknowledged.
async fn publish_concurrently<P: Publisher + 'static>(
    publisher: Arc<P>,
    workload: &HashMap<i64, Vec<Message>>,
) {
    let mut tasks = Vec::new();
    for messages in workload.values() {
        let publisher = Arc::clone(&publisher);
        let messages = messages.clone();
        tasks.push(tokio::spawn(async move {
            for message in &messages {
                if let Err(error) = publisher.publish(message).await {
                    panic!("publishing {}: {error}", message.message_id());
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("publishing task");
    }
}

/// Checks what consumers received against what was published: after dropping repeated message
/// ids, each subscription's messages arrived complete and in order, with the right key, headers
/// and body. Returns how many repeats were dropped.
fn check_received(
    received: &[Received],
    workload: &HashMap<i64, Vec<Message>>,
    key_prefix: Option<&str>,
) -> usize {
    let mut seen = std::collections::HashSet::new();
    let mut by_subscription: HashMap<i64, Vec<&Received>> = HashMap::new();
    let mut repeats = 0;
    for message in received {
        if !seen.insert(message.message_id.clone()) {
            repeats += 1;
            continue;
        }
        let subscription: i64 = message.headers["subscriptionId"]
            .parse()
            .expect("numeric subscriptionId");
        by_subscription
            .entry(subscription)
            .or_default()
            .push(message);
    }
    for (subscription, sent) in workload {
        let got = by_subscription
            .get(subscription)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let sent_ids: Vec<String> = sent.iter().map(Message::message_id).collect();
        let got_ids: Vec<String> = got.iter().map(|m| m.message_id.clone()).collect();
        assert_eq!(
            got_ids, sent_ids,
            "subscription {subscription}: every message, in order"
        );
        for (message, original) in got.iter().zip(sent) {
            if let Some(prefix) = key_prefix {
                assert_eq!(message.key, format!("{prefix}.{subscription}"));
            }
            let expected_headers: BTreeMap<String, String> = original
                .headers()
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect();
            for (name, value) in &expected_headers {
                assert_eq!(
                    message.headers.get(name),
                    Some(value),
                    "{}: header {name}",
                    message.message_id
                );
            }
            if original.v1_activity_type.is_none() {
                assert!(!message.headers.contains_key("v1ActivityType"));
            }
            let expected_body: Value = serde_json::from_slice(&original.body).expect("json");
            assert_eq!(message.body, expected_body, "{}", message.message_id);
            assert_eq!(message.body["account"], ACCOUNT);
            assert_eq!(message.body["subscription"], *subscription);
            let v2 = message.body["activity"]["v2"].as_array().expect("v2 list");
            assert_eq!(v2.len(), original.activity_count);
            assert_eq!(
                v2[0]["id"],
                format!("s{subscription}-a{}", original.first_sequence)
            );
            let v1 = message.body["activity"]["v1"].as_array().expect("v1 list");
            if let Some(kind) = message.headers.get("v1ActivityType") {
                assert!(v1.iter().all(|event| event["type"] == kind.as_str()));
                assert_eq!(v1.len(), v2.len());
            } else {
                assert!(v1.is_empty());
            }
        }
    }
    repeats
}

/// Publishes every subscription's messages concurrently through a stop and start of `broker`:
/// the first half of each; then the server stops, and every subscription goes on publishing,
/// retrying each message until it is acknowledged (every error must be retriable); once each
/// subscription has failed at least once, the server starts again.
async fn publish_concurrently_through_restart<P: Publisher + 'static>(
    publisher: Arc<P>,
    broker: &str,
    workload: &HashMap<i64, Vec<Message>>,
) {
    let first_halves: HashMap<i64, Vec<Message>> = workload
        .iter()
        .map(|(subscription, messages)| (*subscription, messages[..messages.len() / 2].to_vec()))
        .collect();
    publish_concurrently(Arc::clone(&publisher), &first_halves).await;
    broker_ctl(broker, "stop").await;
    let failed_subscriptions = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for messages in workload.values() {
        let publisher = Arc::clone(&publisher);
        let rest = messages[messages.len() / 2..].to_vec();
        let failed_subscriptions = Arc::clone(&failed_subscriptions);
        let failures = Arc::clone(&failures);
        let broker = broker.to_owned();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut failed = false;
            for message in &rest {
                loop {
                    match publisher.publish(message).await {
                        Ok(_) => break,
                        Err(error) => {
                            assert!(
                                error.is_retriable(),
                                "{broker}, {}: {error}",
                                message.message_id()
                            );
                            if !failed {
                                failed = true;
                                failed_subscriptions.fetch_add(1, Ordering::SeqCst);
                            }
                            failures.fetch_add(1, Ordering::SeqCst);
                            assert!(
                                started.elapsed() < Duration::from_secs(120),
                                "{broker}: the publisher did not recover: {error}"
                            );
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while failed_subscriptions.load(Ordering::SeqCst) < workload.len() {
        assert!(
            Instant::now() < deadline,
            "{broker} is down, yet publishes did not fail"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker_ctl(broker, "start").await;
    let started = Instant::now();
    for task in tasks {
        task.await.expect("publishing task");
    }
    eprintln!(
        "{broker}: every subscription failed while down ({} failed tries in all); all published {:?} after `broker-ctl start` returned",
        failures.load(Ordering::SeqCst),
        started.elapsed()
    );
}

// ---- NATS JetStream -------------------------------------------------------------------------

fn nats_target(stream: &str, prefix: &str, create_stream: bool) -> NatsTarget {
    NatsTarget {
        url: nats_url(),
        stream: stream.to_owned(),
        subject_prefix: prefix.to_owned(),
        create_stream,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_nats_connect_refuses_a_missing_stream_unless_asked_to_create_it() {
    let _shared = NATS.read().await;
    let stream = unique("TM");
    let prefix = unique("tm.c");
    let error = NatsPublisher::connect(&nats_target(&stream, &prefix, false), options())
        .await
        .expect_err("missing stream");
    assert!(
        matches!(&error, ConnectError::Target { message } if message.contains("does not exist") && message.contains(&stream)),
        "{error}"
    );
    NatsPublisher::connect(&nats_target(&stream, &prefix, true), options())
        .await
        .expect("created");
    NatsPublisher::connect(&nats_target(&stream, &prefix, false), options())
        .await
        .expect("exists now");

    // A stream that does not capture the prefix.
    let error = NatsPublisher::connect(&nats_target(&stream, "elsewhere", false), options())
        .await
        .expect_err("other subjects");
    assert!(error.to_string().contains("does not capture"), "{error}");

    let mut unreachable = nats_target(&stream, &prefix, true);
    unreachable.url = closed_port_url("nats", "");
    let error = NatsPublisher::connect(&unreachable, options())
        .await
        .expect_err("nothing listens");
    assert!(matches!(error, ConnectError::Unreachable { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_nats_publishes_concurrent_subscriptions_in_order_with_headers() {
    let _shared = NATS.read().await;
    let stream = unique("TM");
    let prefix = unique("tm.o");
    let publisher = NatsPublisher::connect(&nats_target(&stream, &prefix, true), options())
        .await
        .expect("connect");
    let workload = workload();
    publish_concurrently(Arc::new(publisher), &workload).await;
    let received = nats_consume(&stream, &prefix, total(&workload)).await;
    assert_eq!(check_received(&received, &workload, Some(&prefix)), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_nats_jetstream_drops_a_republished_message_id() {
    let _shared = NATS.read().await;
    let stream = unique("TM");
    let prefix = unique("tm.d");
    let publisher = NatsPublisher::connect(&nats_target(&stream, &prefix, true), options())
        .await
        .expect("connect");
    let messages = messages_of(7);
    let first = publisher.publish(&messages[0]).await.expect("first");
    assert!(!first.duplicate);
    let again = publisher.publish(&messages[0]).await.expect("again");
    assert!(again.duplicate, "the repeat is recognised");
    assert_eq!(again.position, first.position, "and not stored twice");
    let next = publisher.publish(&messages[1]).await.expect("next");
    assert!(!next.duplicate);
    let mut info = publisher
        .jetstream()
        .get_stream(&stream)
        .await
        .expect("stream");
    assert_eq!(info.info().await.expect("info").state.messages, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_nats_publisher_recovers_from_a_server_restart_in_order() {
    let _exclusive = NATS.write().await;
    let stream = unique("TM");
    let prefix = unique("tm.r");
    let publisher = NatsPublisher::connect(&nats_target(&stream, &prefix, true), options())
        .await
        .expect("connect");
    let workload = workload();
    publish_concurrently_through_restart(Arc::new(publisher), "nats", &workload).await;
    // Publishes made while the server was away may reach it after it is back, and their
    // retries too: JetStream's duplicate window drops the repeats, one copy of each is stored.
    let received = nats_consume(&stream, &prefix, total(&workload)).await;
    assert_eq!(check_received(&received, &workload, Some(&prefix)), 0);
}

// ---- RabbitMQ -------------------------------------------------------------------------------

fn rabbitmq_target(exchange: &str, prefix: &str, declare: bool) -> RabbitMqTarget {
    RabbitMqTarget {
        url: amqp_url(),
        exchange: exchange.to_owned(),
        routing_key_prefix: prefix.to_owned(),
        declare,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_rabbitmq_connect_refuses_a_missing_exchange_unless_asked_to_declare_it() {
    let _shared = RABBITMQ.read().await;
    let exchange = unique("tm-x-");
    let error = RabbitMqPublisher::connect(&rabbitmq_target(&exchange, "k", false), options())
        .await
        .expect_err("missing exchange");
    assert!(
        matches!(&error, ConnectError::Target { message } if message.contains("does not exist") && message.contains(&exchange)),
        "{error}"
    );
    RabbitMqPublisher::connect(&rabbitmq_target(&exchange, "k", true), options())
        .await
        .expect("declared");
    RabbitMqPublisher::connect(&rabbitmq_target(&exchange, "k", false), options())
        .await
        .expect("exists now");

    let mut unreachable = rabbitmq_target(&exchange, "k", true);
    unreachable.url = closed_port_url("amqp", "/%2f");
    let error = RabbitMqPublisher::connect(&unreachable, options())
        .await
        .expect_err("nothing listens");
    assert!(matches!(error, ConnectError::Unreachable { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_rabbitmq_publishes_concurrent_subscriptions_in_order_with_headers() {
    let _shared = RABBITMQ.read().await;
    let exchange = unique("tm-x-");
    let prefix = unique("tm.o");
    let queue = rabbitmq_bind_queue(&exchange, &prefix).await;
    let publisher =
        RabbitMqPublisher::connect(&rabbitmq_target(&exchange, &prefix, false), options())
            .await
            .expect("connect");
    let workload = workload();
    publish_concurrently(Arc::new(publisher), &workload).await;
    let received = rabbitmq_consume(&queue, total(&workload)).await;
    assert_eq!(check_received(&received, &workload, Some(&prefix)), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_rabbitmq_unroutable_message_is_a_permanent_error() {
    let _shared = RABBITMQ.read().await;
    let exchange = unique("tm-x-");
    let prefix = unique("tm.u");
    let publisher =
        RabbitMqPublisher::connect(&rabbitmq_target(&exchange, &prefix, true), options())
            .await
            .expect("connect");
    let messages = messages_of(11);
    let error = publisher
        .publish(&messages[0])
        .await
        .expect_err("no queue is bound");
    assert!(!error.is_retriable(), "{error}");
    assert!(error.to_string().contains("no queue is bound"), "{error}");
    // Once a queue is bound, the same publisher delivers.
    let queue = rabbitmq_bind_queue(&exchange, &prefix).await;
    publisher.publish(&messages[0]).await.expect("routed now");
    let received = rabbitmq_consume(&queue, 1).await;
    assert_eq!(received[0].message_id, messages[0].message_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_rabbitmq_publisher_recovers_from_a_server_restart_in_order() {
    let _exclusive = RABBITMQ.write().await;
    let exchange = unique("tm-x-");
    let prefix = unique("tm.r");
    let queue = rabbitmq_bind_queue(&exchange, &prefix).await;
    let publisher =
        RabbitMqPublisher::connect(&rabbitmq_target(&exchange, &prefix, false), options())
            .await
            .expect("connect");
    let workload = workload();
    publish_concurrently_through_restart(Arc::new(publisher), "rabbitmq", &workload).await;
    let received = rabbitmq_consume(&queue, total(&workload)).await;
    // A message confirmed by nobody before the stop could be there twice: consumers drop
    // repeats by message id (check_received does).
    check_received(&received, &workload, Some(&prefix));
}

// ---- Redis Streams --------------------------------------------------------------------------

fn redis_target(key: &str, max_len: Option<u64>) -> RedisTarget {
    RedisTarget {
        url: redis_url(),
        stream_key: key.to_owned(),
        max_len,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_redis_connect_checks_the_server_and_the_key() {
    let _shared = REDIS.read().await;
    let key = unique("tm:stream:");
    RedisPublisher::connect(&redis_target(&key, None), options())
        .await
        .expect("a new key");
    let mut connection = redis_connection().await;
    let taken = unique("tm:string:");
    redis::cmd("SET")
        .arg(&taken)
        .arg("x")
        .query_async::<()>(&mut connection)
        .await
        .expect("SET");
    let error = RedisPublisher::connect(&redis_target(&taken, None), options())
        .await
        .expect_err("not a stream");
    assert!(
        matches!(&error, ConnectError::Target { message } if message.contains("not a stream")),
        "{error}"
    );
    let mut unreachable = redis_target(&key, None);
    unreachable.url = closed_port_url("redis", "/");
    let error = RedisPublisher::connect(&unreachable, options())
        .await
        .expect_err("nothing listens");
    assert!(matches!(error, ConnectError::Unreachable { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_redis_publishes_concurrent_subscriptions_in_order_with_fields() {
    let _shared = REDIS.read().await;
    let key = unique("tm:stream:");
    let publisher = RedisPublisher::connect(&redis_target(&key, Some(100_000)), options())
        .await
        .expect("connect");
    let workload = workload();
    let probe = &workload[&1001][0];
    let ack = publisher.publish(probe).await.expect("probe");
    assert!(
        ack.position.as_deref().is_some_and(|id| id.contains('-')),
        "an entry id: {ack:?}"
    );
    publish_concurrently(Arc::new(publisher), &workload).await;
    let received = redis_consume(&key).await;
    assert_eq!(received.len(), total(&workload) + 1);
    // The probe was published twice: consumers drop the repeat by message id.
    assert_eq!(check_received(&received, &workload, None), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_redis_publisher_recovers_from_a_server_restart_in_order() {
    let _exclusive = REDIS.write().await;
    let key = unique("tm:stream:");
    let publisher = RedisPublisher::connect(&redis_target(&key, None), options())
        .await
        .expect("connect");
    let workload = workload();
    publish_concurrently_through_restart(Arc::new(publisher), "redis", &workload).await;
    let received = redis_consume(&key).await;
    check_received(&received, &workload, None);
}

// ---- Any broker, from JSON ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_targets_parsed_from_json_connect_and_publish_through_one_type() {
    let _nats = NATS.read().await;
    let _rabbitmq = RABBITMQ.read().await;
    let _redis = REDIS.read().await;
    let exchange = unique("tm-x-");
    let queue = rabbitmq_bind_queue(&exchange, "tm.any").await;
    let targets = [
        json!({"kind": "nats", "url": nats_url(), "stream": unique("TM"),
               "subject_prefix": unique("tm.any"), "create_stream": true}),
        json!({"kind": "rabbitmq", "url": amqp_url(), "exchange": exchange,
               "routing_key_prefix": "tm.any"}),
        json!({"kind": "redis", "url": redis_url(), "stream_key": unique("tm:any:")}),
    ];
    let message = &messages_of(5)[0];
    for json in targets {
        let target = BrokerTarget::parse(&json).expect("valid target");
        let publisher = BrokerPublisher::connect(&target, options())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", target.kind()));
        assert_eq!(publisher.kind(), target.kind());
        let ack = publisher
            .publish(message)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", target.kind()));
        assert!(!ack.duplicate);
        assert_eq!(
            ack.position.is_some(),
            target.kind() != DestinationKind::Rabbitmq,
            "{ack:?}"
        );
    }
    let received = rabbitmq_consume(&queue, 1).await;
    assert_eq!(received[0].message_id, message.message_id());
}
