//! The `onna` connector: Onna's two audit-style logs (seed 002), polled as two feeds of one
//! stream.
//!
//! - **`@activityLog`** (`GET ?epoch_from=S&epoch_to=S`, Unix **seconds**, both inclusive):
//!   user interactions with the Onna UI. The answer is a bare array of Elasticsearch hits,
//!   newest first, with no paging: everything in the range (up to the index's result window,
//!   `max_hits`). Timestamps are whole seconds, so many records share one: ties are the norm.
//! - **`@auditLog`** (`POST`, JSON body `{"size", "sort", "advanced"}` with a JSON-logic filter
//!   on `@timestamp` in epoch **milliseconds**, strict `>` / `<` bounds): CRUD activity, sorted
//!   ascending here and paged by `size`.
//!
//! # Checkpoint
//!
//! One tie-safe position per log (`(timestamp, ids at that timestamp)`, [`crate::feed`]), both
//! cut at one high-water mark (now less `safety_lag_seconds`), merged by time like Jive's two
//! feeds: a later poll never emits a record older than one already emitted. Each query re-reads
//! its boundary timestamp inclusively (`epoch_from` = the position's second; `> ts - 1` for the
//! audit log) and drops the ids already emitted there, so equal timestamps across polls or pages
//! are neither lost nor repeated.
//!
//! - Activity log: when a range holds `max_hits` records or more (the answer may be
//!   truncated, keeping the newest), the range is halved until it is not; a single second with
//!   that many records is an error for the poll (nothing is skipped). At most
//!   [`MAX_ACTIVITIES_PER_POLL`] records are emitted per poll; the rest follow with `more`.
//! - Audit log: pages of `page_size` new records, keyed by the position (the `size` asked for
//!   adds the ties already emitted at the boundary, which come first); a page made entirely of
//!   already-emitted ties is asked again with a doubled `size` (up to `max_hits`).
//!
//! A first poll starts at the beginning of the second of the subscription's `created` time
//! (the activity log cannot tell earlier or later within that second; a record of it is
//! reported).
//!
//! # Mapping
//!
//! Both logs: `actor` `{"id", "email": payload.user, "name": payload.user_name, "type":
//! "user", "api": "team"}`, `session` `{"type": "login", "id": payload.session-id, "ip":
//! payload.ip, "user_agent": payload.user_agent}`, `raw` `{"object": hit}`, `stream`
//! `activityLog` or `auditLog`, ids `activity:<_id>` / `audit:<_id>`.
//!
//! | `@activityLog` action | `event_category` | `event_type` | `event_subtype` |
//! | --- | --- | --- | --- |
//! | `login` | `authentication` | `access` | `login` |
//! | `logout` | `authentication` | `access` | `logout` |
//! | `sharing`, `sharing-add-user` | `collaboration` | `add` | `permission_create` |
//! | `sharing-update-sharing` | `collaboration` | `update` | `permission_update` |
//! | `confirm-user-deletion` | `team` | `delete` | `remove_user` |
//! | other `confirm-*deletion` | `object` | `delete` | `unknown` |
//! | `group-added` | `team` | `add` | `unknown` |
//! | `export-created`, `add-*-datasource` | `object` | `add` | `unknown` |
//! | `search*`, `advanced-search*`, `nav-menu-*`, `right-toolbar-*`, `exports-*` | `object` | `access` | `unknown` |
//! | anything else (`tracking-session`, ...) | `unknown` | `unknown` | `unknown` |
//!
//! `target` of an activity-log record: `{"id": route, "type": "page", "api": "object", "route",
//! "element"}`.
//!
//! | `@auditLog` record | `event_category` | `event_type` | `event_subtype` |
//! | --- | --- | --- | --- |
//! | `payload.log_type` present and not `success` (Datasource Failed) | `object` | `error` | `unknown` |
//! | message "... shared with ..." or action `share` | `collaboration` | `add` | `permission_create` |
//! | message "Resource visited" or action `visit` / `view` | `object` | `access` | `preview` |
//! | message "Custom field change" | `object` | `update` | `property_update` |
//! | action `add` / `create` (Datasource Added, Created Workspace) | `object` | `add` | `unknown` |
//! | action `delete` / `remove` (Resource removed, Deleted Workspace) | `object` | `delete` | `unknown` |
//! | action `update` / `modify` / `edit` | `object` | `update` | `unknown` |
//! | anything else | `object` | `unknown` | `unknown` |
//!
//! `target` of an audit record: `{"id": payload.request_url, "name": message, "type":
//! payload.category, "api": "object", "code": payload.code}`.
//!
//! # Limits
//!
//! - Neither log documents paging or ordering guarantees beyond what is used here; a record
//!   indexed later than `safety_lag_seconds` after its timestamp is still emitted (positions
//!   never pass a record unseen) but may follow a newer record of the other log.
//! - The activity log's `@timestamp` is whole seconds: records of one second are ordered by id.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone as _, Utc};
use serde_json::{json, Value};

