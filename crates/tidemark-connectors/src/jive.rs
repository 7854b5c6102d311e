//! The `jive` connector: Jive (REST v3) has no event stream, so one is rebuilt by polling two
//! endpoints, as seed 001 describes.
//!
//! - **Contents**: `GET /contents?filter=updated(afterDate,beforeDate)&sort=latestActivityAsc`
//!   lists content objects modified in a window (both bounds inclusive), oldest first.
//!   (Seed 001 writes the filter `modificationDate(beforeDate, afterDate)`; the v3 reference
//!   spells it `updated(...)`, earlier date first, which is what is sent.)
//! - **Deleted contents**: `GET /deletedObjects/contents?filter=since(afterDate)&sort=eventDateAsc`
//!   lists deletions on or after a time. It has no upper bound, so items after the window's
//!   `beforeDate` are cut here and emitted by a later poll.
//!
//! # Checkpoint
//!
//! Two internal positions, one per endpoint, each a tie-safe `(timestamp, ids at that
//! timestamp)` pair ([`crate::feed::Position`]), never "last timestamp + 1 ms"; the boundary
//! timestamp is re-read inclusively and the ids already emitted there are dropped. Both are cut at
//! one high-water mark, the window's `beforeDate` (now less `safety_lag_seconds`, fixed for the
//! whole window however many pages it takes), so a later poll never emits an event older than
//! one already emitted (seed 001's `t3 < t4` example). Within a page, the two feeds are merged by
//! timestamp, and only up to the oldest "last timestamp" of a feed that has more pages, so no
//! not-yet-fetched item of one feed can be older than an emitted item of the other.
//!
//! Compact JSON, version 1:
//!
//! ```text
//! {"v":1,"contents":{"ts":1430954190594,"ids":["1234"]},"deleted":{"ts":...},
//!  "covered":1430954100000,"window":{"before":1430954400000,"contents_done":false,"deleted_done":true}}
//! ```
//!
//! `covered`: both feeds are complete up to this time (the last finished window's `beforeDate`).
//! `window`: the window being paged through, if any. Each request starts at the position's
//! timestamp and drops the ties already emitted there, so a list that shifted (an item
//! modified, deleted, or indexed late meanwhile) never makes it skip one. Only a tie group
//! larger than a page is entered with `startIndex` at the last emitted item, anchored: when that
//! item is no longer where it was, the group is re-read from its start.
//!
//! A first poll (no checkpoint) starts at the subscription's `created` time: what changes after
//! tracking began is reported, nothing before.
//!
//! # Mapping
//!
//! Kloudless' Jive connector is storage-oriented: every content object (document, file,
//! discussion, blog post, ...) is a `file` in the `storage` API; its Jive type is kept in
//! `target.jive_type` and the full object in `raw.object`.
//!
//! | Jive | `event_category` | `event_type` | `event_subtype` | v1 `type` | `timestamp` | `actor` |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | content with `published == updated` | `storage` | `add` | `unknown` | `add` | `updated` | `author` |
//! | content with `updated` later than `published` | `storage` | `update` | `unknown` | `update` | `updated` | `author` |
//! | deletedObject | `storage` | `delete` | `unknown` | `delete` | `eventDate` | `null` (Jive does not say who) |
//!
//! `target` is `{"id", "raw_id", "name" (subject), "type": "file", "api": "storage",
//! "jive_type", "created" (published), "modified" (updated), "parent" (parentPlace), "owner"
//! (author), "web_url" (resources.html)}`; a delete's target has only `id`, `raw_id`, `type`,
//! `api` and `jive_type`. `actor` is `{"id", "name" (displayName), "email" (primary), "type":
//! "user", "api": "team"}`. Activity ids: `<content id>@<updated ms>` for adds and updates,
//! `deleted:<deletedObject id>` for deletes: the same upstream change always gets the same id.
//!
//! # Limits
//!
//! - Polling sees states, not events: two edits of one item between polls are one `update`
//!   (the later); an item created and edited between polls is an `update`.
//! - Jive's author is the content's author, not necessarily who made the change.
//! - Items that become visible in the API later than `safety_lag_seconds` after their
//!   timestamp are still emitted (positions never move past an item unseen), but may come after
//!   a newer delete.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, TimeZone as _, Utc};
use serde_json::{json, Value};

