//! Where a destination publishes: validated broker settings, parsed from a client's JSON.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest URL accepted.
const MAX_URL_LEN: usize = 2048;
/// Longest name (stream, exchange, key) accepted.
const MAX_NAME_LEN: usize = 200;
/// Longest routing key or subject prefix: leaves room for `.` and a subscription id within
/// AMQP's 255-byte routing keys.
const MAX_PREFIX_LEN: usize = 200;

/// The kinds of broker a destination can publish to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestinationKind {
    /// NATS JetStream.
    Nats,
    /// RabbitMQ (AMQP 0-9-1).
    Rabbitmq,
    /// Redis Streams.
    Redis,
}

impl DestinationKind {
    /// The kind named `name` in JSON (`nats`, `rabbitmq`, `redis`), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "nats" => Some(DestinationKind::Nats),
            "rabbitmq" => Some(DestinationKind::Rabbitmq),
            "redis" => Some(DestinationKind::Redis),
            _ => None,
        }
    }

    /// The name used in JSON (`nats`, `rabbitmq`, `redis`).
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationKind::Nats => "nats",
            DestinationKind::Rabbitmq => "rabbitmq",
            DestinationKind::Redis => "redis",
        }
    }
}

impl std::fmt::Display for DestinationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A NATS JetStream target.
///
/// Example: `{"kind": "nats", "url": "nats://127.0.0.1:4222", "stream": "TIDEMARK",
/// "subject_prefix": "tidemark.activity", "create_stream": true}`: subscription 42's messages
/// go to subject `tidemark.activity.42`, stored in stream `TIDEMARK`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsTarget {
    /// Server URL, `nats://` or `tls://`, credentials allowed (`nats://user:pass@host:4222`).
    pub url: String,
    /// The JetStream stream that must capture `{subject_prefix}.>` (example: `TIDEMARK`).
    pub stream: String,
    /// Subject prefix; the subscription id is appended after a `.` (example: `tidemark.activity`).
    pub subject_prefix: String,
    /// Create the stream (file storage, subjects `{subject_prefix}.>`, 2 min duplicate window)
    /// when it does not exist, instead of refusing the target.
    #[serde(default)]
    pub create_stream: bool,
}

/// A RabbitMQ target.
///
/// Example: `{"kind": "rabbitmq", "url": "amqp://guest:guest@127.0.0.1:5672/%2f", "exchange":
/// "tidemark", "routing_key_prefix": "activity", "declare": true}`: subscription 42's messages
/// are published to exchange `tidemark` with routing key `activity.42`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitMqTarget {
    /// Broker URL, `amqp://user:pass@host:port/vhost` (the default vhost is `%2f`).
    pub url: String,
    /// The exchange (example: `tidemark`); the default exchange (`""`) is not accepted.
    pub exchange: String,
    /// Routing key prefix; the subscription id is appended after a `.` (example: `activity`).
    pub routing_key_prefix: String,
    /// Declare the exchange (durable, type `topic`) when it does not exist, instead of refusing
    /// the target.
    #[serde(default)]
    pub declare: bool,
}

/// A Redis Streams target.
///
/// Example: `{"kind": "redis", "url": "redis://127.0.0.1:6379/0", "stream_key":
/// "tidemark:activity", "max_len": 100000}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTarget {
    /// Server URL, `redis://[user:pass@]host:port[/db]`.
    pub url: String,
    /// The stream's key (example: `tidemark:activity`).
    pub stream_key: String,
    /// Trim the stream to about this many entries on each add (`XADD MAXLEN ~`); unbounded when
    /// absent (example: `100000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<u64>,
}

/// A validated broker target: `{"kind": "nats" | "rabbitmq" | "redis", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BrokerTarget {
    /// NATS JetStream.
    Nats(NatsTarget),
    /// RabbitMQ.
    Rabbitmq(RabbitMqTarget),
    /// Redis Streams.
    Redis(RedisTarget),
}

/// Why a target was refused; the message names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The JSON does not have the target's shape (missing or unknown field, wrong type).
    #[error("invalid {kind} target: {message}")]
    Shape {
        /// The kind of target, or `broker` when the kind itself is at fault.
        kind: &'static str,
        /// serde's message (names the field).
        message: String,
    },
    /// A field holds a value that is not allowed.
    #[error("`{field}`: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> TargetError {
    TargetError::Invalid {
        field,
        reason: reason.into(),
    }
}

