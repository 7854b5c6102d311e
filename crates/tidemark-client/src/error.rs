//! [`ClientError`]: what can go wrong talking to a Tidemark server, sorted by what a caller can
//! do about it.

use std::time::Duration;

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with its error body (`{"type": "error", ...}`): bad input (400),
    /// unknown or foreign object (404), bad credentials (401), a server fault (5xx).
    #[error("{status} {error_code}: {message} (request {id})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The Kloudless `error_code` (`invalid_parameters`, `not_found`, ...).
        error_code: String,
        /// The server's message, meant for a person.
        message: String,
        /// The request id, to find the server's log line.
        id: String,
    },
    /// 429 answered more often than the client's retry policy allows (or with a wait longer
    /// than it accepts): try again after `retry_after`.
    #[error("rate limited: retry after {}s", retry_after.as_secs_f64())]
    RateLimited {
        /// What the server's last `Retry-After` asked for.
        retry_after: Duration,
    },
    /// The request did not complete: connection refused or reset, timeout, TLS.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The server's answer is not the JSON this client expects.
    #[error("undecodable answer from {what}: {message}")]
    Decode {
        /// What was being read (a path, a field).
        what: String,
        /// The parser's message.
        message: String,
    },
    /// The base URL or a parameter could not be made into a request.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl ClientError {
    /// Whether trying the same request again later may succeed: transport failures, 5xx
    /// answers and rate limits. Client errors (4xx) and undecodable answers will not change.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Api { status, .. } => *status >= 500,
            ClientError::RateLimited { .. } | ClientError::Http(_) => true,
            ClientError::Decode { .. } | ClientError::InvalidRequest(_) => false,
        }
    }

    /// The HTTP status of an [`ClientError::Api`] answer (429 for [`ClientError::RateLimited`]).
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            ClientError::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    pub(crate) fn decode(what: impl Into<String>, error: impl std::fmt::Display) -> Self {
        ClientError::Decode {
            what: what.into(),
            message: error.to_string(),
        }
    }
}
