//! Redis Streams: each message is one `XADD` to the target's stream key, published once Redis
//! replied with the new entry's id.
//!
//! Entry fields: `message_id`, `accountId`, `subscriptionId`, `v1ActivityType` (when the
//! activity has a v1 form) and `body` (the JSON body). Redis does not deduplicate: a message
//! re-published after an error may appear twice, with the same `message_id`. With `max_len`,
//! each add trims the stream to about that many entries (`MAXLEN ~`).
//!
//! The connection is a [`ConnectionManager`]: after the server goes away it reconnects in the
//! background, and publishes fail retriably until it is back.

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError};

use super::{
    Ack, ConnectError, Message, PublishError, Publisher, PublisherOptions, RedisTarget, FIELD_BODY,
    FIELD_MESSAGE_ID,
};
use crate::brokers::target::redact_url;

/// Publishes to one Redis stream.
#[derive(Clone)]
pub struct RedisPublisher {
    connection: ConnectionManager,
    target: RedisTarget,
    options: PublisherOptions,
}

impl std::fmt::Debug for RedisPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPublisher")
            .field("stream_key", &self.target.stream_key)
            .finish_non_exhaustive()
    }
}

/// Sorts a Redis error into retriable and permanent.
fn classify(error: &RedisError, timeout: std::time::Duration) -> PublishError {
    let message = format!("Redis: {error}");
    if error.is_timeout() {
        return PublishError::TimedOut { timeout };
    }
    if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal() {
        return PublishError::Unavailable { message };
    }
    match error.code() {
        // Busy, loading, out of memory, a replica: the same command may work later.
        Some("OOM" | "LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "READONLY") => {
            PublishError::Refused { message }
        }
        // WRONGTYPE (the key is not a stream), NOPERM, ERR: the target as configured.
        Some(_) => PublishError::Target { message },
        None => PublishError::Unavailable { message },
    }
}

impl Publisher for RedisPublisher {
    type Target = RedisTarget;

    async fn connect(
        target: &RedisTarget,
        options: PublisherOptions,
    ) -> Result<Self, ConnectError> {
        let url = redact_url(&target.url);
        let client = Client::open(target.url.as_str()).map_err(|error| ConnectError::Target {
            message: format!("Redis URL {url}: {error}"),
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            // Each publish is bounded by its own timeout (below), which is what a claim's margin
            // relies on; a second timer inside the connection would only cost one per message.
            .set_response_timeout(None)
            .set_number_of_retries(2)
            .set_max_delay(std::time::Duration::from_secs(1));
        let connecting = async {
            let mut connection = ConnectionManager::new_with_config(client, config).await?;
            let kind: String = ::redis::cmd("TYPE")
                .arg(&target.stream_key)
                .query_async(&mut connection)
                .await?;
            Ok::<_, RedisError>((connection, kind))
        };
        let (connection, kind) =
            match tokio::time::timeout(options.connect_timeout, connecting).await {
                Err(_) => {
                    return Err(ConnectError::Unreachable {
                        message: format!(
                            "Redis at {url}: no answer within {:?}",
                            options.connect_timeout
                        ),
                    })
                }
                Ok(Err(error)) => {
                    let message = format!("Redis at {url}: {error}");
                    return Err(
                        if error.kind() == ::redis::ErrorKind::AuthenticationFailed
                            || error.code().is_some()
                        {
                            ConnectError::Target { message }
                        } else {
                            ConnectError::Unreachable { message }
                        },
                    );
                }
                Ok(Ok(found)) => found,
            };
        if kind != "stream" && kind != "none" {
            return Err(ConnectError::Target {
                message: format!(
                    "Redis key `{}` holds a {kind}, not a stream",
                    target.stream_key
                ),
            });
        }
        Ok(RedisPublisher {
            connection,
            target: target.clone(),
            options,
        })
    }

    async fn publish(&self, message: &Message) -> Result<Ack, PublishError> {
        let mut command = ::redis::cmd("XADD");
        command.arg(&self.target.stream_key);
        if let Some(max_len) = self.target.max_len {
            command.arg("MAXLEN").arg("~").arg(max_len);
        }
        command
            .arg("*")
            .arg(FIELD_MESSAGE_ID)
            .arg(message.message_id());
        for (name, value) in message.headers() {
            command.arg(name).arg(value);
        }
        command.arg(FIELD_BODY).arg(message.body.as_ref());
        let timeout = self.options.publish_timeout;
        let mut connection = self.connection.clone();
        let adding = command.query_async::<String>(&mut connection);
        match tokio::time::timeout(timeout, adding).await {
            Err(_) => Err(PublishError::TimedOut { timeout }),
            Ok(Err(error)) => Err(classify(&error, timeout)),
            Ok(Ok(id)) => Ok(Ack {
                position: Some(id),
                duplicate: false,
            }),
        }
    }
}
