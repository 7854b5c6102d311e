//! HTTP plumbing shared by the connectors that reach an upstream over HTTP: account config
//! fields common to them (`base_url`, `credentials`), one client with the timeouts, and the one
//! place an upstream's HTTP answer becomes a [`ConnectorError`] (retry or not, and when).

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, AUTHORIZATION, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

use crate::ConnectorError;

/// How long to wait for a connection to an upstream.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one upstream request may take in all.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(25);

/// Longest `Retry-After` honoured as given (longer ones are capped: a misbehaving upstream must
/// not park a subscription for days).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How much of an upstream's error body is quoted in an error message.
const QUOTED_BODY: usize = 300;

/// How a connector authenticates (`config.credentials`): write-only, never rendered.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `{"token": "..."}`: sent as `Authorization: Bearer <token>`.
    Token(String),
    /// `{"username": "...", "password": "..."}`: HTTP Basic.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Token(_) => f.write_str("Credentials::Token(..)"),
            Credentials::Basic { username, .. } => {
                write!(f, "Credentials::Basic({username}, ..)")
            }
        }
    }
}

impl Credentials {
    /// Reads `config.credentials`: `{"token"}` or `{"username", "password"}`, nothing else.
    ///
    /// # Errors
    /// [`ConnectorError::BadConfig`] saying what is missing or wrong.
    pub fn from_config(config: &Value, basic_allowed: bool) -> Result<Self, ConnectorError> {
        let shapes = if basic_allowed {
            "{\"token\": \"...\"} or {\"username\": \"...\", \"password\": \"...\"}"
        } else {
            "{\"token\": \"...\"}"
        };
        let bad = |what: &str| ConnectorError::BadConfig(format!("`credentials` {what}: {shapes}"));
        let object = match config.get("credentials") {
            None | Some(Value::Null) => return Err(bad("are required")),
            Some(Value::Object(object)) => object,
            Some(_) => return Err(bad("must be an object")),
        };
        let text = |key: &str| match object.get(key) {
            Some(Value::String(text)) if !text.is_empty() => Ok(Some(text.clone())),
            None | Some(Value::Null) => Ok(None),
            Some(_) => Err(bad(&format!("`{key}` must be a non-empty string"))),
        };
        let known = ["token", "username", "password"];
        if let Some(unknown) = object.keys().find(|key| !known.contains(&key.as_str())) {
            return Err(bad(&format!("have an unknown field `{unknown}`")));
        }
        match (text("token")?, text("username")?, text("password")?) {
            (Some(token), None, None) => Ok(Credentials::Token(token)),
            (None, Some(username), Some(password)) if basic_allowed => {
                Ok(Credentials::Basic { username, password })
            }
            _ => Err(bad("must be exactly one of")),
        }
    }

    /// Adds the `Authorization` header.
    pub fn apply(&self, request: RequestBuilder) -> RequestBuilder {
        match self {
            Credentials::Token(token) => request.header(AUTHORIZATION, format!("Bearer {token}")),
            Credentials::Basic { username, password } => {
                request.basic_auth(username, Some(password))
            }
        }
    }
}

/// Reads `config.base_url` (or `default`), checked to be an absolute http(s) URL, without a
/// trailing slash.
///
/// # Errors
/// [`ConnectorError::BadConfig`] saying what is wrong.
pub fn base_url(config: &Value, default: Option<&str>) -> Result<String, ConnectorError> {
    let text = match (config.get("base_url"), default) {
        (Some(Value::String(text)), _) => text.clone(),
        (None | Some(Value::Null), Some(default)) => default.to_owned(),
        (None | Some(Value::Null), None) => {
            return Err(ConnectorError::BadConfig(
                "`base_url` is required (the upstream's API root, e.g. \
                 https://community.example.com/api/core/v3)"
                    .to_owned(),
            ))
        }
        (Some(other), _) => {
            return Err(ConnectorError::BadConfig(format!(
                "`base_url` must be a string, got {other}"
            )))
        }
    };
    let url = reqwest::Url::parse(&text)
        .map_err(|error| ConnectorError::BadConfig(format!("`base_url` {text:?}: {error}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConnectorError::BadConfig(format!(
            "`base_url` must be an http or https URL with a host, got {text:?}"
        )));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// Reads an optional whole-number field of the config within `range`.
///
/// # Errors
/// [`ConnectorError::BadConfig`] naming the field and the range.
pub fn optional_u64(
    config: &Value,
    key: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, ConnectorError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(number) if range.contains(&number) => Ok(Some(number)),
            _ => Err(ConnectorError::BadConfig(format!(
                "`{key}` must be a whole number in {}..={}, got {value}",
                range.start(),
                range.end()
            ))),
        },
    }
}

