//! The v1 event stream (seed 004): the default subscription's activity in v1 form.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use tidemark_model::V1Event;

use super::activity::{hand_out_cursor, stream_position};
use super::{resolve_account, resolve_subscription, PathParams};
use crate::error::{ApiError, CommonErrors};
use crate::extract::{Caller, Params};
use crate::AppState;

/// Stream pages one v1 request may read while looking for activity that has a v1 form (v2
/// activity such as `access` has none): a page is returned empty only at the end of the
/// stream, or after this many pages without one, so clients that stop on an empty page
/// (the Kloudless SDK does) do not stop early in practice.
const MAX_PAGES_SCANNED: usize = 20;

/// A page of v1 events (seed 004).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventList {
    /// v1 events, in stream order.
    objects: Vec<V1Event>,
    /// The position after `objects`; an empty page means the end for now.
    cursor: String,
    /// Events in `objects`.
    count: usize,
    /// Always `object_list`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "object_list")]
    kind: &'static str,
    /// Always `activity`.
    #[schema(value_type = String, example = "activity")]
    api: &'static str,
}

/// A cursor at the end of the stream.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LatestCursor {
    /// Send it as `cursor` to receive only what happens from now on.
    cursor: String,
}

/// `GET /v1/accounts/{account}/events?cursor=&page_size=`.
#[utoipa::path(get, path = "/accounts/{account}/events", tag = "events",
    params(("account" = String, Path, description = "The account: its numeric id, or `me` with a bearer token"), ("cursor" = Option<String>, Query, description = "The last cursor received"), ("page_size" = Option<u64>, Query, description = "Events per page, 1..=1000 (default 1000)")),
    security(("api_key" = []), ("bearer" = [])), responses((status = 200, description = "v1 events of the default subscription", body = EventList), CommonErrors))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(account_ref): PathParams<String>,
    params: Params,
) -> Result<impl IntoResponse, ApiError> {
    let page_size = params.integer("page_size", 1..=1000, 1000)? as usize;
    let account = resolve_account(&state, &caller, &account_ref).await?;
    let subscription = resolve_subscription(&state, &account, "default").await?;
    let mut position = stream_position(&state, &subscription, params.get("cursor"))?;
    let mut events = Vec::with_capacity(page_size);
    for _ in 0..MAX_PAGES_SCANNED {
        let page = state
            .store
            .read_page(subscription.id, position, page_size - events.len())
            .await?;
        if page.activities.is_empty() {
            break;
        }
        for row in &page.activities {
            position = row.sequence;
            if let Some(event) = V1Event::from_activity(&row.activity()?) {
                events.push(event);
            }
        }
        if events.len() >= page_size {
            break;
        }
    }
    let cursor = hand_out_cursor(&state, &subscription, position).await?;
    Ok(Json(EventList {
        count: events.len(),
        objects: events,
        cursor,
        kind: "object_list",
        api: "activity",
    }))
}

/// `GET /v1/accounts/{account}/events/latest`: a cursor at the end of the stream.
#[utoipa::path(get, path = "/accounts/{account}/events/latest", tag = "events", params(("account" = String, Path, description = "The account: its numeric id, or `me` with a bearer token")), security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "A cursor at the end of the stream", body = LatestCursor), CommonErrors))]
pub async fn latest(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(account_ref): PathParams<String>,
) -> Result<impl IntoResponse, ApiError> {
    let account = resolve_account(&state, &caller, &account_ref).await?;
    let subscription = resolve_subscription(&state, &account, "default").await?;
    let position = state.store.latest_sequence(subscription.id).await?;
    let cursor = hand_out_cursor(&state, &subscription, position).await?;
    Ok(Json(LatestCursor { cursor }))
}