use crate::feed::{FeedPage, FeedsCheckpoint, Item, Position, Window};
use crate::http::{self, Credentials};
use crate::{Capabilities, Checkpoint, Connector, ConnectorError, PollContext, PollOutcome};
use tidemark_model::{Activity, EventCategory, EventSubtype, EventType};

/// Service name.
pub const SERVICE: &str = "onna";

/// Default time between polls.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(300);

/// Default `safety_lag_seconds`: how far behind now a window ends (Onna indexes asynchronously).
pub const DEFAULT_SAFETY_LAG: Duration = Duration::from_secs(30);

/// Elasticsearch's default result window: the most hits one answer is assumed to carry.
pub const DEFAULT_MAX_HITS: u64 = 10_000;

/// Default audit-log page (`size`).
pub const DEFAULT_PAGE_SIZE: u64 = 500;

/// Most activity-log records emitted per poll; the rest follow with `more: true`.
pub const MAX_ACTIVITIES_PER_POLL: usize = 1000;

/// Feed names in the checkpoint, in merge rank order.
const FEEDS: [&str; 2] = ["activity", "audit"];

/// Account config of the `onna` connector.
///
/// ```json
/// {"account": "ACMECORP", "credentials": {"token": "<service-account JWT>"},
///  "poll_interval_seconds": 300, "safety_lag_seconds": 30, "page_size": 500}
/// ```
#[derive(Debug, Clone)]
pub struct OnnaConfig {
    /// The account's API root: `base_url` as given (e.g.
    /// `"https://enterprise.onna.com/ACMECORP/ACMECORP"`), else built from `account`.
    pub base_url: String,
    /// `{"token": "..."}`: the service account's bearer token.
    pub credentials: Credentials,
    /// Audit-log records per request, 1..=10000 (default 500). Example: `500`.
    pub page_size: u64,
    /// The most hits Onna returns in one answer, 1..=100000 (`max_hits`, default 10000).
    pub max_hits: u64,
    /// How far behind now a poll window ends (`safety_lag_seconds`, 0..=3600, default 30).
    pub safety_lag: Duration,
}

impl OnnaConfig {
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
                "account",
                "credentials",
                "poll_interval_seconds",
                "safety_lag_seconds",
                "page_size",
                "max_hits",
            ],
        )?;
        let default = match config.get("account") {
            None | Some(Value::Null) => None,
            Some(Value::String(account))
                if !account.is_empty()
                    && account
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
            {
                Some(format!("https://enterprise.onna.com/{account}/{account}"))
            }
            Some(other) => {
                return Err(ConnectorError::BadConfig(format!(
                    "`account` must be an Onna account name such as \"ACMECORP\", got {other}"
                )))
            }
        };
        let base_url = match (config.get("base_url"), default) {
            (None | Some(Value::Null), None) => {
                return Err(ConnectorError::BadConfig(
                    "onna config needs `account` (e.g. \"ACMECORP\") or `base_url` (e.g. \
                     \"https://enterprise.onna.com/ACMECORP/ACMECORP\")"
                        .to_owned(),
                ))
            }
            (_, default) => http::base_url(config, default.as_deref())?,
        };
        let max_hits =
            http::optional_u64(config, "max_hits", 1..=100_000)?.unwrap_or(DEFAULT_MAX_HITS);
        Ok(OnnaConfig {
            base_url,
            credentials: Credentials::from_config(config, false)?,
            page_size: http::optional_u64(config, "page_size", 1..=10_000)?
                .unwrap_or(DEFAULT_PAGE_SIZE)
                .min(max_hits),
            max_hits,
            safety_lag: http::optional_u64(config, "safety_lag_seconds", 0..=3600)?
                .map_or(DEFAULT_SAFETY_LAG, Duration::from_secs),
        })
    }
}

