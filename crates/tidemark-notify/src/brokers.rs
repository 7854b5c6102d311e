//! Message brokers: publishing a subscription's activity to NATS JetStream, RabbitMQ and Redis
//! Streams, each acknowledged by the broker before the next batch goes out.
//!
//! This module owns the broker-facing half of destinations: the validated connection settings
//! ([`BrokerTarget`]), the messages ([`Message`], built by [`MessageBuilder`] from stored
//! activity) and one [`Publisher`] per broker. It keeps no positions and reads no store: the
//! caller decides what to publish and commits a destination's position once [`Publisher::publish`]
//! has returned an [`Ack`].
//!
//! # Contract
//! - **Acknowledged or failed.** `publish` returns `Ok` only after the broker took the message:
//!   a JetStream `PubAck` (stored in the stream), a RabbitMQ publisher confirm (`basic.ack`, and
//!   the message was routed to at least one queue), a Redis `XADD` reply (the entry id).
//! - **Order per subscription.** The key carries the subscription id: NATS subject
//!   `{subject_prefix}.{subscription}`, RabbitMQ routing key `{routing_key_prefix}.{subscription}`,
//!   and one Redis stream for the destination, one entry per message. Brokers keep the order in
//!   which one connection published, so the caller must publish a subscription's next message
//!   only after the previous one was acknowledged (subscriptions may run concurrently).
//! - **Duplicates, never gaps.** After an error the caller publishes the same message again.
//!   Every message carries a deterministic id, `{subscription}-{first_sequence}`, so consumers
//!   can drop a repeat: JetStream does it itself within the stream's duplicate window
//!   (`Nats-Msg-Id`; the [`Ack`] then says `duplicate`), RabbitMQ carries it as the AMQP
//!   `message_id`, Redis as the entry's `message_id` field.
//! - **Errors say whether to retry** ([`PublishError::is_retriable`]): a lost connection, a
//!   timeout or a nack is retriable; a target that cannot take the message as configured
//!   (stream or exchange gone, nothing bound, message too large) is not, until someone fixes the
//!   broker or the destination.
//! - **Reconnection.** A publisher outlives broker restarts: NATS and Redis clients reconnect in
//!   the background; the RabbitMQ publisher opens a new connection on the next publish after a
//!   failure. Publishes fail (retriably) while the broker is away.
//!
//! # Using a publisher (what the destination worker does)
//! Per (destination, subscription), one at a time:
//! 1. read the stream after the destination's position (a page of [`StoredActivity`]s);
//! 2. [`MessageBuilder::build`] them (the destination's payload format, batch size, filter);
//!    no message means nothing matched: move the position to the page's last sequence;
//! 3. publish the messages in order; after each [`Ack`], commit the position to the message's
//!    [`Message::through_sequence`];
//! 4. on an error, keep the position, record the attempt, back off, and publish the same
//!    message again ([`PublishError::is_retriable`] says whether that can help without a
//!    change; a permanent error is worth surfacing on the destination). A crash between an ack
//!    and the commit re-publishes that one message with the same id.
//!
//! One [`BrokerPublisher`] per destination serves all its subscriptions concurrently. While a
//! NATS server is away its client buffers publishes until it is back (each times out here
//! meanwhile), so back off rather than retry in a tight loop.
//!
//! [`StoredActivity`]: tidemark_store::StoredActivity
//!
//! # Message
//! Body (JSON), seed 003's Pub/Sub and Service Bus message, `v1`/`v2` as the destination's
//! [`PayloadFormat`] says:
//! `{"account": 123, "subscription": 234, "activity": {"v1": [..], "v2": [..]}}`.
//!
//! Headers (NATS headers, AMQP headers table, Redis entry fields): `accountId`,
//! `subscriptionId` and `v1ActivityType`, seed 003's topic-filter properties. A message holds
//! activities of a single v1 type: [`MessageBuilder`] cuts a batch where the v1 type changes,
//! so `v1ActivityType` is always one type that a consumer's filter can match exactly, and the
//! messages stay in stream order. Activities without a v1 form (reads, errors) travel in
//! messages of their own without a `v1ActivityType` header (and are left out when the payload
//! is `v1` only).
//!
//! # Layout
//! - [`nats`]: [`NatsPublisher`], JetStream.
//! - [`rabbitmq`]: [`RabbitMqPublisher`], AMQP 0-9-1 with publisher confirms.
//! - [`redis`]: [`RedisPublisher`], `XADD`.
//! - [`worker`]: [`DestinationWorker`], which claims due (destination, subscription) pairs
//!   from the store and publishes them as described above.