use crate::feed::{FeedPage, FeedsCheckpoint, Item, Position, Window};
use crate::http::{self, Credentials};
use crate::{Capabilities, Checkpoint, Connector, ConnectorError, PollContext, PollOutcome};
use tidemark_model::{Activity, EventCategory, EventSubtype, EventType};

/// Service name.
pub const SERVICE: &str = "jive";

/// Default time between polls (seed 001: "every 5 minutes").
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(300);

/// Default `safety_lag_seconds`: how far behind now a window ends, for items Jive indexes late.
pub const DEFAULT_SAFETY_LAG: Duration = Duration::from_secs(30);

/// Largest page Jive serves (`count` is capped at 100).
pub const MAX_PAGE_SIZE: u64 = 100;

/// Jive prefixes every JSON body with this line (a guard against JSON hijacking).
const JSON_PREFIX: &str = "throw 'allowIllegalResourceCall is false.';";

/// Most requests one feed may spend stepping over already-emitted ties in one poll.
const MAX_TIE_PAGES: usize = 10_000;

/// Account config of the `jive` connector.
///
/// ```json
/// {"base_url": "https://community.example.com/api/core/v3",
///  "credentials": {"username": "svc", "password": "..."},
///  "poll_interval_seconds": 300, "safety_lag_seconds": 30, "page_size": 100,
///  "content_types": ["document", "file"]}
/// ```
#[derive(Debug, Clone)]
pub struct JiveConfig {
    /// The community's API root, e.g. `"https://community.example.com/api/core/v3"` (there is
    /// no global default: every Jive community has its own host).
    pub base_url: String,
    /// `{"token": "..."}` (OAuth bearer) or `{"username": "...", "password": "..."}` (Basic).
    pub credentials: Credentials,
    /// Items per request, 1..=100 (default 100). Example: `50`.
    pub page_size: u64,
    /// How far behind now a poll window ends (`safety_lag_seconds`, 0..=3600, default 30), so
    /// items Jive indexes a little late still fall inside a later window in order. Example: `30`.
    pub safety_lag: Duration,
    /// Only these Jive content types (`filter=type(...)`); empty: all. Example: `["document"]`.
    pub content_types: Vec<String>,
}

impl JiveConfig {
    /// Parses and checks an account config.
    ///
    /// # Errors
    /// [`ConnectorError::BadConfig`] saying what is wrong.
    pub fn from_value(config: &Value) -> Result<Self, ConnectorError> {
        http::deny_unknown_keys(
            SERVICE,
            config,
            &[
                "base_url",
                "credentials",
                "poll_interval_seconds",
                "safety_lag_seconds",
                "page_size",
                "content_types",
            ],
        )?;
        let content_types = match config.get("content_types") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item.as_str() {
                    Some(text)
                        if !text.is_empty()
                            && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                    {
                        Ok(text.to_owned())
                    }
                    _ => Err(ConnectorError::BadConfig(format!(
                        "`content_types` must list Jive type names such as \"document\", got {item}"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(ConnectorError::BadConfig(format!(
                    "`content_types` must be a list of Jive type names, got {other}"
                )))
            }
        };
        Ok(JiveConfig {
            base_url: http::base_url(config, None)?,
            credentials: Credentials::from_config(config, true)?,
            page_size: http::optional_u64(config, "page_size", 1..=MAX_PAGE_SIZE)?
                .unwrap_or(MAX_PAGE_SIZE),
            safety_lag: http::optional_u64(config, "safety_lag_seconds", 0..=3600)?
                .map_or(DEFAULT_SAFETY_LAG, Duration::from_secs),
            content_types,
        })
    }
}

/// Builds the connector for one account's config (the registry's entry).
///
/// # Errors
/// [`ConnectorError::BadConfig`].
pub fn build(config: &Value) -> Result<Arc<dyn Connector>, ConnectorError> {
    Ok(Arc::new(JiveConnector::new(JiveConfig::from_value(
        config,
    )?)?))
}

/// The Jive connector bound to one account.
#[derive(Debug)]
pub struct JiveConnector {
    config: JiveConfig,
    client: reqwest::Client,
}

/// Which of the two endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Contents,
    Deleted,
}

impl Feed {
    /// Feed names in the checkpoint, in merge rank order (content changes before deletions at
    /// the same millisecond).
    const NAMES: [&'static str; 2] = ["contents", "deleted"];

    fn name(self) -> &'static str {
        match self {
            Feed::Contents => "jive contents",
            Feed::Deleted => "jive deleted contents",
        }
    }
}

impl JiveConnector {
    /// A connector for `config`.
    ///
    /// # Errors
    /// [`ConnectorError::Transient`] if no HTTP client can be built.
    pub fn new(config: JiveConfig) -> Result<Self, ConnectorError> {
        Ok(JiveConnector {
            config,
            client: http::client()?,
        })
    }