/// Builds the connector for one account's config (the registry's entry).
///
/// # Errors
/// [`ConnectorError::BadConfig`].
pub fn build(config: &Value) -> Result<Arc<dyn Connector>, ConnectorError> {
    Ok(Arc::new(OnnaConnector::new(OnnaConfig::from_value(
        config,
    )?)?))
}

/// The Onna connector bound to one account.
#[derive(Debug)]
pub struct OnnaConnector {
    config: OnnaConfig,
    client: reqwest::Client,
}

impl OnnaConnector {
    /// A connector for `config`.
    ///
    /// # Errors
    /// [`ConnectorError::Transient`] if no HTTP client can be built.
    pub fn new(config: OnnaConfig) -> Result<Self, ConnectorError> {
        Ok(OnnaConnector {
            config,
            client: http::client()?,
        })
    }

    /// `GET @activityLog` for whole seconds `[from, to]`, as items oldest first.
    async fn activity_log(
        &self,
        account: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<Item>, ConnectorError> {
        let what = "onna @activityLog";
        let request = self
            .client
            .get(format!("{}/@activityLog", self.config.base_url))
            .query(&[("epoch_from", from), ("epoch_to", to)])
            .header(reqwest::header::ACCEPT, "application/json");
        let body = http::send(self.config.credentials.apply(request), what).await?;
        let hits = http::parse_json(&body, what)?;
        let hits = hits.as_array().ok_or_else(|| {
            ConnectorError::BadResponse(format!("{what}: expected an array of hits"))
        })?;
        let mut items = hits
            .iter()
            .map(|hit| activity_item(hit, account))
            .collect::<Result<Vec<_>, _>>()?;
        items.sort_by(|a, b| (a.ts, &a.key).cmp(&(b.ts, &b.key)));
        Ok(items)
    }

    /// `POST @auditLog`: up to `size` records with `ts <= @timestamp <= before`, oldest first.
    async fn audit_log(
        &self,
        account: i64,
        ts: i64,
        before: i64,
        size: u64,
    ) -> Result<Vec<Item>, ConnectorError> {
        let what = "onna @auditLog";
        let body = json!({
            "size": size,
            "sort": {"field": "@timestamp", "direction": "asc"},
            "advanced": {"and": [
                {">": [{"var": "@timestamp"}, ts.saturating_sub(1)]},
                {"<": [{"var": "@timestamp"}, before.saturating_add(1)]},
            ]},
        });
        let request = self
            .client
            .post(format!("{}/@auditLog", self.config.base_url))
            .json(&body)
            .header(reqwest::header::ACCEPT, "application/json");
        let body = http::send(self.config.credentials.apply(request), what).await?;
        let answer = http::parse_json(&body, what)?;
        let hits = answer
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ConnectorError::BadResponse(format!("{what}: the response has no `items` array"))
            })?;
        let mut items = hits
            .iter()
            .map(|hit| audit_item(hit, account))
            .collect::<Result<Vec<_>, _>>()?;
        // Sorted ascending by the upstream; made deterministic for ties.
        items.sort_by(|a, b| (a.ts, &a.key).cmp(&(b.ts, &b.key)));
        Ok(items)
    }

    /// The next activity-log records after `position`, up to `before`.
    async fn fetch_activity(
        &self,
        account: i64,
        position: &Position,
        before: i64,
    ) -> Result<FeedPage, ConnectorError> {
        let from = position.ts.div_euclid(1000);
        let end = before.div_euclid(1000);
        let mut to = end;
        let items = loop {
            let items = self.activity_log(account, from, to).await?;
            if (items.len() as u64) < self.config.max_hits {
                break items;
            }
            if to == from {
                return Err(ConnectorError::BadResponse(format!(
                    "onna @activityLog: {} or more records in the second {from}; \
                     raise `max_hits` if the account's index allows more",
                    self.config.max_hits
                )));
            }
            // Possibly truncated (newest kept): halve the range.
            to = from + (to - from) / 2;
        };
        let mut new: Vec<Item> = items
            .into_iter()
            .filter(|item| item.ts <= before && position.is_new(item.ts, &item.key))
            .collect();
        let mut exhausted = to == end;
        if new.len() > MAX_ACTIVITIES_PER_POLL {
            new.truncate(MAX_ACTIVITIES_PER_POLL);
            exhausted = false;
        }
        // A halved range read whole holds nothing new past what is emitted now: the next
        // read may start after it (otherwise it would be read again, forever).
        let resume_at =
            (!exhausted && new.len() < MAX_ACTIVITIES_PER_POLL).then(|| (to + 1) * 1000);
        Ok(FeedPage {
            items: new,
            exhausted,
            resume_at,
        })
    }

    /// The next audit-log records after `position`, up to `before`.
    async fn fetch_audit(
        &self,
        account: i64,
        position: &Position,
        before: i64,
    ) -> Result<FeedPage, ConnectorError> {
        // The query re-reads the boundary millisecond, whose first records are the ones
        // already emitted there: ask for those plus a page.
        let mut size =
            (self.config.page_size + position.ids.len() as u64).min(self.config.max_hits);
        loop {
            let items = self.audit_log(account, position.ts, before, size).await?;
            let full = items.len() as u64 >= size;
            let new: Vec<Item> = items
                .into_iter()
                .filter(|item| item.ts <= before && position.is_new(item.ts, &item.key))
                .collect();
            if !new.is_empty() || !full {
                return Ok(FeedPage {
                    items: new,
                    exhausted: !full,
                    resume_at: None,
                });
            }
            // A full page of ties already emitted: ask for more of them at once.
            if size >= self.config.max_hits {
                return Err(ConnectorError::BadResponse(format!(
                    "onna @auditLog: more than {} records at one millisecond",
                    self.config.max_hits
                )));
            }
            size = (size * 2).min(self.config.max_hits);
        }
    }
}