mod message;
pub mod nats;
pub mod rabbitmq;
pub mod redis;
mod target;
pub mod worker;

use std::future::Future;
use std::time::Duration;

pub use message::{
    Message, MessageBuilder, MessageError, Messages, PayloadFormat, DEFAULT_MAX_BODY_BYTES,
};
pub use nats::NatsPublisher;
pub use rabbitmq::RabbitMqPublisher;
pub use redis::RedisPublisher;
pub use target::{
    BrokerTarget, DestinationKind, NatsTarget, RabbitMqTarget, RedisTarget, TargetError,
};
pub use worker::{DestinationWorker, WorkerConfig};

/// Header (and Redis field) holding the account id.
pub const HEADER_ACCOUNT_ID: &str = "accountId";
/// Header (and Redis field) holding the subscription id.
pub const HEADER_SUBSCRIPTION_ID: &str = "subscriptionId";
/// Header (and Redis field) holding the v1 type of every activity in the message.
pub const HEADER_V1_ACTIVITY_TYPE: &str = "v1ActivityType";
/// Redis field holding the message id.
pub const FIELD_MESSAGE_ID: &str = "message_id";
/// Redis field holding the body.
pub const FIELD_BODY: &str = "body";

/// Timeouts of a publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublisherOptions {
    /// Time to connect and check the target (example: 10 s).
    pub connect_timeout: Duration,
    /// Time for one publish to be acknowledged, reconnecting included (example: 10 s).
    pub publish_timeout: Duration,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        PublisherOptions {
            connect_timeout: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(10),
        }
    }
}

/// What the broker answered to a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Where the broker put the message, when it says: the JetStream stream sequence, the Redis
    /// entry id; `None` for RabbitMQ.
    pub position: Option<String>,
    /// JetStream recognised the message id within its duplicate window and did not store the
    /// message again.
    pub duplicate: bool,
}

/// Why a publisher could not be set up ([`Publisher::connect`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The broker could not be reached (refused, unknown host, timed out). Retriable.
    #[error("cannot reach the broker: {message}")]
    Unreachable {
        /// What happened.
        message: String,
    },
    /// The broker answered, but the target is not usable as configured: the stream or exchange
    /// does not exist (and creating it was not asked), credentials were refused, the stream
    /// does not capture the subjects. Not retriable without a change.
    #[error("{message}")]
    Target {
        /// What is wrong, naming the stream, exchange or key.
        message: String,
    },
}

/// Why one publish failed ([`Publisher::publish`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The connection is down or was lost before the broker answered. Retriable.
    #[error("broker unavailable: {message}")]
    Unavailable {
        /// What happened.
        message: String,
    },
    /// No answer within [`PublisherOptions::publish_timeout`]. Retriable (the message may have
    /// been stored: the repeat carries the same message id).
    #[error("no acknowledgement within {timeout:?}")]
    TimedOut {
        /// The timeout.
        timeout: Duration,
    },
    /// The broker refused this message for now (a RabbitMQ nack, JetStream temporarily
    /// unavailable). Retriable.
    #[error("broker refused the message: {message}")]
    Refused {
        /// What the broker said.
        message: String,
    },
    /// The target cannot take the message as configured: the stream or exchange is gone, no
    /// queue is bound for the routing key, the message is too large, access is refused.
    /// Permanent until the broker or the destination changes.
    #[error("{message}")]
    Target {
        /// What is wrong.
        message: String,
    },
}

