//! The broker publishers against real servers: NATS (JetStream), RabbitMQ and Redis, started
//! by `scripts/brokers.sh` (sourced by `scripts/test`), which exports their URLs and a
//! `broker-ctl` script to stop and start each one. A missing variable fails the test: these
//! tests are never skipped.
//!
//! Each test consumes with the broker's ordinary client (an async-nats pull consumer, a lapin
//! consumer on a bound queue, `XRANGE`) and checks the message shape, the headers, and the
//! order of each subscription's messages while several subscriptions publish concurrently.
//! The restart tests stop the server process mid-stream, see publishes fail retriably, start it
//! again and check that the publisher reconnects and nothing is lost or reordered.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::consumer::{pull, AckPolicy};
use chrono::Utc;
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{json, Value};
use tidemark_notify::brokers::{
    ConnectError, Message, MessageBuilder, NatsPublisher, NatsTarget, PayloadFormat, Publisher,
    PublisherOptions, RabbitMqPublisher, RabbitMqTarget, RedisPublisher, RedisTarget,
};
use tidemark_store::StoredActivity;
use tokio::sync::RwLock;

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

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the brokers of scripts/brokers.sh \
             (run scripts/test, or `source scripts/brokers.sh && start_test_brokers` first)"
        )
    })
}

fn nats_url() -> String {
    env("TIDEMARK_TEST_NATS_URL")
}
fn amqp_url() -> String {
    env("TIDEMARK_TEST_AMQP_URL")
}
fn redis_url() -> String {
    env("TIDEMARK_TEST_REDIS_URL")
}

/// Stops or starts a broker through `$TIDEMARK_TEST_BROKER_CTL`.
async fn broker_ctl(broker: &str, action: &str) {
    let ctl = env("TIDEMARK_TEST_BROKER_CTL");
    let started = Instant::now();
    let output = tokio::process::Command::new(&ctl)
        .args([broker, action])
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {ctl}: {e}"));
    assert!(
        output.status.success(),
        "{ctl} {broker} {action} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{broker} {action}: {:?}", started.elapsed());
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{:08x}", rand::random::<u32>())
}

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