    async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
        what: &str,
    ) -> Result<Value, ConnectorError> {
        let request = self
            .client
            .get(format!("{}{path}", self.config.base_url))
            .query(query)
            .header(reqwest::header::ACCEPT, "application/json");
        let body = http::send(self.config.credentials.apply(request), what).await?;
        parse_body(&body, what)
    }

    /// One request of a feed: items at or after `after` (and, for contents, at or before
    /// `before`), from `start`. Returns the mapped items and whether Jive has a next page.
    async fn list(
        &self,
        feed: Feed,
        account: i64,
        after: i64,
        before: i64,
        start: usize,
    ) -> Result<(Vec<Item>, bool), ConnectorError> {
        let mut query = vec![
            ("startIndex", start.to_string()),
            ("count", self.config.page_size.to_string()),
        ];
        let path = match feed {
            Feed::Contents => {
                query.push((
                    "filter",
                    format!("updated({},{})", jive_date(after), jive_date(before)),
                ));
                query.push(("sort", "latestActivityAsc".to_owned()));
                query.push(("fields", "@all".to_owned()));
                "/contents"
            }
            Feed::Deleted => {
                query.push(("filter", format!("since({})", jive_date(after))));
                query.push(("sort", "eventDateAsc".to_owned()));
                "/deletedObjects/contents"
            }
        };
        if !self.config.content_types.is_empty() {
            query.push((
                "filter",
                format!("type({})", self.config.content_types.join(",")),
            ));
        }
        let body = self.get(path, &query, feed.name()).await?;
        let list = body.get("list").and_then(Value::as_array).ok_or_else(|| {
            ConnectorError::BadResponse(format!(
                "{}: the response has no `list` array",
                feed.name()
            ))
        })?;
        let items = list
            .iter()
            .map(|object| match feed {
                Feed::Contents => content_item(object, account),
                Feed::Deleted => deleted_item(object, account),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let has_next = body
            .pointer("/links/next")
            .and_then(Value::as_str)
            .is_some_and(|next| !next.is_empty());
        Ok((items, has_next))
    }

    /// The next page of new items of one feed after `position`, up to `before`.
    async fn fetch(
        &self,
        feed: Feed,
        account: i64,
        position: &Position,
        before: i64,
    ) -> Result<FeedPage, ConnectorError> {
        // The query re-reads the tie group at `position.ts` from its start and drops what was
        // emitted, which is safe whatever moved in the group meanwhile. Only a group larger
        // than a page is entered at the last emitted item instead (an anchor: if it is still
        // there, nothing before it moved; if not, the group is re-read from its start).
        let page = usize::try_from(self.config.page_size).unwrap_or(usize::MAX);
        let hint = if position.ids.len() > page {
            position.ids.len() - 1
        } else {
            0
        };
        let mut start = hint;
        let mut anchored = hint == 0;
        for _ in 0..MAX_TIE_PAGES {
            let (list, has_next) = self.list(feed, account, position.ts, before, start).await?;
            if !anchored {
                let holds = list
                    .first()
                    .is_some_and(|item| item.ts == position.ts && position.ids.contains(&item.key));
                anchored = true;
                if !holds {
                    tracing::debug!(
                        feed = feed.name(),
                        "tie group changed since the last poll; re-reading it from its start"
                    );
                    start = 0;
                    continue;
                }
            }
            let fetched = list.len();
            let mut items = Vec::with_capacity(fetched);
            let mut cut = false;
            for item in list {
                if item.ts > before {
                    cut = true;
                    break;
                }
                if position.is_new(item.ts, &item.key) {
                    items.push(item);
                }
            }
            let exhausted = cut || !has_next || fetched == 0;
            if !items.is_empty() || exhausted {
                return Ok(FeedPage {
                    items,
                    exhausted,
                    resume_at: None,
                });
            }
            // A whole page of ties already emitted: step over it.
            start += fetched;
        }
        Err(ConnectorError::BadResponse(format!(
            "{}: more than {MAX_TIE_PAGES} pages of items with one timestamp",
            feed.name()
        )))
    }
}

#[async_trait]
impl Connector for JiveConnector {
    fn service(&self) -> &'static str {
        SERVICE
    }

    fn default_poll_interval(&self) -> Duration {
        DEFAULT_POLL_INTERVAL
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            time_range: true,
            ..Capabilities::default()
        }
    }