#[async_trait]
impl Connector for OnnaConnector {
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

    async fn validate(&self) -> Result<(), ConnectorError> {
        let now = Utc::now().timestamp_millis();
        self.audit_log(0, now, now, 1).await.map(|_| ())
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
            FeedsCheckpoint::range_step(SERVICE, checkpoint, from, until, &FEEDS)?;
        self.step(context.account.id, state, window).await
    }

    async fn poll(
        &self,
        context: &PollContext,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<PollOutcome, ConnectorError> {
        let state = match checkpoint {
            Some(checkpoint) => FeedsCheckpoint::parse(SERVICE, checkpoint, &FEEDS)?,
            // From the start of the subscription's second: the activity log only knows
            // whole seconds, and a record of that second may come after tracking began.
            None => FeedsCheckpoint::starting_at(
                context
                    .subscription
                    .created
                    .timestamp()
                    .saturating_mul(1000),
                &FEEDS,
            ),
        };
        let lag = i64::try_from(self.config.safety_lag.as_millis()).unwrap_or(i64::MAX);
        let window = state.window(Utc::now().timestamp_millis(), lag);
        self.step(context.account.id, state, window).await
    }
}

impl OnnaConnector {
    /// One page of both logs within `window`, merged, and the checkpoint after it.
    async fn step(
        &self,
        account: i64,
        mut state: FeedsCheckpoint,
        window: Window,
    ) -> Result<PollOutcome, ConnectorError> {
        let activity_position = state.position(FEEDS[0]);
        let audit_position = state.position(FEEDS[1]);
        let activity = async {
            if window.done.contains(FEEDS[0]) {
                return Ok(FeedPage::done());
            }
            self.fetch_activity(account, &activity_position, window.before)
                .await
        };
        let audit = async {
            if window.done.contains(FEEDS[1]) {
                return Ok(FeedPage::done());
            }
            self.fetch_audit(account, &audit_position, window.before)
                .await
        };
        let (activity, audit) = tokio::try_join!(activity, audit)?;
        let (activities, more) = state.merge(window, vec![(FEEDS[0], activity), (FEEDS[1], audit)]);
        Ok(PollOutcome {
            activities,
            checkpoint: state.encode()?,
            more,
        })
    }
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn field(value: &Value, pointer: &str) -> Value {
    value.pointer(pointer).cloned().unwrap_or(Value::Null)
}

/// The hit's `_id` and its time in epoch ms (`sort[0]`, else `_source.@timestamp`).
fn identity(hit: &Value, what: &str) -> Result<(String, i64), ConnectorError> {
    let bad = |message: String| ConnectorError::BadResponse(format!("{what}: {message}"));
    let id = match hit.get("_id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => return Err(bad(format!("a hit without `_id`: {}", short(hit)))),
    };
    let sort = hit.pointer("/sort/0").and_then(Value::as_i64);
    let ts = match sort {
        Some(ms) => ms,
        None => match hit.pointer("/_source/@timestamp") {
            Some(Value::String(text)) => parse_timestamp(text)
                .ok_or_else(|| bad(format!("hit {id} has an unreadable @timestamp {text:?}")))?,
            Some(Value::Number(number)) => number
                .as_i64()
                .ok_or_else(|| bad(format!("hit {id} has an unreadable @timestamp {number}")))?,
            _ => return Err(bad(format!("hit {id} has neither `sort` nor `@timestamp`"))),
        },
    };
    Ok((id, ts))
}

/// `@timestamp`: epoch millis as a string (activity log) or ISO 8601 (audit log).
fn parse_timestamp(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().or_else(|| {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|at| at.timestamp_millis())
    })
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn actor_and_session(hit: &Value) -> (Option<Value>, Option<Value>) {
    let user = field(hit, "/_source/payload/user");
    let actor = (!user.is_null()).then(|| {
        json!({
            "id": user,
            "email": user,
            "name": field(hit, "/_source/payload/user_name"),
            "type": "user",
            "api": "team",
        })
    });
    let session = json!({
        "type": "login",
        "id": field(hit, "/_source/payload/session-id"),
        "ip": field(hit, "/_source/payload/ip"),
        "user_agent": field(hit, "/_source/payload/user_agent"),
    });
    let empty = ["id", "ip", "user_agent"]
        .iter()
        .all(|key| session[key].is_null());
    (actor, (!empty).then_some(session))
}

fn ms_to_time(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

/// Maps an `@activityLog` action (seed 002's table).
fn activity_event(action: &str) -> (EventCategory, EventType, EventSubtype) {
    use EventCategory as C;
    use EventSubtype as S;
    use EventType as T;
    match action {
        "login" => (C::Authentication, T::Access, S::Login),
        "logout" => (C::Authentication, T::Access, S::Logout),
        "sharing" | "sharing-add-user" => (C::Collaboration, T::Add, S::PermissionCreate),
        "sharing-update-sharing" => (C::Collaboration, T::Update, S::PermissionUpdate),
        "confirm-user-deletion" => (C::Team, T::Delete, S::RemoveUser),
        "group-added" => (C::Team, T::Add, S::Unknown),
        "export-created" => (C::Object, T::Add, S::Unknown),
        action if action.starts_with("confirm-") && action.ends_with("deletion") => {
            (C::Object, T::Delete, S::Unknown)
        }
        action if action.starts_with("add-") && action.ends_with("-datasource") => {
            (C::Object, T::Add, S::Unknown)
        }
        action
            if [
                "search",
                "advanced-search",
                "nav-menu-",
                "right-toolbar-",
                "exports-",
            ]
            .iter()
            .any(|prefix| action.starts_with(prefix)) =>
        {
            (C::Object, T::Access, S::Unknown)
        }
        _ => (C::Unknown, T::Unknown, S::Unknown),
    }
}

/// Maps an `@auditLog` record (action, message, log type).
fn audit_event(
    action: &str,
    message: &str,
    log_type: Option<&str>,
) -> (EventCategory, EventType, EventSubtype) {
    use EventCategory as C;
    use EventSubtype as S;
    use EventType as T;
    let message = message.to_ascii_lowercase();
    if log_type.is_some_and(|log_type| log_type != "success") {
        return (C::Object, T::Error, S::Unknown);
    }
    if action == "share" || message.contains("shared with") {
        return (C::Collaboration, T::Add, S::PermissionCreate);
    }
    if matches!(action, "visit" | "view") || message.starts_with("resource visited") {
        return (C::Object, T::Access, S::Preview);
    }
    if message.starts_with("custom field change") {
        return (C::Object, T::Update, S::PropertyUpdate);
    }
    match action {
        "add" | "create" => (C::Object, T::Add, S::Unknown),
        "delete" | "remove" => (C::Object, T::Delete, S::Unknown),
        "update" | "modify" | "edit" => (C::Object, T::Update, S::Unknown),
        _ => (C::Object, T::Unknown, S::Unknown),
    }
}

fn activity_item(hit: &Value, account: i64) -> Result<Item, ConnectorError> {
    let (id, ts) = identity(hit, "onna @activityLog")?;
    let action = text(hit, "/_source/action").unwrap_or_default();
    let (category, event_type, subtype) = activity_event(action);
    let mut activity = Activity::new(
        format!("activity:{id}"),
        account,
        category,
        event_type,
        subtype,
    );
    activity.timestamp = ms_to_time(ts);
    let route = field(hit, "/_source/payload/route");
    activity.target = Some(json!({
        "id": route,
        "type": "page",
        "api": "object",
        "route": route,
        "element": field(hit, "/_source/payload/element"),
    }));
    (activity.actor, activity.session) = actor_and_session(hit);
    activity.raw = Some(json!({ "object": hit }));
    activity.stream = Some("activityLog".to_owned());
    Ok(Item {
        ts,
        key: id,
        activity,
    })
}

fn audit_item(hit: &Value, account: i64) -> Result<Item, ConnectorError> {
    let (id, ts) = identity(hit, "onna @auditLog")?;
    let action = text(hit, "/_source/action")
        .or_else(|| text(hit, "/_source/payload/action"))
        .unwrap_or_default();
    let message = text(hit, "/_source/message")
        .or_else(|| text(hit, "/_source/payload/message"))
        .unwrap_or_default();
    let log_type = text(hit, "/_source/payload/log_type");
    let (category, event_type, subtype) = audit_event(action, message, log_type);
    let mut activity = Activity::new(
        format!("audit:{id}"),
        account,
        category,
        event_type,
        subtype,
    );
    // The ISO @timestamp has microseconds; `sort` (the order) has milliseconds.
    activity.timestamp = text(hit, "/_source/@timestamp")
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|at| at.with_timezone(&Utc))
        .or_else(|| ms_to_time(ts));
    activity.target = Some(json!({
        "id": field(hit, "/_source/payload/request_url"),
        "name": message,
        "type": field(hit, "/_source/payload/category"),
        "api": "object",
        "code": field(hit, "/_source/payload/code"),
    }));
    (activity.actor, activity.session) = actor_and_session(hit);
    activity.raw = Some(json!({ "object": hit }));
    activity.stream = Some("auditLog".to_owned());
    Ok(Item {
        ts,
        key: id,
        activity,
    })
}

#[cfg(test)]
mod tests;