impl BrokerTarget {
    /// Parses and validates `{"kind": .., <the kind's fields>}`.
    ///
    /// # Errors
    /// A [`TargetError`] naming the first problem: an unknown kind, a missing or unknown field,
    /// a URL that does not parse or has the wrong scheme, a malformed name.
    pub fn parse(value: &Value) -> Result<Self, TargetError> {
        let Some(object) = value.as_object() else {
            return Err(TargetError::Shape {
                kind: "broker",
                message: "a target must be a JSON object".into(),
            });
        };
        let kind = match object.get("kind") {
            Some(Value::String(kind)) => match DestinationKind::from_name(kind) {
                Some(kind) => kind,
                None => {
                    return Err(invalid(
                        "kind",
                        format!("unknown kind `{kind}` (nats, rabbitmq or redis)"),
                    ))
                }
            },
            Some(_) => return Err(invalid("kind", "must be a string")),
            None => return Err(invalid("kind", "is required (nats, rabbitmq or redis)")),
        };
        let mut fields = object.clone();
        fields.remove("kind");
        Self::parse_kind(kind, &Value::Object(fields))
    }

    /// Parses and validates the fields of a target of a known kind (no `kind` field).
    ///
    /// # Errors
    /// As [`BrokerTarget::parse`].
    pub fn parse_kind(kind: DestinationKind, fields: &Value) -> Result<Self, TargetError> {
        let shape = |e: serde_json::Error| TargetError::Shape {
            kind: kind.as_str(),
            message: e.to_string(),
        };
        let target = match kind {
            DestinationKind::Nats => {
                BrokerTarget::Nats(NatsTarget::deserialize(fields).map_err(shape)?)
            }
            DestinationKind::Rabbitmq => {
                BrokerTarget::Rabbitmq(RabbitMqTarget::deserialize(fields).map_err(shape)?)
            }
            DestinationKind::Redis => {
                BrokerTarget::Redis(RedisTarget::deserialize(fields).map_err(shape)?)
            }
        };
        target.validate()?;
        Ok(target)
    }

    /// Checks every field (what [`BrokerTarget::parse`] does after deserializing).
    ///
    /// # Errors
    /// A [`TargetError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), TargetError> {
        match self {
            BrokerTarget::Nats(nats) => nats.validate(),
            BrokerTarget::Rabbitmq(rabbitmq) => rabbitmq.validate(),
            BrokerTarget::Redis(redis) => redis.validate(),
        }
    }

    /// The kind of broker.
    pub fn kind(&self) -> DestinationKind {
        match self {
            BrokerTarget::Nats(_) => DestinationKind::Nats,
            BrokerTarget::Rabbitmq(_) => DestinationKind::Rabbitmq,
            BrokerTarget::Redis(_) => DestinationKind::Redis,
        }
    }

    /// The connection URL.
    pub fn url(&self) -> &str {
        match self {
            BrokerTarget::Nats(nats) => &nats.url,
            BrokerTarget::Rabbitmq(rabbitmq) => &rabbitmq.url,
            BrokerTarget::Redis(redis) => &redis.url,
        }
    }

    /// The URL with any password replaced by `***`, for the API and logs.
    pub fn redacted_url(&self) -> String {
        redact_url(self.url())
    }
}

/// A URL with its password replaced by `***` (unchanged when it has none or does not parse).
pub(crate) fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            if parsed.set_password(Some("***")).is_err() {
                return "***".into();
            }
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Parses a URL and checks its scheme and host.
fn check_url(url: &str, schemes: &[&str], hint: &str) -> Result<reqwest::Url, TargetError> {
    if url.len() > MAX_URL_LEN {
        return Err(invalid(
            "url",
            format!("is longer than {MAX_URL_LEN} characters"),
        ));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        invalid(
            "url",
            format!("`{}` is not a valid URL: {e}", redact_url(url)),
        )
    })?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(invalid(
            "url",
            format!("must start with {hint}, not `{}://`", parsed.scheme()),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("url", "needs a host"));
    }
    Ok(parsed)
}

fn check_name(field: &'static str, name: &str, forbidden: &[char]) -> Result<(), TargetError> {
    if name.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(
            field,
            format!("is longer than {MAX_NAME_LEN} bytes"),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || forbidden.contains(c))
    {
        return Err(invalid(field, format!("must not contain {bad:?}")));
    }
    Ok(())
}

