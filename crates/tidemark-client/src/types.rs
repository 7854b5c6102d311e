//! What the client sends and receives: object references (`me`, `default`), the account
//! object as the API renders it, create bodies, List Activity queries and pages.
//!
//! Subscriptions and activities are [`tidemark_model`]'s own types: the API renders them
//! exactly as the model serializes them.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tidemark_model::{Activity, MonitoredResource, SubscriptionType};

/// An account in a path: its numeric id, or `me` (the account of a bearer token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountRef {
    /// By numeric id.
    Id(i64),
    /// `me`: the bearer token's own account.
    Me,
}

/// A subscription in a path: its numeric id, or `default` (the account's default one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionRef {
    /// By numeric id.
    Id(i64),
    /// `default`: the account's default subscription.
    Default,
}

/// A reference that is neither a number nor the alias its kind allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not {expected}")]
pub struct RefError {
    given: String,
    expected: &'static str,
}

fn parse_ref<T>(
    text: &str,
    alias: &str,
    aliased: T,
    by_id: fn(i64) -> T,
    expected: &'static str,
) -> Result<T, RefError> {
    let trimmed = text.trim();
    if trimmed == alias {
        return Ok(aliased);
    }
    match trimmed.parse::<i64>() {
        Ok(id) if id > 0 => Ok(by_id(id)),
        _ => Err(RefError {
            given: text.chars().take(64).collect(),
            expected,
        }),
    }
}

impl FromStr for AccountRef {
    type Err = RefError;

    /// `me` or a positive number.
    fn from_str(text: &str) -> Result<Self, RefError> {
        parse_ref(
            text,
            "me",
            AccountRef::Me,
            AccountRef::Id,
            "an account id (a positive number) or `me`",
        )
    }
}

impl FromStr for SubscriptionRef {
    type Err = RefError;

    /// `default` or a positive number.
    fn from_str(text: &str) -> Result<Self, RefError> {
        parse_ref(
            text,
            "default",
            SubscriptionRef::Default,
            SubscriptionRef::Id,
            "a subscription id (a positive number) or `default`",
        )
    }
}

impl fmt::Display for AccountRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountRef::Id(id) => write!(f, "{id}"),
            AccountRef::Me => f.write_str("me"),
        }
    }
}

impl fmt::Display for SubscriptionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriptionRef::Id(id) => write!(f, "{id}"),
            SubscriptionRef::Default => f.write_str("default"),
        }
    }
}

impl From<i64> for AccountRef {
    fn from(id: i64) -> Self {
        AccountRef::Id(id)
    }
}

impl From<i64> for SubscriptionRef {
    fn from(id: i64) -> Self {
        SubscriptionRef::Id(id)
    }
}

/// A connected upstream account, as the API renders it (`config` never holds credentials).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// Numeric id.
    pub id: i64,
    /// Service name (`local`, `jive`, `onna`, ...).
    pub service: String,
    /// Whether the account yields org-wide audit activity.
    pub admin: bool,
    /// Always `true` while the account exists.
    pub active: bool,
    /// Connection config, without `credentials`.
    pub config: Value,
    /// When the account was connected.
    #[serde(with = "tidemark_model::time::iso")]
    pub created: DateTime<Utc>,
    /// When the account last changed.
    #[serde(with = "tidemark_model::time::iso")]
    pub modified: DateTime<Utc>,
    /// The account's bearer token: only in the answer that created the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<BearerToken>,
}

/// A freshly minted bearer token (shown once, when its account is created).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BearerToken {
    /// The token, for [`crate::Auth::Bearer`].
    pub key: String,
}

/// The body of `POST /v1/accounts`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewAccount {
    /// Service name, e.g. `local` or `jive`.
    pub service: String,
    /// Whether the account yields org-wide audit activity.
    pub admin: bool,
    /// Connection config (`base_url`, write-only `credentials`, connector fields; `local`:
    /// `{"path": "/srv/shared"}`).
    pub config: Value,
}

/// The body of `POST .../subscriptions`; [`NewSubscription::default`] (an empty body) creates
/// an active `changes` subscription.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NewSubscription {
    /// Whether monitoring starts active (server default: `true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// `changes` (server default), `crawl` or `analytics`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_type: Option<SubscriptionType>,
    /// Resources to monitor, where the service supports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitored_resources: Option<Vec<MonitoredResource>>,
    /// Become the account's default (server default: if it has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
}

/// What a List Activity request asks for: the stream after a cursor, or a time range.
///
/// A range's answers carry cursors bound to the range: follow one with
/// [`Query::after`] alone (the server refuses a cursor combined with `from`/`until`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// A cursor from an earlier page (or `after-auth`); absent: from the stream's start.
    pub cursor: Option<String>,
    /// Inclusive start of a time range of activity timestamps.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive end of the time range (only with `from`).
    pub until: Option<DateTime<Utc>>,
    /// Activities per page, 1..=1000 (server default 1000).
    pub page_size: Option<u32>,
}