    fn monitored_resource_kind(&self) -> (Option<&'static str>, Option<&'static str>) {
        (Some("storage"), Some("folder"))
    }

    async fn validate(&self) -> Result<(), ConnectorError> {
        let query = [("count", "1".to_owned()), ("fields", "id".to_owned())];
        self.get("/contents", &query, "jive contents")
            .await
            .map(|_| ())
    }

    fn watermark(&self, checkpoint: &Checkpoint) -> Option<DateTime<Utc>> {
        FeedsCheckpoint::watermark_of(checkpoint)
    }

    async fn fetch_range(
        &self,
        context: &PollContext,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<PollOutcome, ConnectorError> {
        let (state, window) =
            FeedsCheckpoint::range_step(SERVICE, checkpoint, from, until, &Feed::NAMES)?;
        self.step(context.account.id, state, window).await
    }

    async fn poll(
        &self,
        context: &PollContext,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<PollOutcome, ConnectorError> {
        let state = match checkpoint {
            Some(checkpoint) => FeedsCheckpoint::parse(SERVICE, checkpoint, &Feed::NAMES)?,
            None => FeedsCheckpoint::starting_at(
                context.subscription.created.timestamp_millis(),
                &Feed::NAMES,
            ),
        };
        let lag = i64::try_from(self.config.safety_lag.as_millis()).unwrap_or(i64::MAX);
        let window = state.window(Utc::now().timestamp_millis(), lag);
        self.step(context.account.id, state, window).await
    }
}

impl JiveConnector {
    /// One page of both feeds within `window`, merged, and the checkpoint after it.
    async fn step(
        &self,
        account: i64,
        mut state: FeedsCheckpoint,
        window: Window,
    ) -> Result<PollOutcome, ConnectorError> {
        let fetch = |feed: Feed, name: &str| {
            let done = window.done.contains(name);
            let position = state.position(name);
            let before = window.before;
            async move {
                if done {
                    return Ok(FeedPage::done());
                }
                self.fetch(feed, account, &position, before).await
            }
        };
        let (contents, deleted) = tokio::try_join!(
            fetch(Feed::Contents, Feed::NAMES[0]),
            fetch(Feed::Deleted, Feed::NAMES[1])
        )?;
        let (activities, more) = state.merge(
            window,
            vec![(Feed::NAMES[0], contents), (Feed::NAMES[1], deleted)],
        );
        Ok(PollOutcome {
            activities,
            checkpoint: state.encode()?,
            more,
        })
    }
}

/// Strips Jive's `throw '...';` guard and parses the JSON.
fn parse_body(body: &[u8], what: &str) -> Result<Value, ConnectorError> {
    let text = body.trim_ascii_start();
    let text = text.strip_prefix(JSON_PREFIX.as_bytes()).unwrap_or(text);
    http::parse_json(text, what)
}

/// A date as Jive writes and reads it: `2015-05-06T23:16:30.594+0000`.
fn jive_date(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(at) => at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string(),
        None => "1970-01-01T00:00:00.000+0000".to_owned(),
    }
}

/// Reads a Jive date (`+0000` offsets, or RFC 3339).
fn parse_jive_date(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

fn required_text<'a>(object: &'a Value, key: &str, what: &str) -> Result<&'a str, ConnectorError> {
    match object.get(key) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        _ => Err(ConnectorError::BadResponse(format!(
            "{what} without a `{key}`: {}",
            abbreviated(object)
        ))),
    }
}