/// A prefix of dot-separated tokens, none empty; `wildcards` are refused.
fn check_prefix(field: &'static str, prefix: &str, wildcards: &[char]) -> Result<(), TargetError> {
    if prefix.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(invalid(
            field,
            format!("is longer than {MAX_PREFIX_LEN} bytes"),
        ));
    }
    if let Some(bad) = prefix
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || wildcards.contains(c))
    {
        return Err(invalid(field, format!("must not contain {bad:?}")));
    }
    if prefix.split('.').any(str::is_empty) {
        return Err(invalid(
            field,
            format!("`{prefix}` has an empty token (leading, trailing or doubled `.`)"),
        ));
    }
    Ok(())
}

impl NatsTarget {
    /// The subject of a subscription's messages: `{subject_prefix}.{subscription}`.
    pub fn subject(&self, subscription: i64) -> String {
        format!("{}.{subscription}", self.subject_prefix)
    }

    fn validate(&self) -> Result<(), TargetError> {
        check_url(&self.url, &["nats", "tls"], "`nats://` or `tls://`")?;
        // Stream names may not contain `.`, `*`, `>` or path separators.
        check_name("stream", &self.stream, &['.', '*', '>', '/', '\\'])?;
        check_prefix("subject_prefix", &self.subject_prefix, &['*', '>'])
    }
}

impl RabbitMqTarget {
    /// The routing key of a subscription's messages: `{routing_key_prefix}.{subscription}`.
    pub fn routing_key(&self, subscription: i64) -> String {
        format!("{}.{subscription}", self.routing_key_prefix)
    }

    fn validate(&self) -> Result<(), TargetError> {
        let url = check_url(&self.url, &["amqp", "amqps"], "`amqp://`")?;
        if url.scheme() == "amqps" {
            return Err(invalid(
                "url",
                "`amqps://` (TLS) is not supported; use `amqp://` on a trusted network",
            ));
        }
        self.url
            .parse::<lapin::uri::AMQPUri>()
            .map_err(|e| invalid("url", format!("not an AMQP URL: {e}")))?;
        check_name("exchange", &self.exchange, &[])?;
        if !self
            .exchange
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            return Err(invalid(
                "exchange",
                "may hold only letters, digits, `-`, `_`, `.` and `:`",
            ));
        }
        if self.declare && self.exchange.starts_with("amq.") {
            return Err(invalid(
                "exchange",
                "names starting with `amq.` are reserved by the broker and cannot be declared",
            ));
        }
        check_prefix("routing_key_prefix", &self.routing_key_prefix, &['*', '#'])
    }
}