impl Query {
    /// The stream from its start.
    pub fn start() -> Self {
        Query::default()
    }

    /// What follows `cursor` (a stream cursor or a range's bound cursor).
    pub fn after(cursor: impl Into<String>) -> Self {
        Query {
            cursor: Some(cursor.into()),
            ..Query::default()
        }
    }

    /// Activity with a timestamp in `[from, until)` (`until` absent: open-ended), in
    /// (timestamp, sequence) order.
    pub fn range(from: DateTime<Utc>, until: Option<DateTime<Utc>>) -> Self {
        Query {
            from: Some(from),
            until,
            ..Query::default()
        }
    }

    /// The same query with `page_size` activities per page.
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.page_size = Some(page_size);
        self
    }

    /// The query string parameters.
    pub(crate) fn params(&self) -> Vec<(&'static str, String)> {
        let mut params = Vec::with_capacity(4);
        if let Some(cursor) = &self.cursor {
            params.push(("cursor", cursor.clone()));
        }
        if let Some(from) = &self.from {
            params.push(("from", tidemark_model::time::format(from)));
        }
        if let Some(until) = &self.until {
            params.push(("until", tidemark_model::time::format(until)));
        }
        if let Some(page_size) = self.page_size {
            params.push(("page_size", page_size.to_string()));
        }
        params
    }
}

/// One page of List Activity.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ActivityPage {
    /// The activity: in sequence order, or for a range in (timestamp, sequence) order.
    pub objects: Vec<Activity>,
    /// The position after `objects`: keep it and pass it as [`Query::after`] next time, also
    /// when `objects` is empty.
    pub cursor: String,
    /// Activities in `objects`.
    pub count: u64,
    /// Activities currently retained for the subscription.
    pub total: u64,
    /// Range answers only: the time before which the subscription's stream is complete (a
    /// range ending at or before it never gains activity); `None` for stream answers and
    /// when the connector cannot say.
    #[serde(default, with = "tidemark_model::time::iso_opt")]
    pub watermark: Option<DateTime<Utc>>,
}

/// A whole time range read to its end (see [`crate::Client::read_range`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RangeRead {
    /// Every activity in the range, in (timestamp, sequence) order.
    pub activities: Vec<Activity>,
    /// The range's cursor after the last activity: what follows it later, if anything.
    pub cursor: String,
    /// The watermark of the last page read.
    pub watermark: Option<DateTime<Utc>>,
}

/// One page of a list of objects (accounts, subscriptions).
#[derive(Debug, Deserialize)]
pub(crate) struct ObjectList<T> {
    pub objects: Vec<T>,
    #[serde(default)]
    pub next_page: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_references_parse_numbers_and_their_alias_only() {
        assert_eq!("12".parse::<AccountRef>(), Ok(AccountRef::Id(12)));
        assert_eq!("me".parse::<AccountRef>(), Ok(AccountRef::Me));
        assert_eq!(
            "default".parse::<SubscriptionRef>(),
            Ok(SubscriptionRef::Default)
        );
        for bad in ["", "0", "-3", "default", "1.5", "x"] {
            let error = bad.parse::<AccountRef>().expect_err(bad);
            assert!(error.to_string().contains("or `me`"), "{error}");
        }
        assert!("me".parse::<SubscriptionRef>().is_err());
        assert_eq!(SubscriptionRef::Id(7).to_string(), "7");
        assert_eq!(AccountRef::Me.to_string(), "me");
    }

    #[test]
    fn test_query_params_write_iso_times_with_micros() {
        let from = tidemark_model::time::parse("2026-01-31T12:00:00.5+01:00").expect("time");
        let params = Query::range(from, None).page_size(10).params();
        assert_eq!(
            params,
            [
                ("from", "2026-01-31T11:00:00.500000Z".to_owned()),
                ("page_size", "10".to_owned())
            ]
        );
        assert_eq!(Query::after("c1").params(), [("cursor", "c1".to_owned())]);
    }

    #[test]
    fn test_a_stream_page_without_watermark_parses() {
        let page: ActivityPage = serde_json::from_str(
            r#"{"objects":[],"cursor":"c","count":0,"total":3,"type":"object_list","api":"activity"}"#,
        )
        .expect("page");
        assert_eq!(page.watermark, None);
        let page: ActivityPage = serde_json::from_str(
            r#"{"objects":[],"cursor":"c","count":0,"total":3,"watermark":"2026-01-01T00:00:00.000001Z"}"#,
        )
        .expect("page");
        assert_eq!(page.watermark.map(|w| w.timestamp_subsec_micros()), Some(1));
    }
}
