//! List Activity (seed 003): a subscription's stream, followed by cursor.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use tidemark_model::{Activity, Cursor, CursorRange, Subscription};
use tidemark_store::{RangePosition, TimeRange};

use super::{resolve_account, resolve_subscription, PathParams};
use crate::error::{ApiError, CommonErrors};
use crate::extract::{truncate, Caller, Params};
use crate::AppState;

/// The `cursor` value that starts after the account was connected. Every subscription's stream
/// begins after its account was connected (a subscription tracks from its creation), so this
/// is the start of the stream.
const AFTER_AUTH: &str = "after-auth";

/// Where a read starts: a position in the stream, or in a time range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After this sequence number of the stream.
    Stream(u64),
    /// Inside a time range, after this position (none: from the range's start).
    Range(TimeRange, Option<RangePosition>),
}

/// Where a stream read starts, from the `cursor` parameter.
///
/// # Errors
/// 400 for a cursor that is malformed, altered, or of another subscription.
pub fn start_position(
    state: &AppState,
    subscription: &Subscription,
    cursor: Option<&str>,
) -> Result<Start, ApiError> {
    let Some(text) = cursor else {
        return Ok(Start::Stream(0));
    };
    if text == AFTER_AUTH {
        return Ok(Start::Stream(0));
    }
    let decoded = Cursor::decode(text, state.store.cursor_key(), subscription.id)
        .map_err(|e| ApiError::invalid(format!("`cursor` `{}`: {e}", truncate(text, 64))))?;
    Ok(match decoded.range {
        None => Start::Stream(decoded.position),
        Some(range) => Start::Range(
            TimeRange {
                from_micros: range.from_micros,
                until_micros: range.until_micros,
            },
            range.at_micros.map(|at| RangePosition {
                occurred_at_micros: at,
                sequence: decoded.position,
            }),
        ),
    })
}

/// Where a stream-only read (v1 events) starts: time-range cursors are refused there.
///
/// # Errors
/// 400 for a bad cursor or one of a time range.
pub fn stream_position(
    state: &AppState,
    subscription: &Subscription,
    cursor: Option<&str>,
) -> Result<u64, ApiError> {
    match start_position(state, subscription, cursor)? {
        Start::Stream(position) => Ok(position),
        Start::Range(..) => Err(ApiError::invalid(
            "`cursor` is the cursor of a time range (`from`/`until`) of List Activity; \
             v1 events follow the stream only",
        )),
    }
}

/// Signs the cursor for `position` and notes it as the subscription's `last_cursor` (unless it
/// already is; see [`crate::cursor_log`]).
pub async fn hand_out_cursor(
    state: &AppState,
    subscription: &Subscription,
    position: u64,
) -> Result<String, ApiError> {
    let cursor = Cursor::new(subscription.id, position).encode(state.store.cursor_key());
    if subscription.last_cursor.as_deref() != Some(cursor.as_str()) {
        state.cursors.record(subscription.id, &cursor, position);
    }
    Ok(cursor)
}

/// Reads `from` / `until` (DESIGN 2.7): ISO 8601, `until` needs `from`, `from` not after
/// `until`, never with `cursor` (a range's cursor carries its range).
fn time_range(params: &Params) -> Result<Option<TimeRange>, ApiError> {
    let parse = |name: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
        params
            .get(name)
            .map(|text| {
                tidemark_model::time::parse(text).map_err(|_| {
                    ApiError::invalid(format!(
                        "`{name}` must be an ISO 8601 timestamp such as 2026-01-31T12:00:00Z, got `{}`",
                        truncate(text, 64)
                    ))
                })
            })
            .transpose()
    };
    let from = parse("from")?;
    let until = parse("until")?;
    if until.is_some() && from.is_none() {
        return Err(ApiError::invalid(
            "`until` must be used together with `from`",
        ));
    }
    if let (Some(from), Some(until)) = (from, until) {
        if from > until {
            return Err(ApiError::invalid("`from` must not be after `until`"));
        }
    }
    if from.is_some() && params.get("cursor").is_some() {
        return Err(ApiError::invalid(
            "`cursor` cannot be combined with `from`/`until`: a range's cursors carry the range",
        ));
    }
    Ok(from.map(|from| TimeRange {
        from_micros: from.timestamp_micros(),
        until_micros: until.map(|until| until.timestamp_micros()),
    }))
}

