//! RabbitMQ: each message is a `basic.publish` to the target's exchange with routing key
//! `{routing_key_prefix}.{subscription}`, `mandatory`, on a channel in confirm mode, and counts
//! as published once the broker's `basic.ack` arrived and the message was not returned.
//!
//! Properties: `message_id` (the message id), `content_type` `application/json`, persistent
//! delivery, `app_id` `tidemark`, and the headers table `accountId`, `subscriptionId`,
//! `v1ActivityType` (strings), usable by a headers exchange or a consumer's filter.
//!
//! # Reconnection
//! One connection and one confirm channel, shared by every publish. After a failure (the
//! connection lost, the channel closed by the broker, a timeout), the next publish opens a new
//! connection; publishes fail retriably while the broker is away. Concurrent publishes wait
//! for one reconnection rather than each opening its own.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::sync::Mutex;

use super::{
    Ack, ConnectError, Message, PublishError, Publisher, PublisherOptions, RabbitMqTarget,
};
use crate::brokers::target::redact_url;

/// Publishes to one exchange.
#[derive(Debug)]
pub struct RabbitMqPublisher {
    target: RabbitMqTarget,
    options: PublisherOptions,
    live: Mutex<Option<Live>>,
}

/// The current connection and its confirm channel.
struct Live {
    connection: Connection,
    channel: Channel,
    /// Counts connections, so that a failed publish drops only the connection it used.
    generation: u64,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// A failed publish, and whether its channel can still be used.
struct Failure {
    error: PublishError,
    channel_healthy: bool,
}

/// The AMQP kind of a lapin error, if the broker sent one.
fn amqp_kind(error: &lapin::Error) -> Option<AMQPErrorKind> {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.kind().clone()),
        _ => None,
    }
}

/// Opens a connection (no channel yet); errors are connect errors.
async fn open_connection(
    target: &RabbitMqTarget,
    options: PublisherOptions,
) -> Result<Connection, ConnectError> {
    let url = redact_url(&target.url);
    let connecting = Connection::connect(&target.url, ConnectionProperties::default());
    match tokio::time::timeout(options.connect_timeout, connecting).await {
        Err(_) => Err(ConnectError::Unreachable {
            message: format!(
                "RabbitMQ at {url}: no answer within {:?}",
                options.connect_timeout
            ),
        }),
        Ok(Err(error)) => {
            let message = format!("RabbitMQ at {url}: {error}");
            Err(match amqp_kind(&error) {
                Some(AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED))
                | Some(AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)) => {
                    ConnectError::Target { message }
                }
                _ if matches!(error.kind(), lapin::ErrorKind::AuthProviderError(_)) => {
                    ConnectError::Target { message }
                }
                _ => ConnectError::Unreachable { message },
            })
        }
        Ok(Ok(connection)) => Ok(connection),
    }
}

/// Opens a channel in confirm mode.
async fn confirm_channel(connection: &Connection) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Checks the exchange on a throwaway channel (a failed declare closes its channel): it exists
/// (passive declare), or is declared (durable, `topic`) when asked.
async fn check_exchange(
    connection: &Connection,
    target: &RabbitMqTarget,
) -> Result<(), ConnectError> {
    let unreachable = |error: lapin::Error| ConnectError::Unreachable {
        message: format!("RabbitMQ: {error}"),
    };
    let channel = connection.create_channel().await.map_err(unreachable)?;
    let options = ExchangeDeclareOptions {
        passive: !target.declare,
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let declared = channel
        .exchange_declare(
            target.exchange.as_str().into(),
            ExchangeKind::Topic,
            options,
            FieldTable::default(),
        )
        .await;
    match declared {
        Ok(()) => {
            // Best effort: the channel is ours alone.
            let _ = channel.close(200, "checked".into()).await;
            Ok(())
        }
        Err(error) => Err(match amqp_kind(&error) {
            Some(AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)) => ConnectError::Target {
                message: format!(
                    "RabbitMQ exchange `{}` does not exist (set `declare` to declare it)",
                    target.exchange
                ),
            },
            Some(AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)) => ConnectError::Target {
                message: format!(
                    "RabbitMQ exchange `{}` exists with other settings than a durable topic exchange: {error}",
                    target.exchange
                ),
            },
            Some(AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)) => ConnectError::Target {
                message: format!("RabbitMQ exchange `{}`: {error}", target.exchange),
            },
            _ => unreachable(error),
        }),
    }
}

impl RabbitMqPublisher {
    /// The current channel, connecting first when there is none or it is closed.
    async fn channel(&self) -> Result<(Channel, u64), PublishError> {
        let mut live = self.live.lock().await;
        if let Some(current) = live.as_ref() {
            if current.channel.status().connected() && current.connection.status().connected() {
                return Ok((current.channel.clone(), current.generation));
            }
        }
        let generation = live.as_ref().map_or(0, |old| old.generation + 1);
        if let Some(old) = live.take() {
            close_in_background(old.connection);
        }
        let connection = open_connection(&self.target, self.options)
            .await
            .map_err(|error| PublishError::Unavailable {
                message: error.to_string(),
            })?;
        let channel =
            confirm_channel(&connection)
                .await
                .map_err(|error| PublishError::Unavailable {
                    message: format!("RabbitMQ: cannot open a confirm channel: {error}"),
                })?;
        tracing::info!(
            exchange = %self.target.exchange,
            generation,
            "rabbitmq publisher connected"
        );
        *live = Some(Live {
            connection,
            channel: channel.clone(),
            generation,
        });
        Ok((channel, generation))
    }

