//! NATS JetStream: each message is a JetStream publish to `{subject_prefix}.{subscription}`,
//! acknowledged by the stream's `PubAck`.
//!
//! Headers: `Nats-Msg-Id` (the message id, so the stream's duplicate window drops a repeat),
//! `Nats-Expected-Stream` (the target's stream: a message captured by another stream is
//! refused rather than stored elsewhere), `accountId`, `subscriptionId`, `v1ActivityType`.
//!
//! The client reconnects by itself after the server goes away (at most 4 s between tries,
//! forever); publishes made meanwhile time out or fail, retriably.

use std::time::Duration;

use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, message::PublishMessage};

use super::{Ack, ConnectError, Message, NatsTarget, PublishError, Publisher, PublisherOptions};
use crate::brokers::target::redact_url;

/// The duplicate window of a stream created by the publisher (NATS's default).
pub const CREATED_STREAM_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Publishes to one JetStream stream.
#[derive(Debug)]
pub struct NatsPublisher {
    jetstream: jetstream::Context,
    target: NatsTarget,
    options: PublisherOptions,
}

impl NatsPublisher {
    /// The JetStream context (for tests and tools: stream info, consumers).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }
}

/// JetStream's "stream not found" error code.
const STREAM_NOT_FOUND: u64 = 10059;

