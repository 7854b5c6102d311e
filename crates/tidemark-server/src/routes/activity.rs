//! List Activity (seed 003): a subscription's stream, followed by cursor.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use tidemark_model::{Activity, Cursor, Subscription};

use super::{resolve_account, resolve_subscription, PathParams};
use crate::error::{ApiError, CommonErrors, ErrorBody};
use crate::extract::{truncate, Caller, Params};
use crate::AppState;

/// The `cursor` value that starts after the account was connected. Every subscription's stream
/// begins after its account was connected (a subscription tracks from its creation), so this
/// is the start of the stream.
const AFTER_AUTH: &str = "after-auth";

/// Where a stream read starts, from the `cursor` parameter.
///
/// # Errors
/// 400 for a cursor that is malformed, altered, or of another subscription.
pub fn start_position(
    state: &AppState,
    subscription: &Subscription,
    cursor: Option<&str>,
) -> Result<u64, ApiError> {
    let Some(text) = cursor else {
        return Ok(0);
    };
    if text == AFTER_AUTH {
        return Ok(0);
    }
    let decoded = Cursor::decode(text, state.store.cursor_key(), subscription.id)
        .map_err(|e| ApiError::invalid(format!("`cursor` `{}`: {e}", truncate(text, 64))))?;
    if decoded.range.is_some() {
        return Err(ApiError::not_implemented(
            "cursors of time-range (`from`/`until`) queries are not supported yet",
        ));
    }
    Ok(decoded.position)
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

/// Checks `from` / `until` (DESIGN 2.7): ISO 8601, `until` needs `from`, `from` not after
/// `until`, never with `cursor`. Valid ranges are answered `not_implemented` for now.
fn check_time_range(params: &Params) -> Result<(), ApiError> {
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
    if from.is_some() {
        return Err(ApiError::not_implemented(
            "time-range (`from`/`until`) activity queries are not supported yet",
        ));
    }
    Ok(())
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
}

/// `GET /v{1,2}/accounts/{account}/subscriptions/{subscription|default}/activity`.
#[utoipa::path(get, path = "/accounts/{account}/subscriptions/{subscription}/activity", tag = "activity",
    params(("account" = String, Path, description = "The account: its numeric id, or `me` with a bearer token"), ("subscription" = String, Path, description = "The subscription: its numeric id, or `default`"),
        ("cursor" = Option<String>, Query, description = "The last cursor received, or `after-auth`; absent: all retained activity"),
        ("page_size" = Option<u64>, Query, description = "Activities per page, 1..=1000 (default 1000)"),
        ("from" = Option<String>, Query, description = "ISO 8601 start of a time range (inclusive); not implemented yet"),
        ("until" = Option<String>, Query, description = "ISO 8601 end of a time range (exclusive), only with `from`; not implemented yet")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "A page of the stream; store `cursor` even when `objects` is empty", body = ActivityList), (status = 501, description = "time ranges", body = ErrorBody), CommonErrors))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((account_ref, subscription_ref)): PathParams<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    let page_size = params.integer("page_size", 1..=1000, 1000)?;
    check_time_range(&params)?;
    let account = resolve_account(&state, &caller, &account_ref).await?;
    let subscription = resolve_subscription(&state, &account, &subscription_ref).await?;
    let position = start_position(&state, &subscription, params.get("cursor"))?;
    // The stored activity JSON goes straight from the store into the response body: no parse,
    // no re-serialization, one copy.
    let page_size = usize::try_from(page_size).unwrap_or(1000);
    let mut body = Vec::with_capacity(page_size * 1400 + 256);
    body.extend_from_slice(b"{\"objects\":[");
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
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