/// One message as a consumer saw it.
#[derive(Debug)]
struct Received {
    /// Subject or routing key (empty for Redis).
    key: String,
    message_id: String,
    headers: BTreeMap<String, String>,
    body: Value,
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

/// Publishes `messages` in order through a stop and start of `broker`: the first half, then
/// the server stops and a publish must fail retriably, then it starts and every remaining
/// message is retried until acknowledged (each error on the way must be retriable).
async fn publish_through_restart<P: Publisher>(publisher: &P, broker: &str, messages: &[Message]) {
    let half = messages.len() / 2;
    for message in &messages[..half] {
        if let Err(error) = publisher.publish(message).await {
            panic!("before the restart, {}: {error}", message.message_id());
        }
    }
    broker_ctl(broker, "stop").await;
    let error = publisher
        .publish(&messages[half])
        .await
        .expect_err("the broker is stopped");
    assert!(error.is_retriable(), "while {broker} is down: {error}");
    eprintln!("{broker} down: {error}");
    broker_ctl(broker, "start").await;
    let started = Instant::now();
    let mut failures = 0;
    for message in &messages[half..] {
        loop {
            match publisher.publish(message).await {
                Ok(_) => break,
                Err(error) => {
                    assert!(error.is_retriable(), "after the restart: {error}");
                    failures += 1;
                    assert!(
                        started.elapsed() < Duration::from_secs(90),
                        "{broker}: the publisher did not recover: {error}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    eprintln!(
        "{broker}: recovered; {failures} failed tries after the start, {:?}",
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

/// Reads `count` messages under `{prefix}.>` from `stream` with an ephemeral pull consumer.
async fn nats_consume(stream: &str, prefix: &str, count: usize) -> Vec<Received> {
    let client = async_nats::connect(nats_url())
        .await
        .expect("nats consumer");
    let jetstream = jetstream::new(client);
    let stream = jetstream.get_stream(stream).await.expect("stream");
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: format!("{prefix}.>"),
            ack_policy: AckPolicy::None,
            ..pull::Config::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut received = Vec::new();
    while received.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} messages arrived", received.len()))
            .expect("stream open")
            .expect("message");
        let headers: BTreeMap<String, String> = next
            .headers
            .iter()
            .flat_map(|headers| headers.iter())
            .filter_map(|(name, values)| {
                Some((name.to_string(), values.first()?.as_str().to_owned()))
            })
            .collect();
        received.push(Received {
            key: next.subject.to_string(),
            message_id: headers.get("Nats-Msg-Id").cloned().unwrap_or_default(),
            headers,
            body: serde_json::from_slice(&next.payload).expect("json body"),
        });
    }
    received
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
    let subscription = 4242;
    let messages = messages_of(subscription);
    publish_through_restart(&publisher, "nats", &messages).await;
    let workload = HashMap::from([(subscription, messages)]);
    // JetStream's dedup window drops the repeats: exactly one copy of each.
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

/// A durable queue bound to `exchange` for `{prefix}.#` (declaring the exchange as the
/// publisher would), so that messages survive a broker restart.
async fn rabbitmq_bind_queue(exchange: &str, prefix: &str) -> String {
    let connection =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
            .await
            .expect("amqp");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .exchange_declare(
            exchange.into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("exchange");
    let queue = unique("tm-queue-");
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("queue");
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.into(),
            format!("{prefix}.#").into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    let _ = connection.close(200, "bound".into()).await;
    queue
}

async fn rabbitmq_consume(queue: &str, count: usize) -> Vec<Received> {
    let connection =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
            .await
            .expect("amqp consumer");
    let channel = connection.create_channel().await.expect("channel");
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "tidemark-test".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut received = Vec::new();
    while received.len() < count {
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} messages arrived", received.len()))
            .expect("consumer open")
            .expect("delivery");
        let headers: BTreeMap<String, String> = delivery
            .properties
            .headers()
            .iter()
            .flat_map(|table| table.inner().iter())
            .filter_map(|(name, value)| match value {
                AMQPValue::LongString(text) => Some((
                    name.to_string(),
                    String::from_utf8_lossy(text.as_bytes()).into_owned(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            delivery
                .properties
                .content_type()
                .as_ref()
                .map(|c| c.as_str()),
            Some("application/json")
        );
        received.push(Received {
            key: delivery.routing_key.to_string(),
            message_id: delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.to_string())
                .unwrap_or_default(),
            headers,
            body: serde_json::from_slice(&delivery.data).expect("json body"),
        });
    }
    let _ = connection.close(200, "consumed".into()).await;
    received
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
    let subscription = 4343;
    let messages = messages_of(subscription);
    publish_through_restart(&publisher, "rabbitmq", &messages).await;
    let workload = HashMap::from([(subscription, messages)]);
    let received = rabbitmq_consume(&queue, total(&workload)).await;
    // Nothing was published twice here (each retry failed before reaching the broker), but
    // consumers would drop repeats by message id anyway.
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

async fn redis_connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis")
}

async fn redis_consume(key: &str) -> Vec<Received> {
    use redis::AsyncCommands as _;
    let mut connection = redis_connection().await;
    let reply: redis::streams::StreamRangeReply = connection.xrange_all(key).await.expect("XRANGE");
    reply
        .ids
        .iter()
        .map(|entry| {
            let mut headers = BTreeMap::new();
            for name in ["accountId", "subscriptionId", "v1ActivityType"] {
                if let Some(value) = entry.get::<String>(name) {
                    headers.insert(name.to_owned(), value);
                }
            }
            let body: Vec<u8> = entry.get("body").expect("body field");
            Received {
                key: String::new(),
                message_id: entry.get("message_id").expect("message_id field"),
                headers,
                body: serde_json::from_slice(&body).expect("json body"),
            }
        })
        .collect()
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
    let subscription = 4444;
    let messages = messages_of(subscription);
    publish_through_restart(&publisher, "redis", &messages).await;
    let workload = HashMap::from([(subscription, messages)]);
    let received = redis_consume(&key).await;
    check_received(&received, &workload, None);
}