/// Rejects config keys outside `known` (a typo must not silently become a default).
///
/// # Errors
/// [`ConnectorError::BadConfig`] naming the first unknown key.
pub fn deny_unknown_keys(
    service: &str,
    config: &Value,
    known: &[&str],
) -> Result<(), ConnectorError> {
    let object = config.as_object().ok_or_else(|| {
        ConnectorError::BadConfig(format!("{service} config must be a JSON object"))
    })?;
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        Some(unknown) => Err(ConnectorError::BadConfig(format!(
            "unknown {service} config field `{unknown}`; known: {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// The HTTP client connectors share: connection pooling, timeouts, a user agent.
pub fn client() -> Result<reqwest::Client, ConnectorError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("tidemark/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| ConnectorError::Transient(format!("cannot build an HTTP client: {error}")))
}

/// Sends `request` and returns the body of a 2xx answer; every other outcome becomes the
/// [`ConnectorError`] that says what the engine does next:
///
/// | upstream answer | error | engine |
/// | --- | --- | --- |
/// | no answer (connect, timeout, reset) | `Transient` | backs off, retries |
/// | 401, 403 | `Unauthorized` | disables the subscription (`invalid_credentials`) |
/// | 429, or 503 with `Retry-After` | `RateLimited` | no poll before `Retry-After` |
/// | 5xx | `Transient` | backs off, retries |
/// | other 4xx | `BadResponse` | backs off, retries (logged: a request we got wrong) |
///
/// # Errors
/// As the table says.
pub async fn send(request: RequestBuilder, what: &str) -> Result<Vec<u8>, ConnectorError> {
    let response = request.send().await.map_err(|error| {
        ConnectorError::Transient(format!("{what}: {}", describe_reqwest(&error)))
    })?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(|error| {
        ConnectorError::Transient(format!(
            "{what}: reading the body: {}",
            describe_reqwest(&error)
        ))
    })?;
    if status.is_success() {
        return Ok(body.to_vec());
    }
    Err(status_error(status, &headers, &body, what))
}

fn status_error(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
) -> ConnectorError {
    let quoted = quote(body);
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            ConnectorError::Unauthorized(format!("{what}: {status}: {quoted}"))
        }
        StatusCode::TOO_MANY_REQUESTS => ConnectorError::RateLimited {
            retry_after: retry_after(headers, Utc::now()),
        },
        StatusCode::SERVICE_UNAVAILABLE if headers.contains_key(RETRY_AFTER) => {
            ConnectorError::RateLimited {
                retry_after: retry_after(headers, Utc::now()),
            }
        }
        status if status.is_server_error() => {
            ConnectorError::Transient(format!("{what}: {status}: {quoted}"))
        }
        status => ConnectorError::BadResponse(format!("{what}: {status}: {quoted}")),
    }
}

/// `Retry-After` as a delay: delta-seconds or an HTTP date (RFC 9110 10.2.3), capped at an
/// hour; `None` when absent or unreadable.
pub fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = DateTime::parse_from_rfc2822(text).ok()?.with_timezone(&Utc);
            (at - now).to_std().unwrap_or(Duration::ZERO)
        }
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// Parses an upstream JSON body.
///
/// # Errors
/// [`ConnectorError::BadResponse`] quoting the start of the body.
pub fn parse_json(body: &[u8], what: &str) -> Result<Value, ConnectorError> {
    serde_json::from_slice(body).map_err(|error| {
        ConnectorError::BadResponse(format!("{what}: malformed JSON ({error}): {}", quote(body)))
    })
}

fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(QUOTED_BODY) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

fn describe_reqwest(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use serde_json::json;

    #[test]
    fn test_credentials_accept_the_two_shapes_and_reject_the_rest() {
        let token = Credentials::from_config(&json!({"credentials": {"token": "t"}}), true);
        assert_eq!(token.expect("token"), Credentials::Token("t".into()));
        let basic = Credentials::from_config(
            &json!({"credentials": {"username": "u", "password": "p"}}),
            true,
        );
        assert!(matches!(basic, Ok(Credentials::Basic { .. })));
        for bad in [
            json!({}),
            json!({"credentials": "t"}),
            json!({"credentials": {}}),
            json!({"credentials": {"token": ""}}),
            json!({"credentials": {"token": 5}}),
            json!({"credentials": {"username": "u"}}),
            json!({"credentials": {"token": "t", "username": "u", "password": "p"}}),
            json!({"credentials": {"token": "t", "secret": "s"}}),
        ] {
            let error = Credentials::from_config(&bad, true).expect_err("rejected");
            assert!(error.to_string().contains("credentials"), "{error}");
        }
        let basic_only = json!({"credentials": {"username": "u", "password": "p"}});
        assert!(Credentials::from_config(&basic_only, false).is_err());
        let debug = format!("{:?}", Credentials::Token("secret-token".into()));
        assert!(!debug.contains("secret-token"), "{debug}");
    }

    #[test]
    fn test_base_url_is_checked() {
        assert_eq!(
            base_url(&json!({"base_url": "http://h:1/api/"}), None).expect("ok"),
            "http://h:1/api"
        );
        assert_eq!(
            base_url(&json!({}), Some("https://d.example/x")).expect("default"),
            "https://d.example/x"
        );
        for bad in [
            json!({}),
            json!({"base_url": 3}),
            json!({"base_url": "not a url"}),
            json!({"base_url": "ftp://h/x"}),
        ] {
            assert!(base_url(&bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn test_retry_after_reads_seconds_and_dates() {
        let now = Utc::now();
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        let date = (now + chrono::Duration::seconds(30)).to_rfc2822();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&date).expect("header"));
        let delay = retry_after(&headers, now).expect("date");
        assert!((29..=30).contains(&delay.as_secs()), "{delay:?}");
        headers.insert(RETRY_AFTER, HeaderValue::from_static("999999"));
        assert_eq!(retry_after(&headers, now), Some(MAX_RETRY_AFTER));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn test_statuses_map_to_what_the_engine_does() {
        let headers = HeaderMap::new();
        let error = |status: u16| {
            status_error(
                StatusCode::from_u16(status).expect("status"),
                &headers,
                b"{}",
                "x",
            )
        };
        assert!(matches!(error(401), ConnectorError::Unauthorized(_)));
        assert!(matches!(error(403), ConnectorError::Unauthorized(_)));
        assert!(matches!(error(429), ConnectorError::RateLimited { .. }));
        assert!(matches!(error(500), ConnectorError::Transient(_)));
        assert!(matches!(error(503), ConnectorError::Transient(_)));
        assert!(matches!(error(400), ConnectorError::BadResponse(_)));
        assert!(error(400).is_retriable());
    }
}