fn required_date(object: &Value, key: &str, what: &str) -> Result<DateTime<Utc>, ConnectorError> {
    let text = required_text(object, key, what)?;
    parse_jive_date(text).ok_or_else(|| {
        ConnectorError::BadResponse(format!("{what} has an unreadable `{key}` {text:?}"))
    })
}

fn abbreviated(object: &Value) -> String {
    let text = object.to_string();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn content_item(object: &Value, account: i64) -> Result<Item, ConnectorError> {
    let what = "jive content";
    let id = match object.get("id") {
        Some(Value::Number(number)) => number.to_string(),
        _ => required_text(object, "id", what)?.to_owned(),
    };
    let updated = required_date(object, "updated", what)?;
    let published = object
        .get("published")
        .and_then(Value::as_str)
        .and_then(parse_jive_date);
    let event_type = if published == Some(updated) {
        EventType::Add
    } else {
        EventType::Update
    };
    let ts = updated.timestamp_millis();
    let person = object.get("author").filter(|author| author.is_object());
    let mut activity = Activity::new(
        format!("{id}@{ts}"),
        account,
        EventCategory::Storage,
        event_type,
        EventSubtype::Unknown,
    );
    activity.timestamp = Some(updated);
    activity.target = Some(json!({
        "id": id,
        "raw_id": id,
        "name": object.get("subject").cloned().unwrap_or(Value::Null),
        "type": "file",
        "api": "storage",
        "jive_type": object.get("type").cloned().unwrap_or(Value::Null),
        "created": published.map(iso),
        "modified": iso(updated),
        "parent": object.get("parentPlace").filter(|p| p.is_object()).map(|place| json!({
            "id": place.get("id").cloned().unwrap_or(Value::Null),
            "name": place.get("name").cloned().unwrap_or(Value::Null),
            "type": "folder",
        })),
        "owner": person.map(|author| json!({
            "id": author.get("id").cloned().unwrap_or(Value::Null),
            "name": author.get("displayName").cloned().unwrap_or(Value::Null),
        })),
        "web_url": object.pointer("/resources/html/ref").cloned().unwrap_or(Value::Null),
    }));
    activity.actor = person.map(|author| {
        let emails = author.get("emails").and_then(Value::as_array);
        let email = emails.and_then(|emails| {
            emails
                .iter()
                .find(|email| email.get("primary").and_then(Value::as_bool) == Some(true))
                .or_else(|| emails.first())
                .and_then(|email| email.get("value").cloned())
        });
        json!({
            "id": author.get("id").cloned().unwrap_or(Value::Null),
            "name": author.get("displayName").cloned().unwrap_or(Value::Null),
            "email": email,
            "type": "user",
            "api": "team",
        })
    });
    activity.raw = Some(json!({ "object": object }));
    Ok(Item {
        ts,
        key: id,
        activity,
    })
}

fn deleted_item(object: &Value, account: i64) -> Result<Item, ConnectorError> {
    let what = "jive deletedObject";
    let id = required_text(object, "id", what)?.to_owned();
    let at = required_date(object, "eventDate", what)?;
    let object_id = match object.get("objectId") {
        Some(Value::Number(number)) => number.to_string(),
        _ => required_text(object, "objectId", what)?.to_owned(),
    };
    let mut activity = Activity::new(
        format!("deleted:{id}"),
        account,
        EventCategory::Storage,
        EventType::Delete,
        EventSubtype::Unknown,
    );
    activity.timestamp = Some(at);
    activity.target = Some(json!({
        "id": object_id,
        "raw_id": object_id,
        "type": "file",
        "api": "storage",
        "jive_type": object.get("objectType").cloned().unwrap_or(Value::Null),
    }));
    activity.raw = Some(json!({ "object": object }));
    Ok(Item {
        ts: at.timestamp_millis(),
        key: id,
        activity,
    })
}

#[cfg(test)]
pub(crate) mod tests;