/// A page of List Activity (seed 003). Written by hand around the stored JSON (see `list`);
/// a test checks that real responses have exactly these fields.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ActivityList {
    /// The activity, in the order Tidemark became aware of it.
    objects: Vec<Activity>,
    /// The position after `objects`: store it and send it as `cursor` next time.
    cursor: String,
    /// Activities in `objects`.
    count: u64,
    /// Activities currently retained for the subscription.
    total: u64,
    /// Always `object_list`.
    #[schema(rename = "type", example = "object_list")]
    kind: String,
    /// Always `activity`.
    #[schema(example = "activity")]
    api: String,
    /// Only in answers to `from`/`until`: the time (ISO 8601) before which this
    /// subscription's stream is known complete, or `null` if its connector cannot say. A
    /// range ending at or before it will never gain activity.
    #[schema(value_type = Option<String>, format = DateTime)]
    watermark: Option<String>,
}

/// `GET /v{1,2}/accounts/{account}/subscriptions/{subscription|default}/activity`.
#[utoipa::path(get, path = "/accounts/{account}/subscriptions/{subscription}/activity", tag = "activity",
    params(("account" = String, Path, description = "The account: its numeric id, or `me` with a bearer token"), ("subscription" = String, Path, description = "The subscription: its numeric id, or `default`"),
        ("cursor" = Option<String>, Query, description = "The last cursor received, or `after-auth`; absent: all retained activity"),
        ("page_size" = Option<u64>, Query, description = "Activities per page, 1..=1000 (default 1000)"),
        ("from" = Option<String>, Query, description = "ISO 8601 start of a time range of activity timestamps (inclusive); the range is read in timestamp order and its cursor stays inside it; activity without a timestamp is in no range"),
        ("until" = Option<String>, Query, description = "ISO 8601 end of the time range (exclusive), only with `from`")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "A page of the stream (or of the time range); store `cursor` even when `objects` is empty", body = ActivityList), CommonErrors))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((account_ref, subscription_ref)): PathParams<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    let page_size = params.integer("page_size", 1..=1000, 1000)?;
    let range = time_range(&params)?;
    let account = resolve_account(&state, &caller, &account_ref).await?;
    let subscription = resolve_subscription(&state, &account, &subscription_ref).await?;
    let start = match range {
        Some(range) => Start::Range(range, None),
        None => start_position(&state, &subscription, params.get("cursor"))?,
    };
    // The stored activity JSON goes straight from the store into the response body: no parse,
    // no re-serialization, one copy.
    let page_size = usize::try_from(page_size).unwrap_or(1000);
    let mut body = Vec::with_capacity(page_size * 1400 + 256);
    body.extend_from_slice(b"{\"objects\":[");
    let position = match start {
        Start::Stream(position) => position,
        Start::Range(range, after) => {
            return list_range(&state, &subscription, range, after, page_size, body).await;
        }
    };
    let page = state
        .store
        .read_page_json(subscription.id, position, page_size, body)
        .await?;
    let next = page.last_sequence.unwrap_or(position);
    let cursor = hand_out_cursor(&state, &subscription, next).await?;
    let mut body = page.out;
    body.extend_from_slice(b"],\"cursor\":");
    body.extend_from_slice(
        serde_json::to_string(&cursor)
            .map_err(|e| ApiError::internal(&e))?
            .as_bytes(),
    );
    body.extend_from_slice(
        format!(
            ",\"count\":{},\"total\":{},\"type\":\"object_list\",\"api\":\"activity\"}}",
            page.count, page.total
        )
        .as_bytes(),
    );
    Ok(json_response(body))
}

fn json_response(body: Vec<u8>) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A page of a time range: in (timestamp, sequence) order, with a cursor bound to the range and
/// the subscription's watermark.
async fn list_range(
    state: &AppState,
    subscription: &Subscription,
    range: TimeRange,
    after: Option<RangePosition>,
    page_size: usize,
    body: Vec<u8>,
) -> Result<Response, ApiError> {
    let page = state
        .store
        .read_range_json(subscription.id, range, after, page_size, body)
        .await?;
    let position = page.last.or(after);
    let cursor = Cursor {
        subscription: subscription.id,
        position: position.map_or(0, |p| p.sequence),
        range: Some(CursorRange {
            from_micros: range.from_micros,
            until_micros: range.until_micros,
            at_micros: position.map(|p| p.occurred_at_micros),
        }),
    }
    .encode(state.store.cursor_key());
    let watermark = page
        .watermark
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    let mut body = page.out;
    body.extend_from_slice(b"],\"cursor\":");
    let tail = serde_json::json!({"count": page.count, "total": page.total, "type": "object_list",
        "api": "activity", "watermark": watermark});
    let tail = serde_json::to_string(&tail).map_err(|e| ApiError::internal(&e))?;
    body.extend_from_slice(
        serde_json::to_string(&cursor)
            .map_err(|e| ApiError::internal(&e))?
            .as_bytes(),
    );
    body.push(b',');
    // The tail object without its opening brace: `"count":..,"watermark":..}`.
    body.extend_from_slice(tail.get(1..).unwrap_or("}").as_bytes());
    Ok(json_response(body))
}
