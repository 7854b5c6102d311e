//! What the broker tests share: the brokers' URLs (exported by `scripts/brokers.sh`),
//! `broker-ctl`, and consumers that read what a publisher sent with each broker's ordinary
//! client (an async-nats pull consumer, a lapin consumer on a bound queue, `XRANGE`).
//!
//! Used by this crate's `brokers` and `destinations` tests and by the `tidemark` crate's
//! crash test (`#[path]`-included), so every test reads messages the same way.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::consumer::{pull, AckPolicy};
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::Value;

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the brokers of scripts/brokers.sh \
             (run scripts/test, or `source scripts/brokers.sh && start_test_brokers` first)"
        )
    })
}

pub fn nats_url() -> String {
    env("TIDEMARK_TEST_NATS_URL")
}
pub fn amqp_url() -> String {
    env("TIDEMARK_TEST_AMQP_URL")
}
pub fn redis_url() -> String {
    env("TIDEMARK_TEST_REDIS_URL")
}

/// Stops or starts a broker through `$TIDEMARK_TEST_BROKER_CTL`.
pub async fn broker_ctl(broker: &str, action: &str) {
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

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{:08x}", rand::random::<u32>())
}

/// One message as a consumer saw it.
#[derive(Debug)]
pub struct Received {
    /// Subject or routing key (empty for Redis).
    pub key: String,
    pub message_id: String,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
}

/// Reads the messages under `{prefix}.>` from `stream` with an ephemeral pull consumer: at
/// least `count`, and any that follow within half a second.
pub async fn nats_consume(stream: &str, prefix: &str, count: usize) -> Vec<Received> {
    nats_consume_until(stream, prefix, |received| received.len() >= count).await
}

/// Reads the messages under `{prefix}.>` from `stream` until `done` says they are all there
/// (waiting up to 10 s for each next one), and any that follow within half a second.
pub async fn nats_consume_until(
    stream: &str,
    prefix: &str,
    done: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
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
    loop {
        // Wait long for the expected messages, briefly for any beyond them (repeats).
        let complete = done(&received);
        let wait = if complete { 500 } else { 10_000 };
        let Ok(next) = tokio::time::timeout(Duration::from_millis(wait), messages.next()).await
        else {
            assert!(
                complete,
                "only {} messages arrived, not all that were expected",
                received.len()
            );
            break;
        };
        let next = next.expect("stream open").expect("message");
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

/// A durable queue bound to `exchange` for `{prefix}.#` (declaring the exchange as the
/// publisher would), so that messages survive a broker restart.
pub async fn rabbitmq_bind_queue(exchange: &str, prefix: &str) -> String {
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

/// Reads the messages of `queue`: at least `count`, and any that follow within half a second.
pub async fn rabbitmq_consume(queue: &str, count: usize) -> Vec<Received> {
    rabbitmq_consume_until(queue, |received| received.len() >= count).await
}

/// Reads the messages of `queue` until `done` says they are all there (waiting up to 10 s for
/// each next one), and any that follow within half a second.
pub async fn rabbitmq_consume_until(
    queue: &str,
    done: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
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
    loop {
        // Wait long for the expected messages, briefly for any beyond them (repeats).
        let complete = done(&received);
        let wait = if complete { 500 } else { 10_000 };
        let Ok(delivery) = tokio::time::timeout(Duration::from_millis(wait), consumer.next()).await
        else {
            assert!(
                complete,
                "only {} messages arrived, not all that were expected",
                received.len()
            );
            break;
        };
        let delivery = delivery.expect("consumer open").expect("delivery");
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

pub async fn redis_connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis")
}

/// The entries of Redis stream `key` (retrying for up to 30 s while a restarted server is
/// still loading its data or not yet accepting connections).
pub async fn redis_consume(key: &str) -> Vec<Received> {
    use redis::AsyncCommands as _;
    let deadline = Instant::now() + Duration::from_secs(30);
    let reply: redis::streams::StreamRangeReply = loop {
        let attempt = async {
            let mut connection = redis::Client::open(redis_url())?
                .get_multiplexed_async_connection()
                .await?;
            connection.xrange_all(key).await
        };
        match attempt.await {
            Ok(reply) => break reply,
            Err(error) => {
                assert!(Instant::now() < deadline, "XRANGE {key}: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
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

/// The entries of Redis stream `key` once `done` says they are all there (polling for up to
/// 60 s), and any added within half a second after.
pub async fn redis_consume_until(key: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let received = redis_consume(key).await;
        if done(&received) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return redis_consume(key).await;
        }
        assert!(
            Instant::now() < deadline,
            "only {} entries arrived, not all that were expected",
            received.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The v2 activity ids carried by the distinct messages (repeated ids dropped) of each
/// subscription, in arrival order.
pub fn carried_v2_ids(received: &[Received]) -> std::collections::HashMap<i64, Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut carried: std::collections::HashMap<i64, Vec<String>> = Default::default();
    for message in received {
        if !seen.insert(message.message_id.clone()) {
            continue;
        }
        let Some(subscription) = message
            .headers
            .get("subscriptionId")
            .and_then(|id| id.parse().ok())
        else {
            continue;
        };
        let ids = carried.entry(subscription).or_default();
        for item in message.body["activity"]["v2"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(id) = item["id"].as_str() {
                ids.push(id.to_owned());
            }
        }
    }
    carried
}

/// Where one destination's messages are read from, with each broker's ordinary client.
pub enum Consumer {
    /// A JetStream stream, under `{prefix}.>`.
    Nats { stream: String, prefix: String },
    /// A queue bound to the destination's exchange ([`rabbitmq_bind_queue`]).
    Rabbitmq { queue: String },
    /// A Redis stream.
    Redis { key: String },
}

impl Consumer {
    /// Messages until `done` says all that are expected are there (and any repeats that
    /// follow them shortly).
    pub async fn consume_until(&self, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        match self {
            Consumer::Nats { stream, prefix } => nats_consume_until(stream, prefix, done).await,
            Consumer::Rabbitmq { queue } => rabbitmq_consume_until(queue, done).await,
            Consumer::Redis { key } => redis_consume_until(key, done).await,
        }
    }
}
