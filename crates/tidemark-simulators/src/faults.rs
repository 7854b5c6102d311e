//! What every simulator shares: scripted faults and the log of data requests.
//!
//! # Faults
//!
//! A simulator keeps a FIFO queue of [`Fault`]s. Each data request (any request outside
//! `/_sim`) takes the fault at the head of the queue, if there is one, and that fault shapes its
//! answer. Control requests never consume faults.
//!
//! # Format
//!
//! On the control API (`POST /_sim/faults`) a fault is a JSON object tagged by `kind`:
//!
//! ```json
//! {"kind": "rate_limited", "retry_after_secs": 5}
//! {"kind": "server_error", "status": 503}
//! {"kind": "slow", "delay_ms": 1500}
//! {"kind": "malformed_json"}
//! {"kind": "missing_field"}
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One scripted misbehaviour, consumed by the next data request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "FaultWire", from = "FaultWire")]
pub enum Fault {
    /// Answer `429 Too Many Requests` with header `Retry-After: <retry_after_secs>` and the
    /// upstream's error body, without looking at the request.
    RateLimited {
        /// The value of the `Retry-After` header, in seconds.
        retry_after_secs: u64,
    },
    /// Answer this HTTP status with the upstream's error body, without looking at the request.
    /// A number that is not an HTTP status answers 500.
    ServerError {
        /// The HTTP status to answer, such as 500 or 503.
        status: u16,
    },
    /// Wait this long, then give the real answer.
    Slow {
        /// How long to wait before answering.
        delay: Duration,
    },
    /// Answer `200 OK` whose body is truncated, invalid JSON (after the Jive prefix, for Jive).
    /// Only a request that would have succeeded is affected; an error answer is unchanged.
    MalformedJson,
    /// Answer `200 OK` with a well-formed body whose items lack a field the upstream always
    /// sends (Jive content without `id`/`updated`, deleted objects without `id`/`eventDate`,
    /// Onna hits without `_id`/`sort`). A response with no items gets one such item. Only a
    /// request that would have succeeded is affected.
    MissingField,
}

/// The control API's spelling of a [`Fault`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum FaultWire {
    RateLimited { retry_after_secs: u64 },
    ServerError { status: u16 },
    Slow { delay_ms: u64 },
    MalformedJson,
    MissingField,
}

impl From<Fault> for FaultWire {
    fn from(fault: Fault) -> Self {
        match fault {
            Fault::RateLimited { retry_after_secs } => FaultWire::RateLimited { retry_after_secs },
            Fault::ServerError { status } => FaultWire::ServerError { status },
            Fault::Slow { delay } => FaultWire::Slow {
                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            },
            Fault::MalformedJson => FaultWire::MalformedJson,
            Fault::MissingField => FaultWire::MissingField,
        }
    }
}

impl From<FaultWire> for Fault {
    fn from(wire: FaultWire) -> Self {
        match wire {
            FaultWire::RateLimited { retry_after_secs } => Fault::RateLimited { retry_after_secs },
            FaultWire::ServerError { status } => Fault::ServerError { status },
            FaultWire::Slow { delay_ms } => Fault::Slow {
                delay: Duration::from_millis(delay_ms),
            },
            FaultWire::MalformedJson => Fault::MalformedJson,
            FaultWire::MissingField => Fault::MissingField,
        }
    }
}

/// One data request as the simulator saw it, recorded once it was answered.
///
/// The log is in the order answers were sent; `at` is when the request arrived, so a test can
/// check that no request came before a `Retry-After` had elapsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// When the request arrived.
    pub at: DateTime<Utc>,
    /// The HTTP method, such as `GET`.
    pub method: String,
    /// The path and raw (still percent-encoded) query string, such as
    /// `/api/core/v3/contents?count=25`.
    pub path_and_query: String,
    /// The request body, as text (invalid UTF-8 replaced).
    pub body: String,
    /// The HTTP status the simulator answered.
    pub status: u16,
}

impl RecordedRequest {
    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(path, _)| path)
    }

    /// The decoded query parameters, in order, repeated names included.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        match self.path_and_query.split_once('?') {
            Some((_, query)) => form_urlencoded::parse(query.as_bytes())
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect(),
            None => Vec::new(),
        }
    }

    /// Every decoded value of the query parameter `name`, in order.
    pub fn query_values(&self, name: &str) -> Vec<String> {
        self.query_pairs()
            .into_iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_fault_wire_format_round_trips() {
        let fault: Fault =
            serde_json::from_str(r#"{"kind":"slow","delay_ms":1500}"#).expect("slow fault parses");
        assert_eq!(
            fault,
            Fault::Slow {
                delay: Duration::from_millis(1500)
            }
        );
        let json = serde_json::to_value(Fault::RateLimited {
            retry_after_secs: 3,
        })
        .expect("fault serializes");
        assert_eq!(
            json,
            serde_json::json!({"kind": "rate_limited", "retry_after_secs": 3})
        );
        assert!(serde_json::from_str::<Fault>(r#"{"kind":"explode"}"#).is_err());
    }

    #[test]
    fn test_recorded_request_decodes_repeated_query_params() {
        let request = RecordedRequest {
            at: Utc::now(),
            method: "GET".into(),
            path_and_query: "/api/core/v3/contents?filter=type%28file%29&filter=updated%282015-05-06T23%3A16%3A30.594%2B0000%29&count=7".into(),
            body: String::new(),
            status: 200,
        };
        assert_eq!(request.path(), "/api/core/v3/contents");
        assert_eq!(
            request.query_values("filter"),
            vec!["type(file)", "updated(2015-05-06T23:16:30.594+0000)"]
        );
        assert_eq!(request.query_values("count"), vec!["7"]);
    }
}