impl RedisTarget {
    fn validate(&self) -> Result<(), TargetError> {
        let url = check_url(&self.url, &["redis", "rediss"], "`redis://`")?;
        if url.scheme() == "rediss" {
            return Err(invalid(
                "url",
                "`rediss://` (TLS) is not supported; use `redis://` on a trusted network",
            ));
        }
        ::redis::Client::open(self.url.as_str())
            .map_err(|e| invalid("url", format!("not a Redis URL: {e}")))?;
        check_name("stream_key", &self.stream_key, &[])?;
        if self.max_len == Some(0) {
            return Err(invalid("max_len", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error_of(value: Value) -> String {
        BrokerTarget::parse(&value)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn test_targets_of_each_kind_parse_with_defaults() {
        let nats = BrokerTarget::parse(&json!({"kind": "nats", "url": "nats://127.0.0.1:4222",
            "stream": "TIDEMARK", "subject_prefix": "tidemark.activity"}))
        .expect("nats");
        let BrokerTarget::Nats(nats) = nats else {
            panic!("nats kind")
        };
        assert!(!nats.create_stream);
        assert_eq!(nats.subject(42), "tidemark.activity.42");

        let rabbitmq = BrokerTarget::parse(&json!({"kind": "rabbitmq",
            "url": "amqp://guest:secret@127.0.0.1:5672/%2f", "exchange": "tidemark",
            "routing_key_prefix": "activity", "declare": true}))
        .expect("rabbitmq");
        assert_eq!(rabbitmq.kind(), DestinationKind::Rabbitmq);
        assert_eq!(
            rabbitmq.redacted_url(),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        let BrokerTarget::Rabbitmq(rabbitmq) = rabbitmq else {
            panic!("rabbitmq kind")
        };
        assert_eq!(rabbitmq.routing_key(7), "activity.7");

        let redis =
            BrokerTarget::parse(&json!({"kind": "redis", "url": "redis://127.0.0.1:6379/0",
            "stream_key": "tidemark:activity", "max_len": 1000}))
            .expect("redis");
        assert_eq!(
            serde_json::to_value(&redis).expect("json"),
            json!({"kind": "redis", "url": "redis://127.0.0.1:6379/0",
                   "stream_key": "tidemark:activity", "max_len": 1000})
        );
    }

    #[test]
    fn test_unknown_missing_and_mistyped_fields_are_refused() {
        let unknown = error_of(
            json!({"kind": "nats", "url": "nats://h:4222", "stream": "S",
            "subject_prefix": "p", "subjects": ["x"]}),
        );
        assert!(unknown.contains("unknown field `subjects`"), "{unknown}");
        let missing = error_of(json!({"kind": "redis", "url": "redis://h"}));
        assert!(missing.contains("missing field `stream_key`"), "{missing}");
        let mistyped = error_of(
            json!({"kind": "rabbitmq", "url": "amqp://h", "exchange": "e",
            "routing_key_prefix": "k", "declare": "yes"}),
        );
        assert!(mistyped.contains("invalid type"), "{mistyped}");
        assert!(error_of(json!({"kind": "kafka"})).contains("unknown kind `kafka`"));
        assert!(error_of(json!({"url": "nats://h"})).contains("`kind`"));
        assert!(error_of(json!(["nats"])).contains("JSON object"));
    }

    #[test]
    fn test_bad_urls_are_refused_with_the_field_named() {
        for (target, expected) in [
            (
                json!({"kind": "nats", "url": "http://h:4222", "stream": "S", "subject_prefix": "p"}),
                "must start with `nats://` or `tls://`",
            ),
            (
                json!({"kind": "nats", "url": "not a url", "stream": "S", "subject_prefix": "p"}),
                "is not a valid URL",
            ),
            (
                json!({"kind": "rabbitmq", "url": "amqps://h", "exchange": "e", "routing_key_prefix": "k"}),
                "not supported",
            ),
            (
                json!({"kind": "rabbitmq", "url": "redis://h", "exchange": "e", "routing_key_prefix": "k"}),
                "must start with `amqp://`",
            ),
            (
                json!({"kind": "redis", "url": "nats://h", "stream_key": "k"}),
                "must start with `redis://`",
            ),
            (
                json!({"kind": "redis", "url": "redis://", "stream_key": "k"}),
                "`url`",
            ),
        ] {
            let error = error_of(target.clone());
            assert!(error.starts_with("`url`"), "{target}: {error}");
            assert!(error.contains(expected), "{target}: {error}");
        }
    }

    #[test]
    fn test_bad_names_and_prefixes_are_refused() {
        for (target, field) in [
            (
                json!({"kind": "nats", "url": "nats://h", "stream": "a.b", "subject_prefix": "p"}),
                "`stream`",
            ),
            (
                json!({"kind": "nats", "url": "nats://h", "stream": "", "subject_prefix": "p"}),
                "`stream`",
            ),
            (
                json!({"kind": "nats", "url": "nats://h", "stream": "S", "subject_prefix": "p.>"}),
                "`subject_prefix`",
            ),
            (
                json!({"kind": "nats", "url": "nats://h", "stream": "S", "subject_prefix": "p..q"}),
                "`subject_prefix`",
            ),
            (
                json!({"kind": "nats", "url": "nats://h", "stream": "S", "subject_prefix": "p q"}),
                "`subject_prefix`",
            ),
            (
                json!({"kind": "rabbitmq", "url": "amqp://h", "exchange": "", "routing_key_prefix": "k"}),
                "`exchange`",
            ),
            (
                json!({"kind": "rabbitmq", "url": "amqp://h", "exchange": "amq.topic", "routing_key_prefix": "k", "declare": true}),
                "`exchange`",
            ),
            (
                json!({"kind": "rabbitmq", "url": "amqp://h", "exchange": "e", "routing_key_prefix": "k.#"}),
                "`routing_key_prefix`",
            ),
            (
                json!({"kind": "redis", "url": "redis://h", "stream_key": "k", "max_len": 0}),
                "`max_len`",
            ),
            (
                json!({"kind": "redis", "url": "redis://h", "stream_key": ""}),
                "`stream_key`",
            ),
        ] {
            let error = error_of(target.clone());
            assert!(error.starts_with(field), "{target}: {error}");
        }
    }

    #[test]
    fn test_a_known_kind_parses_without_its_tag() {
        let target = BrokerTarget::parse_kind(
            DestinationKind::Redis,
            &json!({"url": "redis://h", "stream_key": "k"}),
        )
        .expect("redis");
        assert_eq!(target.kind(), DestinationKind::Redis);
        assert!(
            BrokerTarget::parse_kind(DestinationKind::Redis, &json!({"kind": "redis"})).is_err()
        );
    }
}