impl PublishError {
    /// Whether publishing the same message again later may succeed without any change.
    pub fn is_retriable(&self) -> bool {
        match self {
            PublishError::Unavailable { .. }
            | PublishError::TimedOut { .. }
            | PublishError::Refused { .. } => true,
            PublishError::Target { .. } => false,
        }
    }
}

/// A connection to one broker target that publishes [`Message`]s and waits for each one's
/// acknowledgement.
///
/// Publishers are shared (`&self`): several subscriptions may publish at once, each keeping its
/// own messages in order by awaiting one publish before the next.
pub trait Publisher: Send + Sync + Sized {
    /// The target's settings.
    type Target;

    /// Connects and checks the target: the JetStream stream exists and captures the subjects
    /// (or is created when asked), the exchange exists (or is declared when asked), Redis
    /// answers.
    ///
    /// # Errors
    /// [`ConnectError::Unreachable`] when the broker cannot be reached in time,
    /// [`ConnectError::Target`] when it answers but the target is not usable.
    fn connect(
        target: &Self::Target,
        options: PublisherOptions,
    ) -> impl Future<Output = Result<Self, ConnectError>> + Send;

    /// Publishes one message and returns once the broker acknowledged it.
    ///
    /// # Errors
    /// A [`PublishError`]; [`PublishError::is_retriable`] says whether to try again.
    fn publish(&self, message: &Message) -> impl Future<Output = Result<Ack, PublishError>> + Send;
}

/// A publisher for any [`BrokerTarget`]: one value type for a map of destinations.
#[derive(Debug)]
pub enum BrokerPublisher {
    /// NATS JetStream.
    Nats(NatsPublisher),
    /// RabbitMQ.
    Rabbitmq(RabbitMqPublisher),
    /// Redis Streams.
    Redis(RedisPublisher),
}

impl BrokerPublisher {
    /// Connects to `target` and checks it (see [`Publisher::connect`]).
    ///
    /// # Errors
    /// As [`Publisher::connect`].
    pub async fn connect(
        target: &BrokerTarget,
        options: PublisherOptions,
    ) -> Result<Self, ConnectError> {
        Ok(match target {
            BrokerTarget::Nats(nats) => {
                BrokerPublisher::Nats(NatsPublisher::connect(nats, options).await?)
            }
            BrokerTarget::Rabbitmq(rabbitmq) => {
                BrokerPublisher::Rabbitmq(RabbitMqPublisher::connect(rabbitmq, options).await?)
            }
            BrokerTarget::Redis(redis) => {
                BrokerPublisher::Redis(RedisPublisher::connect(redis, options).await?)
            }
        })
    }

    /// Publishes one message (see [`Publisher::publish`]).
    ///
    /// # Errors
    /// As [`Publisher::publish`].
    ///
    /// Counts the publish in `tidemark_notify_broker_publishes_total` and its latency in
    /// `tidemark_notify_broker_publish_duration_seconds`.
    pub async fn publish(&self, message: &Message) -> Result<Ack, PublishError> {
        let started = std::time::Instant::now();
        let result = match self {
            BrokerPublisher::Nats(publisher) => publisher.publish(message).await,
            BrokerPublisher::Rabbitmq(publisher) => publisher.publish(message).await,
            BrokerPublisher::Redis(publisher) => publisher.publish(message).await,
        };
        let outcome = match &result {
            Ok(ack) if ack.duplicate => "duplicate",
            Ok(_) => "acked",
            Err(error) if error.is_retriable() => "retriable",
            Err(_) => "permanent",
        };
        crate::metrics::broker_publish(self.kind().as_str(), outcome, started.elapsed());
        result
    }

    /// The kind of broker.
    pub fn kind(&self) -> DestinationKind {
        match self {
            BrokerPublisher::Nats(_) => DestinationKind::Nats,
            BrokerPublisher::Rabbitmq(_) => DestinationKind::Rabbitmq,
            BrokerPublisher::Redis(_) => DestinationKind::Redis,
        }
    }
}