/// Whether a NATS subject pattern (`*` one token, `>` the rest) matches a literal subject.
fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for expected in pattern.split('.') {
        match (expected, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (literal, Some(token)) if literal == token => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

impl Publisher for NatsPublisher {
    type Target = NatsTarget;

    async fn connect(target: &NatsTarget, options: PublisherOptions) -> Result<Self, ConnectError> {
        let url = redact_url(&target.url);
        let connecting = async_nats::ConnectOptions::new()
            .name("tidemark")
            .connection_timeout(options.connect_timeout)
            .request_timeout(Some(options.publish_timeout))
            .connect(target.url.as_str());
        let client = match tokio::time::timeout(options.connect_timeout, connecting).await {
            Err(_) => {
                return Err(ConnectError::Unreachable {
                    message: format!(
                        "NATS at {url}: no answer within {:?}",
                        options.connect_timeout
                    ),
                })
            }
            Ok(Err(error)) => {
                let message = format!("NATS at {url}: {error}");
                return Err(match error.kind() {
                    async_nats::ConnectErrorKind::Authentication
                    | async_nats::ConnectErrorKind::AuthorizationViolation
                    | async_nats::ConnectErrorKind::ServerParse
                    | async_nats::ConnectErrorKind::Tls => ConnectError::Target { message },
                    _ => ConnectError::Unreachable { message },
                });
            }
            Ok(Ok(client)) => client,
        };
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(options.publish_timeout)
            .build(client);
        let checking = check_stream(&jetstream, target);
        match tokio::time::timeout(options.connect_timeout, checking).await {
            Err(_) => Err(ConnectError::Unreachable {
                message: format!(
                    "NATS at {url}: JetStream did not answer within {:?}",
                    options.connect_timeout
                ),
            }),
            Ok(Err(error)) => Err(error),
            Ok(Ok(())) => Ok(NatsPublisher {
                jetstream,
                target: target.clone(),
                options,
            }),
        }
    }

    async fn publish(&self, message: &Message) -> Result<Ack, PublishError> {
        let subject = self.target.subject(message.subscription);
        let mut publish = PublishMessage::build()
            .payload(message.body.clone())
            .message_id(message.message_id())
            .expected_stream(&self.target.stream);
        for (name, value) in message.headers() {
            publish = publish.header(name, value.as_str());
        }
        let timeout = self.options.publish_timeout;
        let publishing = async {
            let ack = self
                .jetstream
                .send_publish(subject, publish)
                .await
                .map_err(classify)?;
            ack.await.map_err(classify)
        };
        let ack = tokio::time::timeout(timeout, publishing)
            .await
            .map_err(|_| PublishError::TimedOut { timeout })??;
        Ok(Ack {
            position: Some(ack.sequence.to_string()),
            duplicate: ack.duplicate,
        })
    }
}

/// Finds the stream (or creates it when asked) and checks that it captures the subjects.
async fn check_stream(
    jetstream: &jetstream::Context,
    target: &NatsTarget,
) -> Result<(), ConnectError> {
    let sample_subject = target.subject(0);
    let stream = match jetstream.get_stream(&target.stream).await {
        Ok(stream) => stream,
        Err(error) => match error.kind() {
            GetStreamErrorKind::JetStream(api) if api.error_code().0 == STREAM_NOT_FOUND => {
                if !target.create_stream {
                    return Err(ConnectError::Target {
                        message: format!(
                            "JetStream stream `{}` does not exist (set `create_stream` to create it)",
                            target.stream
                        ),
                    });
                }
                let config = StreamConfig {
                    name: target.stream.clone(),
                    subjects: vec![format!("{}.>", target.subject_prefix)],
                    storage: StorageType::File,
                    duplicate_window: CREATED_STREAM_DUPLICATE_WINDOW,
                    ..StreamConfig::default()
                };
                jetstream.create_stream(config).await.map_err(|error| {
                    let message = format!(
                        "cannot create JetStream stream `{}`: {error}",
                        target.stream
                    );
                    match error.kind() {
                        CreateStreamErrorKind::TimedOut
                        | CreateStreamErrorKind::JetStreamUnavailable => {
                            ConnectError::Unreachable { message }
                        }
                        _ => ConnectError::Target { message },
                    }
                })?
            }
            GetStreamErrorKind::Request => {
                return Err(ConnectError::Unreachable {
                    message: format!(
                        "JetStream did not answer (is the server started with `-js`?): {error}"
                    ),
                })
            }
            _ => {
                return Err(ConnectError::Target {
                    message: format!("JetStream stream `{}`: {error}", target.stream),
                })
            }
        },
    };
    let subjects = &stream.cached_info().config.subjects;
    if !subjects
        .iter()
        .any(|pattern| subject_matches(pattern, &sample_subject))
    {
        return Err(ConnectError::Target {
            message: format!(
                "JetStream stream `{}` does not capture `{}.>` (its subjects: {})",
                target.stream,
                target.subject_prefix,
                subjects.join(", ")
            ),
        });
    }
    Ok(())
}

/// Sorts a JetStream publish error into retriable and permanent.
fn classify(error: jetstream::context::PublishError) -> PublishError {
    let message = error.to_string();
    match error.kind() {
        PublishErrorKind::TimedOut => PublishError::Unavailable {
            message: format!("no PubAck in time: {message}"),
        },
        // No responders: nothing took the subject. The stream existed at connect time, so this
        // is JetStream restarting (or the stream deleted meanwhile): retry.
        PublishErrorKind::StreamNotFound => PublishError::Unavailable {
            message: "no stream answered for the subject (JetStream restarting, or the stream was deleted)".into(),
        },
        PublishErrorKind::BrokenPipe | PublishErrorKind::MaxAckPending => {
            PublishError::Unavailable { message }
        }
        PublishErrorKind::MaxPayloadExceeded => PublishError::Target { message },
        _ => {
            // A JetStream API error (wrong stream, message too large for the stream, ...) is the
            // target's; 503 "temporarily unavailable" is not. Anything else is the connection.
            let api = std::error::Error::source(&error)
                .and_then(|source| source.downcast_ref::<jetstream::Error>());
            match api {
                Some(api) if api.code() == 503 => PublishError::Refused { message },
                Some(_) => PublishError::Target { message },
                None => PublishError::Unavailable { message },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn test_subject_patterns_match_as_nats_does() {
        assert!(subject_matches("tidemark.>", "tidemark.42"));
        assert!(subject_matches(">", "tidemark.42"));
        assert!(subject_matches("tidemark.*", "tidemark.42"));
        assert!(subject_matches("*.*", "tidemark.42"));
        assert!(subject_matches("tidemark.42", "tidemark.42"));
        assert!(!subject_matches("tidemark.>", "tidemark"));
        assert!(!subject_matches("tidemark.*", "tidemark.a.42"));
        assert!(!subject_matches("other.>", "tidemark.42"));
        assert!(!subject_matches("tidemark", "tidemark.42"));
    }
}