    /// Drops the connection `generation` (if still current) so the next publish reconnects.
    async fn forget(&self, generation: u64) {
        let mut live = self.live.lock().await;
        if live
            .as_ref()
            .is_some_and(|current| current.generation == generation)
        {
            if let Some(old) = live.take() {
                close_in_background(old.connection);
            }
        }
    }

    /// Publishes on `channel` and waits for the confirm.
    async fn publish_on(&self, channel: &Channel, message: &Message) -> Result<(), Failure> {
        let mut headers = FieldTable::default();
        for (name, value) in message.headers() {
            headers.insert(name.into(), AMQPValue::LongString(LongString::from(value)));
        }
        let properties = BasicProperties::default()
            .with_message_id(message.message_id().into())
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_app_id("tidemark".into())
            .with_headers(headers);
        let confirm = channel
            .basic_publish(
                self.target.exchange.as_str().into(),
                self.target.routing_key(message.subscription).into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &message.body,
                properties,
            )
            .await
            .map_err(|error| self.classify(error))?
            .await
            .map_err(|error| self.classify(error))?;
        // The broker answered: the channel is fine whatever the answer.
        let refused = |error: PublishError| Failure {
            error,
            channel_healthy: true,
        };
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(refused(PublishError::Target {
                    message: format!(
                        "RabbitMQ returned the message: {} {} (no queue is bound to exchange `{}` for routing key `{}`)",
                        returned.reply_code,
                        returned.reply_text,
                        self.target.exchange,
                        self.target.routing_key(message.subscription)
                    ),
                }))
            }
            Confirmation::Nack(None) => Err(refused(PublishError::Refused {
                message: "RabbitMQ nacked the message".into(),
            })),
            Confirmation::NotRequested => Err(Failure {
                error: PublishError::Refused {
                    message: "the channel is not in confirm mode".into(),
                },
                channel_healthy: false,
            }),
        }
    }

    /// A lapin error during a publish: the channel or connection is closed or lost.
    fn classify(&self, error: lapin::Error) -> Failure {
        Failure {
            error: self.classify_error(error),
            channel_healthy: false,
        }
    }

    fn classify_error(&self, error: lapin::Error) -> PublishError {
        let message = format!("RabbitMQ: {error}");
        match amqp_kind(&error) {
            Some(AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)) => PublishError::Target {
                message: format!(
                    "RabbitMQ exchange `{}` does not exist (any more): {error}",
                    self.target.exchange
                ),
            },
            Some(AMQPErrorKind::Soft(
                AMQPSoftError::ACCESSREFUSED | AMQPSoftError::CONTENTTOOLARGE,
            )) => PublishError::Target { message },
            _ => PublishError::Unavailable { message },
        }
    }
}

/// Closes a replaced connection without waiting for it.
fn close_in_background(connection: Connection) {
    tokio::spawn(async move {
        let closing = connection.close(200, "reconnecting".into());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), closing).await;
    });
}

impl Publisher for RabbitMqPublisher {
    type Target = RabbitMqTarget;

    async fn connect(
        target: &RabbitMqTarget,
        options: PublisherOptions,
    ) -> Result<Self, ConnectError> {
        let connection = open_connection(target, options).await?;
        let checked = tokio::time::timeout(options.connect_timeout, async {
            check_exchange(&connection, target).await?;
            confirm_channel(&connection)
                .await
                .map_err(|error| ConnectError::Unreachable {
                    message: format!("RabbitMQ: cannot open a confirm channel: {error}"),
                })
        })
        .await;
        let channel = match checked {
            Ok(Ok(channel)) => channel,
            Ok(Err(error)) => {
                close_in_background(connection);
                return Err(error);
            }
            Err(_) => {
                close_in_background(connection);
                return Err(ConnectError::Unreachable {
                    message: format!(
                        "RabbitMQ did not answer within {:?}",
                        options.connect_timeout
                    ),
                });
            }
        };
        Ok(RabbitMqPublisher {
            target: target.clone(),
            options,
            live: Mutex::new(Some(Live {
                connection,
                channel,
                generation: 0,
            })),
        })
    }

    async fn publish(&self, message: &Message) -> Result<Ack, PublishError> {
        let timeout = self.options.publish_timeout;
        let mut used = None;
        let published = tokio::time::timeout(timeout, async {
            let (channel, generation) = self.channel().await.map_err(|error| Failure {
                error,
                channel_healthy: true,
            })?;
            used = Some(generation);
            self.publish_on(&channel, message).await
        })
        .await;
        let result = match published {
            Ok(result) => result,
            // A confirm that does not come: the connection may be half dead; start afresh.
            Err(_) => Err(Failure {
                error: PublishError::TimedOut { timeout },
                channel_healthy: false,
            }),
        };
        match result {
            Ok(()) => Ok(Ack {
                position: None,
                duplicate: false,
            }),
            Err(failure) => {
                if let (Some(generation), false) = (used, failure.channel_healthy) {
                    self.forget(generation).await;
                }
                Err(failure.error)
            }
        }
    }
}
